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

        key, ca, log = tls or ("the CA", "", None)
        kw["ssl"] = tlsca.client(key, ca, log)
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
    for _ in range(64):     # at most 64 header lines
        h = await _line(reader, timeout_s)
        if not h or h == b"\r\n":
            return status, length
        if h[:15].lower() == b"content-length:":
            length = int(h[15:].strip())
    raise HttpError("more than 64 header lines")


async def _close(writer):
    writer.close()
    try:
        await writer.wait_closed()
    except Exception:
        pass


async def get_into(url, auth, limit, sink, buf, timeout_s=15, tls=None):
    """GET `url` and hand its body to sink(memoryview) a piece at a time (read into `buf`, a
    preallocated bytearray: nothing the size of the body is allocated). Returns (status, bytes
    of body); a 2xx body longer than `limit` raises HttpError; each read waits `timeout_s` at
    most (asyncio.TimeoutError)."""
    reader, writer = await _open("GET", url, auth, tls, "", timeout_s)
    try:
        await asyncio.wait_for(writer.drain(), timeout_s)
        status, length = await _head(reader, timeout_s)
        if status // 100 != 2:
            return status, 0
        if length > limit:
            raise HttpError("%s is %d bytes, more than the %d expected" % (url[-60:], length, limit))
        mv = memoryview(buf)
        got = 0
        while True:
            n = await asyncio.wait_for(reader.readinto(buf), timeout_s)
            if not n:
                break
            got += n
            if got > limit:
                raise HttpError("%s is longer than the %d bytes expected" % (url[-60:], limit))
            sink(mv[:n])
        if 0 <= length != got:
            raise HttpError("%s ended after %d of %d bytes" % (url[-60:], got, length))
        return status, got
    finally:
        await _close(writer)


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
        status, _ = await _head(reader, timeout_s)
        return status
    finally:
        await _close(writer)
