"""The listening port, on aiohttp: one port for the OCPP WebSockets, the dashboard, the API.

aiohttp parses HTTP (its C parser), upgrades WebSockets, bounds what a connection may send
and closes idle ones; this module only starts and stops it with our limits, and refuses
connections past the cap with a 503 before any parsing.

Limits (Settings, each a `picocharge gateway` option, docs/gateway.md "Limits"):
- max_line / max_field / max_headers: a request line, one header line, the header count
  (431/400 past them, from aiohttp's parser);
- max_body: a request body (413);
- idle_timeout: a connection with no request in progress is closed after this long, whether
  it is idle between requests or has sent only part of a request head (aiohttp's keep-alive
  timer runs from the connection's start);
- body_timeout: how long a request body may take to arrive (408), see httputil.read_body; what
  is left of a body not read is drained for at most 1 s (aiohttp's lingering_time), then the
  connection is closed;
- max_connections: open connections (OCPP and HTTP); the next is answered 503 and closed;
- pipelined requests: aiohttp queues at most 32 parsed requests per connection, then stops
  reading the socket until they are answered, so bytes sent behind a pending request wait
  in the kernel's buffers, not in ours.

Memory: the gateway's command runs on uvloop when it is installed (Linux, macOS). uvloop
reads every socket into one loop-wide buffer and hands the protocol bytes of the exact size
that came, which is what gateway/server.py's former RecvBuffer did by hand: asyncio's own
loop allocates 256 KiB per read and, at 10,000 paced stations, left glibc's heap growing
8 MB a minute (docs/performance.md).
"""
import asyncio
import logging
import os
import ssl

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 20000
_SPARE_FDS = 128    # open files kept for the database, its journal, logs, uplinks, the listening socket


class _QuietBadRequests(logging.Filter):
    """aiohttp logs every malformed request (answered 400) at ERROR with a traceback: anyone who
    reaches the port could fill the log with them. They are kept at DEBUG, counted."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def filter(self, record):
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            self.count += 1
            if not log.isEnabledFor(logging.DEBUG):
                return False
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


CLIENT_CERT_MODES = ("optional", "required")


def tls_context(cert, key=None, client_ca=None, client_cert="optional"):
    """The server's SSLContext (None without `cert`); ValueError says what is wrong.

    cert/key: PEM certificate (chain) and key, OCPP security profile 2 (wss://, https://).
    client_ca: a PEM file of the operator's CA(s), OCPP security profile 3: a client that
    presents a certificate must present one that chains to these CAs, and nothing else (the
    system's CA store is never trusted for clients), or the TLS handshake fails. A client
    without one still completes the handshake (CERT_OPTIONAL, whatever `client_cert` says):
    the dashboard and the API over https:// need no client certificate, and
    `client_cert="required"` is enforced on /ocpp/ by the station's authentication, where the
    refusal is an HTTP 401 that says what is missing rather than a handshake alert."""
    if not cert:
        if key:
            raise ValueError("a TLS key without a certificate: give the certificate too")
        if client_ca:
            raise ValueError("a client CA (--client-ca) needs TLS: give the server's --tls-cert and --tls-key too")
        return None
    if client_cert not in CLIENT_CERT_MODES:
        raise ValueError("client certificates %r: choose one of %s" % (client_cert, ", ".join(CLIENT_CERT_MODES)))
    for what, path in (("certificate", cert), ("key", key), ("client CA", client_ca)):
        if path and not os.path.isfile(path):
            raise ValueError("TLS %s not found: %s" % (what, path))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)   # no CA loaded: see client_ca above
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2    # OCPP 1.6 security profiles 2 and 3: TLS 1.2 or later
    try:
        ctx.load_cert_chain(cert, key or None)
    except ssl.SSLError as e:
        raise ValueError("TLS certificate %s and key %s do not load (%s): give a PEM certificate and its "
                         "private key" % (cert, key or "(in the certificate file)", e.reason or e))
    if client_ca:
        try:
            ctx.load_verify_locations(cafile=client_ca)
        except ssl.SSLError as e:
            raise ValueError("client CA %s does not load (%s): give the operator CA's certificate in PEM "
                             "(`picocharge gateway ca init` makes one)" % (client_ca, e.reason or e))
        if not ctx.cert_store_stats().get("x509_ca"):
            raise ValueError("client CA %s holds no CA certificate (basicConstraints CA:TRUE): give the "
                             "operator CA's certificate, not a station's" % client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


QUIET_BAD_REQUESTS = _QuietBadRequests()
logging.getLogger("aiohttp.server").addFilter(QUIET_BAD_REQUESTS)

_REFUSAL = ("server is at its connection limit (--max-connections): try again later\n").encode()
REFUSAL_503 = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
               b"Content-Length: %d\r\nRetry-After: 5\r\nConnection: close\r\n\r\n" % len(_REFUSAL)) + _REFUSAL


class _Refuse(asyncio.Protocol):
    """A connection past the cap: the 503 answer, then closed once its request came (or after 2 s),
    so the client reads the answer rather than a reset."""

    def __init__(self, counter):
        self.counter = counter
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.counter.http_refused += 1
        transport.write(REFUSAL_503)
        asyncio.get_running_loop().call_later(2.0, transport.close)

    def data_received(self, data):
        self.transport.close()


class Listener:
    """An aiohttp Application served on one host/port with the limits of `settings`."""

    def __init__(self, app, settings, counter):
        self.app = app
        self.settings = settings
        self.counter = counter      # .http_refused is incremented per refused connection
        self.runner = None
        self.server = None

    def connection_cap(self):
        """--max-connections, within the process's open-file limit: the soft limit is raised
        towards the hard one as far as the cap needs, and the cap lowered below what is left
        (with a warning), so that the refusal is our 503 and not accept() failing in a loop."""
        cap = self.settings.max_connections
        try:
            import resource
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            want = cap + _SPARE_FDS
            if soft != resource.RLIM_INFINITY and soft < want:
                new = want if hard == resource.RLIM_INFINITY else min(want, hard)
                resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
                soft = new
        except (ImportError, ValueError, OSError):
            return cap
        if soft != resource.RLIM_INFINITY and cap > soft - _SPARE_FDS:
            lowered = max(soft - _SPARE_FDS, 1)
            # a warning when the operator chose the cap, a note when it is the default
            level = logging.INFO if cap == DEFAULT_MAX_CONNECTIONS else logging.WARNING
            log.log(level, "--max-connections %d lowered to %d: the open-file limit is %d (raise it with "
                    "`ulimit -n`, or LimitNOFILE= in a systemd unit)", cap, lowered, soft)
            cap = lowered
        return cap

    async def start(self, host, port, ssl=None):
        s = self.settings
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=5,
                                    keepalive_timeout=s.idle_timeout, max_line_size=s.max_line,
                                    max_field_size=s.max_field, max_headers=s.max_headers,
                                    lingering_time=1.0)
        await self.runner.setup()
        handler_factory = self.runner.server
        open_now = handler_factory._connections    # aiohttp's dict of open connections (`connections`
        cap = self.connection_cap()                # copies it into a list: too slow per accept)

        def factory():
            if cap and len(open_now) >= cap:
                return _Refuse(self.counter)
            return handler_factory()

        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(factory, host, port, backlog=4096, ssl=ssl,
                                               ssl_handshake_timeout=10 if ssl else None, reuse_address=True,
                                               reuse_port=getattr(s, "reuse_port", False) or None)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self, before_cleanup=None):
        if self.server is None:
            return
        self.server.close()
        if before_cleanup is not None:
            await before_cleanup()
        await self.runner.cleanup()
        self.server = None
