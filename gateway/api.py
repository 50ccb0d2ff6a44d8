"""The JSON API (/api/...) and ingest (/update): aiohttp handlers and who may call them.

Every API call needs credentials (auth.py) unless the gateway runs with --api-auth none:
a token (`Authorization: Bearer <token>`) or the dashboard's session cookie, with the
`X-CSRF-Token` header on writes. Each route names the least role it needs (read, operate,
admin). JSON bodies are taken only as `application/json` (415 otherwise).
"""
import hmac
import json
import logging
import time
from typing import NamedTuple
from urllib.parse import parse_qsl

from aiohttp import web
from pydantic import ValidationError

from picocharge.firmware import fields

from . import auth, events, export, loadbalance, models, profiles
from .commands import COMMANDS, CommandError, configure_stations, is_authorization_key
from .httputil import error as _error, json_response as _json, read_body, slow_body
from .idtags import (CSV_COLUMNS as _TAG_COLUMNS, MAX_PAGE as _TAG_PAGE, STATUSES as _TAG_STATUSES, check_entry,
                     check_status, parse_csv, to_csv)
from .readings import _num, _ts, reading_from_dict, reading_from_fields, unit_symbol  # noqa: F401 (re-exported)
from .reservations import check_id as _reservation_id, reservation_of
from .store import generate_password, hash_password, reading_row

log = logging.getLogger(__name__)



# --- access control ---------------------------------------------------------------
REQUIRED = ("API token required: send Authorization: Bearer <token> (picocharge gateway token create, "
            "or the gateway's --api-token), or sign in on the dashboard")
WRONG = "wrong API token: send Authorization: Bearer <token> with a token of this gateway"


def _denied(status, message, headers=None):
    return _json({"error": message}, status, headers)


