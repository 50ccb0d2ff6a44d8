# The WebSocket opening handshake (RFC 6455 section 4), client side: the URL, the upgrade request
# with the subprotocol and HTTP Basic auth, the checks of the server's answer (status, Upgrade,
# Sec-WebSocket-Accept, the subprotocol agreed). ws.connect() imports it for each connection and
# drops it once the handshake is over, as app.py drops config after boot: an open link does not
# need these ~3.5 KB of heap (64-bit port), and on a Pico every KB of a long-running station's
# heap is room against fragmentation. Pure functions (split_url, handshake_request, accept_key)
# are tested under CPython and MicroPython.
import asyncio
from binascii import b2a_base64
from hashlib import sha1
from os import urandom

import ws
from compat import const

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEADER_LINE = const(1024)
_LINE_KEPT = const(160)  # the status line and the headers we read fit; the rest of a line is dropped
_EPIPE = const(32)
_ECONNRESET = const(104)
_CLOSED = "connection closed during the handshake"


def b64(data):
    return b2a_base64(data)[:-1]


def accept_key(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (both bytes)."""
    return b64(sha1(key + _GUID).digest())


def split_url(url):
    """(secure, host, port, path) of a ws:// or wss:// URL; ValueError otherwise."""
    if url.startswith("wss://"):
        secure, rest, port = True, url[6:], 443
    elif url.startswith("ws://"):
        secure, rest, port = False, url[5:], 80
    else:
        raise ValueError("not a ws:// or wss:// URL: %r" % url)
    host, sep, path = rest.partition("/")
    if ":" in host:
        host, p = host.rsplit(":", 1)
        try:
            port = int(p)
        except ValueError:
            raise ValueError("bad port in URL: %r" % url)
    if not host:
        raise ValueError("no host in URL: %r" % url)
    return secure, host, port, "/" + path


def handshake_request(host, port, path, key, protocol, auth=None):
    """The client's HTTP upgrade request (bytes). `auth` = (user, password) for Basic."""
    h = "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n" % (
            path, host, port, key.decode(), protocol)
    if auth:
        h += "Authorization: Basic %s\r\n" % b64(("%s:%s" % auth).encode()).decode()
    return (h + "\r\n").encode()


async def _read_line(reader, buf):
    """One line of the server's answer, read a byte at a time: its first len(buf) bytes in
    `buf` (all the handshake looks at), the rest counted and dropped. A line longer than
    _MAX_HEADER_LINE is an error at its 1,025th byte, not after the port's Stream.readline
    has read it whole (a 4 MiB status line was a MemoryError); and nothing after the blank
    line is taken from the reader."""
    mv = memoryview(buf)
    one = mv[len(buf) - 1:]  # where the bytes past the buffer go
    n = 0
    while n < _MAX_HEADER_LINE:
        to = mv[n:n + 1] if n < len(buf) - 1 else one
        k = await reader.readinto(to)
        if not k:
            raise OSError(_CLOSED)
        n += 1
        if to[0] == 10:
            return bytes(mv[:n if n < len(buf) else len(buf)])
    raise ws.WsError("handshake line longer than %d bytes: not a WebSocket server "
                     "(check ocpp.url)" % _MAX_HEADER_LINE)


def _cert_refused(e, mine):
    """`e`, or in words when a station presenting its certificate (`mine`) saw its wss://
    connection closed or reset before any HTTP answer: a TLS server refuses a client
    certificate by ending the handshake, so that is the likely cause."""
    if not mine or isinstance(e, ws.WsError) or not (
            e.args and (e.args[0] in (_EPIPE, _ECONNRESET) or e.args[0] == _CLOSED)):
        return e
    return ws.WsError("the central system closed the wss:// connection before answering (%s): it may refuse "
                      "the station's certificate; check that ocpp.client_cert was issued by the CA the "
                      "central system trusts, is still valid and names this station" % (e.args[0],))


async def handshake(url, protocol, auth, ca, mine=None):
    """(reader, writer) of a connection whose upgrade to a WebSocket `url` speaking
    `protocol` the server accepted; WsError (refused, or not a WebSocket server) or OSError.
    mine: (certificate path, key path) presented to a wss:// server (OCPP security profile 3)."""
    secure, host, port, path = split_url(url)
    kw = {}
    if secure:
        import log
        import tlsca  # ssl only for wss://: it costs heap

        # verified against ocpp.ca_cert: OCPP security profile 2; without it, encrypted only
        # with ocpp.client_cert/client_key the station presents its certificate: profile 3
        kw["ssl"] = tlsca.client("ocpp.ca_cert", ca, log.get("ocpp"), mine)
        kw["server_hostname"] = host  # SNI, and the name the certificate must carry
    try:
        reader, writer = await asyncio.open_connection(host, port, **kw)
    except OSError as e:
        raise _cert_refused(e, mine)
    try:
        key = b64(urandom(16))
        buf = bytearray(_LINE_KEPT)
        try:
            writer.write(handshake_request(host, port, path, key, protocol, auth))
            await writer.drain()
            status = await _read_line(reader, buf)
        except OSError as e:  # no HTTP answer at all: the TLS layer may have ended it
            raise _cert_refused(e, mine)
        parts = status.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ws.WsError("not an HTTP answer to the WebSocket handshake: %r" % status[:40])
        code = parts[1]
        got_proto = None
        got_accept = None
        upgrade = False
        while True:
            line = await _read_line(reader, buf)
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip()
            if name == b"sec-websocket-protocol":
                got_proto = value.decode()
            elif name == b"sec-websocket-accept":
                got_accept = value
            elif name == b"upgrade":
                upgrade = value.lower() == b"websocket"
        if code == b"401" or code == b"403":
            raise ws.WsError("central system refused the credentials (HTTP %s): check ocpp.password "
                          "and the station id" % code.decode())
        if code != b"101":
            raise ws.WsError("central system answered HTTP %s instead of 101 (check ocpp.url)" % code.decode())
        if not upgrade or got_accept != accept_key(key):
            raise ws.WsError("bad WebSocket handshake answer (Upgrade/Sec-WebSocket-Accept)")
        if got_proto != protocol:
            raise ws.WsError("central system did not agree to subprotocol %s (answered %r)" % (protocol, got_proto))
    except BaseException as e:
        await ws.drop(writer)
        if secure and ca and isinstance(e, ValueError):
            # mbedtls refused the certificate in the handshake, before the first byte of the
            # upgrade request (and its Authorization header) went out
            import tlsca
            raise ws.WsError(tlsca.refused("ocpp.ca_cert", e))
        raise
    return reader, writer
