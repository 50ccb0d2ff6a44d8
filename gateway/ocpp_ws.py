"""The OCPP WebSocket on aiohttp: `/ocpp/<station id>`, subprotocol ocpp1.6.

The handshake is checked before the upgrade (path, subprotocol, credentials: the refusal is
a plain HTTP answer, 401 with `WWW-Authenticate: Basic` for credentials); then aiohttp
does the framing, the ping/pong heartbeat and the close. `OcppSocket` gives the `ocpp`
package's ChargePoint the connection it expects (`send`, `async for`, `close`), and ends
the iteration the way websockets' connections do: quietly on a normal close (1000, 1001),
with websockets' `ConnectionClosedError` otherwise, so the session code and its callers
keep one exception type whichever server carried the frames.

A station that goes quiet is pinged by `Liveness`, not by aiohttp's heartbeat: that one
re-armed a timer for every frame received (a call_soon, a clock read and a timer check per frame,
~5 % of the event loop's samples at 10,000 paced stations), where a frame here only sets a flag
and one sweep every quarter of the ping interval looks at every connection: a station heard
from in none of the sweeps of a ping interval is pinged, and one still silent half an interval
later is cut (what aiohttp's heartbeat did: Settings.ping_interval, 60 s and 30 s).
"""
import asyncio
import logging
import time

from aiohttp import WebSocketError, WSCloseCode, WSMsgType, web
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.frames import Close

from . import auth

log = logging.getLogger(__name__)

SUBPROTOCOL = "ocpp1.6"
_NORMAL = (1000, 1001)
_DONE = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)


class OcppSocket:
    """The ChargePoint's connection over an aiohttp WebSocketResponse."""

    __slots__ = ("ws", "remote_address", "station_id", "transport", "heard", "quiet", "pinged_at", "cut")

    def __init__(self, ws, remote_address, station_id, transport=None):
        self.ws = ws
        self.remote_address = remote_address
        self.station_id = station_id
        self.transport = transport
        self.heard = True       # a frame (or a pong) came since Liveness last looked
        self.quiet = 0          # Liveness's sweeps in a row with nothing heard
        self.pinged_at = None
        self.cut = None         # why Liveness cut the connection

    def _closed(self):
        if self.cut is not None:
            return ConnectionClosedError(None, Close(1006, self.cut))
        code = self.ws.close_code
        rcvd = Close(code, "") if code else None
        return (ConnectionClosedOK if code in _NORMAL else ConnectionClosedError)(rcvd, None)

    async def send(self, text):
        if self.ws.closed:
            raise self._closed()
        try:
            await self.ws.send_str(text)
        except ConnectionError:
            raise self._closed()

    def __aiter__(self):
        return self

    async def __anext__(self):
        msg = await self.ws.receive()
        t = msg.type
        self.heard = True
        if t is WSMsgType.TEXT or t is WSMsgType.BINARY:
            return msg.data
        if t is WSMsgType.PING:
            try:
                await self.ws.pong(msg.data)
            except ConnectionError:
                pass        # the next receive() tells how the connection ended
            return await self.__anext__()
        if t is WSMsgType.ERROR and isinstance(msg.data, WebSocketError):
            # the station broke the protocol (a text frame that is not UTF-8: 1007) and aiohttp
            # closed the connection with that code, waiting for no close frame: say so, not 1006
            raise ConnectionClosedError(None, Close(msg.data.code, str(msg.data)[:120]))
        if t in _DONE:
            if self.ws.close_code in _NORMAL and self.cut is None:
                raise StopAsyncIteration
            raise self._closed()
        return await self.__anext__()     # a PONG (heard: that is all it is for); nothing else comes

    async def close(self, code=1000, reason=""):
        await self.ws.close(code=code, message=reason.encode()[:120])