async def authorise(gw, request, need):
    """None when the request may go ahead with role `need`, else the answer (401, 403, 429)."""
    if gw.settings.api_auth == "none":
        return None
    peer = ("api", request.remote or "")
    wait = gw.throttle.blocked(peer)
    if wait:
        return _denied(429, "too many wrong API tokens from this address: try again in %d s" % (int(wait) + 1),
                       {"Retry-After": str(int(wait) + 1)})
    got = request.headers.get("Authorization")
    write = request.method not in ("GET", "HEAD")
    if got is not None:
        if not got.startswith("Bearer "):
            return _denied(401, REQUIRED, {"WWW-Authenticate": "Bearer"})
        role = gw.token_role(got[7:].strip())
        if role is None:
            gw.throttle.failed(peer)
            return _denied(401, WRONG, {"WWW-Authenticate": "Bearer"})
    else:
        sess = gw.web_sessions.get(request.cookies.get(auth.SESSION_COOKIE))
        if sess is None:
            return _denied(401, REQUIRED, {"WWW-Authenticate": "Bearer"})
        role, csrf, tid = sess
        if not gw.token_alive(tid):     # the token the session was opened with was revoked since
            gw.web_sessions.drop_token(tid)
            return _denied(401, REQUIRED, {"WWW-Authenticate": "Bearer"})
        if write:
            got_csrf = request.headers.get(auth.CSRF_HEADER, "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(got_csrf, csrf.encode()):
                return _denied(403, "a write with the session cookie needs its %s header (the dashboard "
                                    "sends it)" % auth.CSRF_HEADER)
    if not auth.role_at_least(role, need):
        return _denied(403, "this token's role is %s; %s %s needs %s" % (role, request.method, request.path, need))
    return None


async def _json_body(gw, request):
    """The JSON object of a request (empty: {}); a web.Response to answer instead when it is not."""
    try:
        raw = await read_body(request, gw.settings.body_timeout)
    except TimeoutError:
        return slow_body(gw.settings.body_timeout)
    if not raw:
        return {}
    if request.content_type != "application/json":
        return _error(415, "send the body as Content-Type: application/json")
    try:
        d = json.loads(raw)
    except ValueError as e:
        return _error(400, "the body is not JSON (%s)" % e)
    except RecursionError:
        return _error(400, "the body is nested too deeply")
    if not isinstance(d, dict):
        return _error(400, "the body must be a JSON object")
    where = nul_at(d)
    if where is not None:
        return _error(400, "%s holds a NUL character (U+0000): text may not contain it" % where)
    # json takes "\ud800" without its pair, and its bytes ED A0 80 too (it decodes with surrogatepass,
    # and reads UTF-16 bodies); no UTF-8 encoder (SQLite, a station's frame) takes the string it makes
    where = surrogate_at(d)
    if where is not None:
        return _error(400, "%s holds a lone UTF-16 surrogate (an escape \\ud800-\\udfff, or its bytes, without "
                           "its pair), which is no Unicode character: send UTF-8 text (a character above "
                           "U+FFFF escaped as a surrogate pair)" % where)
    return d


def _text_at(v, bad, key_where, where="the body"):
    """Where (a dotted path) a text of a parsed JSON value is `bad`: a value's path, or
    key_where(key, path) for a key; None if none is."""
    if isinstance(v, str):
        return where if bad(v) else None
    if isinstance(v, dict):
        for k, x in v.items():
            if bad(k):
                return key_where(k, where)
            got = _text_at(x, bad, key_where, k if where == "the body" else where + "." + k)
            if got is not None:
                return got
    elif isinstance(v, list):
        for i, x in enumerate(v):
            got = _text_at(x, bad, key_where, "%s[%d]" % (where, i))
            if got is not None:
                return got
    return None


def nul_at(v, where="the body"):
    """Where (a dotted path) a text of a parsed JSON value, keys included, holds U+0000; None if
    none does. No database text column takes it (PostgreSQL refuses it outright)."""
    return _text_at(v, lambda s: "\x00" in s, lambda k, w: "a key of %s" % w, where)


def _lone_surrogate(s):
    if s.isascii():
        return False
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def surrogate_at(v, where="the body"):
    """Where (a dotted path, as nul_at names it) a text of a parsed JSON value, keys included,
    holds a lone surrogate (json.loads reads "\\ud800" without its pair); None if none does."""
    return _text_at(v, _lone_surrogate, lambda k, w: "the key %s of %s" % (
        k.encode("ascii", "backslashreplace").decode(), w), where)


_JSON_BODY = web.RequestKey("json_body", object)   # the request's parsed JSON body, for its handler


def _body(req):
    return req[_JSON_BODY]


def _handler(gw, fn, need, station, raw=()):
    async def handle(request):
        denied = await authorise(gw, request, need)
        if denied is not None:
            return denied
        args = dict(request.match_info)
        if station and args["id"] not in gw.stations:
            return _error(404, "unknown station %r" % args["id"])
        if raw and request.content_type in raw:
            try:
                request[_JSON_BODY] = await read_body(request, gw.settings.body_timeout)
            except TimeoutError:
                return slow_body(gw.settings.body_timeout)
        elif request.method in ("POST", "PUT", "DELETE", "PATCH"):
            b = await _json_body(gw, request)
            if isinstance(b, web.StreamResponse):
                return b
            request[_JSON_BODY] = b
        try:
            return await fn(gw, request, **args)
        except ValueError as e:
            return _error(400, str(e))
    handle.role = need
    return handle

# --- the API calls -----------------------------------------------------------------
async def _list_stations(gw, req):
    return _json([gw.station_view(s) for s in sorted(gw.stations)])


async def _post_station(gw, req):
    return await _add_station(gw, _body(req))


def _int_param(q, name, default, lo, hi):
    v = q.get(name)
    if v is None:
        return default
    try:
        n = int(v)
    except ValueError:
        raise ValueError("%s must be an integer %d..%d" % (name, lo, hi))
    if not lo <= n <= hi:
        raise ValueError("%s must be an integer %d..%d" % (name, lo, hi))
    return n


async def _list_id_tags(gw, req):
    q = req.query
    status = q.get("status")
    if status is not None:
        check_status(status)
    search = q.get("q")
    if search is not None and len(search) > 64:
        raise ValueError("q must be at most 64 characters")
    return _json(gw.idtags.page(_int_param(q, "page", 1, 1, 1000000), _int_param(q, "limit", 100, 1, _TAG_PAGE),
                                search, status))


def _known_fields(b, allowed):
    extra = sorted(set(b) - set(allowed))
    if extra:
        raise ValueError("%s is not a field of an id tag (%s)" % (extra[0][:40], ", ".join(allowed)))


async def _add_id_tag(gw, req):
    """Add an id tag, or change every field of one (a field left out is cleared)."""
    b = _body(req)
    _known_fields(b, _TAG_COLUMNS)
    tag, status, parent, expiry = check_entry(b)
    await gw.add_id_tag(tag, status, parent, expiry)
    return _json(gw.idtags.view(tag), 201)


async def _get_id_tag(gw, req, tag):
    if tag not in gw.id_tags:
        return _error(404, "unknown id tag %r" % tag[:40])
    return _json(gw.idtags.view(tag))


async def _change_id_tag(gw, req, tag):
    """Change the fields given (block a tag: {"status": "Blocked"}); the others stay."""
    if tag not in gw.id_tags:
        return _error(404, "unknown id tag %r: add it with POST /api/id-tags" % tag[:40])
    b = _body(req)
    _known_fields(b, _TAG_COLUMNS[1:])
    cur = gw.idtags.view(tag)
    merged = {"id_tag": tag, "status": b.get("status", cur["status"]),
              "parent_id_tag": b["parent_id_tag"] if "parent_id_tag" in b else cur.get("parent_id_tag"),
              "expiry_date": b["expiry_date"] if "expiry_date" in b else cur.get("expiry_date")}
    tag, status, parent, expiry = check_entry(merged)
    await gw.add_id_tag(tag, status, parent, expiry)
    return _json(gw.idtags.view(tag))


async def _delete_id_tag(gw, req, tag):
    if not await gw.idtags.delete(tag):
        return _error(404, "unknown id tag %r" % tag[:40])
    return _json({"id_tag": tag, "removed": True})


async def _import_id_tags(gw, req):
    """Add or change the tags of a CSV (text/csv, or JSON {"csv": text}): all or nothing."""
    b = _body(req)
    if isinstance(b, dict):
        _known_fields(b, ("csv",))
        raw = b.get("csv")
        if not isinstance(raw, str):
            raise ValueError('send the CSV as the body (Content-Type: text/csv) or as {"csv": "<text>"}')
        raw = raw.encode("utf-8", "surrogatepass")
    else:
        raw = b
    entries = parse_csv(raw)
    version = await gw.idtags.put_many(entries)
    log.info("id tags: %d imported from CSV through the API", len(entries))
    return _json({"imported": len(entries), "version": version})


async def _export_id_tags(gw, req):
    return web.Response(text=to_csv(gw.idtags.rows()), content_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="id-tags.csv"',
                                 "Cache-Control": "no-store"})


