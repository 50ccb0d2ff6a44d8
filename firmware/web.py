# The board's own status page (microdot): "/" HTML, "/api/status" JSON. Never a secret.
#
# microdot behind a door of our own (issue 17: ~40 half-sent requests used to exhaust the
# heap and kill this task). The safety path never waits on it: what clients send costs the
# page only itself.
#   - one client served at a time, _WAITING more may wait for their turn, the rest are
#     closed at once (a browser loads the page and its icon, then polls /api/status);
#   - the request head read whole into one buffer of _HEAD bytes, allocated when the task
#     starts, before microdot sees it: a longer head is refused while reading, a body always;
#   - a client served for longer than _TIMEOUT_MS is cut off (run() watches; no wait_for,
#     which would cost a task per request and asyncio's funcs module);
#   - microdot sees a request only when the heap has a block as large as the largest it will
#     ask for (else 503), right after a collection, and the request's garbage is collected
#     as soon as it is answered.
# Why (measured, docs/firmware.md): with every task running in a 192K heap the largest free
# block after a collection was at times 13-15 blocks of 32 bytes, and microdot's Request needs
# one of 15 (its attribute table, 464 bytes): a request then failed with a MemoryError
# traceback. The page is no longer held (webpage.py is imported per load).
# The heap test's low reads were not this page's: a first request half a second later reads
# the steady figure. They were an OCPP call waiting for its answer at that moment (ocpp_link:
# docs/firmware.md "A call's answer awaited without wait_for").
import asyncio
import gc
import json
import sys

import log
from compat import const, ticks_diff, ticks_ms

_L = log.get("web")
_WAITING = const(2)      # connections that may wait while one is served (at most 5 s each)
_HEAD = const(1024)      # the request head (a phone browser's GET: ~500 bytes)
_TIMEOUT_MS = const(5000)  # the whole exchange; as long again for waiting clients
_BACKLOG = const(2)
_EMSGSIZE = const(90)    # an OSError that microdot passes on without printing a traceback
_PROBE = 768 if sys.maxsize > 0x7FFFFFFF else 384  # 464 + 272 (+ rounding), see _serve
_LOW_MEMORY = b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 3\r\n\r\nshort of memory: try again\n"


def status(ctx):
    st = ctx.state
    r = st.reading()
    del r["status"]
    del r["fault"]
    return {
        "station_id": ctx.cfg["station_id"], "firmware": ctx.fw_version, "board": ctx.board.name,
        "status": st.status, "fault": st.fault, "fault_info": st.fault_info, "relay": st.relay,
        "readings": r,
        "links": st.links, "counters": st.counters, "uptime_s": st.uptime_s(),
        "mem_free": gc.mem_free(), "mem_alloc": gc.mem_alloc(), "dht_errors": st.dht_errors,
    }


def _json_pieces(d):
    """A flat dict as JSON, one small string per key (the largest is `readings`, ~150 bytes)."""
    sep = "{"
    for k in d:
        yield sep + json.dumps(k) + ":" + json.dumps(d[k])
        sep = ","
    yield "}"