class Liveness:
    """Pings the connections nothing was heard from for `interval` seconds and cuts those still
    silent `interval / 2` after their ping; SWEEPS sweeps an interval, while any is open."""

    CHUNK = 500     # connections looked at between two turns of the loop
    SWEEPS = 4      # a connection silent in this many sweeps in a row is pinged

    def __init__(self, interval):
        self.interval = interval
        self.tick = interval / self.SWEEPS
        self.sockets = set()
        self.pinged = self.cut = 0
        self._task = None

    def add(self, sock):
        self.sockets.add(sock)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def discard(self, sock):
        self.sockets.discard(sock)

    def stop(self):
        if self._task is not None:
            self._task.cancel()

    async def _run(self):
        while self.sockets:
            await asyncio.sleep(self.tick)
            try:
                await self.sweep()
            except Exception:   # noqa: B902 - a sweep that failed must not end the ones after it
                log.exception("liveness sweep failed")

    async def sweep(self):
        now = time.monotonic()
        for n, s in enumerate(list(self.sockets)):
            if n and not n % self.CHUNK:
                await asyncio.sleep(0)
            if s.heard:
                s.heard, s.quiet, s.pinged_at = False, 0, None
                continue
            s.quiet += 1
            if s.pinged_at is not None:
                if now - s.pinged_at >= self.interval / 2.0 and s.cut is None:
                    s.cut = "no answer to the gateway's ping within %g s" % (self.interval / 2.0)
                    self.cut += 1
                    if s.transport is not None:
                        s.transport.abort()
            elif s.quiet >= self.SWEEPS and not s.ws.closed:
                s.pinged_at = now
                self.pinged += 1
                try:
                    await s.ws.ping()
                except ConnectionError:
                    pass


def refusal(status, message, basic=False):
    h = {"WWW-Authenticate": 'Basic realm="PicoCharge OCPP", charset="UTF-8"'} if basic else None
    return web.Response(status=status, text=message + "\n", headers=h)


def endpoint(gw):
    """The aiohttp handler of GET /ocpp/{station_id}."""
    s = gw.settings
    live = gw.liveness = Liveness(s.ping_interval) if s.ping_interval else None

    async def ocpp(request):
        sid = request.match_info.get("sid", "")
        why = gw.check_station_request(sid, request.headers.get("Sec-WebSocket-Protocol", ""))
        if why:
            gw.metrics.refused += 1
            return refusal(*why)
        peer = request.remote or ""
        log.debug("station=%s handshake from %s", sid, peer)   # never its headers: Authorization is a password
        cert = auth.peer_certificate(request.transport)     # verified against --client-ca, or None
        status, why = await gw.authenticate_station(sid, request.headers.get("Authorization"), peer, cert)
        if why:
            gw.metrics.refused += 1
            log.warning("station=%s refused (%s): %s", sid if sid in gw.stations else "?", peer, why)
            if status == 401 and not cert and s.client_ca and s.client_cert == "required":
                return refusal(401, auth.CERT_REQUIRED_401)
            return refusal(status, gw.refusal_text(status), basic=status == 401)
        ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,), max_msg_size=s.max_frame,
                                   autoping=False, compress=False)     # pings: Liveness, pongs: OcppSocket
        if not ws.can_prepare(request).ok:
            gw.metrics.refused += 1
            return refusal(400, "a WebSocket upgrade is needed: ws://HOST:PORT/ocpp/<station-id>")
        await ws.prepare(request)
        if ws.ws_protocol != SUBPROTOCOL:
            await ws.close(code=WSCloseCode.PROTOCOL_ERROR, message=b"subprotocol ocpp1.6 required")
            return ws
        gw.note_origin(sid, request.secure, request.headers.get("Host"))
        tr = request.transport
        addr = tr.get_extra_info("peername") if tr else None
        if addr and request.remote and request.remote != addr[0]:
            addr = (request.remote, 0)  # the client behind a trusted proxy (proxies.py); its port unknown
        sock = OcppSocket(ws, addr, sid, tr)
        if live is not None:
            live.add(sock)
        try:
            await gw.run_session(sock)
        finally:
            if live is not None:
                live.discard(sock)
        if not ws.closed:
            await ws.close()
        return ws

    return ocpp
