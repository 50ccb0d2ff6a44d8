"""HTTP side of the gateway: dashboard, JSON API (/api/...), /healthz, /metrics, ingest (/update).

`handle(gw, request) -> Response`. Reads are open on loopback; write calls
(POST) need `Authorization: Bearer <token>` when the gateway has an API token,
and so do reads from other addresses.
"""
import hmac
import json
import logging
import mimetypes
import os
import re

from .readings import _num, _ts, reading_from_dict, reading_from_fields  # noqa: F401 (re-exported)
from .server import Response
from .store import generate_password, hash_password, reading_row
from .uplinks import outbox_depth

log = logging.getLogger(__name__)

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_STATION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_NO_STORE = {"Cache-Control": "no-store"}


def _json(obj, status=200):
    return Response(status, json.dumps(obj, separators=(",", ":")), "application/json", _NO_STORE)


def _error(status, message):
    return _json({"error": message}, status)


# --- access control ---------------------------------------------------------------
def _loopback(req):
    host = (req.peer or ("",))[0]
    return host in ("127.0.0.1", "::1") or host.startswith("127.")


def _unauthorised(gw, req, write):
    """None when the call may go ahead, else the 401 message."""
    token = gw.settings.api_token
    if not token or (not write and _loopback(req)):
        return None
    got = req.headers.get("authorization", "")
    if not got.startswith("Bearer "):
        return ("API token required: send Authorization: Bearer <token> (the gateway's --api-token)%s"
                % ("" if write else "; reads need it too from addresses other than loopback"))
    if not hmac.compare_digest(got[7:].strip().encode(), token.encode()):
        return "wrong API token: send Authorization: Bearer <token> with the gateway's --api-token"
    return None


def _body(req):
    if not req.body:
        return {}
    try:
        d = json.loads(req.body)
    except ValueError as e:
        raise ValueError("the body is not JSON (%s)" % e)
    if not isinstance(d, dict):
        raise ValueError("the body must be a JSON object")
    return d


# --- the routes -----------------------------------------------------------------------
# Every (method, path) the gateway answers over HTTP besides the OCPP WebSocket.
# /api/openapi.json documents each one; tests/gateway/test_api.py fails when one is
# missing there. HEAD is answered wherever GET is.
PAGES = (("GET", "/"), ("GET", "/index.html"), ("GET", "/station/{id}"), ("GET", "/static/{file}"),
         ("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/api/openapi.json"),
         ("GET", "/update"), ("POST", "/update"), ("GET", "/update.json"), ("POST", "/update.json"))


def routes():
    """[(method, path template)] of every HTTP route: the pages above and the API table."""
    return list(PAGES) + [(m, p) for m, p, _parts, _fn in _api_table()]


def _allowed(method, methods, path):
    if method in methods or (method == "HEAD" and "GET" in methods):
        return None
    return Response(405, json.dumps({"error": "use %s on %s" % (" or ".join(sorted(methods)), path)}),
                    "application/json", dict(_NO_STORE, Allow=", ".join(sorted(methods))))


