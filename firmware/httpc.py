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
        stream = hasattr(body, "write_to")  # a body streamed in pieces: .length, async .write_to(w)
        if body is not None:
            hdr += "Content-Type: %s\r\nContent-Length: %d\r\n" % (
                ctype, body.length if stream else len(body))
        try:
            writer.write(hdr.encode() + b"\r\n")
            if stream:
                await body.write_to(writer)
            elif body is not None:
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
    must chain to that CA ("" = encrypted, not verified; the logger, if given, warns).
    body: bytes, str, or an object streaming itself (.length, async .write_to(writer))."""
    if isinstance(body, str):
        body = body.encode()
    return await asyncio.wait_for(_request(method, url, body, ctype, tls), timeout_s)