async def _list_reservations(gw, req, id):
    return _json(await gw.reservations.list(id))


async def _reserve(gw, req, id):
    try:
        view, _ans = await gw.reservations.reserve(id, _body(req))
    except CommandError as e:
        return _json(dict({"error": e.message}, **e.extra), e.status)
    return _json(view, 201)


async def _cancel_reservation(gw, req, id, reservation):
    try:
        rid = int(reservation)
    except ValueError:
        raise ValueError("the reservation id must be an integer")
    _reservation_id(rid, "the reservation id")
    if await gw.reservations.get(id, rid) is None:
        return _error(404, "station %s has no reservation %d (GET /api/stations/%s/reservations)" % (id, rid, id))
    try:
        view, _ans = await gw.reservations.cancel(id, rid)
    except CommandError as e:
        return _json(dict({"error": e.message}, **e.extra), e.status)
    return _json(view)


async def _list_groups(gw, req):
    return _json(gw.loadbalance.views())


def _group(gw, group):
    if group not in gw.loadbalance.groups:
        return _error(404, "no load group %r (GET /api/load-groups)" % group[:40])
    return None


async def _add_group(gw, req):
    """Add a load group, or replace one (every field)."""
    g = loadbalance.check_group(gw, _body(req))
    return _json(await gw.loadbalance.put(g), 201)


async def _get_group(gw, req, group):
    return _group(gw, group) or _json(gw.loadbalance.view(group))


async def _change_group(gw, req, group):
    """Change the fields given of a load group (its limit: {"limit_a": 24}); the others stay."""
    missing = _group(gw, group)
    if missing is not None:
        return missing
    b = _body(req)
    extra = sorted(set(b) - set(loadbalance.GroupPatch.model_fields))
    if extra:
        raise ValueError("bad group: %s is not a field to change (%s)" % (
            extra[0][:40], ", ".join(loadbalance.GroupPatch.model_fields)))
    cfg = gw.loadbalance.groups[group].cfg
    merged = dict(cfg, **b)
    merged["name"] = group
    g = loadbalance.check_group(gw, merged)
    return _json(await gw.loadbalance.put(g))


async def _delete_group(gw, req, group):
    if not await gw.loadbalance.delete(group):
        return _error(404, "no load group %r (GET /api/load-groups)" % group[:40])
    return _json({"name": group, "removed": True})


async def _composites(gw, req, id):
    return _json(await profiles.composites(gw.store, id))


async def _local_list(gw, req, id):
    return _json(gw.localsync.view(id))


async def _set_local_list(gw, req, id):
    b = _body(req)
    _known_fields(b, ("sync",))
    if "sync" not in b or b["sync"] not in (True, False, None):
        raise ValueError("sync must be true, false or null (the gateway's --local-list-sync decides)")
    await gw.localsync.set_sync(id, b["sync"])
    return _json(gw.localsync.view(id))


async def _get_station(gw, req, id):
    return _json(gw.station_view(id))


async def _get_readings(gw, req, id):
    return await _readings(gw, id, req.query)


async def _transactions(gw, req, id):
    def read(db):
        rows = [dict(r) for r in db.execute("SELECT * FROM transactions WHERE station=? ORDER BY id DESC LIMIT 200",
                                            (id,))]
        linked = reservation_of(db, id, [r["id"] for r in rows])
        for r in rows:
            r["reservation_id"] = linked.get(r["id"])
        return rows
    return _json(await gw.store.run(read))


