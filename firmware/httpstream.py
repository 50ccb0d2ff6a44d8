# Streaming HTTP/1.0 for over-the-air updates and diagnostics (ota.py, diag.py): a body is
# read into, or sent from, a fixed buffer, never held whole. Apart from httpc (which the
# ThingSpeak task keeps loaded) so that none of this is in the heap unless an update or an
# upload runs.
import asyncio

from httpc import HttpError, split_url


def basic(user, password):
    """The Authorization header's value for HTTP Basic."""
    from binascii import b2a_base64

    return "Basic " + b2a_base64(("%s:%s" % (user, password)).encode()).decode().strip()


async def _open(method, url, auth, tls, extra, timeout_s):
    scheme, host, port, path = split_url(url)
    kw = {}
    if scheme == "https":
        import tlsca

        key, ca, log, mine = tls or ("the CA", "", None, None)
        kw["ssl"] = tlsca.client(key, ca, log, mine)   # mine: the station's certificate, profile 3
        kw["server_hostname"] = host
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, **kw), timeout_s)
    hdr = "%s %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: picocharge\r\nConnection: close\r\n%s%s\r\n" % (
        method, path, host, ("Authorization: %s\r\n" % auth) if auth else "", extra)
    writer.write(hdr.encode())
    return reader, writer


async def _line(reader, timeout_s):
    """One line of a response head, at most 512 bytes (asyncio's readline has no limit: a
    server sending an endless line would fill the heap). Read a byte at a time: a head is a
    few hundred bytes, read once per file."""
    out = bytearray()
    while len(out) < 512:
        b = await asyncio.wait_for(reader.read(1), timeout_s)
        if not b:
            break
        out += b
        if b == b"\n":
            return bytes(out)
    if len(out) >= 512:
        raise HttpError("a response header line is longer than 512 bytes")
    return bytes(out)


async def _head(reader, timeout_s):
    """(status, Content-Length or -1) of a response."""
    line = await _line(reader, timeout_s)
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise HttpError("bad status line %r" % line[:40])
    status = int(parts[1])
    length = -1
    keep = parts[0] == b"HTTP/1.1"   # HTTP/1.1 keeps the connection unless it says close
    for _ in range(64):     # at most 64 header lines
        h = await _line(reader, timeout_s)
        if not h or h == b"\r\n":
            return status, length, keep
        k = h[:15].lower()
        if k == b"content-length:":
            length = int(h[15:].strip())
        elif k[:11] == b"connection:":
            keep = b"close" not in h.lower()
        elif k == b"transfer-encodi" and b"chunked" in h.lower():
            raise HttpError("chunked response: a release server must send Content-Length (docs/ota.md)")
    raise HttpError("more than 64 header lines")


async def _close(writer):
    writer.close()
    try:
        await writer.wait_closed()
    except Exception:
        pass


class Conn:
    """HTTP/1.1 GETs over one connection kept open between them (keep-alive): a release's 30-odd
    files cost one TCP and, over https, one TLS handshake, not one each (on the unix port at 192K
    a second handshake while the first's memory is being freed failed for want of heap). The
    connection is opened again when the server closes it or another host is asked."""

    def __init__(self, tls, timeout_s):
        self.tls = tls
        self.timeout_s = timeout_s
        self.rw = None
        self.where = None

    async def close(self):
        if self.rw is not None:
            w = self.rw[1]
            self.rw = None
            await _close(w)

    async def get_into(self, url, auth, limit, sink, buf):
        """GET `url` and hand its body to sink(memoryview) a piece at a time (read into `buf`,
        a preallocated bytearray: nothing the size of the body is allocated). Returns (status,
        bytes of body); a 2xx body longer than `limit` raises HttpError; each read waits
        timeout_s at most (asyncio.TimeoutError)."""
        scheme, host, port, path = split_url(url)
        t = self.timeout_s
        if self.rw is None or self.where != (scheme, host, port):
            await self.close()
            kw = {}
            if scheme == "https":
                import tlsca

                key, ca, log, mine = self.tls or ("the CA", "", None, None)
                kw["ssl"] = tlsca.client(key, ca, log, mine)   # mine: the station's certificate, profile 3
                kw["server_hostname"] = host
            self.rw = await asyncio.wait_for(asyncio.open_connection(host, port, **kw), t)
            self.where = (scheme, host, port)
        reader, writer = self.rw
        try:
            writer.write(("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: picocharge\r\n%s\r\n" % (
                path, host, ("Authorization: %s\r\n" % auth) if auth else "")).encode())
            await asyncio.wait_for(writer.drain(), t)
            status, length, keep = await _head(reader, t)
            if status // 100 != 2:
                await self.close()
                return status, 0
            if length > limit:
                raise HttpError("%s is %d bytes, more than the %d expected" % (url[-60:], length, limit))
            mv = memoryview(buf)
            got = 0
            while length < 0 or got < length:
                want = len(buf) if length < 0 else min(len(buf), length - got)
                n = await asyncio.wait_for(reader.readinto(mv[:want]), t)
                if not n:
                    break
                got += n
                if got > limit:
                    raise HttpError("%s is longer than the %d bytes expected" % (url[-60:], limit))
                sink(mv[:n])
            if 0 <= length != got:
                raise HttpError("%s ended after %d of %d bytes" % (url[-60:], got, length))
            if not keep or length < 0:
                await self.close()
            return status, got
        except BaseException:
            await self.close()
            raise


async def put_from(url, auth, ctype, length, pieces, timeout_s=15, tls=None):
    """PUT a body of `length` bytes given by the iterator `pieces` (bytes each), streamed.
    Returns the status."""
    reader, writer = await _open("PUT", url, auth, tls, "Content-Type: %s\r\nContent-Length: %d\r\n" % (
        ctype, length), timeout_s)
    try:
        for p in pieces:
            writer.write(p)
            await asyncio.wait_for(writer.drain(), timeout_s)
        await asyncio.wait_for(writer.drain(), timeout_s)
        status, _, _ = await _head(reader, timeout_s)
        return status
    finally:
        await _close(writer)
