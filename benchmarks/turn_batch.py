"""Would the gateway spend less CPU per MeterValues frame if it handled the frames of one event
loop turn as a batch? (issue 17, docs/performance.md "CPU per message"). A measurement, not a
product change: nothing here is used by the gateway.

N MeterValues frames (the bench's frame: picocharge.bench_load) arrive in one loop turn, from N
different stations, for N = 1, 10, 100, 1000; CPU time (time.process_time: every thread of the
process, so the store's writer thread too) per frame from the arrival of the N frames to the
last of their N answers written, best of several rounds:

 (a) today's path: N StationSessions, each running its own `start()` (the `async for` over the
     connection, metrics, last_seen, route_message, the schema check, on_meter_values,
     Gateway.store_readings with its `await store.add_readings(...)`, the CALLRESULT written),
     each on a stub connection whose reader is woken by a future per frame as aiohttp's is;
 (b) the batched shape, as simple as it can be while doing the same real work: each frame read
     by orjson (csms._fast_call) where it arrives and appended to one list; the first frame of a
     turn schedules one task that, for every frame, checks the station is accepted, runs the
     same schema check (validate.request), the same kwargs (validate.snake_top) and rows
     (csms.meter_values_to_rows), sets last_seen, then makes ONE store call for every row of the
     turn, updates the gateway's last readings as Gateway.store_readings does, and writes each
     frame's answer (validate.result_payload, csms._dumps_result, `await conn.send`);
 (c) (b) with each connection's task kept (aiohttp's public API: `async for` over the
     WebSocket wakes a task per frame), which then only appends the frame to the turn's list.

The store is either a stub (the default) whose run() gives a future per call and releases the
futures of everything queued in a turn together, with one call_soon_threadsafe after the
"commit", as Store._worker does; or, with --real-store, a gateway.store.Store on a temporary
SQLite file with its writer thread (--linger, default 0: the 5 ms linger is wall time, not CPU,
and would make a round of N=1 last seconds).

What (b) leaves out (the report says how much it could add): the refusal paths (a frame that is
not a CALL, another action, a payload the check refuses: (b) answers those with the same
CALLERROR text but the error path is not timed), the per-station order of a station's frames
across turns, a failed store batch, the cluster's touched(), the frames log at DEBUG, and
aiohttp's own receive path (the WebSocket frame parsing and the WSMessage per frame), which is
outside both shapes here.

    python benchmarks/turn_batch.py                 # stub store
    python benchmarks/turn_batch.py --real-store    # Store on SQLite, its writer thread counted
"""
import argparse
import asyncio
import gc
import json
import os
import tempfile
import time

from ocpp.exceptions import OCPPError
from ocpp.v16 import call_result

from picocharge import bench_load
from picocharge.firmware import ocppj
from picocharge.gateway import app, csms, validate
from picocharge.gateway.store import Store, _release

try:
    import uvloop
except ImportError:     # the gateway runs on uvloop where it is installed (gateway/cli.py)
    uvloop = None


def _frames(n, tag):
    """n MeterValues frames as the bench's stations send them, each with its own message id."""
    mv = ocppj.meter_value(time.time(), {"energy_wh": 1234, "current_a": 16.2, "voltage_v": 230.1,
                                         "power_w": 3700.2, "temp_c": 25.1}, bench_load.MEASURANDS,
                           "Sample.Periodic")
    payload = ocppj.meter_values(1, 7, [mv])
    return [json.dumps([2, "%08x-4b5a-6978-8796-%012x" % (tag, i), "MeterValues", payload]) for i in range(n)]


class _Done:
    """Counts the answers of a round of frames; `fut` is resolved by the last one."""

    def __init__(self):
        self.left = 0
        self.fut = None
        self.sent = 0

    def arm(self, n):
        self.left = n
        self.fut = asyncio.get_running_loop().create_future()

    def failed(self, task):
        """A session's task that ended with an error ends the round with it (not a hang)."""
        if not task.cancelled() and task.exception() is not None and self.fut is not None and not self.fut.done():
            self.fut.set_exception(task.exception())

    def answered(self):
        self.sent += 1
        self.left -= 1
        if self.left == 0:
            self.fut.set_result(None)