async def handle(gw, req):
    gw.metrics.http_requests += 1
    path = req.path
    m = req.method
    if path in ("/update", "/update.json"):
        return _allowed(m, ("GET", "POST"), path) or await ingest(gw, req)
    if not path.startswith("/api/") or path == "/api/openapi.json":
        page = None
        if path in ("/", "/index.html") or path.startswith("/station/"):
            page = lambda: _static("index.html")
        elif path.startswith("/static/"):
            page = lambda: _static(path[8:])
        elif path == "/healthz":
            page = lambda: _json(health(gw))
        elif path == "/api/openapi.json":
            page = lambda: _static("openapi.json", "application/json")
        if page is not None:
            return _allowed(m, ("GET",), path) or page()
        if path == "/metrics":
            return _allowed(m, ("GET",), path) or Response(200, await metrics_text(gw),
                                                          "text/plain; version=0.0.4; charset=utf-8")
        return _error(404, "no such page: %s (the dashboard is at /, the API under /api/, "
                           "described at /api/openapi.json)" % path)
    write = m not in ("GET", "HEAD")
    why = _unauthorised(gw, req, write)
    if why:
        return Response(401, json.dumps({"error": why}, separators=(",", ":")), "application/json",
                        dict(_NO_STORE, **{"WWW-Authenticate": "Bearer"}))
    parts = path.strip("/").split("/")
    hits = [(meth, fn, args) for meth, _p, tpl, fn in _api_table() for args in [_match(tpl, parts)]
            if args is not None]
    if not hits:
        return _error(404, "no such API path: %s (see /api/openapi.json)" % path)
    fn = next((f for meth, f, _a in hits if meth == m or (m == "HEAD" and meth == "GET")), None)
    if fn is None:
        return _allowed(m, {meth for meth, _f, _a in hits}, path)
    args = hits[0][2]
    if "id" in args and args["id"] not in gw.stations:
        return _error(404, "unknown station %r" % args["id"])
    try:
        return await fn(gw, req, **args)
    except ValueError as e:
        return _error(400, str(e))


def _match(tpl, parts):
    if len(tpl) != len(parts):
        return None
    args = {}
    for t, p in zip(tpl, parts):
        if t == "{id}":
            if not p:
                return None
            args["id"] = p
        elif t != p:
            return None
    return args


def health(gw):
    out = {"status": "ok", "stations_connected": len(gw.sessions), "stations_known": len(gw.stations),
           "uplinks": {u.name: u.state() for u in gw.uplinks}}
    failing = getattr(gw.thingspeak, "failing", None)
    if failing:     # which stations' ThingSpeak writes fail, and why (never the write key)
        out["thingspeak_failing"] = {sid: why for sid, (_r, why) in sorted(failing.items())}
    return out


# --- the API calls -----------------------------------------------------------------
async def _list_stations(gw, req):
    return _json([gw.station_view(s) for s in sorted(gw.stations)])


async def _post_station(gw, req):
    return await _add_station(gw, _body(req))


async def _list_id_tags(gw, req):
    return _json([{"id_tag": t, "status": s} for t, s in sorted(gw.id_tags.items())])


async def _add_id_tag(gw, req):
    b = _body(req)
    tag = b.get("id_tag")
    if not isinstance(tag, str) or not 1 <= len(tag) <= 20:
        raise ValueError("id_tag must be a string of 1..20 characters")
    st = b.get("status", "Accepted")
    if st not in ("Accepted", "Blocked", "Expired", "Invalid"):
        raise ValueError("status must be Accepted, Blocked, Expired or Invalid")
    await gw.add_id_tag(tag, st)
    return _json({"id_tag": tag, "status": st}, 201)


async def _get_station(gw, req, id):
    return _json(gw.station_view(id))


async def _get_readings(gw, req, id):
    return await _readings(gw, id, req.query)


async def _transactions(gw, req, id):
    rows = await gw.store.run(lambda db: [dict(r) for r in db.execute(
        "SELECT * FROM transactions WHERE station=? ORDER BY id DESC LIMIT 200", (id,))])
    return _json(rows)


async def _status_history(gw, req, id):
    rows = await gw.store.run(lambda db: [dict(r) for r in db.execute(
        "SELECT connector, status, error_code, info, ts FROM status_history WHERE station=? "
        "ORDER BY id DESC LIMIT 200", (id,))])
    return _json(rows)


async def _accept(gw, req, id):
    await gw.set_state(id, "accepted")
    return _json(gw.station_view(id))


async def _reject(gw, req, id):
    await gw.set_state(id, "rejected")
    return _json(gw.station_view(id))


async def _delete_station(gw, req, id):
    """Take a station out of service: closed, forgotten, its readings kept."""
    was_connected = id in gw.sessions
    await gw.remove(id)
    log.info("station=%s removed through the API%s", id, " (its connection closed)" if was_connected else "")
    return _json({"id": id, "removed": True, "was_connected": was_connected})


