"""The load generator of `picocharge bench`: lightweight asyncio OCPP 1.6J stations.

Each station is one raw `websockets` client connection (subprotocol ocpp1.6) sending
hand-built OCPP-J frames whose payloads come from the firmware's own builders
(`picocharge.firmware.ocppj`), so they are byte-for-byte what a PicoCharge board sends:
BootNotification, StatusNotification, Authorize, StartTransaction, then MeterValues
(Energy.Active.Import.Register, Current.Import, Voltage, Power.Active.Import, Temperature,
context Sample.Periodic, carrying the transactionId) and Heartbeat, and at the end
StopTransaction. Every CALL's round trip is timed.

Two modes:
  paced   MeterValues every `interval` s (a random, seeded phase per station) + Heartbeat
          every `heartbeat` s: the fleet as deployed.
  closed  the next CALL as soon as the answer comes (saturation); a Heartbeat when due.

A step runs in `run_step()`; several generator processes share the stations of a step
(`Workers`), each with its own event loop, so the generator is not what saturates first.
All processes agree on wall-clock times (`time.time()`) for the start of the step and the
measurement window; only CALLs sent inside the window count for msgs/s and RTT.
"""
import asyncio
import json
import multiprocessing
import os
import random
import resource
import time
from array import array

import websockets

from picocharge.firmware import fields, ocppj

STATION_FMT = "BENCH-%05d"
ID_TAG = "BENCHTAG"
RECONNECT_MAX_S = 120.0  # the firmware's default ocpp.reconnect_max_s
MODES = ("paced", "closed")


def station_id(i):
    return STATION_FMT % i


