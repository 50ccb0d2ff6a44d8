"""The OCPP WebSocket on aiohttp: `/ocpp/<station id>`, subprotocol ocpp1.6.

The handshake is checked before the upgrade (path, subprotocol, credentials: the refusal is
a plain HTTP answer, 401 with `WWW-Authenticate: Basic` for credentials); then aiohttp
does the framing, the ping/pong heartbeat and the close. `OcppSocket` gives the `ocpp`
package's ChargePoint the connection it expects (`send`, `async for`, `close`), and ends
the iteration the way websockets' connections do: quietly on a normal close (1000, 1001),
with websockets' `ConnectionClosedError` otherwise, so the session code and its callers
keep one exception type whichever server carried the frames.
"""
import logging

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

    __slots__ = ("ws", "remote_address", "station_id")

    def __init__(self, ws, remote_address, station_id):
        self.ws = ws
        self.remote_address = remote_address
        self.station_id = station_id

    def _closed(self):
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
        if t is WSMsgType.TEXT or t is WSMsgType.BINARY:
            return msg.data
        if t is WSMsgType.ERROR and isinstance(msg.data, WebSocketError):
            # the station broke the protocol (a text frame that is not UTF-8: 1007) and aiohttp
            # closed the connection with that code, waiting for no close frame: say so, not 1006
            raise ConnectionClosedError(None, Close(msg.data.code, str(msg.data)[:120]))
        if t in _DONE:
            if self.ws.close_code in _NORMAL:
                raise StopAsyncIteration
            raise self._closed()
        return await self.__anext__()     # PING/PONG are answered by aiohttp; nothing else comes

    async def close(self, code=1000, reason=""):
        await self.ws.close(code=code, message=reason.encode()[:120])


def refusal(status, message, basic=False):
    h = {"WWW-Authenticate": 'Basic realm="PicoCharge OCPP", charset="UTF-8"'} if basic else None
    return web.Response(status=status, text=message + "\n", headers=h)


def endpoint(gw):
    """The aiohttp handler of GET /ocpp/{station_id}."""
    s = gw.settings

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
                                   heartbeat=s.ping_interval or None, autoping=True, compress=False)
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
        await gw.run_session(OcppSocket(ws, addr, sid))
        if not ws.closed:
            await ws.close()
        return ws

    return ocpp