def make_app(ctx):
    from microdot import Microdot, Request, Response

    # microdot's own limits (class attributes, its documented options): no request body at
    # all (the page takes none: 413 without reading it), lines no longer than our buffer
    Request.max_content_length = 0
    Request.max_body_length = 0
    Request.max_readline = _HEAD
    app = Microdot()
    app.before_request(_made)

    @app.route("/")
    async def index(req):
        # the page module lives only while it is sent (its pieces are its only copy)
        import webpage
        del sys.modules["webpage"]
        return Response(webpage.pieces(ctx.cfg["station_id"], ctx.state.status),
                        headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache"})

    @app.route("/api/status")
    async def api_status(req):
        gc.collect()  # report the live heap, not garbage waiting for collection
        # sent a key at a time (HTTP/1.0: the end of the body is the end of the connection):
        # json.dumps of the whole status grows one string to ~500 bytes, and in a long run
        # at 192K that one block was what a fragmented heap could not give
        return Response(_json_pieces(status(ctx)), headers={"Content-Type": "application/json",
                                                            "Cache-Control": "no-store"})

    return app


# The door's state: module globals, and readline() a function of this module, which is
# what microdot reads the head from (a class, or its instances, cost heap of their own).
_app = None
_ctx = None
_buf = None       # the head buffer, allocated when the task starts (heap not yet fragmented)
_n = 0            # bytes of the current request's head in _buf
_at = 0           # where microdot reads its next line
_task = None      # the task serving a client, or None
_since = 0        # when it started (ticks_ms)
_waiting = 0      # clients waiting for their turn
_th = -1          # app.py's gc.threshold(), put back by _made


async def readline():
    """The next line of the head in _buf, as microdot reads it from its "stream" (this
    module): without waiting, so nothing else runs between the collection before a request
    and its Request object; checked for what microdot would fail on with a traceback."""
    global _at
    a = _at
    j = _buf.find(b"\n", a, _n) + 1 or _n
    if j - a > 2 and _buf.find(b" HTTP/" if a == 0 else b":", a, j) < 0:
        raise OSError(_EMSGSIZE, "not an HTTP request")
    _at = j
    return bytes(memoryview(_buf)[a:j])


def _made(req=None):
    """microdot's Request exists (a before_request handler) or the exchange is over: the
    threshold collections app.py set up are back."""
    gc.threshold(_th)


async def _serve(reader, writer):
    global _task, _since, _waiting, _n, _at
    if _task is not None and _waiting < _WAITING:
        _waiting += 1
        while _task is not None:  # each served client takes at most _TIMEOUT_MS
            await asyncio.sleep_ms(20)
        _waiting -= 1
    if _task is None:
        _task = asyncio.current_task()
        _since = ticks_ms()
        _n = _at = 0
        c = _ctx.state.counters
        try:
            # the head (request line and headers, to the blank line) read whole into _buf,
            # bounded while reading, before microdot sees it
            mv = memoryview(_buf)
            while _buf.find(b"\r\n\r\n", 0, _n) < 0 and _buf.find(b"\n\n", 0, _n) < 0:
                if _n == _HEAD:
                    raise OSError(_EMSGSIZE, "request head too long")
                k = await reader.readinto(mv[_n:])
                if not k:
                    raise OSError(_EMSGSIZE, "client closed before the end of its request")
                _n += k
            # The largest blocks microdot asks for per request are its Request's attribute
            # table, 29 slots (464 bytes on a 64-bit port, 232 on the RP2040), while the one
            # of 17 before it is still held. After a collection, take one block that big and
            # let it go: it stays allocated, so none of the small allocations before them
            # takes it, until a collection, the one an allocation that finds no room starts:
            # then they get it. Nothing waits between here and the Request (no other task
            # allocates), and app.py's threshold collections wait for it (_made). A heap
            # without such a block is answered 503 here, not by a MemoryError traceback.
            gc.threshold(-1)
            gc.collect()
            try:
                hold = bytearray(_PROBE)
                hold = None  # noqa: F841 (garbage from here on, on purpose)
            except MemoryError:
                c["web_low_memory"] = c.get("web_low_memory", 0) + 1  # in /api/status
                await writer.awrite(_LOW_MEMORY)
            else:
                c["web_requests"] = c.get("web_requests", 0) + 1  # in /api/status
                await _app.handle_request(sys.modules[__name__], writer)
        except Exception:  # reset, a bad request: the client's problem, never the task's
            pass
        finally:  # also when cut off by run() (CancelledError)
            _made()
            _task = None
            await writer.wait_closed()  # on MicroPython this closes the socket (close() does not)
            gc.collect()  # the request's objects go now, before other tasks' land between them
    else:  # full: closed at once
        await writer.wait_closed()


async def run(ctx):
    """Serve the page. The socket is bound here rather than in microdot's start_server, so
    the port is announced once it is really listening, and a port in use is said plainly
    and retried with backoff instead of crashing the task every 5 s. Then it cuts off a
    client served for longer than _TIMEOUT_MS. The port is released whenever this task
    ends, crashed or cancelled. app.py starts no task for web.port 0."""
    from errno import EADDRINUSE
    from reconnect import Backoff

    global _app, _buf, _ctx, _th
    _ctx = ctx
    _th = gc.threshold()
    port = ctx.cfg["web"]["port"]
    _app = make_app(ctx)
    if _buf is None:
        _buf = bytearray(_HEAD)
    back = Backoff(5, 300)
    while True:
        await ctx.wifi_up.wait()
        try:
            srv = await asyncio.start_server(_serve, "0.0.0.0", port, _BACKLOG)
        except OSError as e:
            if e.errno != EADDRINUSE:
                raise
            wait = back.next()
            _L.warn("port %d in use (another server on it?); trying again in %.1fs", port, wait)
            await asyncio.sleep(wait)
            continue
        _L.info("status page on port %d (one client at a time, %d waiting)", port, _WAITING)
        try:
            while True:
                await asyncio.sleep_ms(250)
                t = _task
                if t is not None and ticks_diff(ticks_ms(), _since) > _TIMEOUT_MS:
                    t.cancel()  # too slow: its finally closes the connection
        finally:
            srv.close()