def raise_nofile():
    """Raise this process's open-file limit to its hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class StepStats:
    """What one generator process saw during one step."""

    def __init__(self):
        self.rtt_ms = array("d")  # CALLs sent inside the window, answered
        self.rtt_t = array("d")  # ... the wall time each of them was sent (for the timeline)
        self.connect_ms = array("d")  # TCP + WebSocket handshake
        self.calls = 0  # answered CALLs inside the window
        self.calls_total = 0  # answered CALLs during the whole step
        self.call_errors = {}  # action -> CALLERRORs received
        self.readings_sent = 0  # MeterValue elements sent (whole step)
        self.readings_acked = 0  # ... answered with a CALLRESULT
        self.connected = 0
        self.connected_by_window = 0
        self.connect_failures = 0  # stations that never connected (retries included)
        self.connect_retries = 0  # attempts refused or timed out, then retried after a backoff
        self.failure_kinds = {}
        self.dropped = 0  # connections closed under us after a successful connect
        self.reconnected = 0  # ... after which the station got back in (spec["reconnect"])
        self.drop_t = array("d")  # wall time of each such drop ...
        self.back_t = array("d")  # ... and of the station's BootNotification answered again
        self.acked_wh = {}  # spec["track"]: station id -> energy_wh of every reading acknowledged
        self.unanswered = 0  # CALLs still outstanding when the step ended
        self.tx_started = 0
        self.tx_stopped = 0
        self.cpu_s = 0.0  # this process's CPU time inside the window
        self.setup_s = 0.0  # from the first connect until every station was set up
        # how late this process's event loop ran a 0.1 s ticker, at most: before the window (the
        # connects and set-ups) and inside it. A late loop is a late client: a handshake request
        # written seconds after its TCP connection was accepted (HAProxy's 408s, docs/performance.md)
        self.loop_lag_setup_ms = 0.0
        self.loop_lag_window_ms = 0.0
        self.setup_cpu_s = 0.0  # this process's CPU time from the step's start to the window's

    def fail(self, kind):
        self.failure_kinds[kind] = self.failure_kinds.get(kind, 0) + 1

    def as_dict(self):
        d = dict(self.__dict__)
        d["rtt_ms"] = self.rtt_ms.tobytes()
        d["rtt_t"] = self.rtt_t.tobytes()
        d["connect_ms"] = self.connect_ms.tobytes()
        d["drop_t"] = self.drop_t.tobytes()
        d["back_t"] = self.back_t.tobytes()
        return d


class CallError(Exception):
    pass


class Dropped(Exception):
    """The connection closed while the station waited for its next CALL (spec["reconnect"])."""


class Window:
    """The measurement window [w0, w1) in wall-clock seconds, shared by a process's stations;
    infinite until the coordinator sets it (after every station of the step is set up)."""

    def __init__(self, w0=None, w1=None):
        self.w0 = float("inf") if w0 is None else w0
        self.w1 = float("inf") if w1 is None else w1


class SetUp:
    """Counts stations that finished connecting + booting + starting a transaction (or failed)."""

    def __init__(self, n):
        self.n = n
        self.done = 0
        self.ok = 0
        self.event = asyncio.Event()

    def mark(self, ok):
        self.done += 1
        self.ok += bool(ok)
        if self.done >= self.n:
            self.event.set()


class Station:
    """One simulated charge point. `spec` is the step description (see run_step)."""

    def __init__(self, index, spec, stats, window=None, setup=None):
        self.index = index
        self.win = window or Window(spec.get("w0"), spec.get("w1"))
        self.setup_count = setup
        self.sid = station_id(index)
        self.spec = spec
        self.stats = stats
        self.rng = random.Random(spec["seed"] * 1000003 + index)
        self.seq = 0
        self.ws = None
        self.pending = None  # (mid, action, t_sent) while a CALL waits for its answer
        self.wh = self.rng.randrange(0, 100000)
        self.tx_id = None

    def reading(self):
        r = self.rng
        current = 16.0 + r.random()
        voltage = 230.0 + r.uniform(-3, 3)
        v = [None] * len(fields.READINGS)
        v[fields.ENERGY] = self.wh
        v[fields.CURRENT] = round(current, 3)
        v[fields.VOLTAGE] = round(voltage, 1)
        v[fields.POWER] = round(current * voltage, 1)
        v[fields.TEMP] = round(24 + r.random() * 4, 1)
        return dict(zip(fields.READING_KEYS, v))

    async def call(self, action, payload):
        ws = self.ws
        self.seq += 1
        mid = "%d" % self.seq
        frame = json.dumps([ocppj.CALL, mid, action, payload], separators=(",", ":"))
        t_wall = time.time()
        t0 = time.perf_counter()
        self.pending = action
        if action == "MeterValues":
            self.stats.readings_sent += len(payload["meterValue"])
        await ws.send(frame)
        while True:
            msg = await ws.recv()
            f = json.loads(msg)
            if f[0] == ocppj.CALL:  # a call from the central system
                await ws.send(self.answer(f))
                continue
            if f[1] == mid:
                break
        rtt = (time.perf_counter() - t0) * 1000.0
        self.pending = None
        st = self.stats
        st.calls_total += 1
        if self.win.w0 <= t_wall < self.win.w1:
            st.rtt_ms.append(rtt)
            st.rtt_t.append(t_wall)
            st.calls += 1
        if f[0] != ocppj.CALLRESULT:
            st.call_errors[action] = st.call_errors.get(action, 0) + 1
            raise CallError("%s: %s %s" % (action, f[2], f[3] if len(f) > 3 else ""))
        if action == "MeterValues":
            st.readings_acked += len(payload["meterValue"])
        return f[2]

    def answer(self, f):
        """The frame that answers the central system's CALL f: GetConfiguration with the station's
        own id (key "Identity": the bench's `--kill-at` command probe checks that the answer came
        from the station it asked), every other action NotSupported."""
        if f[2] == "GetConfiguration":
            return json.dumps([ocppj.CALLRESULT, f[1], {"configurationKey": [
                {"key": "Identity", "readonly": True, "value": self.sid}]}])
        return json.dumps(ocppj.error(f[1], ocppj.NOT_SUPPORTED, "bench station"))

    async def connect(self):
        spec = self.spec
        t0 = time.perf_counter()
        kw = {}
        if spec.get("source_addrs", 1) > 1:
            kw["local_addr"] = ("127.0.0.%d" % (1 + self.index % spec["source_addrs"]), 0)
        urls = spec.get("urls")
        self.ws = await websockets.connect(
            (urls[self.index % len(urls)] if urls else spec["url"]) + self.sid, subprotocols=["ocpp1.6"], open_timeout=spec["open_timeout"],
            ping_interval=None, close_timeout=2, compression=None, max_queue=4, **kw)
        self.stats.connect_ms.append((time.perf_counter() - t0) * 1000.0)

    async def setup(self):
        now = time.time()
        res = await self.call("BootNotification", ocppj.boot_notification(
            "PicoCharge", "bench", self.sid, "bench"))
        if res.get("status") != "Accepted":
            raise CallError("BootNotification: %s" % res.get("status"))
        await self.call("StatusNotification", ocppj.status_notification(1, "Available", now))
        await self.call("Authorize", {"idTag": ID_TAG})
        await self.call("StatusNotification", ocppj.status_notification(1, "Preparing", now))
        res = await self.call("StartTransaction", ocppj.start_transaction(1, ID_TAG, self.wh, now))
        self.tx_id = res["transactionId"]
        self.stats.tx_started += 1
        await self.call("StatusNotification", ocppj.status_notification(1, "Charging", time.time()))

    async def meter_values(self):
        self.wh += self.rng.randrange(5, 50)
        mv = ocppj.meter_value(time.time(), self.reading(), MEASURANDS, "Sample.Periodic")
        await self.call("MeterValues", ocppj.meter_values(1, self.tx_id, [mv]))
        if self.spec.get("track"):
            self.stats.acked_wh.setdefault(self.sid, []).append(self.wh)

    async def idle(self, delay):
        """Sleep `delay` s. With spec["reconnect"] a station notices a closed connection at once,
        as the firmware (which always reads its socket) does, not at its next CALL: the time to
        get back in after a gateway process dies is then the gateway's and the balancer's."""
        if not self.spec.get("reconnect"):
            await asyncio.sleep(delay)
            return
        # it reads its socket meanwhile, and answers the central system's calls (the command
        # probe's GetConfiguration) at once
        end = time.monotonic() + delay
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            try:
                msg = await asyncio.wait_for(self.ws.recv(), left)
            except asyncio.TimeoutError:
                return
            except websockets.exceptions.ConnectionClosed:
                raise Dropped()
            f = json.loads(msg)
            if f[0] == ocppj.CALL:
                await self.ws.send(self.answer(f))

    async def heartbeat(self):
        await self.call("Heartbeat", {})

    async def load(self):
        spec = self.spec
        win = self.win
        hb = spec["heartbeat"]
        now = time.time()
        next_hb = now + hb * (0.5 + self.rng.random())
        if spec["mode"] == "closed":
            while time.time() < win.w1:
                if time.time() >= next_hb:
                    next_hb += hb
                    await self.heartbeat()
                else:
                    await self.meter_values()
            return
        interval = spec["interval"]
        next_mv = now + interval * self.rng.random()
        while True:
            t = min(next_mv, next_hb)
            if t >= win.w1:
                return
            delay = t - time.time()
            if delay > 0:
                await self.idle(delay)
            if time.time() >= win.w1:  # the window was set while we slept
                return
            if next_mv <= next_hb:
                next_mv += interval
                await self.meter_values()
            else:
                next_hb += hb
                await self.heartbeat()

    async def finish(self):
        if self.tx_id is not None:
            await self.call("StopTransaction", ocppj.stop_transaction(
                self.tx_id, ID_TAG, self.wh, time.time(), "Local"))
            self.stats.tx_stopped += 1
            self.tx_id = None
        await self.call("StatusNotification", ocppj.status_notification(1, "Available", time.time()))

    async def resume(self):
        """After a reconnect (spec["reconnect"]): boot again, and say the transaction goes on."""
        res = await self.call("BootNotification", ocppj.boot_notification(
            "PicoCharge", "bench", self.sid, "bench"))
        if res.get("status") != "Accepted":
            raise CallError("BootNotification: %s" % res.get("status"))
        if self.tx_id is not None:
            await self.call("StatusNotification", ocppj.status_notification(1, "Charging", time.time()))

    async def connect_retrying(self, give_up):
        """Connect, retrying with the firmware's backoff until `give_up` (wall time); True when in."""
        st = self.stats
        attempt = 0
        while True:
            try:
                await self.connect()
                return True
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
                # a handshake answered with another status than 101: which one (503, 429...)
                code = getattr(getattr(e, "response", None), "status_code", None)
                st.fail(type(e).__name__ + (" %d" % code if code else ""))
                # as the firmware does (firmware/reconnect.py): 1, 2, 4 ... s, each uniform
                # in [d/2, d], capped; the bench gives up after spec["retry_for"] s
                d = min(RECONNECT_MAX_S, 2.0 ** attempt)
                wait = d * (0.5 + 0.5 * self.rng.random())
                attempt += 1
                if time.time() + wait >= give_up:
                    st.connect_failures += 1
                    return False
                st.connect_retries += 1
                await asyncio.sleep(wait)

    async def run(self, start_at):
        st = self.stats
        delay = start_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        set_up = False
        if not await self.connect_retrying(time.time() + self.spec.get("retry_for", 0.0)):
            if self.setup_count:
                self.setup_count.mark(False)
            return
        st.connected += 1
        dropped_at = None
        try:
            while True:
                try:
                    if not set_up:
                        await self.setup()
                        set_up = True
                        if self.setup_count:
                            self.setup_count.mark(True)
                    elif dropped_at is not None:
                        await self.resume()
                        st.reconnected += 1
                        st.drop_t.append(dropped_at)
                        st.back_t.append(time.time())
                        dropped_at = None
                    await self.load()
                    # the end of the transaction is outside the measurement window
                    while self.win.w1 == float("inf"):
                        await asyncio.sleep(0.2)
                    await self.idle(max(0.0, self.win.w1 - time.time()))
                    await self.finish()
                    return
                except (websockets.exceptions.ConnectionClosed, Dropped) as e:
                    st.dropped += 1
                    rcvd = getattr(e, "rcvd", None) or getattr(self.ws, "close_rcvd", None)
                    st.fail("closed during step: %s" % (rcvd.code if rcvd else "no close frame"))
                    # spec["reconnect"] (a gateway process killed on purpose): back in, as the
                    # firmware does, through the load balancer to a process that lives
                    if not (self.spec.get("reconnect") and set_up) or time.time() >= self.win.w1:
                        return
                    dropped_at = time.time()
                    self.pending = None
                    if not await self.connect_retrying(dropped_at + self.spec.get("retry_for", 0.0)):
                        return
        except CallError as e:
            st.fail(str(e)[:80])
        finally:
            if not set_up and self.setup_count:
                self.setup_count.mark(False)
            try:
                await self.ws.close()
            except Exception:  # a broken socket at the end does not change the figures
                pass


