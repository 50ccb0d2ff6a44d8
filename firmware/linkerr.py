# A link error in words, with its likely cause: "connection refused by cs.example:9000 ..."
# instead of OSError(111,) or [addrinfo error -2]. Imported when a link goes down and dropped
# again (as ws_open is after a handshake): a running station does not hold its ~1 KB.
# Pure: tested under CPython and MicroPython.
_ECONNREFUSED = 111
_ETIMEDOUT = 110
_EHOSTUNREACH = 113
_ENETUNREACH = 101
_ECONNRESET = 104


def host_port(url):
    """("host", port) of a ws://, wss://, http:// or https:// URL."""
    secure = url.startswith("wss:") or url.startswith("https:")
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        return rest, 443 if secure else 80
    return host, int(port)


def words(e, url, what="the central system", key="ocpp.url"):
    """What went wrong with the link to `url`, in words, and what to check."""
    host, port = host_port(url)
    hp = "%s:%d" % (host, port)
    name = type(e).__name__
    code = e.args[0] if isinstance(e, OSError) and e.args and type(e.args[0]) is int else None
    if name == "TimeoutError" or code == _ETIMEDOUT:
        return "timed out connecting to %s: is %s up, and %s reachable from here (firewall)?" % (hp, what, host)
    if code == _ECONNREFUSED:
        return "connection refused by %s: nothing listens there; is %s running, and is the " \
               "port in %s right?" % (hp, what, key)
    if code is not None and code < 0 or "addrinfo" in str(e) or "Name or service" in str(e):
        return "cannot resolve %s: check the host name in %s (and the network's DNS)" % (host, key)
    if code == _EHOSTUNREACH or code == _ENETUNREACH:
        return "no route to %s: check the network (Wi-Fi, router) and the address in %s" % (hp, key)
    if code == _ECONNRESET:
        return "connection reset by %s: %s closed it (overloaded, or not speaking WebSocket there?)" % (hp, what)
    if name == "ValueError" or "SSL" in name or "TLS" in str(e):
        return "TLS with %s failed (%s): does %s speak wss:// there?" % (hp, e, what)
    msg = str(e)
    return msg if msg and name in ("WsError", "LinkDead", "CallTimeout", "CallError") else "%s %s" % (name, msg or "")