# the station page polls it: by the index status_history_station (migration 0006), not a scan
# of every station's history (tests/gateway/test_station_queries.py checks the plan)
STATUS_HISTORY_SQL = ("SELECT connector, status, error_code, info, ts FROM status_history WHERE station=? "
                      "ORDER BY id DESC LIMIT 200")


async def _status_history(gw, req, id):
    rows = await gw.store.run(lambda db: [dict(r) for r in db.execute(STATUS_HISTORY_SQL, (id,))])
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


def _check_password(pw):
    """A password given in clear follows the AuthorizationKey's rules (auth.py: OCPP 1.6 security
    whitepaper), so that a station can be given it either way."""
    why = pw is not None and auth.password_problem(pw)
    if why:
        raise ValueError(why + " (or leave it out to generate one)")


async def _set_password(gw, req, id):
    """A new OCPP password for a registered station (a replaced or re-provisioned board): the
    one given, or a generated one returned once. The open session, if any, carries on; the
    station's next connection needs the new password."""
    pw = _body(req).get("password")
    _check_password(pw)
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


# command -> (body model, example): the Core and issue 14 commands' (models.py), Smart Charging's (profiles.py)
COMMAND_BODIES = dict(models.COMMAND_BODIES, **profiles.COMMAND_BODIES)


def check_command_body(name, body):
    """ValueError naming each missing or wrong field of a command's body (the command's model
    in COMMAND_BODIES), with an example of a right one."""
    model, example = COMMAND_BODIES[name]
    try:
        model.model_validate(body)
    except ValidationError as e:
        fields = ", ".join(model.model_fields)
        bad = []
        for err in e.errors(include_url=False)[:5]:
            where = ".".join(str(x) for x in err["loc"]) or "the body"
            if err["type"] == "literal_error" and isinstance(err.get("input"), str):
                continue    # a text not among the allowed: the OCPP schema check words it with the choices
            if err["type"] == "missing":
                bad.append("%s is missing" % where)
            elif err["type"] == "extra_forbidden":
                bad.append("%s is not a field of %s (its fields: %s)" % (where[:40], name, fields))
            else:
                msg = err["msg"]
                bad.append("%s: %s" % (where, msg[:1].lower() + msg[1:]))
        if not bad:
            return
        raise ValueError("bad body for %s: %s; e.g. %s" % (name, "; ".join(bad),
                                                           json.dumps(example, separators=(", ", ": "))))
    try:
        profiles.check_body(name, body)
    except ValueError as e:
        raise ValueError("bad body for %s: %s" % (name, e))


def tag_refusal(gw, tag, status):
    """Why a remote start with `tag` would not charge (its status in the id-tag list is
    `status`), and what to do; the station would be answered DeAuthorized at its
    StartTransaction and stop at once."""
    add = 'POST /api/id-tags {"id_tag": "%s"%s} (role operate)' % (tag, "" if status == "Invalid" else
                                                                   ', "status": "Accepted"')
    if status == "Invalid" and tag not in gw.id_tags:
        what = "id tag %s is not in this gateway's id-tag list" % tag
    elif status == "Expired" and gw.id_tags.get(tag) == "Accepted":
        expiry = gw.idtags.view(tag).get("expiry_date")
        return ("id tag %s expired at %s, so the station would be told DeAuthorized when it starts and stop at "
                "once: give it a later expiry date with PUT /api/id-tags/%s {\"expiry_date\": ...} (or null for "
                "none; role operate), or start with a tag of the list (GET /api/id-tags)" % (tag, expiry, tag))
    else:
        what = "id tag %s is %s in this gateway's id-tag list" % (tag, status)
    return ("%s, so the station would be told DeAuthorized when it starts and stop at once: add it with %s, "
            "or start with a tag of the list (GET /api/id-tags)" % (what, add))


async def _command(gw, req, id):
    name = req.path.rstrip("/").rsplit("/", 1)[1]
    body = _body(req)
    check_command_body(name, body)
    if name == "change-configuration" and is_authorization_key(body.get("key")):
        # a new key is the station's password: re-keying a station is the admin's, as its
        # password is (PUT /api/stations/<id>/password)
        denied = await authorise(gw, req, "admin")
        if denied is not None:
            return denied
    if name == "remote-start" and id in gw.connected:
        st = await gw.id_tag_status(body["id_tag"])
        if st != "Accepted":
            return _json({"error": tag_refusal(gw, body["id_tag"], st), "id_tag_status": st}, 409)
    try:
        if name == "reserve-now":       # the gateway gives the reservation id and keeps the answer
            view, ans = await gw.reservations.reserve(id, body)
            return _json(ans, headers={"Location": "/api/stations/%s/reservations" % id,
                                       "X-Reservation-Id": str(view["id"])})
        if name == "cancel-reservation":
            _view, ans = await gw.reservations.cancel(id, body["reservation_id"])
            return _json(ans)
        out = await gw.command(id, name, body)
        if name == "send-local-list" and out.get("status") == "Accepted":
            await gw.localsync.replaced(id)
        if name == "get-composite-schedule":
            await profiles.keep_composite(gw.store, id, body, out)
        return _json(out)
    except CommandError as e:
        return _json(dict({"error": e.message}, **e.extra), e.status)


