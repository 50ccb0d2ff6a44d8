# A small WebSocket client (RFC 6455) over asyncio streams, for OCPP-J on a Pico W.
#
# Client handshake with a required subprotocol (a server that does not agree is refused; in
# ws_open.py, loaded only while connecting), masked client frames, ping/pong, the close handshake, fragmented messages, 16- and 64-bit
# lengths, a message size limit (close 1009 and WsError), ws:// and wss://, HTTP Basic auth.
# Errors: WsError (protocol, handshake), WsClosed (orderly close), OSError (network).
import asyncio
import sys
from os import urandom

from compat import const, ticks_ms

OP_CONT = const(0)
OP_TEXT = const(1)
OP_BINARY = const(2)
OP_CLOSE = const(8)
OP_PING = const(9)
OP_PONG = const(10)

CLOSE_NORMAL = const(1000)
CLOSE_PROTOCOL = const(1002)
CLOSE_BAD_DATA = const(1007)
CLOSE_TOO_BIG = const(1009)

_MAX_FRAGMENTS = const(64)  # many tiny fragments would cost far more heap than their bytes


class WsError(OSError):
    """The peer broke the protocol or refused us (the link is unusable; reconnect)."""


class WsClosed(OSError):
    """The peer closed the connection (code, reason)."""

    def __init__(self, code, reason=""):
        super().__init__("closed by peer: %d %s" % (code, reason))
        self.code = code
        self.reason = reason


def mask_into(buf, start, data, mask, o=0):
    """Write data XOR mask (4 bytes, repeating) into buf[start:]; data's first byte is byte
    `o` of the payload (the mask goes on from where the last part of it ended)."""
    m0, m1, m2, m3 = mask[o & 3], mask[(o + 1) & 3], mask[(o + 2) & 3], mask[(o + 3) & 3]
    n = len(data)
    i = 0
    while i + 4 <= n:
        buf[start + i] = data[i] ^ m0
        buf[start + i + 1] = data[i + 1] ^ m1
        buf[start + i + 2] = data[i + 2] ^ m2
        buf[start + i + 3] = data[i + 3] ^ m3
        i += 4
    while i < n:
        buf[start + i] = data[i] ^ mask[(i + o) & 3]
        i += 1


def utf8(s):
    """The bytes of s (str as UTF-8) as a buffer: no copy on MicroPython; CPython (tests) encodes."""
    try:
        return memoryview(s)        # bytes, or a str's UTF-8 bytes on MicroPython
    except TypeError:               # CPython: no buffer for str
        return memoryview(s.encode())


HEADROOM = const(14)  # free bytes a prepared frame keeps at its front for the longest header
_CHUNK = const(256)   # send_pieces' buffer: the frame is masked and written this much at a time


def head(buf, at, opcode, n, mask, fin=True):
    """Write the header of a masked client frame with an n-byte payload (RFC 6455 5.2), its
    mask key last, into buf from `at` on; returns where the payload goes (6, 8 or 14 bytes on)."""
    buf[at] = (0x80 if fin else 0) | opcode
    if n < 126:
        buf[at + 1] = 0x80 | n
        at += 2
    elif n < 65536:
        buf[at + 1] = 0x80 | 126
        buf[at + 2] = n >> 8
        buf[at + 3] = n & 0xFF
        at += 4
    else:
        buf[at + 1] = 0x80 | 127
        for i in range(8):
            buf[at + 9 - i] = (n >> (8 * i)) & 0xFF
        at += 10
    buf[at:at + 4] = mask
    return at + 4


def prepare(buf, opcode, mask, fin=True):
    """Make buf (HEADROOM free bytes, then the payload) a masked client frame in place
    (RFC 6455 5.2, 5.3); returns the offset where the frame starts in buf."""
    n = len(buf) - HEADROOM
    at = HEADROOM - (6 if n < 126 else 8 if n < 65536 else 14)
    head(buf, at, opcode, n, mask, fin)
    mask_into(buf, HEADROOM, memoryview(buf)[HEADROOM:], mask)
    return at


def with_room(data):
    """A bytearray of HEADROOM free bytes, then data (str as UTF-8, bytes): one allocation."""
    mv = utf8(data)
    buf = bytearray(HEADROOM + len(mv))
    buf[HEADROOM:] = mv
    return buf


