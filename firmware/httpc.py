# Minimal asyncio HTTP/1.0 client for the firmware (ThingSpeak writes): one request, one answer.
import asyncio


class HttpError(OSError):
    pass


def split_url(url):
    """(scheme, host, port, path) of an http(s) URL."""
    if url.startswith("https://"):
        scheme, rest, port = "https", url[8:], 443
    elif url.startswith("http://"):
        scheme, rest, port = "http", url[7:], 80
    else:
        raise ValueError("not an http(s) URL: %s" % url)
    host, _, path = rest.partition("/")
    if ":" in host:
        host, p = host.rsplit(":", 1)
        port = int(p)
    return scheme, host, port, "/" + path


async def _request(method, url, body, ctype, tls):
    scheme, host, port, path = split_url(url)
    kw = {}
    key, ca, log = tls or ("the CA", "", None)
    if scheme == "https":
        import tlsca  # ssl only for https://: it costs heap

        kw["ssl"] = tlsca.client(key, ca, log)  # the CA is read from flash for this connection
        kw["server_hostname"] = host  # SNI, and the name the certificate must carry
    reader, writer = await asyncio.open_connection(host, port, **kw)
    try:
        hdr = "%s %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: picocharge\r\nConnection: close\r\n" % (
            method, path, host)
        if body is not None:
            hdr += "Content-Type: %s\r\nContent-Length: %d\r\n" % (ctype, len(body))
        try:
            writer.write(hdr.encode() + b"\r\n")
            if body is not None:
                writer.write(body)
            await writer.drain()
        except ValueError as e:
            if not ca:
                raise
            # a verifying TLS handshake failed: nothing (no key in the body) went out
            import tlsca
            raise HttpError(tlsca.refused(key, e))
        line = await reader.readline()
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise HttpError("bad status line %r" % line[:40])
        status = int(parts[1])
        length = -1
        while True:
            h = await reader.readline()
            if not h or h == b"\r\n":
                break
            if h[:15].lower() == b"content-length:":
                length = int(h[15:].strip())
        if length >= 0:
            data = await reader.readexactly(length) if length else b""
        else:
            data = await reader.read(4096)
        return status, data
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except Exception:
            pass


async def request(method, url, body=None, ctype="application/x-www-form-urlencoded", timeout_s=15,
                  tls=None):
    """(status, body bytes). Raises OSError (network), asyncio.TimeoutError, HttpError.
    tls: for https://, (config key, CA file path, logger or None): the server's certificate
    must chain to that CA ("" = encrypted, not verified; the logger, if given, warns)."""
    if isinstance(body, str):
        body = body.encode()
    return await asyncio.wait_for(_request(method, url, body, ctype, tls), timeout_s)


# --- streaming (over-the-air updates and diagnostics: ota.py, diag.py) -------------------------
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


async def _head(reader, timeout_s):
    """(status, Content-Length or -1) of a response."""
    line = await asyncio.wait_for(reader.readline(), timeout_s)
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise HttpError("bad status line %r" % line[:40])
    status = int(parts[1])
    length = -1
    for _ in range(64):     # at most 64 header lines
        h = await asyncio.wait_for(reader.readline(), timeout_s)
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