async def _configure_all(gw, req):
    """ChangeConfiguration to every registered station that is connected (the others are listed
    as not connected: the --clock-aligned-interval setting reaches them at their next boot)."""
    b = _body(req)
    try:
        return _json(await configure_stations(gw.connected, sorted(gw.stations), b.get("key"), b.get("value"),
                                              gw.command))
    except CommandError as e:
        return _json({"error": e.message}, e.status)


async def _fleet(gw, req):
    return _json(events.fleet_page(gw, req.query))


def _owner(gw, req):
    """Who holds a live stream (events.MAX_PER_OWNER): the token's id, for a bearer token and
    for a dashboard session opened with it alike; the address when the API asks for no token."""
    if gw.settings.api_auth == "none":
        return ("addr", req.remote or "")
    got = req.headers.get("Authorization")
    if got is not None:
        row = gw.token_row(got[7:].strip())
        return ("token", row["id"] if row else None)
    sess = gw.web_sessions.get(req.cookies.get(auth.SESSION_COOKIE))
    return ("token", sess[2] if sess else None)


async def _events(gw, req):
    async def allowed():
        return await authorise(gw, req, "read") is None
    return await events.stream(gw, req.app[events.HUB], req, allowed, _owner(gw, req))


async def _reading_fields(gw, req):
    """The reading vocabulary (firmware/fields.py): key, label, unit as stored, unit as shown."""
    return _json([dict(d, symbol=unit_symbol(d["unit"])) for d in fields.describe()])


async def _readings_csv(gw, req, id=None):
    return await export.export(gw, req, "readings", id)


async def _transactions_csv(gw, req, id=None):
    return await export.export(gw, req, "transactions", id)


# --- sessions (the dashboard's sign-in) --------------------------------------------
async def _whoami(gw, request):
    if gw.settings.api_auth == "none":
        return _json({"role": "admin", "auth": "none", "csrf": ""})
    got = request.headers.get("Authorization", "")
    if got.startswith("Bearer "):
        role = gw.token_role(got[7:].strip())
        if role is not None:
            return _json({"role": role, "auth": "token", "csrf": ""})
    sess = gw.web_sessions.get(request.cookies.get(auth.SESSION_COOKIE))
    if sess is None:
        return _denied(401, "not signed in: POST /api/session with {\"token\": ...}")
    return _json({"role": sess[0], "auth": "session", "csrf": sess[1]})


async def _sign_in(gw, request):
    peer = ("api", request.remote or "")
    wait = gw.throttle.blocked(peer)
    if wait:
        return _denied(429, "too many wrong API tokens from this address: try again in %d s" % (int(wait) + 1),
                       {"Retry-After": str(int(wait) + 1)})
    b = await _json_body(gw, request)
    if isinstance(b, web.StreamResponse):
        return b
    tok = b.get("token")
    row = gw.token_row(tok) if isinstance(tok, str) and 0 < len(tok) <= 200 else None
    if row is None:
        gw.throttle.failed(peer)
        return _denied(401, WRONG)
    sid, csrf = gw.web_sessions.open(row["role"], row["id"])
    log.info("dashboard signed in with token %s (%s, role %s) from %s", row["id"], row["name"], row["role"],
             request.remote)
    r = _json({"role": row["role"], "auth": "session", "csrf": csrf})
    r.set_cookie(auth.SESSION_COOKIE, sid, httponly=True, samesite="Strict", secure=gw.settings.scheme == "https",
                 path="/", max_age=gw.web_sessions.max_age)
    return r


async def _sign_out(gw, request):
    gw.web_sessions.close(request.cookies.get(auth.SESSION_COOKIE))
    r = _json({"signed_out": True})
    r.del_cookie(auth.SESSION_COOKIE, path="/")
    return r


# --- the route table ---------------------------------------------------------------
class Route(NamedTuple):
    """One API route: what it does (the handler), who may (the least role), what it takes and
    gives (models, for the OpenAPI document openapi.py makes from this table)."""
    method: str
    path: str
    fn: object
    role: str
    tag: str
    summary: str
    answer: object = None       # a models class, or [class] for a list
    status: int = 200
    body: object = None         # the JSON body's models class
    example: object = None      # an example body
    errors: tuple = ()          # statuses besides 401/403 (and 404 for /{id} paths)
    params: tuple = ()          # query parameters: (name, JSON schema, description)
    media: str = "application/json"     # the answer's content type (a models class only for JSON)
    raw_body: tuple = ()        # content types of a body taken as it is besides JSON (a release archive)


