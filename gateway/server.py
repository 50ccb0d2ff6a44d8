"""One port for everything: OCPP WebSocket upgrades and plain HTTP.

Each TCP connection starts in `Sniffer`, which reads the request head. A
`GET` with `Upgrade: websocket` is handed, bytes included, to a websockets
ServerConnection (websockets does the handshake, framing, ping/pong and close);
anything else is served by a small HTTP/1.1 loop (Content-Length bodies,
keep-alive) that calls `handler(Request) -> Response`. websockets alone only
parses GET requests, and the API needs POST.

Both read through asyncio's BufferedProtocol into one receive buffer per Front
(see `RecvBuffer`), not through `data_received` with a fresh buffer per read.
"""
import asyncio
import logging
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

log = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024
MAX_BODY = 1024 * 1024
RECV_SIZE = 256 * 1024   # as much as one read takes (asyncio's own max_size for data_received)


class RecvBuffer(asyncio.BufferedProtocol):
    """A protocol with `data_received` whose transport reads into `self.recv_buf`, one buffer
    shared by every connection of a Front, and hands on a copy of exactly the bytes that came.

    With plain data_received, asyncio's socket transport calls sock.recv(256 KiB) for every
    read: 256 KiB are allocated and then shrunk to the ~800 bytes a MeterValues frame is. On
    glibc those reads are carved from the top of the main heap (after the first such buffer is
    freed its mmap threshold rises above 256 KiB), and the short-lived data they leave behind
    become holes that are never given back: with 10,000 paced stations the heap grew 8 MB a
    minute while the memory in use stayed flat (docs/performance.md). A copy of the exact size
    is served from those holes like any other allocation. The buffer is safe to share: the
    event loop reads one socket at a time and the copy is made before the next read. Under
    TLS, asyncio's SSL protocol decrypts into it the same way."""

    recv_buf = None   # set per instance (the Front's)

    def get_buffer(self, sizehint):
        return self.recv_buf

    def buffer_updated(self, nbytes):
        self.data_received(self.recv_buf[:nbytes].tobytes())


