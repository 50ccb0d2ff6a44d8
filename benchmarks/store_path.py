"""The store's hot path end to end: `store.add_readings()` from many callers at once through
the batching writer thread (one transaction per batch), as the gateway does for MeterValues.
Prints readings stored per second (best of 5 rounds) and microseconds per reading.

    python benchmarks/store_path.py                       # SQLite in a temporary folder
    python benchmarks/store_path.py postgresql://...      # a PostgreSQL database (the readings
                                                          # are added to it: give an empty one)
"""
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from picocharge.gateway.store import Store

STATIONS = 1000     # callers waiting at once (a closed-loop bench's depth)
ROUNDS = 20         # readings per station per round

_ROW = {"ts": "2026-11-30T12:00:00Z", "energy_wh": 1234.0, "current_a": 16.2, "voltage_v": 230.1,
        "power_w": 3700.2, "temp_c": 25.1, "status": "Charging"}


async def _round(store):
    t0 = time.perf_counter()
    for _ in range(ROUNDS):
        await asyncio.gather(*[store.add_readings("BENCH-%05d" % i, [_ROW], "ocpp") for i in range(STATIONS)])
    return time.perf_counter() - t0


async def _main(db):
    store = Store(db)
    await store.start()
    try:
        best = min([await _round(store) for _ in range(5)])
    finally:
        await store.stop()
    n = STATIONS * ROUNDS
    print("%s: %d readings from %d callers at once: %.0f readings/s, %.1f us per reading, %d commits"
          % (getattr(store, "name", db), n, STATIONS, n / best, best / n * 1e6, store.commits))


def main():
    if len(sys.argv) > 1:
        asyncio.run(_main(sys.argv[1]))
        return
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(_main(str(Path(d) / "gw.db")))


if __name__ == "__main__":
    main()