_PERIOD = (("from", {"type": "string", "format": "date-time"}, "From this time (ISO 8601, included)."),
           ("to", {"type": "string", "format": "date-time"}, "To this time (ISO 8601, excluded)."))
_FLAG = {"type": "string", "enum": ["true", "false", "1", "0"]}
_FLEET = (("q", {"type": "string", "maxLength": 64}, "A part of the station id (any case)."),
          ("status", {"type": "string", "enum": list(fields.STATUSES) + ["none"]}, "OCPP status (none: no "
                                                                                      "status yet)."),
          ("state", {"type": "string", "enum": ["accepted", "pending", "rejected"]}, "The operator's decision."),
          ("connected", _FLAG, "Connected now (true) or offline (false)."),
          ("faulted", _FLAG, "Faulted status or an error code other than NoError."),
          ("hot", _FLAG, "Enclosure temperature at %g \u00b0C or above, or error code HighTemperature." % events.HOT_C),
          ("page", {"type": "integer", "minimum": 1, "maximum": 1000000}, "Page number, from 1."),
          ("limit", {"type": "integer", "minimum": 1, "maximum": events.MAX_PAGE}, "Stations per page (default 50)."))


def _reservation_example():
    """A reservation body that is right when the route table is made: an hour ahead."""
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    return {"connector_id": 1, "id_tag": "TAG1", "expiry_date": until}