async def _set_password(gw, req, id):
    """A new OCPP password for a registered station (a replaced or re-provisioned board): the
    one given, or a generated one returned once. The open session, if any, carries on; the
    station's next connection needs the new password."""
    pw = _body(req).get("password")
    if pw is not None and (not isinstance(pw, str) or not 8 <= len(pw) <= 40):
        raise ValueError("password must be a string of 8..40 characters (or leave it out to generate one)")
    generated = pw is None
    if generated:
        pw = generate_password()
    h = hash_password(pw)
    await gw.store.run(lambda db: db.execute("UPDATE stations SET pw_hash=? WHERE id=?", (h, id)))
    gw.stations[id]["pw_hash"] = h
    log.info("station=%s password changed through the API%s", id, " (generated)" if generated else "")
    out = gw.station_view(id)
    if generated:
        out["password"] = pw    # returned once, never stored in clear
    return _json(out)


def _api_key(v):
    return isinstance(v, str) and 1 <= len(v) <= 64 and all("!" <= c <= "~" for c in v)


def _thingspeak_pair(gw, b, sid):
    """(channel, write key, read key) from a body, all None for none; ValueError says what is
    wrong. The read key (optional) is a private channel's Read API key."""
    ch, key, rkey = b.get("thingspeak_channel"), b.get("thingspeak_key"), b.get("thingspeak_read_key")
    if ch is not None and (isinstance(ch, bool) or not isinstance(ch, int) or ch <= 0):
        raise ValueError("thingspeak_channel must be a positive integer")
    if (ch is None) != (key is None) or (key is not None and not isinstance(key, str)):
        raise ValueError("give thingspeak_channel and thingspeak_key together")
    if rkey is not None:
        if ch is None:
            raise ValueError("thingspeak_read_key goes with thingspeak_channel and thingspeak_key")
        if not _api_key(rkey):
            raise ValueError("thingspeak_read_key must be the channel's Read API key "
                             "(1..64 printable characters, no spaces)")
    if key is not None:
        if not _api_key(key):
            raise ValueError("thingspeak_key must be the channel's write API key "
                             "(1..64 printable characters, no spaces)")
        other = next((s for s, st in gw.stations.items() if s != sid and st.get("ts_key") and
                      hmac.compare_digest(str(st["ts_key"]), key)), None)
        if other is not None:
            raise ValueError("that thingspeak_key is already station %s's: each station needs its own "
                             "channel, since /update finds the station by its write key" % other)
    return ch, key, rkey


async def _set_thingspeak(gw, req, id):
    """Give a station a ThingSpeak channel and write key (and, for a private channel, its read
    key), change them, or clear them (both null). Readings not yet forwarded go to the new
    channel; a station that had none starts with the readings that arrive from now on."""
    b = _body(req)
    if "thingspeak_channel" not in b or "thingspeak_key" not in b:
        raise ValueError("give thingspeak_channel and thingspeak_key (both null to stop forwarding)")
    ch, key, rkey = _thingspeak_pair(gw, b, id)
    st = gw.stations[id]
    if (ch, key, rkey) == (st.get("ts_channel"), st.get("ts_key"), st.get("ts_read_key")):
        return _json(gw.station_view(id))
    await gw.set_thingspeak(id, ch, key, rkey)
    log.info("station=%s ThingSpeak %s through the API", id,
             "channel set to %s" % ch if ch else "forwarding stopped")
    return _json(gw.station_view(id))


async def _command(gw, req, id):
    from .app import CommandError
    name = req.path.rstrip("/").rsplit("/", 1)[1]
    body = _body(req)
    try:
        return _json(await gw.command(id, name, body))
    except CommandError as e:
        return _json(dict({"error": e.message}, **e.extra), e.status)


_API = None


