# The sample task: DHT11, mains (RMS over whole cycles), chip temperature, the energy register
# (saved to flash), and safety first: over-temperature or a dead DHT11 opens the relay at once.
import asyncio
import gc
import json
import os
import sys
import time
from array import array

import fields
import log
import mains
import overtemp
from compat import ticks_ms, time_ns
from dht11 import Dht11

_L = log.get("app")
METER_FILE = "meter.json"
# the meter file's one member: the energy register's reading key
_WH = fields.READING_KEYS[fields.ENERGY]


def load_energy():
    try:
        with open(METER_FILE) as f:
            return float(json.load(f)[_WH])
    except (OSError, ValueError, KeyError):
        return 0.0


def save_energy(wh):
    # atomic: a power cut leaves either the old or the new register, never a torn file
    with open(METER_FILE + ".tmp", "w") as f:
        json.dump({_WH: wh}, f)
    os.rename(METER_FILE + ".tmp", METER_FILE)


def iso_s(t):
    """'2026-11-30T15:21:07Z' of epoch seconds (ThingSpeak's created_at, MQTT's ts)."""
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % time.gmtime(t)[:6]


def open_backlog(ctx, name):
    """The backlog on flash of uplink `name` (flashq), opened when that uplink cannot send
    (flashq_cold: loaded for it and dropped): from then on the readings wait there, handed
    over by the sample task, until the uplink has sent them all."""
    q = ctx.backlogs.get(name)
    if q is None:
        import flashq_cold
        try:
            q = flashq_cold.open_one(ctx, name)
        finally:
            sys.modules.pop("flashq_cold", None)
    return q


def to_backlog(ctx, name, t, r):
    """A reading the uplink could not send (taken at t, epoch s), first in its backlog."""
    q = open_backlog(ctx, name)
    import flashq
    q.append(t, flashq.pack_reading(r))


def close_backlog(ctx, name):
    """Uplink `name` has sent its whole backlog: it sends the latest reading again, and
    flashq leaves the heap once no backlog is open."""
    ctx.backlogs.pop(name, None)
    if not ctx.backlogs:
        sys.modules.pop("flashq", None)


def hand_over(ctx, slack_ms):
    """The reading to each open backlog on flash (an uplink that cannot send), at that
    uplink's interval, stamped with the station's clock: sent from there when it can."""
    qs = ctx.backlogs
    if not qs:
        return
    now = ticks_ms()
    p = None
    for q in qs.values():
        if q.due(now, slack_ms):
            if p is None:
                import flashq
                p = flashq.pack_reading(ctx.state.reading())
            q.append(time_ns() // 1000000000, p)


async def run(ctx):
    """Read DHT11, mains (RMS over whole cycles), chip temperature; integrate energy."""
    b = ctx.board
    st = ctx.state
    s = ctx.cfg["sensors"]
    n, rate = mains.burst_geometry(s["mains_hz"], s["cycles"], s["samples_per_cycle"])
    buf_i = array("H", bytearray(2 * n))  # preallocated once, reused every burst
    buf_v = array("H", bytearray(2 * n))
    dht = Dht11(b, s["dht_retries"])
    meter = mains.EnergyMeter(load_energy())
    # where each reading goes in st.values (locals: no module globals for them)
    _TEMP = fields.TEMP
    _HUM = fields.HUMIDITY
    _CUR = fields.CURRENT
    _VOLT = fields.VOLTAGE
    _POW = fields.POWER
    _ENERGY = fields.ENERGY
    _CHIP = fields.CHIP_TEMP
    v = st.values
    v[_ENERGY] = meter.wh
    saved_wh = meter.wh
    sf = ctx.cfg["safety"]
    over = overtemp.OverTemp(sf["max_temp_c"], sf["hysteresis_c"], sf["dht_dead_cycles"])
    free_charge = not ctx.cfg["ocpp"]["url"]
    L = log.get("meter")
    while True:
        try:
            th = await dht.read()
            if th:
                v[_TEMP], v[_HUM] = th
            if over.read_cycle(th is not None):
                # a dead DHT11's last reading is stale: report nothing rather than a lie
                v[_TEMP] = v[_HUM] = None
            st.dht_errors = dht.errors
            b.adc_burst(buf_i, buf_v, rate)
            irms, vrms, p = mains.analyse(buf_i, buf_v, n, s["current_scale"], s["voltage_scale"],
                                          s["current_offset"], s["voltage_offset"])
            v[_CUR] = round(irms, 2)
            v[_VOLT] = round(vrms, 1)
            v[_POW] = round(p if p > 0 else 0.0, 1)
            wh = v[_ENERGY] = meter.add(v[_POW])
            v[_CHIP] = round(mains.chip_temp(b.read_chip_temp()), 1)
            # safety first: a hot enclosure, or a DHT11 that stopped answering, opens the relay at once
            t = v[_TEMP]
            over.update(t)
            fault, info = over.fault()
            if fault != st.fault:
                if fault == overtemp.FAULT:
                    _L.error("enclosure %.0f degC above %.0f: relay opened", t, over.max_c)
                elif fault:
                    _L.error("%s for %d read cycles: relay opened", info, over.missed)
                else:
                    _L.info("enclosure %.0f degC: %s fault cleared", t, st.fault)
                st.fault = fault
                st.fault_info = info
            if free_charge:
                st.charge_wanted = True
                st.status = "Faulted" if st.fault else ("Charging" if v[_CUR] > 0.5 else "Available")
            st.apply_relay(b)
            if not st.blink:   # not while rfid.py shows a refused card
                b.led(st.relay or (st.fault is not None and st.readings_seq & 1))
            st.readings_seq += 1
            L.info("%s degC %s %%RH %.2f A %.1f V %.0f W %.3f Wh chip %.1f degC %s%s",
                   t, v[_HUM], v[_CUR], v[_VOLT], v[_POW], wh, v[_CHIP], st.status,
                   " relay" if st.relay else "")
            if wh - saved_wh >= 1.0:
                save_energy(wh)
                saved_wh = wh
        except Exception as e:  # a sensor problem (or a full heap) must never stop the station
            try:
                _L.error("sample: %r", e)
            except Exception:  # no heap even for the log line: keep sampling all the same
                pass
        try:
            hand_over(ctx, s["interval_s"] * 500)
        except Exception as e:  # a full or failing flash must not stop sampling either
            try:
                _L.error("backlog: %r", e)
            except Exception:
                pass
        gc.collect()
        await asyncio.sleep(s["interval_s"])
