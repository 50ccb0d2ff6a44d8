"""A minimal RFC 6455 server on raw asyncio streams, to drive the firmware's WebSocket layer
with frames a proper library would never send (masked, reserved bits, bad opcodes, oversized,
fragmented with pings in between, broken UTF-8). It answers the station's own CALLs with
minimal valid results so the station stays in its normal loop."""
import asyncio
import base64
import hashlib
import json
import os
import struct

from .central import now_iso
from .net import free_port

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def answer(msg):
    action = msg[2]
    if action == "BootNotification":
        return {"currentTime": now_iso(), "interval": 60, "status": "Accepted"}
    if action == "Heartbeat":
        return {"currentTime": now_iso()}
    if action == "StartTransaction":
        return {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}
    if action == "Authorize":
        return {"idTagInfo": {"status": "Accepted"}}
    return {}


def frame(op, payload=b"", fin=True, rsv=0, mask=None):
    """A server frame (unmasked unless `mask` is given: that is a protocol violation)."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | rsv << 4 | op])
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack(">Q", n)
    if mask:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


class Conn:
    def __init__(self, reader, writer, request):
        self.r = reader
        self.w = writer
        self.request = request
        self.replies = asyncio.Queue()   # CALLRESULT / CALLERROR frames from the station
        self.calls = []                  # CALLs from the station (answered automatically)
        self._new_call = asyncio.Event()
        self.pongs = []
        self._new_pong = asyncio.Event()
        self.unmasked = 0                # client frames that broke the masking rule
        self.close_code = None
        self.closed = asyncio.Event()
        self.answering = True
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _frame(self):
        b0, b1 = await self.r.readexactly(2)
        op = b0 & 0x0F
        n = b1 & 0x7F
        if not b1 & 0x80:
            self.unmasked += 1
        if n == 126:
            n = struct.unpack(">H", await self.r.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", await self.r.readexactly(8))[0]
        mask = await self.r.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
        data = await self.r.readexactly(n)
        return op, bytes(b ^ mask[i % 4] for i, b in enumerate(data))

    async def _read(self):
        try:
            while True:
                op, data = await self._frame()
                if op == 1:
                    msg = json.loads(data)
                    if isinstance(msg, list) and msg and msg[0] == 2:
                        self.calls.append(msg)
                        self._new_call.set()
                        if self.answering:
                            self.send(frame(1, json.dumps([3, msg[1], answer(msg)])))
                    else:
                        await self.replies.put(msg)
                elif op == 9:
                    if self.answering:
                        self.send(frame(10, data))
                elif op == 10:
                    self.pongs.append(data)
                    self._new_pong.set()
                elif op == 8:
                    self.close_code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else 1005
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed.set()
            self.w.close()

    def send(self, raw):
        self.w.write(raw)

    def send_text(self, text):
        self.send(frame(1, text))

    async def reply(self, timeout=5):
        return await asyncio.wait_for(self.replies.get(), timeout)

    async def no_reply(self, wait=0.3):
        await asyncio.sleep(wait)
        assert self.replies.empty(), self.replies.get_nowait()

    async def wait_closed(self, timeout=10):
        await asyncio.wait_for(self.closed.wait(), timeout)
        return self.close_code

    async def wait_pongs(self, n, timeout=2):
        """Return once `n` pongs have come (or `timeout` seconds have passed: the caller checks)."""
        end = asyncio.get_running_loop().time() + timeout
        while len(self.pongs) < n:
            left = end - asyncio.get_running_loop().time()
            if left <= 0:
                return
            self._new_pong.clear()
            try:
                await asyncio.wait_for(self._new_pong.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def wait_calls(self, n, timeout=10):
        """Return once the station has sent `n` CALLs on this connection."""
        end = asyncio.get_running_loop().time() + timeout
        while len(self.calls) < n:
            left = end - asyncio.get_running_loop().time()
            assert left > 0, self.calls
            self._new_call.clear()
            try:
                await asyncio.wait_for(self._new_call.wait(), left)
            except asyncio.TimeoutError:
                pass


class RawServer:
    """`protocol`: the subprotocol the server agrees to (None: none); `status`: the HTTP
    status of the handshake answer (101 to accept)."""

    def __init__(self, protocol="ocpp1.6", status=101):
        self.port = free_port()
        self.protocol = protocol
        self.status = status
        self.requests = []
        self.conns = asyncio.Queue()
        self.count = 0
        self.srv = None

    @property
    def url(self):
        return "ws://127.0.0.1:%d/ocpp" % self.port

    async def start(self):
        self.srv = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def stop(self):
        self.srv.close()
        await self.srv.wait_closed()

    async def _accept(self, r, w):
        line = await r.readline()
        headers = {}
        while True:
            h = await r.readline()
            if h in (b"\r\n", b""):
                break
            k, _, v = h.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        req = {"line": line.decode().strip(), "headers": headers}
        self.requests.append(req)
        if self.status != 101:
            w.write(b"HTTP/1.1 %d Nope\r\nContent-Length: 0\r\n\r\n" % self.status)
            w.close()
            return
        acc = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + GUID).digest())
        resp = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
               b"Sec-WebSocket-Accept: " + acc + b"\r\n"
        if self.protocol:
            resp += b"Sec-WebSocket-Protocol: " + self.protocol.encode() + b"\r\n"
        w.write(resp + b"\r\n")
        self.count += 1
        conn = Conn(r, w, req)
        await self.conns.put(conn)
        await conn.task

    async def next_conn(self, timeout=15):
        return await asyncio.wait_for(self.conns.get(), timeout)


def random_mask():
    return os.urandom(4)