def _api_table():
    """[(method, path template, template parts, handler)]; the commands are app.COMMANDS."""
    global _API
    if _API is None:
        from .app import COMMANDS    # app imports this module: look it up on first use
        t = [("GET", "/api/stations", _list_stations),
             ("POST", "/api/stations", _post_station),
             ("GET", "/api/id-tags", _list_id_tags),
             ("POST", "/api/id-tags", _add_id_tag),
             ("GET", "/api/stations/{id}", _get_station),
             ("DELETE", "/api/stations/{id}", _delete_station),
             ("GET", "/api/stations/{id}/readings", _get_readings),
             ("GET", "/api/stations/{id}/transactions", _transactions),
             ("GET", "/api/stations/{id}/status-history", _status_history),
             ("POST", "/api/stations/{id}/accept", _accept),
             ("POST", "/api/stations/{id}/reject", _reject),
             ("PUT", "/api/stations/{id}/password", _set_password),
             ("PUT", "/api/stations/{id}/thingspeak", _set_thingspeak)]
        t += [("POST", "/api/stations/{id}/" + name, _command) for name in sorted(COMMANDS)]
        _API = [(m, p, p.strip("/").split("/"), fn) for m, p, fn in t]
    return _API


async def _add_station(gw, b):
    sid = b.get("id")
    if not isinstance(sid, str) or not _STATION_ID.match(sid):
        raise ValueError("id must be 1..64 characters of A-Z a-z 0-9 . _ : -")
    pw = b.get("password")
    if pw is not None and (not isinstance(pw, str) or not 8 <= len(pw) <= 40):
        raise ValueError("password must be a string of 8..40 characters (or leave it out to generate one)")
    if sid in gw.stations:
        return _error(409, "station %s is already registered" % sid)
    ch, key, rkey = _thingspeak_pair(gw, b, sid)
    generated = pw is None
    if generated:
        pw = generate_password()
    await gw.register(sid, pw, "accepted", ch, key, rkey)
    log.info("station=%s registered through the API%s", sid, " (password generated)" if generated else "")
    out = gw.station_view(sid)
    if generated:
        out["password"] = pw    # returned once, never stored in clear
    return _json(out, 201)


async def _readings(gw, sid, q):
    try:
        limit = min(max(int(q.get("limit", 500)), 1), 10000)
    except ValueError:
        raise ValueError("limit must be an integer")
    since = q.get("since")
    args = [sid]
    sql = "SELECT * FROM readings WHERE station=?"
    if since:
        try:
            since = _ts(since)
        except ValueError:
            raise ValueError("since %r is not ISO 8601 (e.g. 2026-01-31T12:00:00Z)" % since[:40])
        sql += " AND ts >= ?"
        args.append(since)
    sql += " ORDER BY id DESC LIMIT ?"
    args.append(limit)
    rows = await gw.store.run(lambda db: [reading_row(r) for r in db.execute(sql, args)])
    rows.reverse()
    return _json(rows)


async def ingest(gw, req):
    """ThingSpeak-style write: api_key (the station's write key) + field1..field8 (+created_at)."""
    from urllib.parse import parse_qsl
    params = dict(req.query)
    ctype = req.headers.get("content-type", "")
    if req.body:
        if "json" in ctype:
            try:
                b = json.loads(req.body)
            except ValueError:
                return Response(400, "the body is not JSON\n")
            if not isinstance(b, dict):
                return Response(400, "the JSON body must be an object\n")
            params.update({k: v for k, v in b.items()})
        else:
            try:
                params.update(dict(parse_qsl(req.body.decode("utf-8"), keep_blank_values=True,
                                             strict_parsing=True)))
            except (UnicodeDecodeError, ValueError):
                return Response(400, "the body is not a form (api_key=...&field1=...)\n")
    key = params.get("api_key") or params.get("key") or req.headers.get("x-thingspeakapikey")
    if not key:
        return Response(400, "api_key missing: send the station's ThingSpeak write key\n")
    sid = next((s for s, st in gw.stations.items() if st.get("ts_key") and
                hmac.compare_digest(str(st["ts_key"]), str(key))), None)
    if sid is None:
        return Response(401, "unknown api_key: register the station with its thingspeak_key\n")
    try:
        row = reading_from_fields(params)
    except ValueError as e:
        return Response(400, "%s\n" % e)
    ids = await gw.store_readings(sid, [row], "http")
    gw.metrics.ingest["http"] += 1
    return Response(200, str(ids[0]))