class _Conn:
    """The session's side of a WebSocket: `async for` waits on a future that the arrival of a
    frame resolves (aiohttp's WebSocketDataQueue does the same); send() is awaited per answer as
    aiohttp's send_str is (which does not suspend while the transport's buffer is low)."""

    __slots__ = ("_waiter", "_frame", "last", "done")

    def __init__(self, done):
        self._waiter = None
        self._frame = None
        self.last = None
        self.done = done

    def __aiter__(self):
        return self

    async def __anext__(self):
        f = self._frame
        if f is None:
            self._waiter = w = asyncio.get_running_loop().create_future()
            f = await w
            if f is None:
                raise StopAsyncIteration
        self._frame = None
        return f

    def feed(self, frame):
        w = self._waiter
        if w is not None:
            self._waiter = None
            w.set_result(frame)
        else:
            self._frame = frame

    async def send(self, text):
        self.last = text
        self.done.answered()


class _StubStore:
    """Store.run's contract without SQLite: a future per call; every call queued in a loop turn
    is run in one "commit" and the futures are released together by one call_soon_threadsafe
    (Store._worker runs in its thread, then calls call_soon_threadsafe(_release, done))."""

    def __init__(self):
        self._loop = None
        self._q = []
        self.commits = 0
        self.next_id = 1

    def run(self, fn, *args):
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        fut = self._loop.create_future()
        if not self._q:
            self._loop.call_soon_threadsafe(self._commit)
        self._q.append((fn, args, fut))
        return fut

    def add_readings(self, station, rows, source):
        return self.run(_stub_insert, station, rows, source)

    def _commit(self):
        q, self._q = self._q, []
        self.commits += 1
        done = []
        for fn, args, fut in q:
            try:
                done.append((fut, True, fn(self, *args)))
            except Exception as e:  # noqa: B902 - as Store._batch: the caller's error is handed to it
                done.append((fut, False, e))   # (last_seen's UPDATE, which the stub cannot run)
        _release(done)


def _stub_insert(store, station, rows, source):
    first = store.next_id
    store.next_id += len(rows)
    return list(range(first, first + len(rows)))


def _stub_insert_many(store, items):
    return [_stub_insert(store, *it) for it in items]


def _real_insert_many(db, backend, items):
    """Every (station, rows, source) of a turn in one executemany: the backend's run of readings
    (Store._batch's path for consecutive add_readings calls), as one call."""
    return [ids for _f, _ok, ids in backend.insert_run(db, [(None, it, None) for it in items])]


class _Uplink:
    """An uplink's wake(): MqttUplink.wake sets an asyncio.Event."""

    def __init__(self):
        self._event = asyncio.Event()

    def wake(self, station):
        self._event.set()


class _Gw:
    """What a StationSession uses of the Gateway; store_readings is the Gateway's own code."""

    store_readings = app.Gateway.store_readings

    def __init__(self, store, sids):
        self.store = store
        self.stations = {sid: {"state": "accepted"} for sid in sids}
        self.metrics = app.Metrics()
        self.last = {}
        self.uplinks = [_Uplink()]
        self.cluster = None


def _sessions(sids, conns, gw):
    out = []
    for sid, c in zip(sids, conns):
        s = csms.StationSession(sid, c, gw)
        s._first = False    # its first answer was sent before (Gateway.resumed: once per connection)
        out.append(s)
    return out


# --- (a) today's path -------------------------------------------------------------------------

async def _finish(conns, tasks, frames, done, gw, sids, sent):
    """End a shape's readers and check what the rounds did: every frame answered (the last one's
    answer exact), stored, counted and seen."""
    for c in conns:
        c.feed(None)
    await asyncio.gather(*tasks)
    uid = json.loads(frames[-1])[1]
    assert conns[-1].last == '[3,"%s",{}]' % uid, conns[-1].last
    assert done.sent == sent, done.sent
    assert gw.metrics.readings == done.sent and gw.metrics.messages == done.sent, vars(gw.metrics)
    assert all(s.get("last_seen") for s in gw.stations.values())
    assert gw.last[sids[-1]]["energy_wh"] == 1234, gw.last[sids[-1]]