class OcppConnection(ServerConnection, RecvBuffer):
    """websockets' ServerConnection reading through the Front's shared receive buffer
    (ServerConnection first: its eof_received, connection_lost ... win over the protocol
    base classes')."""

    def __init__(self, recv_buf, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.recv_buf = recv_buf


class Request:
    __slots__ = ("method", "target", "path", "query", "headers", "body", "peer")

    def __init__(self, method, target, headers, body, peer):
        self.method = method
        self.target = target
        u = urlsplit(target)
        self.path = unquote(u.path)
        self.query = dict(parse_qsl(u.query, keep_blank_values=True))
        self.headers = headers
        self.body = body
        self.peer = peer


class Response:
    __slots__ = ("status", "body", "ctype", "headers")

    def __init__(self, status=200, body=b"", ctype="text/plain; charset=utf-8", headers=None):
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.ctype = ctype
        self.headers = headers or {}


def _parse_head(head):
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise ValueError("bad request line")
    headers = {}
    for ln in lines[1:]:
        k, sep, v = ln.partition(b":")
        if not sep:
            raise ValueError("bad header line")
        headers[k.strip().decode("latin-1").lower()] = v.strip().decode("latin-1")
    return parts[0].decode("latin-1"), parts[1].decode("latin-1"), parts[2], headers


class Sniffer(RecvBuffer):
    def __init__(self, front):
        self.front = front
        self.recv_buf = front.recv_buf
        self.buf = bytearray()
        self.busy = False
        self.closed = False
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.front.http_conns.add(self)

    def connection_lost(self, exc):
        self.closed = True
        self.front.http_conns.discard(self)

    def data_received(self, data):
        self.buf += data
        if not self.busy:
            self._next()

    def _reply_now(self, status, msg):
        self._write(Response(status, msg + "\n"), close=True)

    def _next(self):
        i = self.buf.find(b"\r\n\r\n")
        if i < 0:
            if len(self.buf) > MAX_HEAD:
                self._reply_now(431, "request head too large")
            return
        try:
            method, target, version, headers = _parse_head(bytes(self.buf[:i]))
        except ValueError as e:
            return self._reply_now(400, "malformed HTTP request: %s" % e)
        if method == "GET" and "websocket" in headers.get("upgrade", "").lower():
            return self._upgrade()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._reply_now(411, "send the body with a Content-Length (chunked is not supported)")
        try:
            n = int(headers.get("content-length") or 0)
        except ValueError:
            return self._reply_now(400, "bad Content-Length")
        if n > MAX_BODY:
            return self._reply_now(413, "body too large (at most %d bytes)" % MAX_BODY)
        if len(self.buf) < i + 4 + n:
            return
        body = bytes(self.buf[i + 4:i + 4 + n])
        del self.buf[:i + 4 + n]
        keep = version == b"HTTP/1.1" and headers.get("connection", "").lower() != "close"
        peer = self.transport.get_extra_info("peername")
        req = Request(method, target, headers, body, peer)
        self.busy = True
        asyncio.get_running_loop().create_task(self._serve(req, keep))

    async def _serve(self, req, keep):
        try:
            resp = await self.front.handler(req)
        except Exception:
            log.exception("HTTP %s %s failed", req.method, req.path)
            resp = Response(500, "internal error; see the gateway's log\n")
        if self.closed:
            return
        self._write(resp, close=not keep, head_only=req.method == "HEAD")
        self.busy = False
        if keep and self.buf and not self.closed:
            self._next()

    def _write(self, resp, close, head_only=False):
        try:
            reason = HTTPStatus(resp.status).phrase
        except ValueError:
            reason = "Status"
        h = ["HTTP/1.1 %d %s" % (resp.status, reason),
             "Content-Type: " + resp.ctype,
             "Content-Length: %d" % len(resp.body)]
        for k, v in resp.headers.items():
            h.append("%s: %s" % (k, v))
        if close:
            h.append("Connection: close")
        self.transport.write(("\r\n".join(h) + "\r\n\r\n").encode("latin-1")
                             + (b"" if head_only else resp.body))
        if close:
            self.transport.close()

    def _upgrade(self):
        f = self.front
        self.front.http_conns.discard(self)
        protocol = ServerProtocol(subprotocols=[Subprotocol("ocpp1.6")], max_size=f.max_size,
                                  logger=f.ws_logger)
        conn = OcppConnection(f.recv_buf, protocol, f.ws_server, ping_interval=f.ping_interval,
                              ping_timeout=f.ping_interval, close_timeout=5, max_queue=4)
        data = bytes(self.buf)
        self.buf = bytearray()
        self.transport.set_protocol(conn)
        conn.connection_made(self.transport)
        conn.data_received(data)


class Front:
    """The listening socket; `handler` serves HTTP, `ws_handler(conn)` runs an OCPP session,
    `process_request(conn, request)` may refuse a WebSocket handshake with a Response."""

    def __init__(self, handler, ws_handler, process_request, max_size=65536, ping_interval=60):
        self.handler = handler
        self.ws_handler = ws_handler
        self.process_request = process_request
        self.max_size = max_size
        self.ping_interval = ping_interval
        self.ws_logger = logging.getLogger("websockets.server")
        self.http_conns = set()
        self.server = None
        self.ws_server = None
        self.recv_buf = memoryview(bytearray(RECV_SIZE))   # see RecvBuffer

    async def start(self, host, port, ssl=None):
        """Listen; with an `ssl.SSLContext` every connection is TLS (wss:// and https://)."""
        self.ws_server = Server(create_server=None, handler=self._ws_conn, logger=self.ws_logger)
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: Sniffer(self), host, port, backlog=4096, ssl=ssl,
                                               ssl_handshake_timeout=10 if ssl else None)
        self.ws_server.server = self.server
        return self.server.sockets[0].getsockname()[1]

    async def _ws_conn(self, connection):
        # as websockets.asyncio.server.serve's own connection handler does
        srv = self.ws_server
        try:
            await asyncio.wait_for(connection.handshake(self.process_request, None, "PicoCharge"), 10)
            if connection.protocol.state.name != "OPEN":
                connection.transport.abort()
                return
            srv.all_connections.add(connection)
            connection.start_keepalive()
            try:
                async with connection:
                    await self.ws_handler(connection)
            except Exception:
                log.exception("OCPP connection handler failed")
            finally:
                srv.all_connections.discard(connection)
        except Exception:
            connection.transport.abort()
        finally:
            srv.handler_tasks.discard(asyncio.current_task())

    async def stop(self):
        if self.server is None:
            return
        self.server.close()
        for c in list(self.http_conns):
            if c.transport:
                c.transport.close()
        conns = list(self.ws_server.all_connections)
        for c in conns:
            c.transport.close() if c.protocol.state.name == "CONNECTING" else None
        if conns:
            await asyncio.gather(*(c.close(1001, "gateway shutting down") for c in conns),
                                 return_exceptions=True)
        tasks = list(self.ws_server.handler_tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        self.server = None