def api_table():
    """[Route]; the commands are commands.COMMANDS, one route each."""
    t = [Route("GET", "/api/stations", _list_stations, "read", "stations", "List the registered stations",
               [models.Station]),
         Route("POST", "/api/stations", _post_station, "admin", "stations",
               "Register a station (its password generated and returned once when not given)",
               models.NewStationAnswer, 201, models.NewStation, {"id": "CP-NEW"}, (400, 409, 415)),
         Route("POST", "/api/stations/-/configuration", _configure_all, "operate", "commands",
               "Send ChangeConfiguration to every connected station; each station's answer", models.Configured,
               body=models.COMMAND_BODIES["change-configuration"][0],
               example={"key": "ClockAlignedDataInterval", "value": "900"}, errors=(400, 415)),
         Route("GET", "/api/fleet", _fleet, "read", "stations",
               "A page of the stations, searched and filtered, with the fleet's summary counts",
               models.FleetPage, errors=(400,), params=_FLEET),
         Route("GET", "/api/events", _events, "read", "stations",
               "Live updates (Server-Sent Events): `hello` with the counts, then `update` events with the "
               "stations that changed and the counts; without Accept: text/event-stream, `hello` alone",
               models.LiveEvent, errors=(400, 503), media="text/event-stream",
               params=(("ids", {"type": "string"}, "Comma-separated station ids to follow (at most %d; "
                                                   "left out: every station; empty: none, the counts "
                                                   "alone)." % events.MAX_IDS),)),
         Route("GET", "/api/fields", _reading_fields, "read", "stations",
               "The reading vocabulary: key, label, unit (as stored) and symbol (as shown)", [models.ReadingField]),
         Route("GET", "/api/readings.csv", _readings_csv, "read", "export",
               "Every station's readings in a period as CSV (at most %d rows)" % export.MAX_ROWS,
               errors=(400,), media="text/csv", params=_PERIOD),
         Route("GET", "/api/transactions.csv", _transactions_csv, "read", "export",
               "Every station's transactions started in a period as CSV (at most %d rows)" % export.MAX_ROWS,
               errors=(400,), media="text/csv", params=_PERIOD),
         Route("GET", "/api/id-tags", _list_id_tags, "read", "id tags", "A page of the id tags, by tag",
               models.IdTagPage, errors=(400,),
               params=(("page", {"type": "integer", "minimum": 1, "maximum": 1000000}, "Page number, from 1."),
                       ("limit", {"type": "integer", "minimum": 1, "maximum": _TAG_PAGE},
                        "Tags per page (default 100)."),
                       ("q", {"type": "string", "maxLength": 64}, "A part of the tag (any case)."),
                       ("status", {"type": "string", "enum": list(_TAG_STATUSES)}, "Only tags of this status."))),
         Route("POST", "/api/id-tags", _add_id_tag, "operate", "id tags",
               "Add an id tag, or change one (every field: one left out is cleared)",
               models.IdTagView, 201, models.IdTag, {"id_tag": "TAG1", "status": "Accepted"}, (400, 415)),
         Route("GET", "/api/id-tags.csv", _export_id_tags, "read", "id tags",
               "Every id tag as CSV (id_tag,status,parent_id_tag,expiry_date: what the import takes)",
               media="text/csv"),
         Route("POST", "/api/id-tags/import", _import_id_tags, "operate", "id tags",
               "Add or change the id tags of a CSV: one wrong line (each is named) and nothing is imported",
               models.IdTagsImported, body=models.IdTagsImport,
               example={"csv": "id_tag,status,parent_id_tag,expiry_date\r\nTAG1,Accepted,,\r\n"},
               errors=(400, 413, 415), raw_body=("text/csv",)),
         Route("GET", "/api/id-tags/{tag}", _get_id_tag, "read", "id tags", "One id tag", models.IdTagView,
               errors=(404,)),
         Route("PUT", "/api/id-tags/{tag}", _change_id_tag, "operate", "id tags",
               "Change the fields given of an id tag (block it: {\"status\": \"Blocked\"})", models.IdTagView,
               body=models.IdTagPatch, example={"parent_id_tag": "FLEET-A"}, errors=(400, 404, 415)),
         Route("DELETE", "/api/id-tags/{tag}", _delete_id_tag, "operate", "id tags", "Remove an id tag",
               models.IdTagRemoved, errors=(404,)),
         Route("GET", "/api/load-groups", _list_groups, "read", "smart charging",
               "The load groups: limit, eco state, each member's allocation, what it holds and its current",
               [loadbalance.GroupView]),
         Route("POST", "/api/load-groups", _add_group, "admin", "smart charging",
               "Add a load group, or replace one (every field); the gateway plans it at once",
               loadbalance.GroupView, 201, loadbalance.GroupBody, loadbalance.EXAMPLE, (400, 415)),
         Route("GET", "/api/load-groups/{group}", _get_group, "read", "smart charging", "One load group",
               loadbalance.GroupView, errors=(404,)),
         Route("PUT", "/api/load-groups/{group}", _change_group, "admin", "smart charging",
               "Change the fields given of a load group (its limit, members, eco); re-planned at once",
               loadbalance.GroupView, body=loadbalance.GroupPatch, example={"limit_a": 24}, errors=(400, 404, 415)),
         Route("DELETE", "/api/load-groups/{group}", _delete_group, "admin", "smart charging",
               "Remove a load group (the balancer's profiles cleared on its connected members)",
               loadbalance.GroupRemoved, errors=(404,)),
         Route("GET", "/api/stations/{id}", _get_station, "read", "stations", "One station", models.Station),
         Route("DELETE", "/api/stations/{id}", _delete_station, "admin", "stations",
               "Take a station out of service: closed, forgotten, its readings kept", models.Removed),
         Route("GET", "/api/stations/{id}/readings", _get_readings, "read", "stations",
               "The station's readings, oldest first (query: limit 1..10000, since an ISO 8601 time)",
               [models.Reading], errors=(400,)),
         Route("GET", "/api/stations/{id}/readings.csv", _readings_csv, "read", "export",
               "The station's readings in a period as CSV (at most %d rows)" % export.MAX_ROWS,
               errors=(400,), media="text/csv", params=_PERIOD),
         Route("GET", "/api/stations/{id}/transactions.csv", _transactions_csv, "read", "export",
               "The station's transactions started in a period as CSV (at most %d rows)" % export.MAX_ROWS,
               errors=(400,), media="text/csv", params=_PERIOD),
         Route("GET", "/api/stations/{id}/transactions", _transactions, "read", "stations",
               "The station's transactions, newest first (200 at most)", [models.Transaction]),
         Route("GET", "/api/stations/{id}/status-history", _status_history, "read", "stations",
               "The station's status changes and events, newest first (200 at most)", [models.StatusEvent]),
         Route("GET", "/api/stations/{id}/reservations", _list_reservations, "read", "reservations",
               "The station's reservations, newest first (%d at most)" % 200, [models.Reservation]),
         Route("POST", "/api/stations/{id}/reservations", _reserve, "operate", "reservations",
               "Reserve a connector (ReserveNow; the gateway gives the id): the reservation with the station's "
               "answer", models.Reservation, 201, models.NewReservation,
               _reservation_example(), (400, 409, 415, 502, 504)),
         Route("POST", "/api/stations/{id}/reservations/{reservation}/cancel", _cancel_reservation, "operate",
               "reservations", "Cancel a reservation (CancelReservation): the reservation with the station's answer",
               models.Reservation, errors=(400, 409, 415, 502, 504)),
         Route("GET", "/api/stations/{id}/composite-schedules", _composites, "read", "smart charging",
               "The last composite schedule the station reported for each connector (get-composite-schedule)",
               [profiles.CompositeSchedule]),
         Route("GET", "/api/stations/{id}/local-list", _local_list, "read", "local lists",
               "The station's local list: synced or not, its version, the last sync's outcome", models.LocalList),
         Route("PUT", "/api/stations/{id}/local-list", _set_local_list, "operate", "local lists",
               "Keep the station's local list in step with the id tags (true), not (false), or as the "
               "gateway's --local-list-sync says (null)", models.LocalList, body=models.LocalListSwitch,
               example={"sync": True}, errors=(400, 415)),
         Route("POST", "/api/stations/{id}/accept", _accept, "operate", "stations",
               "Accept a station (its next BootNotification is Accepted)", models.Station),
         Route("POST", "/api/stations/{id}/reject", _reject, "operate", "stations",
               "Reject a station (its next BootNotification is Rejected)", models.Station),
         Route("PUT", "/api/stations/{id}/password", _set_password, "admin", "stations",
               "A new OCPP password (given, or generated and returned once)", models.NewStationAnswer,
               body=models.NewPassword, example={}, errors=(400, 415)),
         Route("PUT", "/api/stations/{id}/thingspeak", _set_thingspeak, "admin", "stations",
               "Set, change or clear (both null) the station's ThingSpeak channel and keys", models.Station,
               body=models.ThingSpeakChannel, example={"thingspeak_channel": 7, "thingspeak_key": "WRITEKEY2"},
               errors=(400, 415))]
    for name in sorted(COMMANDS):
        body, example = COMMAND_BODIES[name]
        if name == "reserve-now":
            example = _reservation_example()
        t.append(Route("POST", "/api/stations/{id}/" + name, _command, "operate", "commands",
                       "Send %s to the station and return its answer" % COMMANDS[name][0].__name__,
                       "ocpp:" + COMMANDS[name][0].__name__, body=body, example=example,
                       errors=(400, 409, 415, 502, 504)))
    return t


