"""Heap use of the real firmware on the unix board, with every uplink running.

Prints, for the full firmware (sampling, MQTT to a real mosquitto, ThingSpeak to a local
API server, the status page polled, OCPP 1.6J to our gateway with a transaction running,
clock-aligned meter values every 2 s with the Climate DataTransfer):
  - the lowest free heap seen on /api/status over the run (after a collection),
  - the smallest -X heapsize that survives the run without MemoryError (bisection),
so the figure is "what the firmware needs", not "what a run happened to show".
The unix port's 64-bit objects are larger than the RP2040's, but not twice: measured on
MicroPython v1.28.0's RPI_PICO_W build in rp2040js (benchmarks/rp2040_heap.py), the same
compiled modules take 0.68 times the heap there that they take here (RP2040_RATIO), so 192K
here stands for ~130K on a Pico W, not ~100K. Budgets are RP2040 figures: measure them there.

`--imports` instead prints the heap that importing the firmware's modules takes (after a
collection, in the order the app imports them, the board libraries included): exact and the
same on every run, so it shows what a change to the code's shape costs, e.g. one module more.

  python benchmarks/firmware_memory.py --seconds 60
  python benchmarks/firmware_memory.py --imports
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# RP2040 heap / unix-port heap for the firmware's modules (benchmarks/rp2040_heap.py)
RP2040_RATIO = 0.68
sys.path.insert(0, str(ROOT / "tests"))

from support.broker import Broker  # noqa: E402
from support.fake_thingspeak import FakeThingSpeak  # noqa: E402
from support.net import free_port  # noqa: E402

from picocharge import unixport  # noqa: E402


def run_once(heap, seconds, broker_port, ts_url, ocpp=None, poll=True):
    flash = Path(tempfile.mkdtemp(prefix="pc-mem-"))
    web = free_port()
    cfg = {"station_id": "MEM-1", "sensors": {"interval_s": 1},
           "web": {"enabled": True, "port": web},
           "mqtt": {"enabled": True, "host": "127.0.0.1", "port": broker_port, "interval_s": 1},
           "thingspeak": {"enabled": True, "url": ts_url, "write_key": "K", "min_interval_s": 1}}
    if ocpp:
        cfg["ocpp"] = dict(ocpp, heartbeat_s=5, meter_interval_s=2)
        # as if the central system had set it: clock-aligned samples, idle and in the transaction
        (flash / "ocpp_keys.json").write_text(json.dumps({"keys": {"ClockAlignedDataInterval": "2"}}))
    (flash / "config.json").write_text(json.dumps(cfg))
    (flash / "scenario.json").write_text(json.dumps({"dht": {"error_rate": 0.1}, "button": [[2, 3]]}))
    p = unixport.start_firmware(flash, heap=heap)
    min_free, max_alloc, bad = None, 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end and p.poll() is None:
        time.sleep(0.5)
        if not poll:
            continue
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/api/status" % web, timeout=2) as r:
                s = json.loads(r.read())
            min_free = s["mem_free"] if min_free is None else min(min_free, s["mem_free"])
            max_alloc = max(max_alloc, s["mem_alloc"])
        except OSError:
            pass
        except ValueError as e:     # an answer cut short: the page ran out of heap mid-answer
            print("status page answer not JSON: %s" % e)
            bad += 1
    alive = p.poll() is None
    p.terminate()
    out = p.communicate(timeout=10)[0].decode("utf-8", "replace")
    shutil.rmtree(flash, ignore_errors=True)
    ok = alive and "MemoryError" not in out and not bad
    return ok, min_free, max_alloc, out


# the modules of a station with every task on, in the order app.py imports them
IMPORTS = ("asyncio", "log", "state", "version", "app", "board", "wifi", "sampler", "chargepoint",
           "thingspeak_upload", "mqtt_uplink", "umqtt.simple", "web", "microdot")
_IMPORTS_PY = """
import gc, sys
gc.collect()
base = prev = gc.mem_alloc()
for name in sys.argv[1:]:
    before = set(sys.modules)
    __import__(name)
    gc.collect()
    now = gc.mem_alloc()
    new = sorted(m for m in sys.modules if m not in before and m != name)
    print("%-18s %7d  %s" % (name, now - prev, " ".join(new)))
    prev = now
print("%-18s %7d" % ("all", prev - base))
"""


def imports():
    """Heap taken by importing the firmware (compiled as deployed), module by module."""
    image = unixport.build_image()
    with tempfile.TemporaryDirectory() as d:
        script = Path(d) / "imports.py"
        script.write_text(_IMPORTS_PY)
        r = subprocess.run([unixport.find_micropython(), str(script)] + list(IMPORTS), cwd=d,
                           env=unixport.firmware_env(image), capture_output=True, text=True, timeout=60)
    if r.returncode:
        print(r.stdout + r.stderr)
        return 1
    print("heap taken by imports (bytes, 64-bit unix port; with the modules each one pulls in)")
    print(r.stdout, end="")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--heap", default="192K")
    ap.add_argument("--bisect-seconds", type=float, default=12)
    ap.add_argument("--no-ocpp", action="store_true", help="leave OCPP out (no gateway)")
    ap.add_argument("--imports", action="store_true", help="only the heap the imports take")
    a = ap.parse_args()
    if a.imports:
        return imports()
    broker = Broker(Path(tempfile.mkdtemp())).start()
    ts = FakeThingSpeak(min_interval=1).start()
    ts.add_channel("K")
    gw = None
    ocpp = None
    try:
        if not a.no_ocpp:
            # our gateway as the central system; the station starts a transaction with its button
            from picocharge.cmd_demo import GatewayProcess

            gw = GatewayProcess(Path(tempfile.mkdtemp()) / "gw.db", port=0).start()
            gw.api("POST", "/api/stations", {"id": "MEM-1", "password": "mem-bench-password-01"})
            gw.api("POST", "/api/id-tags", {"id_tag": "MEMTAG", "status": "Accepted"})
            ocpp = {"url": gw.url.replace("http://", "ws://") + "/ocpp", "password": "mem-bench-password-01",
                    "id_tag": "MEMTAG"}
            print("with OCPP: central system %s, a transaction started by the button" % ocpp["url"])
        ok, min_free, max_alloc, out = run_once(a.heap, a.seconds, broker.port, ts.url, ocpp)
        print("full run, heap %s, %.0f s: %s; lowest free heap %s B, highest allocated %s B"
              % (a.heap, a.seconds, "ok" if ok else "FAILED", min_free, max_alloc))
        if not ok:
            print(out[-2000:])
            return 1
        lo, hi = 32, int(a.heap.rstrip("K"))
        while hi - lo > 4:
            mid = (lo + hi) // 2
            good = run_once("%dK" % mid, a.bisect_seconds, broker.port, ts.url, ocpp)[0]
            print("  heap %3dK: %s" % (mid, "ok" if good else "MemoryError or crash"))
            if good:
                hi = mid
            else:
                lo = mid
        print("smallest heap that runs the full firmware for %.0f s: %dK (64-bit unix port; "
              "~%.0fK on a Pico W at the measured ratio %.2f)"
              % (a.bisect_seconds, hi, hi * RP2040_RATIO, RP2040_RATIO))
    finally:
        if gw:
            gw.stop()
        ts.stop()
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