async def _today(store, n, rounds, reps, tag):
    done = _Done()
    sids = ["TB-%04d" % i for i in range(n)]
    gw = _Gw(store, sids)
    conns = [_Conn(done) for _ in sids]
    sessions = _sessions(sids, conns, gw)
    tasks = [asyncio.ensure_future(s.start()) for s in sessions]
    for t in tasks:
        t.add_done_callback(done.failed)
    frames = _frames(n, tag)
    pairs = list(zip(conns, frames))
    await asyncio.sleep(0)      # every session is in its `async for`
    best = float("inf")
    for _ in range(rounds + 1):     # the first round warms up
        t = time.process_time()
        for _ in range(reps):
            done.arm(n)
            for c, f in pairs:
                c.feed(f)
            await done.fut
        best = min(best, (time.process_time() - t) / (reps * n) * 1e6)
    await _finish(conns, tasks, frames, done, gw, sids, (rounds + 1) * reps * n)
    return best


# --- (b) the batched shape ----------------------------------------------------------------------

class _Batcher:
    """The frames of a loop turn, read where they arrive, handled by one task per turn."""

    def __init__(self, gw, real_store):
        self.gw = gw
        self.real = real_store
        self.frames = []
        self.loop = asyncio.get_running_loop()
        self.tasks = set()

    def arrived(self, sess, raw):
        """What a connection's reader would do with a whole frame: read it, append it."""
        if not self.frames:
            self.loop.call_soon(self._turn)
        self.frames.append((sess, csms._fast_call(raw), raw))

    def _turn(self):
        batch, self.frames = self.frames, []
        t = self.loop.create_task(self._handle(batch))
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def _handle(self, batch):
        gw = self.gw
        stations = gw.stations
        now = csms.utc_now()        # last_seen: one clock read per turn
        metrics = gw.metrics
        metrics.messages += len(batch)
        items = []      # (station, rows, "ocpp") of every frame that has rows
        answers = []    # (session, uid or None: not a MeterValues CALL, the frame, error or None)
        for sess, call, raw in batch:
            st = stations.get(sess.id)
            if st is not None:
                st["last_seen"] = now
                sess._seen_unsaved = True
            if call is None or call[1] != "MeterValues" or st is None or st.get("state") != "accepted":
                answers.append((sess, None, raw, None))     # today's path answers it (not timed)
                continue
            uid, _action, payload = call
            try:
                validate.request("MeterValues", payload)
                kw = validate.snake_top(payload)
                rows = csms.meter_values_to_rows(kw["meter_value"], sess.status)
            except OCPPError as e:
                answers.append((sess, uid, raw, e))
                continue
            if rows:
                items.append((sess.id, rows, "ocpp"))
            answers.append((sess, uid, raw, None))
        if items:
            store = gw.store
            if self.real:
                ids = await store.run(_real_insert_many, store.backend, items)
            else:
                ids = await store.run(_stub_insert_many, items)
            last = gw.last
            nrows = 0
            for (sid, rows, _src), row_ids in zip(items, ids):
                lst = last.setdefault(sid, {})
                for r, i in zip(rows, row_ids):
                    for k, v in r.items():
                        if v is not None:
                            lst[k] = v
                    lst["seq"] = i
                nrows += len(rows)
                for u in gw.uplinks:
                    u.wake(sid)
            metrics.readings += nrows
        for sess, uid, raw, err in answers:
            if uid is None:
                await sess.route_message(raw)      # not a MeterValues CALL: the usual path
            elif err is not None:
                await sess._error(uid, err)
            else:
                out = validate.result_payload(call_result.MeterValues())
                await sess._connection.send(csms._dumps_result(uid, out))


async def _reader(sess, arrived):
    """(b) with aiohttp's public API kept: each connection's task still wakes per frame (its
    `async for`), and only appends the frame."""
    async for raw in sess._connection:
        arrived(sess, raw)