MEASURANDS = ocppj.split_csl(ocppj.DEFAULT_MEASURANDS)


async def _run_step(spec, indices, sync=None):
    """`sync`: a Connection to the coordinator. With it, the window is not in `spec`: once
    every station here is set up (or failed) we send ("ready", ...) and wait for
    ("go", w0, w1). Without it, spec["w0"]/spec["w1"] are fixed in advance."""
    stats = StepStats()
    n_all = spec["n"]
    ramp = spec["ramp"]
    win = Window(spec.get("w0"), spec.get("w1"))
    setup = SetUp(len(indices))
    stations = [Station(i, spec, stats, win, setup) for i in indices]
    cpu0 = time.process_time()

    async def ticker(every=0.1):
        while True:
            t = time.monotonic()
            await asyncio.sleep(every)
            lag = (time.monotonic() - t - every) * 1000.0
            if time.time() < win.w0:
                stats.loop_lag_setup_ms = max(stats.loop_lag_setup_ms, lag)
            elif time.time() < win.w1:
                stats.loop_lag_window_ms = max(stats.loop_lag_window_ms, lag)
    tick = asyncio.ensure_future(ticker())
    tasks = [asyncio.ensure_future(s.run(spec["t0"] + ramp * (s.index - 1) / max(1, n_all)))
             for s in stations]
    if sync is not None:
        t = time.monotonic()
        try:
            await asyncio.wait_for(setup.event.wait(), spec.get("setup_timeout", 300))
        except asyncio.TimeoutError:
            pass
        stats.setup_s = time.monotonic() - t + max(0.0, spec["t0"] - time.time())
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sync.send, ("ready", setup.ok, setup.done))
        msg = await loop.run_in_executor(None, sync.recv)
        win.w0, win.w1 = msg[1], msg[2]
    # CPU of this generator process inside the measurement window
    await asyncio.sleep(max(0.0, win.w0 - time.time()))
    stats.connected_by_window = setup.ok
    c0 = time.process_time()
    stats.setup_cpu_s = c0 - cpu0
    await asyncio.sleep(max(0.0, win.w1 - time.time()))
    stats.cpu_s = time.process_time() - c0
    done, pending = await asyncio.wait(tasks, timeout=max(0.1, win.w1 + spec["drain"] - time.time()))
    for s in stations:
        if s.pending is not None:
            stats.unanswered += 1
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
    tick.cancel()
    return stats


