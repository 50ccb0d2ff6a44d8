# The OCPP-J link to the central system: one WebSocket at a time, one CALL of ours outstanding
# (send it, await its answer), a reader task that answers the central system's CALLs through
# `handle` and hands answers to the waiting CALL, and the ping that proves the link alive.
# run() is the reconnect loop around the charge point, which outlives its connections.
import asyncio
import gc
import sys

import log
import ocppj
import ws
from compat import const, ticks_ms, ticks_diff, ticks_add
from reconnect import Backoff

L = log.get("ocpp")

PROTOCOL = "ocpp1.6"
_MAX_FRAME = const(8192)
_FRAME_BUF = const(1024)
_POLL_MS = const(10)     # how often a CALL's wait looks for its answer (send_call)



def handle_call(cp, action, payload, mid):
    """The link's handler of the central system's CALLs (ocpp_calls.handle). They are rare (at
    boot and a few per transaction), so ocpp_calls (its table of which module takes which
    action) and the one cs_<group> module a call needs are imported for each call and dropped
    again, as ws_open is once the WebSocket is open: the heap they took is free the rest of
    the time. A call that finds no heap for it is answered CALLERROR InternalError by the
    link, like any handler's error."""
    import ocpp_calls
    try:
        return ocpp_calls.handle(cp, action, payload, mid)
    finally:
        sys.modules.pop("ocpp_calls", None)


class LinkDead(OSError):
    pass


class CallError(Exception):
    def __init__(self, action, code, description):
        super().__init__("%s answered CALLERROR %s: %s" % (action, code, description))
        self.code = code


class CallTimeout(Exception):
    pass


