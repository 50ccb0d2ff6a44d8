"""Issue 17, long outages on the board: 48 hours without Wi-Fi (the unix board's clock runs
1800x fast: a reading a second is one every 30 minutes), a transaction running, then every
kept reading at each far end once, in order: the OCPP central system (`ocpp` package), the
ThingSpeak server (tests/support/fake_thingspeak.py, bulk_update.json) and a real mosquitto, on a
flash folder the size of a Pico W's filesystem. And a power cut (SIGKILL) in the middle of
sending the backlog: nothing acknowledged lost, nothing doubled beyond the one in flight."""
import asyncio
import json
import re
from datetime import datetime

import time
from datetime import timezone

import paho.mqtt.client as mqtt
from ocpp.routing import on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action

from support.central import CentralCP, sampled, station_config, ts
from support.fake_thingspeak import FakeThingSpeak

SPEED = 1800                 # station seconds per real second
OUTAGE = (12, 12 + 96)       # real seconds since boot: 96 x 1800 s = 48 h
HOURS_48 = 48 * 3600


def sec(iso):
    """Epoch seconds of the firmware's '2026-11-30T16:05:48Z'."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class FastClockCP(CentralCP):
    """A central system whose clock runs with the board's (SPEED times fast from the moment
    the station starts): the currentTime it answers would otherwise set the station's clock
    back to the host's at each Heartbeat."""

    t0 = None

    def _now(self):
        t = self.t0 + (time.time() - self.t0) * SPEED
        return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z")

    @on(Action.boot_notification)
    def on_boot(self, charge_point_vendor, charge_point_model, **kw):
        return call_result.BootNotification(current_time=self._now(), interval=self.cs.heartbeat,
                                            status=self.cs.boot_status)

    @on(Action.heartbeat)
    def on_heartbeat(self):
        return call_result.Heartbeat(current_time=self._now())


class Telemetry:
    """Every telemetry message mosquitto delivers (QoS 1, subscribed before the station)."""

    def __init__(self, port):
        self.msgs = []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-backlog")
        self.c.on_message = lambda c, u, m: self.msgs.append(json.loads(m.payload))
        self.c.connect("127.0.0.1", port)
        self.c.subscribe("picocharge/+/telemetry", qos=1)
        self.c.loop_start()

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def config(cs, tsrv, ch, broker, **backlog):
    cfg = station_config(cs.url)
    cfg["thingspeak"] = {"enabled": True, "url": tsrv.url, "write_key": ch.write_key,
                         "channel_id": ch.id, "min_interval_s": 1}
    cfg["mqtt"] = {"enabled": True, "host": "127.0.0.1", "port": broker.port, "interval_s": 1,
                   "keepalive_s": 10}
    cfg["backlog"] = backlog
    return cfg


def counted(lines, folder):
    """(thinned, dropped) in all, as the backlog in `folder` last said them."""
    thinned = dropped = 0
    for line in lines:
        if "[backlog]" in line and folder + " " in line:
            n = int(re.search(r"(\d+) in all", line).group(1))
            if "thinned to one" in line:
                thinned = n
            elif "dropped the oldest" in line:
                dropped = n
    return thinned, dropped


def acked(st, folder):
    """The last reading the far end acknowledged, as the backlog's head file on flash says."""
    return int((st.flash / folder / "head").read_text())


async def wait_until(pred, timeout, what, st):
    end = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < end:
        if pred():
            return
        await asyncio.sleep(0.2)
    raise AssertionError("%s not within %ss; console:\n%s" % (what, timeout, st.tail(80)))


