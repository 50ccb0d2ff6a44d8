# The firmware application: one asyncio task per concern (wifi, sample, safety, ocpp,
# thingspeak, mqtt, web, watchdog). A task's top catches, logs and backs off.
import asyncio
import gc
import json
import os

import log
import mains
import overtemp
from dht11 import Dht11
from state import State
from version import VERSION

_L = log.get("app")
METER_FILE = "meter.json"
_EXIT_CONFIG = 78  # EX_CONFIG: the code a board shows for a bad config


class Ctx:
    def __init__(self, board, cfg):
        self.board = board
        self.cfg = cfg
        self.state = State()
        self.fw_version = VERSION
        self.wifi_up = asyncio.Event()
        # task name -> function called when the Wi-Fi link drops (sockets over it are dead);
        # keyed, so a task restarted by guarded() replaces its own rather than adding one
        self.on_wifi_lost = {}


def load_energy():
    try:
        with open(METER_FILE) as f:
            return float(json.load(f)["energy_wh"])
    except (OSError, ValueError, KeyError):
        return 0.0


def save_energy(wh):
    # atomic: a power cut leaves either the old or the new register, never a torn file
    with open(METER_FILE + ".tmp", "w") as f:
        json.dump({"energy_wh": wh}, f)
    os.rename(METER_FILE + ".tmp", METER_FILE)


async def sample_task(ctx):
    """Read DHT11, mains (RMS over whole cycles), chip temperature; integrate energy."""
    from array import array

    b = ctx.board
    st = ctx.state
    s = ctx.cfg["sensors"]
    n, rate = mains.burst_geometry(s["mains_hz"], s["cycles"], s["samples_per_cycle"])
    buf_i = array("H", bytearray(2 * n))  # preallocated once, reused every burst
    buf_v = array("H", bytearray(2 * n))
    dht = Dht11(b, s["dht_retries"])
    meter = mains.EnergyMeter(load_energy())
    st.energy_wh = meter.wh
    saved_wh = meter.wh
    sf = ctx.cfg["safety"]
    over = overtemp.OverTemp(sf["max_temp_c"], sf["hysteresis_c"], sf["dht_dead_cycles"])
    free_charge = not ctx.cfg["ocpp"]["url"]
    L = log.get("meter")
    while True:
        try:
            th = await dht.read()
            if th:
                st.temp_c, st.humidity = th
            if over.read_cycle(th is not None):
                # a dead DHT11's last reading is stale: report nothing rather than a lie
                st.temp_c = st.humidity = None
            st.dht_errors = dht.errors
            b.adc_burst(buf_i, buf_v, rate)
            irms, vrms, p = mains.analyse(buf_i, buf_v, n, s["current_scale"], s["voltage_scale"],
                                          s["current_offset"], s["voltage_offset"])
            st.current_a = round(irms, 2)
            st.voltage_v = round(vrms, 1)
            st.power_w = round(p if p > 0 else 0.0, 1)
            st.energy_wh = meter.add(st.power_w)
            st.chip_temp_c = round(mains.chip_temp_c(b.read_chip_temp()), 1)
            # safety first: a hot enclosure, or a DHT11 that stopped answering, opens the relay at once
            over.update(st.temp_c)
            fault, info = over.fault()
            if fault != st.fault:
                if fault == overtemp.FAULT:
                    _L.error("enclosure %.0f degC above %.0f: relay opened", st.temp_c, over.max_c)
                elif fault:
                    _L.error("%s for %d read cycles: relay opened", info, over.missed)
                else:
                    _L.info("enclosure %.0f degC: %s fault cleared", st.temp_c, st.fault)
                st.fault = fault
                st.fault_info = info
            if free_charge:
                st.charge_wanted = True
                st.status = "Faulted" if st.fault else ("Charging" if st.current_a > 0.5 else "Available")
            st.apply_relay(b)
            b.led(st.relay or (st.fault is not None and st.readings_seq & 1))
            st.readings_seq += 1
            L.info("%s degC %s %%RH %.2f A %.1f V %.0f W %.3f Wh chip %.1f degC %s%s",
                   st.temp_c, st.humidity, st.current_a, st.voltage_v, st.power_w,
                   st.energy_wh, st.chip_temp_c, st.status, " relay" if st.relay else "")
            if st.energy_wh - saved_wh >= 1.0:
                save_energy(st.energy_wh)
                saved_wh = st.energy_wh
        except Exception as e:  # a sensor problem must never stop the station
            _L.error("sample: %r", e)
        gc.collect()
        await asyncio.sleep(s["interval_s"])


async def watchdog_task(ctx):
    ctx.board.wdt_start(8000)
    while True:
        ctx.board.wdt_feed()
        await asyncio.sleep(2)


async def guarded(name, coro_fn, ctx):
    """Run a task's loop; if it ever raises, log it and start it again after a pause."""
    while True:
        try:
            await coro_fn(ctx)
        except Exception as e:
            _L.error("task %s crashed: %r; restarting in 5s", name, e)
        await asyncio.sleep(5)


def tasks(ctx):
    import wifi

    out = [("wifi", wifi.run), ("sample", sample_task), ("watchdog", watchdog_task)]
    c = ctx.cfg
    if c["ocpp"]["url"]:
        import chargepoint
        out.append(("ocpp", chargepoint.run))
        ctx.state.links["ocpp"] = "down"
    if c["thingspeak"]["enabled"]:
        import thingspeak_upload
        out.append(("thingspeak", thingspeak_upload.run))
    if c["mqtt"]["enabled"]:
        import mqtt_uplink
        out.append(("mqtt", mqtt_uplink.run))
    if c["web"]["enabled"]:
        import web
        out.append(("web", web.run))
    return out


async def run(ctx):
    for name, fn in tasks(ctx):
        asyncio.create_task(guarded(name, fn, ctx))
        gc.collect()
    _L.info("station %s running (firmware %s, board %s, %d bytes free)",
            ctx.cfg["station_id"], VERSION, ctx.board.name, gc.mem_free())
    while True:
        await asyncio.sleep(3600)


def main():
    import board as board_mod

    b = board_mod.Board()
    cfg = load_config(b)
    log.set_level(cfg["log_level"])
    gc.collect()
    try:
        asyncio.run(run(Ctx(b, cfg)))
    except KeyboardInterrupt:  # Ctrl-C over USB (mpremote): open the relay, back to the REPL
        # An RP2040 watchdog cannot be stopped by machine.WDT: left running unfed, it would
        # reset the board ~8 s later, in the middle of a deploy. The board switches it off.
        try:
            b.relay(False)
            b.wdt_stop()
            _L.info("stopped (Ctrl-C), relay opened, watchdog stopped")
        except MemoryError:  # the heap may be locked (the unix port can take the interrupt
            # inside a collection): the board's two steps do not allocate, the log line does
            b.relay(False)
            b.wdt_stop()


def load_config(b):
    """The validated config, or halt the board naming the bad key. The schema (~12 KB of
    heap on 64 bit) is needed only here: it is dropped once the config is checked."""
    import sys
    import config

    try:
        cfg = config.load()
    except config.ConfigError as e:
        print("[config] E: %s" % e)
        halt(b)
    _L.info("config: %s", json.dumps(config.redact(cfg)))
    del config
    sys.modules.pop("config", None)
    return cfg


def halt(b):
    """Bad config: the board shows it (LED blink code on a Pico W; exit 78 on the unix port)."""
    b.halt(_EXIT_CONFIG)