SESSION_ROUTES = [
    Route("GET", "/api/session", None, "", "dashboard", "The dashboard session this request carries (401: none)",
          models.Session),
    Route("POST", "/api/session", None, "", "dashboard",
          "Sign in with an API token: an HttpOnly session cookie and the CSRF token for writes", models.Session,
          body=models.SignIn, example={"token": "pct_..."}, errors=(415, 429)),
    Route("DELETE", "/api/session", None, "", "dashboard", "Sign out", models.SignedOut),
]


def add_routes(app, gw):
    r = app.router
    for rt in api_table():
        r.add_route(rt.method, rt.path, _handler(gw, rt.fn, rt.role, "{id}" in rt.path, rt.raw_body))
    for method, fn in (("GET", _whoami), ("POST", _sign_in), ("DELETE", _sign_out)):
        r.add_route(method, "/api/session", _bound(gw, fn))


def _bound(gw, fn):
    async def handle(request):
        return await fn(gw, request)
    return handle

async def _add_station(gw, b):
    sid = b.get("id")
    why = fields.station_id_error(sid)
    if why:
        raise ValueError(why)
    pw = b.get("password")
    _check_password(pw)
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


def _text(status, text):
    return web.Response(status=status, text=text)


async def ingest(gw, req, body):
    """ThingSpeak-style write: api_key (the station's write key) + field1..field8 (+created_at)."""
    params = dict(req.query)
    ctype = req.headers.get("content-type", "")
    if body:
        if "json" in ctype:
            try:
                b = json.loads(body)
            except (ValueError, RecursionError):
                return _text(400, "the body is not JSON (or is nested too deeply)\n")
            if not isinstance(b, dict):
                return _text(400, "the JSON body must be an object\n")
            params.update({k: v for k, v in b.items()})
        else:
            try:
                params.update(dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                             strict_parsing=True)))
            except (UnicodeDecodeError, ValueError):
                return _text(400, "the body is not a form (api_key=...&field1=...)\n")
    where = nul_at(params)
    if where is not None:
        return _text(400, "%s holds a NUL character (U+0000): text may not contain it\n" % where)
    if gw.throttle.blocked(("ingest", req.remote or "")):
        return _text(429, "too many unknown api_keys from this address: try again later\n")
    key = params.get("api_key") or params.get("key") or req.headers.get("x-thingspeakapikey")
    if not key:
        return _text(400, "api_key missing: send the station's ThingSpeak write key\n")
    key = str(key).encode("utf-8", "surrogatepass")    # compare_digest takes str only in ASCII
    sid = gw.write_keys.station(key)     # by an index, not a walk over every station (writekeys.py)
    if sid is None:
        gw.throttle.failed(("ingest", req.remote or ""))
        return _text(401, "unknown api_key: register the station with its thingspeak_key\n")
    try:
        row = reading_from_fields(params)
    except ValueError as e:
        return _text(400, "%s\n" % e)
    ids = await gw.store_readings(sid, [row], "http")
    gw.metrics.ingest["http"] += 1
    return _text(200, str(ids[0]))


