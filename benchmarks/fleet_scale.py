"""Per-event work that grows with the fleet: the cost of one event at N = 100, 1,000 and 10,000
stations, the old path next to the gateway's (session 12's hunt for O(N) per frame / request).

Each line builds the structure the event meets with N entries, in process, and times the call:
  - ingest: the station of a ThingSpeak write key (/update): the walk over every station that
    api.ingest did (hmac.compare_digest one by one) against writekeys.WriteKeys' index;
  - pending count: an unknown station's connection under --auth pending counts the stations that
    wait for an operator (--max-pending): the walk over every station against pending.py's set
    (50 of the N pending);
  - status history: GET /api/stations/<id>/status-history (the station page polls it every 4 s)
    on a SQLite database of the gateway's schema, 30 rows per station, without the index of
    migration 0006 and with it (the query runs in the store's writer thread: writes wait);
  - outbox depth: GET /metrics counts each uplink's undelivered readings; for ThingSpeak (a cursor
    per station, 20 readings per station, half undelivered) a query per station from Python
    against one statement (uplinks.outbox_depth), in the store's writer thread (SQLite);
  - open transactions: the load balancer's read of them (loadbalance._open_transactions: at start,
    and in a cluster before each plan of each group), 30 transactions stored per station and one
    open, without the partial index of migration 0007 and with it (SQLite);
  - rollout wake: a boot (or firmware status) of a station outside a running rollout's wave, the
    rollout holding all N stations in waves of 100 (N/10 below 1,000): before, it woke the
    rollout, whose step read and walked every station of it (timed here: that read and the step,
    CPU of the loop and the store's thread); now only the wave's stations wake it (timed: wake()
    finding it need not);
  - rollout step: a status of a station of the wave: the step it wakes, reading and walking every
    station of the rollout (store.rollout_rows) against reading the stations it judges
    (store.rollout_judged: the wave and the failed ones);
  - dashboard pass: the event hub's pass over the fleet, once a second while a dashboard
    listens (events.Hub.tick), with a reading for N/60 stations in the second (each station once
    a minute): before, the pass and a count of the whole fleet for the summary (session 13:
    the count was two thirds of it); now the pass, the counts kept from the stations it found
    changed;

    python benchmarks/fleet_scale.py [--sizes 100,1000,10000]

About 15 s of CPU in all, in pieces of a second or two (each figure is the mean over enough calls
to take ~0.2 s; building the 10,000-station databases takes the rest). Figures move with the
machine's load by up to 2x: compare the two columns of one run.
"""
import argparse
import asyncio
import hmac
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from picocharge.gateway import events, rollouts, store as st  # noqa: E402
from picocharge.gateway.api import STATUS_HISTORY_SQL  # noqa: E402
from picocharge.gateway.loadbalance import _open_transactions  # noqa: E402
from picocharge.gateway.pending import PendingStations  # noqa: E402
from picocharge.gateway.store import Store, now_iso  # noqa: E402
from picocharge.gateway.uplinks import outbox_depth  # noqa: E402
from picocharge.gateway.writekeys import WriteKeys  # noqa: E402


def per_call_us(fn, budget=0.2):
    """Mean microseconds per call of fn(), over ~budget seconds (at least 3 calls)."""
    fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        el = time.perf_counter() - t0
        if n >= 3 and el >= budget:
            return el / n * 1e6


class _Gw:
    def __init__(self, n):
        self.stations = {"CP-%05d" % i: {"id": "CP-%05d" % i, "state": "accepted", "ts_channel": i + 1,
                                         "ts_key": "KEY%05dXYZ" % i} for i in range(n)}