def run_step(spec, indices, sync=None):
    """Run `indices` (1-based station numbers) of one step in this process. `spec`: url
    (ending in '/', station id appended), n (stations in the step, all processes), mode,
    interval, heartbeat, t0 (wall time of the first connect), ramp (s over which connects
    are spread), w0/w1 (measurement window, wall time; or set through `sync`), drain (s
    after w1 to finish), setup_timeout,
    open_timeout, seed, source_addrs."""
    raise_nofile()
    return asyncio.run(_run_step(spec, indices, sync))


def _worker(conn):
    raise_nofile()
    while True:
        msg = conn.recv()
        if msg is None:
            return
        spec, indices = msg
        try:
            conn.send(("ok", run_step(spec, indices, conn).as_dict()))
        except Exception as e:  # reported to the coordinator, which raises it
            conn.send(("error", "%s: %s" % (type(e).__name__, e)))


def merge(parts):
    """Sum the per-process stats dicts into one (RTT arrays concatenated)."""
    out = StepStats()
    for d in parts:
        for k, v in d.items():
            if k in ("rtt_ms", "rtt_t", "connect_ms", "drop_t", "back_t"):
                getattr(out, k).frombytes(v)
            elif k == "acked_wh":   # each station is in one process
                out.acked_wh.update(v)
            elif k in ("setup_s", "loop_lag_setup_ms", "loop_lag_window_ms"):
                setattr(out, k, max(getattr(out, k), v))
            elif isinstance(v, dict):
                tgt = getattr(out, k)
                for kk, vv in v.items():
                    tgt[kk] = tgt.get(kk, 0) + vv
            else:
                setattr(out, k, getattr(out, k) + v)
    return out