class Link:
    def __init__(self, cfg, station, ids, handle, owner):
        self.cfg = cfg               # the "ocpp" section of the config
        self.station = station
        self.ids = ids               # message ids (ocppj.Ids)
        self.handle = handle         # handle(owner, action, payload, mid): the answer, or None
        self.owner = owner
        self.ws = None
        self.dead = None             # the exception that ended the reader
        self._wait_id = None         # the one outstanding CALL
        self._reply = None
        self._ev = asyncio.Event()
        self._task = None
        self.ping_due = ticks_ms()
        # journalled messages are framed in here (ocpp_tx.flush), allocated once at boot: a
        # MeterValues frame (~850 bytes) needs no new block of that size on a fragmented heap
        self.buf = bytearray(_FRAME_BUF)

    def lost(self, why):
        """End the connection now (the reader's error, or e.g. Wi-Fi gone): a waiting CALL
        wakes up with `why`."""
        if self.ws is not None and self.dead is None:
            self.dead = why
            self._ev.set()

    async def open(self):
        url = self.cfg["url"]
        if not url.endswith("/"):
            url += "/"
        url += self.station
        auth = (self.station, self.cfg["password"]) if self.cfg["password"] else None
        L.info("connecting to %s%s", url, " (basic auth)" if auth else "")
        self.dead = None
        c = self.cfg
        self.ws = await ws.connect(url, PROTOCOL, auth, c["connection_timeout_s"], _MAX_FRAME, c["ca_cert"],
                                   (c["client_cert"], c["client_key"]) if c["client_cert"] else None)
        self.ws.last_rx = ticks_ms()
        self._task = asyncio.create_task(self.reader())  # runs from the caller's next await

    async def close(self):
        if self._task:
            self._task.cancel()
            self._task = None
        if self.ws:
            await self.ws.abort()
        self.ws = None

    # --- calls ------------------------------------------------------------------
    def call(self, action, payload, mid=None):
        """Send one CALL and wait for its answer (payload): awaited, as a coroutine. Raises
        CallError, CallTimeout, LinkDead or the reader's error. Not itself a coroutine: the
        payload is let go once it is framed, not held over the wait (a DataTransfer's or a
        StatusNotification's dicts, ~250-350 bytes on the 64-bit port, each second)."""
        if mid is None:
            mid = self.ids.next()
        return self.send_call(action, mid, ocppj.call(mid, action, payload))

    async def send_call(self, action, mid, frame):
        """call() for a frame already built (`mid` is its message id)."""
        if self.dead or self.ws is None:
            raise LinkDead("not connected")
        self._wait_id = mid
        self._reply = None
        self._ev.clear()
        sent_ms = ticks_ms()
        L.debug("-> %s %s", action, mid)
        await self.ws.send(frame)
        frame = None  # noqa: F841 (a StatusNotification's ~200 bytes are not held over the wait)
        # The answer awaited by looking at the event every _POLL_MS, not with wait_for: that
        # makes two tasks and a closure per call (~670 bytes on the 64-bit port, held for the
        # whole wait), and a call waits each second (MeterValues): in the 192K heap test the
        # lowest free heap was a status read made while a call waited (docs/firmware.md).
        ev = self._ev
        end = ticks_add(sent_ms, self.cfg["call_timeout_s"] * 1000)
        try:
            while not ev.is_set():
                if ticks_diff(ticks_ms(), end) >= 0:
                    raise asyncio.TimeoutError
                await asyncio.sleep_ms(_POLL_MS)
        except asyncio.TimeoutError:
            if self.dead:
                raise self.dead
            if ticks_diff(self.ws.last_rx, sent_ms) < 0:
                raise LinkDead("no answer to %s and nothing received for %ds" % (
                    action, self.cfg["call_timeout_s"]))
            raise CallTimeout("no answer to %s %s within %ds" % (action, mid, self.cfg["call_timeout_s"]))
        finally:
            self._wait_id = None
        if self._reply is None:
            raise self.dead or LinkDead("connection lost")
        kind, res = self._reply
        self._reply = None   # taken: the reader goes on (on_frame)
        if kind == ocppj.CALLERROR:
            raise CallError(action, res[0], res[1])
        return res

    async def _send(self, frame):
        try:
            await self.ws.send(frame)
        except Exception as e:
            self.dead = e
            self._ev.set()

    async def _answer(self, mid, action, res):
        """The CALLRESULT, sent in pieces (ws.send_pieces: a 50-key GetConfiguration answer is
        3.3 KB). No heap for it before anything is sent: a CALLERROR InternalError instead,
        and the link stays up."""
        try:
            await self.ws.send_pieces(ocppj.result_pieces(mid, res))
            return
        except MemoryError:
            gc.collect()
        except Exception as e:
            self.dead = e
            self._ev.set()
            return
        L.error("%s %s: no heap for the answer", action, mid)
        await self._send(ocppj.error(mid, ocppj.INTERNAL_ERROR, "%s: the answer did not fit the station's heap" % action))

    async def reader(self):
        try:
            while True:
                msg = await self.ws.recv()
                await self.on_frame(msg)
                msg = None
                # no next frame before the waiting CALL has taken its answer (send_call looks
                # every _POLL_MS; the frame and on_frame's state are let go meanwhile): what it
                # does with it comes first, e.g. a StartTransaction's transactionId is known
                # before a RemoteStopTransaction sent right after it is handled
                while self._reply is not None and self._wait_id is not None:
                    await asyncio.sleep_ms(1)
        except Exception as e:  # link gone or broken: wake the main loop
            self.dead = e
            self._ev.set()

    async def on_frame(self, msg):
        if not isinstance(msg, str):
            L.warn("ignoring a binary frame (%d bytes): OCPP-J uses text frames", len(msg))
            return
        try:
            mtype, mid, action, payload = ocppj.parse(msg)
        except ocppj.FrameError as e:
            L.warn("bad frame: %s", e.description)
            await self._send(ocppj.error(e.msg_id, e.code, e.description))
            return
        if mtype == ocppj.CALL:
            try:
                res = self.handle(self.owner, action, payload, mid)
            except ocppj.FrameError as e:
                L.warn("%s %s: %s", action, mid, e.description)
                await self._send(ocppj.error(mid, e.code, e.description))
                return
            except Exception as e:
                L.error("%s %s failed: %r", action, mid, e)
                await self._send(ocppj.error(mid, ocppj.INTERNAL_ERROR, "%s failed" % action))
                return
            if res is None:
                L.info("%s is not implemented", action[:40])
                await self._send(ocppj.error(mid, ocppj.NOT_IMPLEMENTED, "%s is not implemented" % action[:40]))
            else:
                await self._answer(mid, action, res)
            return
        if mid != self._wait_id:
            L.warn("ignoring an answer to unknown message %s", mid)
            return
        self._reply = (mtype, payload)
        self._ev.set()

    async def keepalive(self, interval_s):
        """WebSocketPingInterval: a ping every `interval_s` (0: none), and no frame at all for
        that long plus call_timeout_s is a dead link (LinkDead)."""
        if interval_s <= 0:
            return
        now = ticks_ms()
        limit = interval_s + self.cfg["call_timeout_s"]
        if ticks_diff(now, self.ws.last_rx) > limit * 1000:
            raise LinkDead("no pong or frame for %ds" % limit)
        if ticks_diff(now, self.ping_due) >= 0:
            self.ping_due = ticks_add(now, interval_s * 1000)
            await self.ws.ping()


def link_down(e, url):
    """The "[ocpp] W: link down: ..." line (the `picocharge sim` command watches for it), the
    error in words (linkerr, imported for the line and dropped again)."""
    try:
        import linkerr
        L.warn("link down: %s", linkerr.words(e, url))
    except Exception:
        L.warn("link down: %r", e)
    sys.modules.pop("linkerr", None)


async def run(ctx, make):
    """The OCPP task: connect, serve, and on any failure back off and reconnect; forever.
    make(ctx) is the charge point, made once (it outlives its connections): cp.recover() after
    a reboot, cp.session() serves one connection, cp.idle(s) works offline meanwhile."""
    back = Backoff(1, ctx.cfg["ocpp"]["reconnect_max_s"])
    cp = None
    while True:
        try:
            if cp is None:
                cp = make(ctx)
                await cp.recover()
            while not ctx.wifi_up.is_set():
                await cp.idle(0.5)
            await cp.session()
        except Exception as e:
            link_down(e, ctx.cfg["ocpp"]["url"])
        if cp is not None and cp.was_up:
            back.reset()  # a link that worked: the first retry comes quickly
            cp.was_up = False
        ctx.state.links["ocpp"] = "down"
        wait = back.next()
        L.info("reconnecting in %.1fs", wait)
        gc.collect()
        try:
            if cp is not None:
                await cp.idle(wait)
            else:
                await asyncio.sleep(wait)
        except Exception as e:
            L.error("offline work failed: %r", e)
            await asyncio.sleep(wait)
