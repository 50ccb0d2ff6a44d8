"""The store's writer thread: CPU per reading of a run of readings, by how it is inserted.

The gateway's SQLite writer is a thread beside the event loop's. sqlite3 lets go of the GIL
around every step of a statement, so each step waits for the GIL while the loop's thread holds
it. This script measures the writer thread's own CPU (time.thread_time) per reading for the two
ways of inserting a run (a commit of --per readings every --linger seconds, the shape of paced
load: gateway/store.py lingers 5 ms):

- executemany: one step per row (the store before session 13);
- chunks: SqliteBackend.insert_run, a multi-row INSERT per power-of-two chunk (now);

each with the other thread idle, and with it busy running Python (the event loop under load).

    python benchmarks/writer_gil.py [--stations 10000] [--commits 600] [--per 8]

Session 13 (2 vCPUs, AMD EPYC), 10,000 stations, 8 readings a commit, two runs: executemany
75-94 us per reading with the other thread idle, 321-338 beside a busy one; chunks 79-86 and
176 (so the gain is where the event loop is busy: the gateway under load).
"""
import argparse
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from picocharge.gateway.store import Store  # noqa: E402
from picocharge.gateway.store_sqlite import SqliteBackend  # noqa: E402
from picocharge.gateway.store_schema import INSERT_READING, READING_COLS  # noqa: E402

ROW = {"ts": "2026-12-01T16:00:00Z", "current_a": 16.0, "voltage_v": 230.0, "temp_c": 21.5}


def _params(station):
    return (station, ROW["ts"]) + tuple(map(ROW.get, READING_COLS)) + ("ocpp",)


def fill(path, stations, per_station=8):
    db = Store(path).open()
    db.execute("BEGIN")
    db.executemany(INSERT_READING, [_params("BENCH-%05d" % (s + 1)) for _ in range(per_station)
                                    for s in range(stations)])
    db.execute("COMMIT")
    db.close()


def writer(path, how, commits, per, stations, linger, out):
    db = Store(path).open()
    rnd = random.Random(1)
    t = time.thread_time()
    for _ in range(commits):
        items = [(None, ("BENCH-%05d" % rnd.randint(1, stations), [ROW], "ocpp"), None) for _ in range(per)]
        db.execute("BEGIN")
        if how == "executemany":
            db.executemany(INSERT_READING, [_params(a[0]) for _f, a, _u in items])
        else:
            SqliteBackend.insert_run(db, items)
        db.execute("COMMIT")
        time.sleep(linger)
    out.append((time.thread_time() - t) / (commits * per) * 1e6)
    db.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stations", type=int, default=10000)
    ap.add_argument("--commits", type=int, default=600)
    ap.add_argument("--per", type=int, default=8, help="readings a commit")
    ap.add_argument("--linger", type=float, default=0.005)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "gw.db")
        fill(path, a.stations)
        print("%d stations, %d commits of %d readings, %.0f ms apart; writer thread CPU per reading:"
              % (a.stations, a.commits, a.per, a.linger * 1e3))
        for busy in (False, True):
            for how in ("executemany", "chunks"):
                stop = threading.Event()

                def spin():
                    x = 0
                    while not stop.is_set():
                        x += 1
                        d = {"a": x}
                        _ = [d] * 3
                s = threading.Thread(target=spin)
                if busy:
                    s.start()
                out = []
                w = threading.Thread(target=writer, args=(path, how, a.commits, a.per, a.stations, a.linger, out))
                w.start()
                w.join()
                stop.set()
                if busy:
                    s.join()
                print("  %-12s %-22s %7.1f us" % (how, "beside a busy thread" if busy else "other thread idle", out[0]))


if __name__ == "__main__":
    main()