async def metrics_text(gw):
    names = [u.name for u in gw.uplinks]
    depths = await gw.store.run(lambda db: {n: outbox_depth(db, n) for n in names})
    mt = gw.metrics
    lines = [
        "# HELP picocharge_stations_connected OCPP stations connected now.",
        "# TYPE picocharge_stations_connected gauge",
        "picocharge_stations_connected %d" % len(gw.sessions),
        "# HELP picocharge_stations_known Registered stations.",
        "# TYPE picocharge_stations_known gauge",
        "picocharge_stations_known %d" % len(gw.stations),
        "# HELP picocharge_ocpp_messages_total OCPP frames received from stations.",
        "# TYPE picocharge_ocpp_messages_total counter",
        "picocharge_ocpp_messages_total %d" % mt.messages,
        "# HELP picocharge_messages_per_second OCPP frames received per second (last ~10 s).",
        "# TYPE picocharge_messages_per_second gauge",
        "picocharge_messages_per_second %.3f" % mt.rate(),
        "# HELP picocharge_readings_stored_total Readings stored (OCPP, HTTP and MQTT ingest).",
        "# TYPE picocharge_readings_stored_total counter",
        "picocharge_readings_stored_total %d" % mt.readings,
        "# HELP picocharge_ocpp_refused_total WebSocket handshakes refused (auth, path, subprotocol).",
        "# TYPE picocharge_ocpp_refused_total counter",
        "picocharge_ocpp_refused_total %d" % mt.refused,
        "# HELP picocharge_db_commits_total SQLite transactions committed by the batching writer.",
        "# TYPE picocharge_db_commits_total counter",
        "picocharge_db_commits_total %d" % gw.store.commits,
        "# HELP picocharge_ingest_total Readings received through the ingest paths.",
        "# TYPE picocharge_ingest_total counter",
    ]
    for k, v in sorted(mt.ingest.items()):
        lines.append('picocharge_ingest_total{path="%s"} %d' % (k, v))
    lines += ["# HELP picocharge_outbox_depth Readings not yet delivered, per uplink.",
              "# TYPE picocharge_outbox_depth gauge"]
    lines += ['picocharge_outbox_depth{uplink="%s"} %d' % (n, depths[n]) for n in names]
    lines += ["# HELP picocharge_uplink_delivered_total Readings delivered, per uplink.",
              "# TYPE picocharge_uplink_delivered_total counter"]
    lines += ['picocharge_uplink_delivered_total{uplink="%s"} %d' % (u.name, u.delivered) for u in gw.uplinks]
    lines += ["# HELP picocharge_uplink_errors_total Failed uploads or connections, per uplink.",
              "# TYPE picocharge_uplink_errors_total counter"]
    lines += ['picocharge_uplink_errors_total{uplink="%s"} %d' % (u.name, u.errors) for u in gw.uplinks]
    return "\n".join(lines) + "\n"


_static_cache = {}


def _static(name, ctype=None):
    if "/" in name.strip("/") and ".." in name or name.startswith(".") or "\\" in name or ".." in name:
        return _error(404, "no such file")
    hit = _static_cache.get(name)
    if hit is None:
        p = os.path.join(STATIC, name)
        if not os.path.isfile(p):
            return _error(404, "no such file: %s" % name)
        with open(p, "rb") as f:
            data = f.read()
        ct = ctype or mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ct.startswith("text/") or ct in ("application/javascript",):
            ct += "; charset=utf-8"
        hit = _static_cache[name] = (data, ct)
    return Response(200, hit[0], hit[1], {"Cache-Control": "no-cache"})
