"""The MQTT uplink's forwarding rate on its own: N readings wait in the outbox, the gateway
starts with a real mosquitto, and the drain to PUBACK is timed (readings/s), with the outbox
depth sampled every 0.5 s. No stations, no ingest of new readings: only the uplink's work
(read a batch, publish QoS 1, wait for the acks, move the cursor) and the broker's.

    python benchmarks/mqtt_drain.py [--readings 200000] [--stations 10000] [--no-ingest] [--retain] [--json]

--retain publishes the telemetry retained, as a gateway in a cluster does (gateway/uplinks.py,
"Exactly once across a takeover"): the broker then stores each station's last message.

mosquitto from the OS (apt-get install mosquitto). Ingest is on by default, as `picocharge
gateway --mqtt` runs it: every forwarded reading comes back through the ingest subscription.
"""
import argparse
import asyncio
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

from picocharge.gateway.app import Gateway, Settings
from picocharge.gateway.store import Store


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mosquitto(tmp):
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(exe):
        sys.exit("mosquitto not found: apt-get install mosquitto")
    port = _free_port()
    conf = os.path.join(tmp, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n" % port)
    proc = subprocess.Popen([exe, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("mosquitto did not start")


def _fill(db, n, stations):
    """n readings of `stations` stations (the bench's MeterValues: five measurands), all waiting
    for the MQTT uplink (its cursor at 0)."""
    Store(db).open().close()
    con = sqlite3.connect(db)
    rows = ((("BENCH-%05d" % (i % stations + 1)), "2026-01-01T10:%02d:%02dZ" % (i // 60 % 60, i % 60),
             16.0, 230.0, 3680.0, 1000.0 + i, 21.5, "Charging", "ocpp") for i in range(n))
    con.executemany("INSERT INTO readings (station, ts, current_a, voltage_v, power_w, energy_wh, temp_c, status, "
                    "source) VALUES (?,?,?,?,?,?,?,?,?)", rows)
    con.execute("INSERT INTO outbox (uplink, station, last_id) VALUES ('mqtt', '*', 0)")
    con.commit()
    con.close()


async def _drain(db, port, n, ingest):
    gw = Gateway(Settings(db=db, port=0, auth="none", mqtt_url="mqtt://127.0.0.1:%d/bench" % port,
                          mqtt_ingest=ingest, thingspeak_url=None, gc_freeze=True))
    t0 = time.perf_counter()
    c0 = time.process_time()
    await gw.start()
    depth = []
    try:
        while gw.mqtt.delivered < n:
            await asyncio.sleep(0.5)
            depth.append((round(time.perf_counter() - t0, 1), n - gw.mqtt.delivered))
            if time.perf_counter() - t0 > 600:
                break
        took = time.perf_counter() - t0
        cpu = time.process_time() - c0
        return {"readings": n, "delivered": gw.mqtt.delivered, "seconds": round(took, 2),
                "per_s": round(gw.mqtt.delivered / took), "cpu_s": round(cpu, 2),
                "cpu_us_per_reading": round(cpu / max(gw.mqtt.delivered, 1) * 1e6, 1),
                "commits": gw.store.commits, "depth": depth}
    finally:
        await gw.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readings", type=int, default=200000)
    ap.add_argument("--stations", type=int, default=10000)
    ap.add_argument("--no-ingest", action="store_true", help="without the ingest subscription")
    ap.add_argument("--retain", action="store_true", help="telemetry published retained (as in a cluster)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.retain:
        # one process on SQLite does not retain; the uplink as a cluster's process runs it
        from picocharge.gateway import uplinks
        init = uplinks.MqttUplink.__init__
        uplinks.MqttUplink.__init__ = lambda self, *args, **kw: init(self, *args, retain=True, **kw)
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "drain.db")
        _fill(db, a.readings, a.stations)
        broker, port = _mosquitto(tmp)
        try:
            out = asyncio.run(_drain(db, port, a.readings, not a.no_ingest))
        finally:
            broker.terminate()
            broker.wait(10)
    out["ingest"] = not a.no_ingest
    out["retain"] = a.retain
    if a.json:
        print(json.dumps(out))
    else:
        print("%(delivered)d of %(readings)d readings in %(seconds).2f s: %(per_s)d readings/s, "
              "%(cpu_us_per_reading).1f us CPU each (gateway process), %(commits)d store commits" % out)
        print("outbox depth (s, readings): %s" % " ".join("%s:%d" % d for d in out["depth"][::max(1, len(out["depth"]) // 12)]))


if __name__ == "__main__":
    main()