async def _batched(store, n, rounds, reps, tag, real_store, readers=False):
    done = _Done()
    sids = ["TB-%04d" % i for i in range(n)]
    gw = _Gw(store, sids)
    conns = [_Conn(done) for _ in sids]
    sessions = _sessions(sids, conns, gw)
    b = _Batcher(gw, real_store)
    frames = _frames(n, tag)
    arrived = b.arrived
    tasks = []
    if readers:
        tasks = [asyncio.ensure_future(_reader(s, arrived)) for s in sessions]
        for t in tasks:
            t.add_done_callback(done.failed)
        await asyncio.sleep(0)
        pairs = list(zip(conns, frames))
    else:
        pairs = list(zip(sessions, frames))
    best = float("inf")
    for _ in range(rounds + 1):
        t = time.process_time()
        for _ in range(reps):
            done.arm(n)
            if readers:
                for c, f in pairs:
                    c.feed(f)
            else:
                for s, f in pairs:
                    arrived(s, f)
            await done.fut
        best = min(best, (time.process_time() - t) / (reps * n) * 1e6)
    await _finish(conns, tasks, frames, done, gw, sids, (rounds + 1) * reps * n)
    return best


async def _main(args):
    gc.collect()
    gc.freeze()
    gc.set_threshold(2000, 5, 1000)     # the gateway's settings (app.py, gc_freeze)
    sizes = [int(x) for x in args.sizes.split(",")]
    tmp = tempfile.TemporaryDirectory() if args.real_store else None
    print("loop %s, %s store%s; us of CPU per frame (process_time, all threads), best of %d rounds"
          " of >= %d frames" % ("uvloop" if uvloop and not args.asyncio else "asyncio",
                                "real SQLite" if args.real_store else "stub",
                                " (linger %g ms)" % (args.linger * 1e3) if args.real_store else "",
                                args.rounds, args.frames))
    print("%6s %12s %12s %12s %8s %14s %10s %10s" % ("N", "(a) today", "(b) batched", "(a)-(b)", "share",
                                                     "(c) b+readers", "commits a", "commits b"))
    results = []
    tag = 0
    for n in sizes:
        reps = max(1, args.frames // n)
        row = {"n": n}
        for shape in ("a", "b", "c"):
            tag += 1
            if args.real_store:
                store = Store(os.path.join(tmp.name, "tb-%d.sqlite" % tag), linger=args.linger)
                await store.start()
            else:
                store = _StubStore()
            try:
                if shape == "a":
                    us = await _today(store, n, args.rounds, reps, tag)
                else:
                    us = await _batched(store, n, args.rounds, reps, tag, args.real_store, readers=shape == "c")
            finally:
                if args.real_store:
                    await store.stop()
            row[shape] = us
            row["commits_per_turn_" + shape] = store.commits / ((args.rounds + 1) * reps)
        results.append(row)
        print("%6d %12.1f %12.1f %12.1f %7.0f%% %14.1f %10.2f %10.2f" % (
            n, row["a"], row["b"], row["a"] - row["b"], 100 * (row["a"] - row["b"]) / row["a"], row["c"],
            row["commits_per_turn_a"], row["commits_per_turn_b"]))
    if tmp is not None:
        tmp.cleanup()
    if args.json:
        print(json.dumps({"store": "sqlite" if args.real_store else "stub", "rounds": args.rounds,
                          "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": results}))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1,10,100,1000", help="frames per loop turn, comma-separated")
    p.add_argument("--rounds", type=int, default=9, help="rounds per case (best taken)")
    p.add_argument("--frames", type=int, default=4000, help="frames per round at least")
    p.add_argument("--real-store", action="store_true", help="a gateway.store.Store on a temporary SQLite file")
    p.add_argument("--linger", type=float, default=0.0, help="the real store's linger, seconds (the gateway: 0.005)")
    p.add_argument("--asyncio", action="store_true", help="asyncio's own loop instead of uvloop")
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = p.parse_args()
    if uvloop is not None and not args.asyncio:
        uvloop.run(_main(args))
    else:
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
