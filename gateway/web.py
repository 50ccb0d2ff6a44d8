"""The HTTP side of the gateway as an aiohttp Application: pages, static files, /healthz,
/metrics, the OpenAPI document, ingest (/update), the OCPP WebSocket route, and the checks
every request goes through (Host, errors as JSON). The API's own routes are in api.py, the
credentials in auth.py, the listening port in server.py.
"""
import asyncio
import logging
import os
import re
import socket

from aiohttp import web

from . import api, events, ocpp_ws, otaweb, proxies
from .httputil import error, json_response, read_body, slow_body
from .metrics import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_STATIC_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")

# Every (method, path) the gateway answers over HTTP besides the OCPP WebSocket; the API's
# are api.api_table() and api.SESSION_ROUTES. /api/openapi.json documents each one. HEAD is answered wherever GET is.
PAGES = (("GET", "/"), ("GET", "/index.html"), ("GET", "/station/{id}"), ("GET", "/firmware"), ("GET", "/id-tags"),
         ("GET", "/load-groups"),
         ("GET", "/static/{file}"),
         ("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/api/openapi.json"),
         ("GET", "/update"), ("POST", "/update"), ("GET", "/update.json"), ("POST", "/update.json")) + \
    otaweb.STATION_PATHS

# paths a charge point or board reaches by the gateway's address, whatever name it has: they
# carry their own credentials (Basic, a write key) and are not what a rebinding page wants
_ANY_HOST = ("/ocpp/", "/update", "/fw/", "/diag/")


def routes():
    """[(method, path template)] of every HTTP route: the pages above and the API's."""
    return list(PAGES) + [(r.method, r.path) for r in api.api_table() + otaweb.ota_table() + api.SESSION_ROUTES]


def served_names(host, extra=None):
    """The Host names the gateway answers to: localhost, loopback, the bind address (for a
    wildcard bind: this machine's name and its addresses), and `extra` (--allowed-hosts)."""
    names = {"localhost", "127.0.0.1", "::1"}
    if host not in ("", "0.0.0.0", "::"):
        names.add(host.lower())
    else:
        hn = socket.gethostname()
        names.update({hn.lower(), socket.getfqdn().lower()})
        try:
            names.update(ai[4][0] for ai in socket.getaddrinfo(hn, None))
        except OSError:
            pass
    for n in extra or ():
        if n.strip():
            names.add(n.strip().lower())
    return names


def _host_name(value):
    v = value.strip().lower()
    if v.startswith("["):
        return v[1:v.find("]")] if "]" in v else v
    return v.rsplit(":", 1)[0] if v.count(":") == 1 else v


def _static_file(name):
    if not _STATIC_NAME.match(name) or name not in os.listdir(STATIC):
        return error(404, "no such file" if "/" in name or ".." in name or name.startswith(".")
                     else "no such file: %s" % name)
    return web.FileResponse(os.path.join(STATIC, name), headers={"Cache-Control": "no-cache"})


def make_app(gw):
    s = gw.settings
    names = served_names(s.host, s.allowed_hosts)
    any_host = "*" in names
    if any_host:
        log.warning("--allowed-hosts '*': any Host header is served (DNS rebinding reaches the API)")

    @web.middleware
    async def guard(request, handler):
        gw.metrics.http_requests += 1
        path = request.path
        if not any_host and not path.startswith(_ANY_HOST):
            h = _host_name(request.headers.get("Host", ""))
            if h not in names:
                # bytes that are not UTF-8 (aiohttp keeps them as surrogateescape) shown as \xNN, not \udcNN
                shown = request.headers.get("Host", "")[:100].encode("utf-8", "surrogateescape").decode(
                    "ascii", "backslashreplace")
                return error(421, "Host '%s' is not a name this gateway serves: add it with --allowed-hosts" % shown)
        if not path.startswith("/ocpp/") and request.headers.get("Upgrade", "").lower() == "websocket":
            gw.metrics.refused += 1
            return ocpp_ws.refusal(404, "the OCPP endpoint is ws://HOST:PORT/ocpp/<station-id>")
        try:
            return await handler(request)
        except web.HTTPNotFound:
            if path.startswith("/api/"):
                return error(404, "no such API path: %s (see /api/openapi.json)" % path)
            return error(404, "no such page: %s (the dashboard is at /, the API under /api/, "
                              "described at /api/openapi.json)" % path)
        except web.HTTPMethodNotAllowed as e:
            allowed = sorted(m for m in e.allowed_methods if m != "HEAD")
            return error(405, "use %s on %s" % (" or ".join(allowed), path), {"Allow": ", ".join(allowed)})
        except web.HTTPRequestEntityTooLarge:
            r = error(413, "body too large (at most %d bytes)" % s.max_body)
            r.force_close()
            return r

    mws = [guard]
    if s.trusted_proxies:   # before guard: every handler (and the sign-in limits) sees the client's address
        mws.insert(0, proxies.middleware(proxies.networks(s.trusted_proxies), error))
    app = web.Application(client_max_size=s.max_body, middlewares=mws, handler_args=None)
    hub = app[events.HUB] = events.Hub(gw)     # live updates (GET /api/events)
    app.on_startup.append(hub.start)
    app.on_shutdown.append(hub.stop)

    async def index(request):
        return _static_file("index.html")

    async def static(request):
        return _static_file(request.match_info["file"])

    async def healthz(request):
        out = health(gw)
        live = hub.state()
        if any(live.values()):      # once the dashboard's event streams were used
            out["live_streams"] = live
        return json_response(out, 503 if out["status"] != "ok" else 200)

    async def metrics(request):
        denied = await api.authorise(gw, request, "read")
        if denied is not None:
            return denied
        return web.Response(body=await gw.prom.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def openapi(request):
        return web.Response(body=gw.openapi_json(), content_type="application/json",
                            headers={"Cache-Control": "no-cache"})

    async def update(request):
        try:
            body = await read_body(request, s.body_timeout)
        except asyncio.TimeoutError:
            return slow_body(s.body_timeout)
        return await api.ingest(gw, request, body)

    r = app.router
    for p in ("/", "/index.html", "/station/{id}", "/firmware", "/id-tags", "/load-groups"):
        r.add_get(p, index)
    r.add_get("/static/{file:.*}", static)
    r.add_get("/healthz", healthz)
    r.add_get("/metrics", metrics)
    r.add_get("/api/openapi.json", openapi)
    for p in ("/update", "/update.json"):
        r.add_route("GET", p, update)
        r.add_route("POST", p, update)
    r.add_get("/ocpp/{sid:.*}", ocpp_ws.endpoint(gw), allow_head=False)
    api.add_routes(app, gw)
    otaweb.add_routes(app, gw)
    return app


def health(gw):
    out = {"status": "ok", "stations_connected": len(gw.sessions), "stations_known": len(gw.stations),
           "uplinks": {u.name: u.state() for u in gw.uplinks}}
    cl = getattr(gw, "cluster", None)
    if cl is not None:      # one of several processes on the database (docs/scale-out.md)
        out["cluster"] = {"process": cl.node, "processes": cl.nodes, "leases": sorted(cl.leases)}
    failing = getattr(gw.thingspeak, "failing", None)
    if failing:     # which stations' ThingSpeak writes fail, and why (never the write key)
        out["thingspeak_failing"] = {sid: why for sid, (_r, why) in sorted(failing.items())}
    store_error = getattr(gw.store, "error", None)   # set by the store when writes fail
    if store_error:
        out["status"] = "error"
        out["store_error"] = str(store_error)
    return out