def ingest(n):
    gw = _Gw(n)
    key = ("KEY%05dXYZ" % (n // 2)).encode()     # a station in the middle: the walk's mean

    def walk():
        return next((s for s, st in gw.stations.items() if st.get("ts_key") and
                     hmac.compare_digest(str(st["ts_key"]).encode(), key)), None)
    wk = WriteKeys(gw)
    assert wk.station(key) == walk()
    return per_call_us(walk), per_call_us(lambda: wk.station(key))


def pending_count(n):
    gw = _Gw(n)
    for i in range(0, n, max(1, n // 50)):
        gw.stations["CP-%05d" % i]["state"] = "pending"

    def walk():
        return sum(1 for st in gw.stations.values() if st["state"] == "pending")
    p = PendingStations(gw)
    assert p.count() == walk()
    return per_call_us(walk), per_call_us(p.count)


def _with_and_without(index, insert, rows, query):
    """(us of query(db) without `index`, with it), on a fresh database holding `rows`."""
    with tempfile.TemporaryDirectory() as d:
        db = Store(os.path.join(d, "gw.db")).open()
        try:
            db.execute("BEGIN")
            db.executemany(insert, rows)
            db.execute("COMMIT")
            after = per_call_us(lambda: query(db))
            db.execute("DROP INDEX %s" % index)
            return per_call_us(lambda: query(db)), after
        finally:
            db.close()


def status_history(n, per=30):
    sid = ("CP-%05d" % (n // 2),)
    return _with_and_without(
        "status_history_station",
        "INSERT INTO status_history (station, connector, status, error_code, info, ts) VALUES (?,?,?,?,?,?)",
        [("CP-%05d" % (i % n), 1, "Available", "NoError", None, "2026-01-01T00:00:00Z") for i in range(n * per)],
        lambda db: db.execute(STATUS_HISTORY_SQL, sid).fetchall())


def _depth_by_station(db, uplink):
    """outbox_depth before session 12 (SQLite): a COUNT per outbox row."""
    n = 0
    for station, last_id in db.execute("SELECT station, last_id FROM outbox WHERE uplink=?", (uplink,)).fetchall():
        if station == "*":
            n += db.execute("SELECT COUNT(*) FROM readings WHERE id > ?", (last_id,)).fetchone()[0]
        else:
            n += db.execute("SELECT COUNT(*) FROM readings WHERE station=? AND id > ?",
                            (station, last_id)).fetchone()[0]
    return n


def depth(n, per=20):
    with tempfile.TemporaryDirectory() as d:
        db = Store(os.path.join(d, "gw.db")).open()
        try:
            db.execute("BEGIN")
            db.executemany("INSERT INTO readings (station, ts, temp_c, source) VALUES (?,?,?,?)",
                           [("CP-%05d" % (i % n), "2026-01-01T00:00:00Z", 20.0, "ocpp") for i in range(n * per)])
            db.executemany("INSERT INTO outbox (uplink, station, last_id) VALUES (?,?,?)",
                           [("thingspeak", "CP-%05d" % i, n * per // 2) for i in range(n)])
            db.execute("COMMIT")
            assert outbox_depth(db, "thingspeak") == _depth_by_station(db, "thingspeak")
            return (per_call_us(lambda: _depth_by_station(db, "thingspeak")),
                    per_call_us(lambda: outbox_depth(db, "thingspeak")))
        finally:
            db.close()


def open_transactions(n, per=30):
    return _with_and_without(
        "transactions_open",
        "INSERT INTO transactions (station, connector, id_tag, meter_start, start_ts, stop_ts) VALUES (?,?,?,?,?,?)",
        [("CP-%05d" % (i % n), 1, "T", i, "2026-01-01T00:00:00Z",
          None if i >= n * (per - 1) else "2026-01-01T01:00:00Z") for i in range(n * per)],
        _open_transactions)


class _RolloutGw:
    """What a rollout's step reads of the gateway: n stations, none connected."""

    def __init__(self, store, n):
        self.store = store
        self.stations = {"CP-%05d" % i: {"firmware": "1.0", "state": "accepted"} for i in range(n)}
        self.sessions, self.origins, self.cluster = {}, {}, None

    def elsewhere(self, sid):
        return False


def _with_rollout(n, measure):
    """measure(store, ro, rid) with a fresh store holding a rollout of n stations whose first
    wave has started; its result."""
    async def run():
        with tempfile.TemporaryDirectory() as d:
            store = Store(os.path.join(d, "gw.db"))
            await store.start()
            try:
                ro = rollouts.Rollouts(_RolloutGw(store, n))
                rid = await store.run(st.add_rollout, "2.0", min(100, n // 10), 100, 3600,
                                      sorted(ro.gw.stations), now_iso())
                await ro._step((await store.run(st.rollout_judged, rid))[0])     # its first wave starts
                return await measure(store, ro, rid)
            finally:
                await store.stop()
    return asyncio.run(run())


def rollout_wake(n):
    async def measure(store, ro, rid):
        reps, c0 = 3 if n >= 10000 else 10, time.process_time()
        for _ in range(reps):       # what each wake cost: a read of its rows and a step
            rows = await store.run(st.rollout_rows, rid)
            await ro._step(rows[0])
        before = (time.process_time() - c0) / reps * 1e6
        rows = await store.run(st.rollout_rows, rid)
        ro._wake[rid] = asyncio.Event()
        ro._watch[rid] = {s["station"] for s in rows[0]["stations"] if s["state"] == "updating"}
        after = per_call_us(lambda: ro.wake("CP-%05d" % (n - 1)))    # a station outside the wave
        assert not ro._wake[rid].is_set()
        return before, after
    return _with_rollout(n, measure)


def rollout_step(n):
    async def measure(store, ro, rid):
        out = []
        for read in (st.rollout_rows, st.rollout_judged):
            reps, c0 = 3 if n >= 10000 else 10, time.process_time()
            for _ in range(reps):
                rows = await store.run(read, rid)
                await ro._step(rows[0])
            out.append((time.process_time() - c0) / reps * 1e6)
        return tuple(out)
    return _with_rollout(n, measure)


class _FleetGw:
    """What the event hub reads of a gateway: stations, connections, last readings."""

    def __init__(self, n):
        self.stations = {"CP-%05d" % i: {"state": "accepted", "status": "Available", "error_code": "NoError",
                                         "last_seen": now_iso(), "firmware": "1.0"} for i in range(n)}
        self.connected = set(self.stations)
        self.last = {sid: {"seq": i, "temp_c": 21.0} for i, sid in enumerate(self.stations)}
        self.ota_last = {}
        self.seq = n

    def station_view(self, sid):
        return {"id": sid, "last": self.last.get(sid)}

    def readings(self, k):
        ids = list(self.stations)
        for j in range(k):
            self.seq += 1
            self.last[ids[(self.seq * 7919) % len(ids)]]["seq"] = self.seq


def dashboard_pass(n):
    gw = _FleetGw(n)
    hub = events.Hub(gw)
    sub = hub.subscribe(None)

    def one(count):
        gw.readings(max(1, n // 60))
        hub.tick()
        sub.queue.clear()
        if count:
            events.counts(gw)
    return per_call_us(lambda: one(True)), per_call_us(lambda: one(False))


CASES = (("ingest /update: station of a write key", "per reading", ingest),
         ("--auth pending: count of pending stations", "per connection", pending_count),
         ("GET .../status-history (30 rows/station)", "per poll", status_history),
         ("GET /metrics: ThingSpeak outbox depth", "per scrape", depth),
         ("open transactions (30 stored/station)", "per plan", open_transactions),
         ("rollout of N: boot outside its wave", "per boot", rollout_wake),
         ("rollout of N: status of its wave (a step)", "per status", rollout_step),
         ("dashboard stream: the hub's pass", "per second", dashboard_pass))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100,1000,10000")
    a = ap.parse_args(argv)
    sizes = [int(x) for x in a.sizes.split(",")]
    print("%-44s %-16s %8s %12s %12s" % ("event", "cost", "N", "before us", "after us"))
    for name, unit, fn in CASES:
        for n in sizes:
            before, after = fn(n)
            print("%-44s %-16s %8d %12.1f %12.1f" % (name, unit, n, before, after))


if __name__ == "__main__":
    main()