async def test_long_outage__48h_without_wifi_then_every_kept_reading_once_in_order(
        station, central, mqtt_broker):
    cs = await central(heartbeat=60)
    cs.cls = type("CP", (FastClockCP,), {"cs": cs, "t0": time.time()})
    tsrv = FakeThingSpeak(min_interval=1.0).start()
    ch = tsrv.add_channel("WKEY-LONG")
    sub = Telemetry(mqtt_broker.port)
    # 4 KB of flash per uplink: 96 readings of ~60 bytes do not fit, so the oldest are
    # thinned (to one per 2 h) and, if need be, dropped: what is left must all arrive
    # (the journal's budget raised from its default 64 KB: 96 MeterValues of ~850 bytes, a
    # sample every 30 min of the 48 h, are all kept, as the test checks)
    st = station(config(cs, tsrv, ch, mqtt_broker, flash_kb=4, thin_s=7200, journal_kb=128),
                 scenario={"clock": {"speed": SPEED, "offset_s": 0}, "flash": {"size_kb": 848},
                           "wifi": {"drops": [list(OUTAGE)], "connect_s": 0.2}}).start()
    try:
        await cs.wait_call("StatusNotification", 2, station=st)
        assert (await cs.call(call.RemoteStartTransaction(id_tag="TAG-48"))).status == "Accepted"
        await st.aexpect("[wifi] W:", timeout=30)          # the outage starts
        await st.aexpect("[wifi] I:", timeout=OUTAGE[1] + 30)  # ... and ends
        # each uplink catches up: MQTT says so, ThingSpeak writes one at a time again
        await wait_until(lambda: "[mqtt] I: backlog sent" in "\n".join(st.lines), 120, "MQTT backlog sent", st)
        await wait_until(lambda: "stored entry" in "\n".join(st.lines).rsplit("[thingspeak] I: bulk write of", 1)[-1]
                         and "bulk write of" in "\n".join(st.lines), 120, "ThingSpeak backlog sent", st)
        assert (await cs.call(call.RemoteStopTransaction(transaction_id=1001))).status == "Accepted"
        await cs.wait_call("StopTransaction", station=st)
        await cs.wait_for(lambda d, r: d == "cs" and r[0] == 3 and r[1] == cs.calls("StopTransaction")[0][1],
                          station=st, what="StopTransaction answered")
        st.stop()
        await asyncio.sleep(1)   # the subscriber takes the last deliveries
        lines = list(st.lines)
        log = "\n".join(lines)

        # MQTT: in order, each once, 48 h and more covered, and every reading kept on flash there
        # but those thinned or dropped (seq numbers every reading the backlog took), up to the
        # last acknowledged (and the one in flight when the station stopped, if any); before
        # the outage and once the backlog is sent, the latest reading (no seq)
        kept = [m for m in sub.msgs if "seq" in m]
        seqs = [m["seq"] for m in kept]
        assert seqs == sorted(set(seqs)) and seqs[0] == 1, seqs
        assert seqs[-1] in (acked(st, "mqtt_backlog"), acked(st, "mqtt_backlog") + 1), seqs[-3:]
        stamps = [sec(m["ts"]) for m in sub.msgs]
        assert stamps == sorted(set(stamps)), stamps
        assert stamps[-1] - stamps[0] >= HOURS_48, (stamps[0], stamps[-1])
        thinned, dropped = counted(lines, "mqtt_backlog")
        assert thinned > 0, "the 4 KB budget should have made the backlog thin:\n" + log
        assert seqs[-1] - len(seqs) == thinned + dropped, (len(seqs), thinned, dropped, seqs)
        # each reading with the status it was taken in: the backlogs are open from boot, so the
        # first ones may come from before the remote start (Available, Preparing); then the
        # transaction's, never an earlier status after a later one
        order = ("Available", "Preparing", "Charging", "Finishing")
        ranks = [order.index(m["status"]) for m in kept]
        assert ranks == sorted(ranks) and ranks.count(2) > len(ranks) // 2, ranks
        for m in sub.msgs:
            assert abs(m["voltage_v"] - 230) < 3, m

        # ThingSpeak: the backlog in bulk, created_at each reading's own, unique and in order,
        # each reading taken there once but those thinned or dropped
        entries = tsrv.entries(ch.id)
        created = [sec(e["created_at"]) for e in entries]
        assert created == sorted(set(created)), created
        assert created[-1] - created[0] >= HOURS_48, (entries[0], entries[-1])
        assert tsrv.dropped == [] and tsrv.refusals == [], (tsrv.dropped, tsrv.refusals)
        ts_thinned, ts_dropped = counted(lines, "ts_backlog")
        assert ts_thinned > 0, log
        # the latest reading, sent as taken (before the outage, after the backlog): not on flash
        direct = sum(1 for x in lines if "[thingspeak] I: stored entry" in x and "backlog #" not in x)
        taken = len(entries) - direct + ts_thinned + ts_dropped
        assert taken in (acked(st, "ts_backlog"), acked(st, "ts_backlog") + 1), (
            len(entries), ts_thinned, ts_dropped, acked(st, "ts_backlog"))

        # OCPP: the transaction's MeterValues are never thinned: all of them, once, in order
        mvs = cs.calls("MeterValues")
        ids = [m[1] for m in cs.calls()]
        assert len(ids) == len(set(ids)), ids
        t = [ts(m[3]["meterValue"][0]["timestamp"]) for m in mvs]
        assert t == sorted(set(t)), t
        assert t[-1] - t[0] >= HOURS_48, (t[0], t[-1])
        gaps = [b - a for a, b in zip(t, t[1:])]
        # a sample every second (30 min), none lost from the journal; one gap at most, where
        # the Wi-Fi went: the charge point takes no sample while a call waits out its timeout
        # on the dead link (call_timeout_s, 5 s; chargepoint.py, not the journal)
        big = [(i, round(g)) for i, g in enumerate(gaps) if g > 3 * SPEED]
        assert len(big) <= 1 and all(g <= 9 * SPEED for _, g in big), (big, len(gaps))
        e = [sampled(m[3]["meterValue"][0])["Energy.Active.Import.Register"] for m in mvs]
        assert e == sorted(e), e
        assert "flash full" not in log
    finally:
        sub.close()
        tsrv.stop()
