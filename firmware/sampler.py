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


async def first_link(ctx):
    """An uplink's start: the Wi-Fi's first connection awaited for up to wifi.timeout_s before
    an uplink counts it as down and keeps its readings on flash (a board that boots without
    its network), so a normal boot does not load flashq for the few seconds it takes."""
    if not ctx.wifi_up.is_set():
        try:
            await asyncio.wait_for(ctx.wifi_up.wait(), ctx.cfg["wifi"]["timeout_s"])
        except asyncio.TimeoutError:
            pass


def backlog(ctx, name, t=0, r=None):
    """The backlog on flash (flashq) of uplink `name`, opened if need be, when that uplink
    cannot send: from then on the readings wait there, handed over by the sample task, until
    the uplink has sent them all; r, a reading taken at t that it could not send, goes first
    (flashq_cold.open_one: loaded for it and dropped)."""
    q = ctx.backlogs.get(name)
    if q is None or r is not None:
        import flashq_cold
        try:
            q = flashq_cold.open_one(ctx, name, t, r)
        finally:
            sys.modules.pop("flashq_cold", None)
    return q


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
            if ctx.backlogs:   # an uplink that cannot send: its reading to flash (flashq)
                import flashq
                flashq.hand_over(ctx, s["interval_s"] * 500)
        except Exception as e:  # a full or failing flash must not stop sampling either
            try:
                _L.error("backlog: %r", e)
            except Exception:
                pass
        gc.collect()
        await asyncio.sleep(s["interval_s"])
