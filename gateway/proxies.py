"""The client's address behind a load balancer: X-Forwarded-For, believed from trusted proxies only.

Behind HAProxy or nginx (deploy/) every connection comes from the proxy's address, so the
per-address limit on failed sign-ins (auth_fail_limit) would lump every station and browser
together: ~100 failed sign-ins a minute from anywhere would make every station wait. With
`--trusted-proxy CIDR` (repeatable) the gateway takes the address from `X-Forwarded-For` when,
and only when, the connection comes from one of those networks: walking the header from the
right (the hop nearest to us first), the first address that is not itself a trusted proxy is
the client. From anyone else the header is ignored, so a station that connects directly cannot
choose the address its failures are counted against.

Written here rather than taken from aiohttp-remotes (maintained, aio-libs): its XForwardedStrict
refuses every request that did not come through the proxy with exactly the configured number
of hops (HAProxy's own health checks, a scrape of /metrics from the monitoring host), and its
XForwardedRelaxed and XForwardedFiltered believe the header from any peer, which is the hole
this closes. The rule here is the one gunicorn's and uvicorn's forwarded-allow-ips use.
"""
import ipaddress

from aiohttp import web

MAX_HOPS = 16               # X-Forwarded-For entries looked at (a longer header: 400)


def networks(values):
    """The trusted networks from CLI values ("10.0.0.0/8", "192.0.2.7", "::1"); ValueError says which is bad."""
    out = []
    for v in values:
        for part in str(v).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError("--trusted-proxy %r is not an IP address or network (e.g. 10.0.0.0/8)" % part)
    return tuple(out)


def _trusted(nets, addr):
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return False
    ip = getattr(ip, "ipv4_mapped", None) or ip    # a dual-stack listener shows 10.0.0.5 as ::ffff:10.0.0.5
    return any(ip in n for n in nets)


def client_address(nets, peer, header):
    """The client's address: `peer` unless it is a trusted proxy with an X-Forwarded-For
    `header` (None: none); ValueError for a header from a trusted proxy that is not a list of
    addresses."""
    if not nets or header is None or not _trusted(nets, peer or ""):
        return peer
    hops = [h.strip() for h in header.split(",")]
    if len(hops) > MAX_HOPS:
        raise ValueError("X-Forwarded-For has %d entries (at most %d)" % (len(hops), MAX_HOPS))
    for h in reversed(hops):
        try:
            ipaddress.ip_address(h)
        except ValueError:
            raise ValueError("X-Forwarded-For entry %r is not an IP address" % h[:60])
        if not _trusted(nets, h):
            return h
    return hops[0]      # every hop a trusted proxy: the farthest one


def middleware(nets, error):
    """An aiohttp middleware putting the client's address in request.remote (`error(status,
    message)` makes the 400 for a bad header)."""
    @web.middleware
    async def forwarded(request, handler):
        headers = request.headers.getall("X-Forwarded-For", [])
        if nets and headers:
            try:
                if len(headers) > 1:
                    raise ValueError("X-Forwarded-For given %d times (once, comma-separated)" % len(headers))
                addr = client_address(nets, request.remote, headers[0])
            except ValueError as e:
                return error(400, str(e))
            if addr != request.remote:
                request = request.clone(remote=addr)
        return await handler(request)
    return forwarded
