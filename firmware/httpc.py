# Minimal asyncio HTTP/1.0 client for the firmware (ThingSpeak writes): one request, one answer.
# Without asyncio.wait_for: it makes two tasks and a closure per request, held with the rest
# while a write is on the network (2.1 KB in all then on the 64-bit port, 0.9 KB now). Once
# connected, the stream's non-blocking socket is polled every _POLL_MS against one deadline for
# the whole request (request, answer): nothing is allocated per wait.
import asyncio

from compat import const, ticks_ms, ticks_diff, ticks_add

_POLL_MS = const(10)   # how often a request that waits on the network looks again
_MAX = const(1024)     # an answer's head and body, at most (ThingSpeak's: a few hundred bytes)


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


async def send(w, data, end):
    """data written to the stream w, its socket polled until it has taken it all (HttpError
    past the deadline end). A streamed body's write_to(w, end) sends its pieces with it."""
    w.write(data)   # what the socket takes goes at once, the rest waits in w.out_buf
    while w.out_buf:
        if ticks_diff(ticks_ms(), end) >= 0:
            raise HttpError("timeout: the server did not answer in time")
        await asyncio.sleep_ms(_POLL_MS)
        n = w.s.write(w.out_buf)   # None: no room yet
        if n:
            w.out_buf = w.out_buf[n:]


async def request(method, url, body=None, ctype="application/x-www-form-urlencoded", timeout_s=15,
                  tls=None):
    """(status, body bytes). Raises OSError (network), HttpError (no whole answer within
    timeout_s, a bad one, one longer than _MAX). tls: for https://, (config key, CA file path,
    logger or None): the server's certificate must chain to that CA ("" = encrypted, not
    verified; the logger, if given, warns). body: bytes, str, or an object streaming itself
    (.length, async .write_to(stream, end) sending with httpc.send)."""
    if isinstance(body, str):
        body = body.encode()
    end = ticks_add(ticks_ms(), timeout_s * 1000)
    scheme, host, port, path = split_url(url)
    kw = {}
    key, ca, log = tls or ("the CA", "", None)
    if scheme == "https":
        import tlsca  # ssl only for https://: it costs heap

        kw["ssl"] = tlsca.client(key, ca, log)  # the CA is read from flash for this connection
        kw["server_hostname"] = host  # SNI, and the name the certificate must carry
    # the TCP connection (its wait bounded by the network stack); a TLS handshake runs in the
    # first writes
    w = (await asyncio.open_connection(host, port, **kw))[1]
    del kw
    try:
        stream = hasattr(body, "write_to")  # a body streamed in pieces
        hdr = "%s %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: picocharge\r\nConnection: close\r\n" % (
            method, path, host)
        if body is not None:
            hdr += "Content-Type: %s\r\nContent-Length: %d\r\n" % (
                ctype, body.length if stream else len(body))
        try:
            await send(w, hdr.encode() + (b"\r\n" if stream or body is None else b"\r\n" + body), end)
            del hdr
            if stream:
                await body.write_to(w, end)
        except ValueError as e:
            if not ca:
                raise
            # a verifying TLS handshake failed: nothing (no key in the body) went out
            import tlsca
            raise HttpError(tlsca.refused(key, e))
        # the answer: HTTP/1.0, read until the server closes
        data = b""
        while True:
            got = w.s.read(256)   # None: nothing yet
            if got is None:
                if ticks_diff(ticks_ms(), end) >= 0:
                    raise HttpError("timeout: the server did not answer in time")
                await asyncio.sleep_ms(_POLL_MS)
            elif got:
                data += got
                if len(data) > _MAX:
                    raise HttpError("an answer longer than %d bytes" % _MAX)
            else:
                break
        head, _, data = data.partition(b"\r\n\r\n")
        parts = head.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise HttpError("bad status line %r" % head[:40])
        return int(parts[1]), data
    finally:
        w.s.close()