class Workers:
    """`procs` generator processes that live for a whole run; `step()` splits the stations
    of a step between them (round robin) and merges what they saw."""

    def __init__(self, procs):
        self.procs = max(1, int(procs))
        ctx = multiprocessing.get_context("spawn")
        self.conns = []
        self.ps = []
        for _ in range(self.procs):
            a, b = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(b,), daemon=True)
            p.start()
            self.conns.append(a)
            self.ps.append(p)

    def step(self, spec, settle, hold, on_window=None):
        """Run a step; the window opens `settle` s after every process reported its stations
        set up, and lasts `hold` s. on_window(w0, w1) is called when it is known."""
        n = spec["n"]
        spec = dict(spec, w0=None, w1=None)
        for k, c in enumerate(self.conns):
            c.send((spec, list(range(1 + k, n + 1, self.procs))))
        for c in self.conns:
            msg = c.recv()
            if msg[0] == "error":
                raise RuntimeError("generator process failed: %s" % msg[1])
        w0 = time.time() + settle
        w1 = w0 + hold
        if on_window:
            on_window(w0, w1)
        for c in self.conns:
            c.send(("go", w0, w1))
        parts = []
        for c in self.conns:
            status, val = c.recv()
            if status != "ok":
                raise RuntimeError("generator process failed: %s" % val)
            parts.append(val)
        return merge(parts)

    def close(self):
        for c in self.conns:
            try:
                c.send(None)
            except OSError:
                pass
        for p in self.ps:
            p.join(5)
            if p.is_alive():
                p.terminate()
                p.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def auto_procs(n, cpus=None):
    """Generator processes for n stations: one below 500 stations, else one per CPU (at most 4)."""
    cpus = cpus or os.cpu_count() or 1
    return 1 if n < 500 else max(1, min(4, cpus))