class WebSocket:
    """An open client connection. recv() returns str (text) or bytes (binary) messages and
    answers pings; send() sends text. One reader and any number of writers (each frame is
    written in one piece)."""

    def __init__(self, reader, writer, max_size=8192):
        self.r = reader
        self.w = writer
        self.max_size = max_size
        self.closed = False
        self.last_rx = ticks_ms()   # any frame from the peer (a pong too)
        self._hdr = bytearray(8)    # preallocated for frame headers and close payloads
        self._hmv = memoryview(self._hdr)

    async def _write(self, opcode, data):
        """Send one frame, in one write. A bytearray (or a memoryview of one) is a prepared
        buffer (HEADROOM free bytes, then the payload: ocppj.call_frame(room=HEADROOM)) that
        becomes the frame in place, so a big frame is not copied: on a fragmented heap that
        copy is the allocation that fails. Anything else is copied into one."""
        if self.closed:
            raise WsError("connection is closed")
        if not isinstance(data, (bytearray, memoryview)):
            data = with_room(data)
        at = prepare(data, opcode, urandom(4))
        self.w.write(memoryview(data)[at:] if at else data)
        await self.w.drain()

    async def send(self, text):
        """Send a text frame: str, bytes, or a prepared bytearray (given up: masked in place)."""
        await self._write(OP_TEXT, text)

    async def send_pieces(self, pieces):
        """Send one text frame made of the strs that `pieces()` yields, never joined: a large
        message (a GetConfiguration answer of 50 keys: 3.3 KB) costs its small pieces and a
        buffer of _CHUNK bytes, not two copies of itself in one block each (which a fragmented
        heap with 70 KB free could not give: the link went down). pieces() is called twice,
        for the length and to send; nothing is written before the first pass has run, so a
        MemoryError there leaves the connection as it was. The parts are written with no
        await between them, so no other frame can come between."""
        if self.closed:
            raise WsError("connection is closed")
        n = 0
        for p in pieces():
            n += len(utf8(p))
        if n >= 65536:
            raise WsError("message of %d bytes: too long" % n)
        mask = urandom(4)
        buf = bytearray(_CHUNK)
        k = head(buf, 0, OP_TEXT, n, mask)
        o = 0       # payload bytes masked so far
        w = self.w
        try:
            for p in pieces():
                mv = utf8(p)
                j = 0
                while j < len(mv):
                    part = mv[j:j + _CHUNK - k]
                    mask_into(buf, k, part, mask, o)
                    k += len(part)
                    o += len(part)
                    j += len(part)
                    if k == _CHUNK:
                        w.write(buf)
                        k = 0
        except MemoryError:     # part of a frame may be out: the connection is unusable
            self.closed = True
            raise WsError("no heap left in the middle of a frame")
        if o != n:
            self.closed = True
            raise WsError("pieces changed between passes (%d, then %d bytes)" % (n, o))
        if k:
            w.write(memoryview(buf)[:k])
        await w.drain()

    async def ping(self, data=b""):
        await self._write(OP_PING, data)

    async def close(self, code=CLOSE_NORMAL, reason=""):
        """Send a close frame (if we still can) and drop the connection."""
        if not self.closed:
            try:
                payload = bytes((code >> 8, code & 0xFF)) + reason.encode()[:120]
                await asyncio.wait_for(self._write(OP_CLOSE, payload), 2)
            except Exception:
                pass
        await self.abort()

    async def abort(self):
        """Drop the connection at once (no close handshake)."""
        self.closed = True
        await drop(self.w)

    async def _fail(self, code, why):
        await self.close(code, why[:60])
        raise WsError(why)

    async def _read_header(self):
        """(fin, opcode, length) of the next frame; enforces the server-side rules."""
        hv = self._hmv
        await self._readinto(hv[0:2])
        b0 = self._hdr[0]
        b1 = self._hdr[1]
        fin = b0 & 0x80
        opcode = b0 & 0x0F
        if b0 & 0x70:
            await self._fail(CLOSE_PROTOCOL, "reserved bits set in frame")
        if b1 & 0x80:
            await self._fail(CLOSE_PROTOCOL, "server frames must not be masked")
        n = b1 & 0x7F
        if n == 126:
            await self._readinto(hv[0:2])
            n = (self._hdr[0] << 8) | self._hdr[1]
        elif n == 127:
            await self._readinto(hv[0:8])
            n = 0
            for i in range(8):
                n = (n << 8) | self._hdr[i]
        if opcode >= OP_CLOSE:
            if opcode > OP_PONG:
                await self._fail(CLOSE_PROTOCOL, "unknown control opcode %d" % opcode)
            if n > 125 or not fin:
                await self._fail(CLOSE_PROTOCOL, "control frame too long or fragmented")
        elif opcode > OP_BINARY:
            await self._fail(CLOSE_PROTOCOL, "unknown data opcode %d" % opcode)
        return fin, opcode, n

    async def _readinto(self, mv):
        # readexactly into a preallocated buffer; EOF -> OSError
        n = len(mv)
        got = 0
        while got < n:
            k = await self.r.readinto(mv[got:]) if hasattr(self.r, "readinto") else None
            if k is None:
                data = await self.r.read(n - got)
                k = len(data)
                mv[got:got + k] = data
            if not k:
                self.closed = True
                raise OSError("connection closed by peer (EOF)")
            got += k

    async def _payload(self, n):
        if n == 0:
            return b""
        data = await self.r.readexactly(n)
        if len(data) < n:
            self.closed = True
            raise OSError("connection closed by peer (EOF)")
        return data

    async def recv(self):
        """The next data message (str for text, bytes for binary). Answers pings, records
        pongs, and turns a close frame into WsClosed after answering it."""
        buf = None     # a fragmented message in progress
        frags = 0
        mop = 0
        while True:
            fin, op, n = await self._read_header()
            if op < OP_CLOSE:
                size = n if buf is None else len(buf) + n
                if size > self.max_size:
                    await self._fail(CLOSE_TOO_BIG, "message of %d+ bytes exceeds the %d byte limit" % (
                        size, self.max_size))
            data = await self._payload(n)
            self.last_rx = ticks_ms()
            if op == OP_PING:
                await self._write(OP_PONG, data)
                continue
            if op == OP_PONG:  # last_rx is all the keepalive needs
                continue
            if op == OP_CLOSE:
                code = (data[0] << 8 | data[1]) if len(data) >= 2 else 1005
                reason = ""
                try:
                    reason = bytes(data[2:]).decode()
                except UnicodeError:
                    pass
                if not self.closed:
                    try:
                        await self._write(OP_CLOSE, data[:2])
                    except Exception:
                        pass
                await self.abort()
                raise WsClosed(code, reason)
            if op == OP_CONT:
                if buf is None:
                    await self._fail(CLOSE_PROTOCOL, "continuation frame without a message")
                frags += 1
                if frags > _MAX_FRAGMENTS:
                    await self._fail(CLOSE_TOO_BIG, "message in more than %d fragments" % _MAX_FRAGMENTS)
                buf.extend(data)
            else:
                if buf is not None:
                    await self._fail(CLOSE_PROTOCOL, "new message inside a fragmented one")
                if fin:  # the common case: one frame, no copy
                    if op == OP_BINARY:
                        return bytes(data)
                    return await self._text(data)
                mop = op
                frags = 1
                buf = bytearray(data)
            if fin:
                data = bytes(buf)
                buf = None
                if mop == OP_BINARY:
                    return data
                return await self._text(data)

    async def _text(self, data):
        try:
            return bytes(data).decode()
        except UnicodeError:
            await self._fail(CLOSE_BAD_DATA, "text message is not valid UTF-8")


async def drop(writer):
    # close() then wait_closed(): on MicroPython close() only marks the stream and
    # wait_closed() closes the socket; on CPython wait_closed() waits for the transport.
    try:
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 1)
    except Exception:
        pass


async def connect(url, protocol="ocpp1.6", auth=None, timeout_s=30, max_size=8192, ca=None, mine=None):
    """Open a WebSocket to `url` agreeing on `protocol`. Raises OSError/WsError/TimeoutError.
    ca: for wss://, the path of the CA file the server's certificate must chain to ("" = not
    verified, with a warning; None = ocpp.ca_cert of config.json). mine: (certificate, key)
    paths the station presents over wss:// (ocpp.client_cert, ocpp.client_key)."""
    import ws_open  # the opening handshake, dropped again once it is done: see ws_open.py

    try:
        reader, writer = await asyncio.wait_for(ws_open.handshake(url, protocol, auth, ca, mine), timeout_s)
    finally:
        sys.modules.pop("ws_open", None)
    return WebSocket(reader, writer, max_size)
