"""OCPP 1.6J central system: one ChargePoint subclass, handlers declared with @on.

Handlers call the injected services (`self.gw`: store, uplinks, policy) and do
no I/O of their own. Routing of incoming frames is done here rather than by
ocpp's ChargePoint.route_message: same semantics (and ocpp's schemas), but the
schema check runs inline instead of in a thread pool, the handler signature is
not re-inspected per message, and malformed frames get a CALLERROR instead of
being dropped silently.

Frames are read and answers written by orjson where it gives what json gives (_fast_call,
_dumps_result; json decides every other case). Issue 17: with the cheaper schema checks of
validate.py it took a MeterValues frame through route_message from 26 to 16 us in the process
(benchmarks/session_path.py; orjson alone 26 -> 21 us), and the paced CPU per message end to end
by about a tenth (docs/performance.md, "CPU per message (issue 17)").
"""
import asyncio
import json
import logging
import re
import sqlite3
import time
import uuid
from datetime import datetime, timezone

import orjson

from ocpp.exceptions import (FormationViolationError, InternalError, NotImplementedError as OcppNotImplemented,
                             NotSupportedError, OCPPError, PropertyConstraintViolationError,
                             ProtocolError, SecurityError, TypeConstraintViolationError)
from ocpp.messages import Call, CallError, CallResult
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import (Action, AuthorizationStatus, DataTransferStatus, RegistrationStatus)

from picocharge.firmware import fields

from . import validate
from .logonce import LogOnce
from .readings import METER_RANGE, RANGES, in_window
from .store import Store, StoreError
from .store_schema import pow2_chunks

log = logging.getLogger(__name__)
_ONCE = LogOnce(log)
_OCPP_LOG = logging.getLogger("ocpp")


class _LateAnswerId(logging.Filter):
    """ocpp logs an answer that came after its call timed out at ERROR, payload and all (a
    GetConfiguration answer: configuration values). Below debug only its message id is logged."""

    def filter(self, record):
        if (record.msg == "Ignoring response with unknown unique id: %s" and isinstance(record.args, tuple)
                and len(record.args) == 1 and not _OCPP_LOG.isEnabledFor(logging.INFO)):
            record.msg = "Ignoring response with unknown unique id: %s (a late answer; its payload is only " \
                         "logged at --log-level debug)"
            record.args = (getattr(record.args[0], "unique_id", "?"),)
        return True


_LATE_ANSWER_ID = _LateAnswerId()


# one DEBUG line per OCPP frame, in ("recv") and out ("send"), whole, with the station id
FRAMES_LOG = logging.getLogger("picocharge.gateway.frames")
MAX_LOGGED_FRAME = 65536        # the gateway's default max frame size: a longer one is cut there
# configuration keys whose value is a secret: never logged (OCPP 1.6 security whitepaper)
SECRET_KEYS = frozenset(("AuthorizationKey",))


def _mask(node):
    if isinstance(node, dict):
        if node.get("key") in SECRET_KEYS and "value" in node:
            node["value"] = "***"
        for v in node.values():
            _mask(v)
    elif isinstance(node, list):
        for v in node:
            _mask(v)


def frame_for_log(text):
    """A frame as logged: whole up to MAX_LOGGED_FRAME characters, the value of a secret
    configuration key (ChangeConfiguration, a GetConfiguration answer) as ***."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    if any(k in text for k in SECRET_KEYS):
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError):
            return "(%d characters naming a secret configuration key, not JSON: not shown)" % len(text)
        _mask(msg)
        text = json.dumps(msg, separators=(",", ":"), ensure_ascii=False)
    if len(text) > MAX_LOGGED_FRAME:
        return "%s... (%d characters)" % (text[:MAX_LOGGED_FRAME], len(text))
    return text


def quiet_ocpp_frames(debug):
    """The `ocpp` package logs every frame it sends (our calls: id tags, configuration values)
    at INFO. Held at WARNING unless the gateway logs at DEBUG, where frames are what one looks
    for (the gateway's own line per frame, picocharge.gateway.frames, has them whole with the
    station id); below debug, ocpp's ERROR line for a late answer shows only its id."""
    _OCPP_LOG.setLevel(logging.NOTSET if debug else logging.WARNING)
    if _LATE_ANSWER_ID not in _OCPP_LOG.filters:
        _OCPP_LOG.addFilter(_LATE_ANSWER_ID)


MAX_ACTION_LEN = 64
# the details of the CALLERROR a pending call of the gateway gets when the station's answer to it
# was refused at the door (commands.py words the API's answer from it)
REFUSED_ANSWER = {"refusedBy": "central system"}
# CALLRESULTs/CALLERRORs kept for the gateway's own pending calls; an answer to no pending
# call (unsolicited, or late: its call timed out) is dropped and counted, never queued
MAX_QUEUED_ANSWERS = 4
# connector ids and transaction ids are stored: SQLite's INTEGER is 64-bit
_INT64 = (-2 ** 63, 2 ** 63 - 1)


_now = [None, None]


def utc_now():
    """Now as 'YYYY-MM-DDTHH:MM:SSZ' (formatted once per second)."""
    s = int(time.time())
    if s != _now[0]:
        _now[1] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s))
        _now[0] = s
    return _now[1]


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        return None


# the rows of the reading table (fields.READINGS) a sampledValue goes to: (measurand, location) ->
# that row; measurand -> its row without a location (taken at any other location), else its first
_AT = {}
_ANY = {}
for _r in fields.READINGS:
    _m = _r[fields.MEASURAND]
    if _m:
        if _r[fields.LOCATION]:
            _AT.setdefault((_m, _r[fields.LOCATION]), _r)
        if _m not in _ANY or _r[fields.LOCATION] is None:
            _ANY[_m] = _r
del _r, _m


def reading_row(measurand, location=None):
    """The row of fields.READINGS a sampledValue of `measurand` at `location` is stored under
    (Temperature at Body: the enclosure; anywhere else: the board), None for no row."""
    return _AT.get((measurand, location)) or _ANY.get(measurand)


_DEFAULT_MEASURAND = "Energy.Active.Import.Register"    # OCPP 1.6: a sampledValue without one
# (unit sent, the table's OCPP unit) -> value in the table's unit; any other unit is taken as it is
_CONVERT = {
    ("kWh", "Wh"): lambda v: v * 1000.0,
    ("kW", "W"): lambda v: v * 1000.0,
    ("Fahrenheit", "Celsius"): lambda v: (v - 32.0) * 5.0 / 9.0,
    ("K", "Celsius"): lambda v: v - 273.15,
}
# the members of DataTransfer PicoCharge/Climate: member -> reading key
_CLIMATE = {r[fields.CLIMATE]: r[fields.KEY] for r in fields.READINGS if r[fields.CLIMATE]}
_CLIMATE_RULE = "data must be a JSON object with %s numbers, e.g. {%s}" % (
    " and/or ".join(_CLIMATE), ",".join('"%s":%g' % (m, ex) for m, ex in zip(_CLIMATE, (45, 31.5))))
_HUMIDITY = fields.READING_KEYS[fields.HUMIDITY]


def _in_ranges(r, where):
    """r if every reading value is inside its physical range (readings.RANGES), else the OCPP
    error (NaN and the infinities fail the comparison too)."""
    for k, v in r.items():
        lo, hi = RANGES[k]
        if not lo <= v <= hi:
            raise PropertyConstraintViolationError(description="%s: %s %r is not a finite number within "
                                                   "%g..%g" % (where, k, v, lo, hi))
    return r


def sampled_to_reading(sampled_values):
    """Reading keys from a MeterValue's sampledValue list, by the reading table (fields.READINGS;
    see docs/gateway.md for the map). A value of a measurand stored here must be a number in its
    range: else the OCPP error (TypeConstraintViolation, PropertyConstraintViolation) refuses the
    whole message."""
    r = {}
    for sv in sampled_values:
        m = sv.get("measurand") or _DEFAULT_MEASURAND
        row = reading_row(m, sv.get("location"))
        if row is None:
            continue
        v = _num(sv.get("value"))
        if v is None:
            raise TypeConstraintViolationError(description="sampledValue %s: value %r is not a number"
                                               % (m, str(sv.get("value"))[:40]))
        conv = _CONVERT.get((sv.get("unit"), row[fields.OCPP_UNIT]))
        r[row[fields.KEY]] = conv(v) if conv else v
    return _in_ranges(r, "sampledValue") if r else r


def meter_values_to_rows(meter_value, status):
    rows = []
    for mv in meter_value or ():
        r = sampled_to_reading(mv.get("sampled_value") or mv.get("sampledValue") or ())
        if not r:
            continue
        r["ts"] = station_ts(mv.get("timestamp"), "meterValue timestamp")
        r["status"] = status
        rows.append(r)
    return rows


_TS_RE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d{1,9})?Z\Z", re.ASCII)
_ts_cache = {}


def _norm_ts(ts):
    """ISO 8601 UTC 'YYYY-MM-DDTHH:MM:SSZ' (ThingSpeak's created_at), now when unreadable."""
    hit = _read_ts(ts)
    return utc_now() if hit is None else hit


def _read_ts(ts):
    """ISO 8601 UTC 'YYYY-MM-DDTHH:MM:SSZ', None when unreadable.

    A station's usual 'YYYY-MM-DDTHH:MM:SS[.fff]Z' normalises to its first 19 characters
    + 'Z' whenever those parse; that verdict is cached per second of time, so thousands
    of stations reporting in the same second parse the date once."""
    if isinstance(ts, str):
        m = _TS_RE.match(ts)
        if m is not None:
            key = m.group(1)
            hit = _ts_cache.get(key)
            if hit is None:
                hit = _parse_ts(key + "Z")
                if hit is None:
                    return None
                if len(_ts_cache) >= 4096:
                    _ts_cache.clear()
                _ts_cache[key] = hit
            return hit
        return _parse_ts(ts)
    return None


def station_ts(ts, name="timestamp"):
    """A station's timestamp normalised, inside the window of readings.in_window; else the
    OCPP error (TypeConstraintViolation: not a time; PropertyConstraintViolation: out of the
    window)."""
    hit = _read_ts(ts)
    if hit is None:
        raise TypeConstraintViolationError(description="%s %r is not an ISO 8601 date-time (e.g. "
                                           "2026-01-31T12:00:00Z)" % (name, str(ts)[:40]))
    try:
        return in_window(hit, name)
    except ValueError as e:
        raise PropertyConstraintViolationError(description=str(e))


def _int_in(name, v, lo, hi):
    if not lo <= v <= hi:
        raise PropertyConstraintViolationError(description="%s %r is out of range %d..%d" % (name, v, lo, hi))
    return v


def _parse_ts(ts):
    try:
        d = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        if d.tzinfo is None:
            d = d.replace(tzinfo=timezone.utc)
        return d.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError):     # OverflowError: "0001-01-01T00:00:00+01:00"
        return None


def _snake_info(info):
    """An idTagInfo ({status, parentIdTag?, expiryDate?}) as the ocpp dataclasses take it."""
    out = {"status": info["status"]}
    if "parentIdTag" in info:
        out["parent_id_tag"] = info["parentIdTag"]
    if "expiryDate" in info:
        out["expiry_date"] = info["expiryDate"]
    return out


# what a station may send before the operator accepted it (OCPP 1.6: a Pending station boots
# again at the interval it was given; Heartbeat keeps its link up meanwhile)
_BEFORE_ACCEPTED = frozenset(("BootNotification", "Heartbeat"))


def _fast_call(raw):
    """(id, action, payload) of a frame that orjson reads as a well-formed CALL
    ([2, "id", "Action", {...}]), else None: json.loads then reads the frame and decides what
    it is, as it did for every frame before orjson. orjson refuses some text json takes (a lone
    surrogate, which json's path then refuses too: _lone_surrogate; NaN, 1E400, nesting past
    1,024) and reads an integer past 64 bits as a float: neither can make a CALL pass the
    schema check that json's reading would fail (the request schemas of the 1.6 actions a
    station sends have no "number" field, and every object in them is closed), and a CALL that
    fails the check is read again by json (_handle)."""
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if msg.__class__ is list and len(msg) == 4 and msg[0] == 2:
        uid, action, payload = msg[1], msg[2], msg[3]
        if uid.__class__ is str and action.__class__ is str and payload.__class__ is dict:
            return uid, action, payload
    return None


def _dumps_result(uid, out):
    """[3, uid, out] as json.dumps(separators=(",", ":")) writes it, by orjson when that gives
    the same text: ASCII only (json escapes the rest as \\uXXXX) and nothing orjson refuses
    (an integer past 64 bits, a str subclass that is no Enum)."""
    try:
        b = orjson.dumps([3, uid, out])
    except TypeError:       # orjson.JSONEncodeError
        b = None
    if b is not None and b.isascii():
        return b.decode()
    return json.dumps([3, uid, out], separators=(",", ":"))


# a \\uD800-\\uDFFF escape: json.loads makes a lone one into a str that no UTF-8 encoder (SQLite,
# MQTT, the dashboard) takes; orjson refuses such frames, so only json's path looks for them
_SURROGATE_ESC = re.compile(r"\\u[dD][89a-fA-F]")
# the parts of a CALL, a CALLRESULT and a CALLERROR, by position
_FRAME_PARTS = {2: (None, "message id", "action", "payload"), 3: (None, "message id", "payload"),
                4: (None, "message id", "error code", "error description", "error details")}


def _ascii(s):
    return s.encode("ascii", "backslashreplace").decode("ascii")


def _lone_surrogate(msg):
    """Where the first string (a value or an object's key) of a parsed frame holds a lone
    surrogate ("message id", "payload.meterValue[0].timestamp", ...), else None. A pair of
    surrogate escapes is one character above U+FFFF, read as such by json: not refused.
    A loop, not recursion: json.loads nests as deep as Python's stack allows."""
    todo = [(msg, None)]
    while todo:
        node, where = todo.pop()
        if node.__class__ is str:
            if not node.isascii():
                try:
                    node.encode("utf-8")
                except UnicodeEncodeError:
                    return where or "frame"
        elif node.__class__ is dict:
            for k, v in reversed(node.items()):     # popped in the frame's order
                name = "%s.%s" % (where or "object", _ascii(k))
                todo.append((v, name))
                todo.append((k, name + " (the key)"))
        elif node.__class__ is list:
            kind = node[0] if where is None and node and node[0].__class__ is int else None
            parts = _FRAME_PARTS.get(kind, ())
            for i in range(len(node) - 1, -1, -1):
                if where is None:
                    name = (parts[i] if 0 < i < len(parts) else None) or "frame[%d]" % i
                else:
                    name = "%s[%d]" % (where, i)
                todo.append((node[i], name))
    return None


class StationDisconnected(ConnectionError):
    """The connection of a station ended while (sent=True) or before (sent=False) the gateway
    waited for its answer to a call."""

    def __init__(self, message, sent):
        super().__init__(message)
        self.sent = sent


LAST_SEEN_WRITE_S = 30.0


_LAST_SEEN_SQL = "UPDATE stations SET last_seen=? WHERE id=? AND (last_seen IS NULL OR last_seen < ?)"


def _write_last_seen(db, sid, ts):
    db.execute(_LAST_SEEN_SQL, (ts, sid, ts))


# write_last_seen_many's statement for k stations: one UPDATE ... FROM (VALUES ...) (SQLite 3.33 and
# PostgreSQL both name a VALUES list's columns column1, column2); an older SQLite has no UPDATE
# ... FROM (Ubuntu 20.04's 3.31): there, the executemany of before
_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33)
_LAST_SEEN_MANY = {}
LAST_SEEN_CHUNK = 64


def _last_seen_many_sql(k):
    sql = _LAST_SEEN_MANY.get(k)
    if sql is None:
        sql = _LAST_SEEN_MANY[k] = (
            "UPDATE stations SET last_seen=v.column2 FROM (VALUES %s) AS v WHERE stations.id=v.column1 "
            "AND (stations.last_seen IS NULL OR stations.last_seen < v.column2)" % ", ".join(["(?, ?)"] * k))
    return sql


def write_last_seen_many(db, items):
    """[(station, last_seen)] (Gateway.flush_seen: the periodic writes of every station, grouped,
    instead of a store call each), in a few statements: chunks of a power of two stations, at most
    LAST_SEEN_CHUNK, each one UPDATE. An executemany steps once per station, and sqlite3 lets go
    of the GIL at every step: beside the busy event loop each step waits for it (~333 a second at
    10,000 stations; store_sqlite.insert_run says what that costs)."""
    if not _UPDATE_FROM and isinstance(db, sqlite3.Connection):
        db.executemany(_LAST_SEEN_SQL, [(ts, sid, ts) for sid, ts in items])
        return
    items = list(items)
    for start, k in pow2_chunks(len(items), LAST_SEEN_CHUNK):
        db.execute(_last_seen_many_sql(k), [v for sid, ts in items[start:start + k] for v in (sid, ts)])


def _ignore_store_error(fut):
    """last_seen not written (a full disk): the next frame's write tries again; store.error says why."""
    if not fut.cancelled():
        fut.exception()


class StationSession(ChargePoint):
    """One connected charge point."""

    _handlers = None    # action -> handler function, found once per class

    def __init__(self, station_id, connection, gw, response_timeout=30):
        cls = type(self)
        if cls.__dict__.get("_handlers") is None:   # per class: a subclass may add handlers
            super().__init__(station_id, connection, response_timeout=response_timeout)
            cls._handlers = {action: h["_on_action"].__func__ for action, h in self.route_map.items()
                             if "_on_action" in h}
        else:
            # ChargePoint.__init__ without its create_route_map(self), which walks every
            # attribute of the instance: a tenth of the CPU of a reconnect storm
            self.id = station_id
            self._response_timeout = response_timeout
            self._connection = connection
            self._call_lock = asyncio.Lock()
            self._response_queue = asyncio.Queue()
            self._unique_id_generator = uuid.uuid4
            self.logger = _OCPP_LOG
        self.gw = gw
        self.status = None
        self.boot_status = None
        self._pending = set()       # ids of the gateway's calls waiting for their answer
        self._gone = None           # a future set when the connection ends (made by the first call)
        self._first = True          # no message answered yet on this connection
        self.dropped_answers = 0    # CALLRESULTs/CALLERRORs that answered no pending call

    @property
    def route_map(self):
        # ocpp's ChargePoint API: {action: {"_on_action": bound handler}}
        rm = self.__dict__.get("route_map")
        if rm is None:
            rm = {a: {"_on_action": fn.__get__(self)} for a, fn in type(self)._handlers.items()}
        return rm

    @route_map.setter
    def route_map(self, value):
        self.__dict__["route_map"] = value

    # --- frame routing -------------------------------------------------------
    async def start(self):
        debug = FRAMES_LOG.isEnabledFor(logging.DEBUG)
        try:
            async for raw in self._connection:
                self.gw.metrics.messages += 1
                self._seen()
                if debug:
                    FRAMES_LOG.debug("station=%s recv %s", self.id, frame_for_log(raw))
                await self.route_message(raw)
        finally:
            # the gateway's calls still waiting for an answer learn it now, not at their timeout
            if self._gone is None:
                self._gone = asyncio.get_running_loop().create_future()
            if not self._gone.done():
                self._gone.set_result(None)
            self._save_seen()

    # last_seen is the time of the station's last frame: kept in memory per frame (the API and
    # the dashboard read it there), written to the database at most every LAST_SEEN_WRITE_S per
    # station and when its connection ends (`picocharge gateway stations` reads it there)
    _seen_saved = 0.0
    _seen_unsaved = False

    def _seen(self):
        st = self.gw.stations.get(self.id)
        if st is None:
            return
        st["last_seen"] = utc_now()
        self._seen_unsaved = True
        if time.monotonic() - self._seen_saved >= LAST_SEEN_WRITE_S:
            # handed to the gateway, which writes every station's due in one statement a second
            # (a store call per station cost ~10 % of the store calls at 10,000 paced stations)
            self._seen_saved = time.monotonic()
            self._seen_unsaved = False
            self.gw.seen_due[self.id] = st["last_seen"]

    def _save_seen(self):
        st = self.gw.stations.get(self.id)
        if st is None or not self._seen_unsaved or not st.get("last_seen"):
            return
        self._seen_saved = time.monotonic()
        self._seen_unsaved = False
        fut = self.gw.store.run(_write_last_seen, self.id, st["last_seen"])
        fut.add_done_callback(_ignore_store_error)

    async def _send(self, message):
        """Every frame the gateway sends: its answers and (through ocpp's ChargePoint.call) its
        calls. ocpp's own INFO line for a call is replaced by ours, with the secrets masked."""
        if FRAMES_LOG.isEnabledFor(logging.DEBUG):
            FRAMES_LOG.debug("station=%s send %s", self.id, frame_for_log(message))
        await self._connection.send(message)

    async def route_message(self, raw):
        call = _fast_call(raw)
        if call is not None:
            uid, action, payload = call
            if action not in _BEFORE_ACCEPTED and self.gw.stations.get(self.id, {}).get("state") != "accepted":
                return await self._refuse_unaccepted(uid, action)
            return await self._handle(uid, action, payload, raw)
        if raw.__class__ is not str:
            # a binary frame: UTF-8 JSON as a text frame carries it (RFC 8259), or nothing. json.loads
            # would also read UTF-16 and UTF-32 bytes, whose "\\ud800" escapes the check below misses
            try:
                raw = bytes(raw).decode("utf-8")
            except UnicodeDecodeError as e:
                return await self._error("-1", FormationViolationError(
                    description="frame is not UTF-8 text (byte %d of a binary frame): send OCPP-J frames as "
                                "UTF-8 JSON in text frames" % e.start))
        try:
            msg = json.loads(raw)
        except (ValueError, RecursionError):    # RecursionError: nested deeper than Python's stack
            return await self._error("-1", FormationViolationError(
                description="frame is not valid JSON"))
        if _SURROGATE_ESC.search(raw) is not None:
            where = _lone_surrogate(msg)
            if where is not None:
                return await self._refuse_surrogate(msg, where)
        if not isinstance(msg, list) or len(msg) < 3 or not isinstance(msg[1], str):
            uid = msg[1] if isinstance(msg, list) and len(msg) > 1 and isinstance(msg[1], str) else "-1"
            return await self._error(uid, FormationViolationError(
                description="an OCPP-J frame is [2, id, action, payload], [3, id, payload] or "
                            "[4, id, code, description, details]"))
        kind, uid = msg[0], msg[1]
        if kind == 2:
            if len(msg) != 4 or not isinstance(msg[2], str) or not isinstance(msg[3], dict):
                return await self._error(uid, FormationViolationError(
                    description="a CALL is [2, id, action, {payload}]"))
            if msg[2] not in _BEFORE_ACCEPTED and self.gw.stations.get(self.id, {}).get("state") != "accepted":
                return await self._refuse_unaccepted(uid, msg[2])
            return await self._handle(uid, msg[2], msg[3])
        if kind == 3:
            self._answer(CallResult(uid, msg[2]))
        elif kind == 4 and len(msg) >= 4:
            self._answer(CallError(uid, msg[2], msg[3], msg[4] if len(msg) > 4 else {}))
        else:
            return await self._error(uid, PropertyConstraintViolationError(
                description="unknown message type id %r" % (kind,)))

    async def _refuse_surrogate(self, msg, where):
        """A frame with a lone surrogate in one of its strings: a CALLERROR, nothing of it used."""
        uid = msg[1] if isinstance(msg, list) and len(msg) > 1 and isinstance(msg[1], str) else "-1"
        if where == "message id":
            uid = "-1"      # not a string that UTF-8 can carry: the station could not match it
        _ONCE.warning("station=%s msg=%s refused: a lone surrogate in %s", self.id, _ascii(uid), where,
                      key=("surrogate", self.id))
        what = ("the string at %s holds a lone UTF-16 surrogate (an escape \\ud800-\\udfff without its pair), "
                "which is no Unicode character") % where
        if isinstance(msg, list) and msg[0] in (3, 4) and uid in self._pending:
            # the answer to one of the gateway's calls: that call fails now, saying why, rather than
            # wait for the response timeout as if the station had not answered (the API's 504)
            self._answer(CallError(uid, FormationViolationError.code, what, REFUSED_ANSWER))
        return await self._error(uid, FormationViolationError(description=(
            "frame is not valid OCPP-J text: %s; send UTF-8 text (a character above U+FFFF escaped as a "
            "surrogate pair)") % what))

    async def _refuse_unaccepted(self, uid, action):
        # a station the operator has not accepted (--auth pending) stores nothing: it
        # boots again until its BootNotification is Accepted
        return await self._error(uid, SecurityError(
            description="%s refused: station %s is not accepted by the operator yet; send "
                        "BootNotification until it answers Accepted" % (action, self.id)))

    def _answer(self, msg):
        """Queue an answer for the call waiting for it; an answer to no pending call (a late
        one, or one never asked for) is dropped and counted: the queue holds at most
        MAX_QUEUED_ANSWERS, whatever a station sends."""
        if msg.unique_id in self._pending and self._response_queue.qsize() < MAX_QUEUED_ANSWERS:
            self._response_queue.put_nowait(msg)
            return
        self.dropped_answers += 1
        m = self.gw.metrics
        m.dropped_answers += 1
        if self.dropped_answers == 1:
            # ocpp's own line for it (its filter shows only the id below debug)
            _OCPP_LOG.error("Ignoring response with unknown unique id: %s", msg)
        else:
            _ONCE.warning("station=%s answers to no pending call dropped (%d so far)", self.id,
                          self.dropped_answers, key=("unsolicited", self.id))

    async def call(self, payload, suppress=True, unique_id=None, skip_schema_validation=False):
        """ocpp's ChargePoint.call, with the call's id known as pending (before it is sent)
        until it returns, so that route_message queues only answers to it. A connection that
        ends while the call waits raises StationDisconnected at once (a station that drops the
        link after a Reset would otherwise be waited for until the response timeout)."""
        uid = unique_id if unique_id is not None else str(self._unique_id_generator())
        if self._gone is None:
            self._gone = asyncio.get_running_loop().create_future()
        if self._gone.done():
            raise StationDisconnected("station %s is disconnected" % self.id, sent=False)
        self._pending.add(uid)
        task = asyncio.ensure_future(super().call(payload, suppress=suppress, unique_id=uid,
                                                  skip_schema_validation=skip_schema_validation))
        try:
            await asyncio.wait((task, self._gone), return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            task.cancel()
            # the call was sent unless it was still waiting for ocpp's call lock (a call before it)
            raise StationDisconnected("station %s disconnected before answering %s" % (
                self.id, type(payload).__name__), sent=True)
        finally:
            if not task.done():
                task.cancel()
            self._pending.discard(uid)

    async def _handle(self, uid, action, payload, raw=None):
        """Answer a CALL. `raw`: the frame, when `payload` was parsed by orjson (_fast_call):
        a payload the schema refuses is parsed again by json and checked again, so that the
        verdict is json's (orjson reads an integer past 64 bits as a float)."""
        fn = self._handlers.get(action)
        if fn is None:
            if len(action) <= MAX_ACTION_LEN and action in _V16_ACTIONS:
                err = OcppNotImplemented(description="%s is not implemented by this central system" % action)
            else:
                err = OcppNotImplemented(description="unknown action %r" % action[:MAX_ACTION_LEN])
            return await self._error(uid, err)
        try:
            try:
                # the fast "yes" of a compiled checker for a text frame orjson read (and no \u0000
                # escape in it: the NUL rule is ours alone), else ours, which gives every refusal
                if raw.__class__ is not str or "\\u0000" in raw or not validate.accepts(action, payload):
                    validate.request(action, payload)
            except OCPPError:
                if raw is None:
                    raise
                try:
                    payload = json.loads(raw)[3]
                except (ValueError, RecursionError):    # orjson nests to 1,024, json to the stack
                    return await self._error("-1", FormationViolationError(description="frame is not valid JSON"))
                validate.request(action, payload)
            result = await fn(self, **validate.snake_top(payload))
            out = validate.result_payload(result)
        except OCPPError as e:
            # a station repeating a bad frame: one line per interval with the count (keyed without
            # the message id and the values, which change from frame to frame)
            _ONCE.warning("station=%s msg=%s action=%s refused: %s: %s", self.id, uid, action,
                          e.code, e.description, key=("refused", self.id, action, e.code))
            return await self._error(uid, e)
        except StoreError as e:
            # not stored (a full disk...): the station sends it again later; store.error says why
            _ONCE.warning("station=%s msg=%s action=%s %s", self.id, uid, action, e,
                          key=("store", action, str(e)))
            return await self._error(uid, InternalError(
                description="not stored now (the central system's storage fails): send it again later"))
        except Exception:
            _ONCE.exception("station=%s msg=%s action=%s handler failed", self.id, uid, action,
                            key=("handler", action))
            return await self._error(uid, InternalError(description="the central system failed; see its log"))
        await self._send(_dumps_result(uid, out))
        first, self._first = self._first, False
        if action == "BootNotification" and self.boot_status == RegistrationStatus.accepted:
            self.gw.booted(self)    # after the answer: a station takes calls once it is accepted
        elif first and action != "BootNotification":
            self.gw.resumed(self)   # reconnected without a boot: it was accepted before

    async def _error(self, uid, err):
        code = err.code
        if code == "FormatViolation":   # OCPP 1.6 spells it FormationViolation
            code = "FormationViolation"
        if code == "OccurrenceConstraintViolation":
            code = "OccurenceConstraintViolation"
        await self._send(json.dumps([4, uid, code, err.description or "", {}]))

    def _replayed(self, action, what):
        """A StartTransaction/StopTransaction the station sent before (a replay after a reboot):
        counted in gw.metrics.replayed[action] and logged."""
        self.gw.metrics.replayed[action] += 1
        log.info("station=%s %s replayed: %s", self.id, action, what)

    # --- handlers -------------------------------------------------------------
    @on(Action.boot_notification)
    async def on_boot(self, charge_point_vendor, charge_point_model, **kw):
        state = await self.gw.boot(self.id, charge_point_vendor, charge_point_model,
                                   kw.get("firmware_version"))
        status = {"accepted": RegistrationStatus.accepted, "pending": RegistrationStatus.pending}.get(
            state, RegistrationStatus.rejected)
        self.boot_status = status
        interval = self.gw.settings.heartbeat_interval if status == RegistrationStatus.accepted else 60
        log.info("station=%s boot %s/%s -> %s", self.id, charge_point_vendor, charge_point_model, status)
        return call_result.BootNotification(current_time=utc_now(), interval=interval, status=status)

    @on(Action.heartbeat)
    async def on_heartbeat(self):
        return call_result.Heartbeat(current_time=utc_now())

    @on(Action.status_notification)
    async def on_status(self, connector_id, error_code, status, **kw):
        _int_in("connectorId", connector_id, 0, _INT64[1])
        self.status = status
        await self.gw.status_changed(self.id, connector_id, status, error_code, kw.get("info"))
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_tag):
        # status, parentIdTag and expiryDate from the id-tag list (idtags.py)
        return call_result.Authorize(id_tag_info=_snake_info(await self.gw.id_tag_info(id_tag)))

    @on(Action.start_transaction)
    async def on_start(self, connector_id, id_tag, meter_start, timestamp, **kw):
        ts = station_ts(timestamp)
        _int_in("meterStart", meter_start, *METER_RANGE)
        _int_in("connectorId", connector_id, 0, _INT64[1])
        info = await self.gw.id_tag_info(id_tag)
        st = info["status"]
        rid = kw.get("reservation_id")
        if rid is not None:
            _int_in("reservationId", rid, *_INT64)
        tid, replayed = await self.gw.store.run(Store.start_transaction, self.id, connector_id, id_tag,
                                                meter_start, ts, None if st == "Accepted" else "IdTag" + st)
        if replayed:
            self._replayed("StartTransaction", "connector %d meterStart %d at %s: answered transactionId %d "
                           "again, no new transaction" % (connector_id, meter_start, ts, tid))
        elif rid is not None:
            await self.gw.reservations.started(self.id, rid, tid, connector_id, id_tag)
        if not replayed and st == "Accepted":
            self.gw.loadbalance.started(self.id, connector_id, tid)     # a re-plan of its load group
        return call_result.StartTransaction(transaction_id=tid, id_tag_info=_snake_info(info))

    @on(Action.stop_transaction)
    async def on_stop(self, meter_stop, timestamp, transaction_id, **kw):
        ts = station_ts(timestamp)
        _int_in("meterStop", meter_stop, *METER_RANGE)
        _int_in("transactionId", transaction_id, *_INT64)
        rows = meter_values_to_rows(kw.get("transaction_data"), self.status)
        done = await self.gw.store.run(Store.stop_transaction, self.id, transaction_id, meter_stop, ts,
                                       kw.get("reason"))
        if done == "replayed":
            # answered as the first was (the station drops it from its queue); its meterStop,
            # reason and transactionData change nothing: the first stop stands
            self._replayed("StopTransaction", "transactionId %d (meterStop %d, reason %s): stopped before; the "
                           "first stop stands" % (transaction_id, meter_stop, kw.get("reason") or "-"))
        elif rows:
            await self.gw.store_readings(self.id, rows, "ocpp")
        if done != "replayed":
            self.gw.loadbalance.stopped(self.id, transaction_id)
        tag = kw.get("id_tag")
        if tag:
            return call_result.StopTransaction(id_tag_info=_snake_info(await self.gw.id_tag_info(tag)))
        return call_result.StopTransaction()

    @on(Action.meter_values)
    async def on_meter_values(self, connector_id, meter_value, **kw):
        # the schema's integer has no bound, and a frame orjson reads as a float (past 64 bits) is
        # read again by json as an int: an id past int64 goes no further than the door
        _int_in("connectorId", connector_id, 0, _INT64[1])
        if kw.get("transaction_id") is not None:
            _int_in("transactionId", kw["transaction_id"], *_INT64)
        rows = meter_values_to_rows(meter_value, self.status)
        if rows:
            await self.gw.store_readings(self.id, rows, "ocpp")
        return call_result.MeterValues()

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id, **kw):
        if vendor_id != "PicoCharge":
            return call_result.DataTransfer(status=DataTransferStatus.unknown_vendor_id)
        mid = kw.get("message_id")
        if mid == "Climate":    # {"humidity": %RH, "board_temp_c": RP2040 °C}, either may be missing
            try:
                d = json.loads(kw.get("data") or "")
            except (ValueError, RecursionError):
                d = None
            row = {}
            if isinstance(d, dict):
                for src, key in _CLIMATE.items():
                    if src in d:
                        row[key] = _num(d[src])
                        if row[key] is None:
                            row = None
                            break
            if not row or set(d) - set(_CLIMATE):
                return call_result.DataTransfer(status=DataTransferStatus.rejected, data=_CLIMATE_RULE)
            _in_ranges(row, "DataTransfer Climate")
        elif mid == "Humidity":  # older firmware: the %RH alone
            v = _num(kw.get("data"))
            if v is None:
                return call_result.DataTransfer(status=DataTransferStatus.rejected,
                                                data="data must be a number (percent RH)")
            row = _in_ranges({_HUMIDITY: v}, "DataTransfer Humidity")
        else:
            return call_result.DataTransfer(status=DataTransferStatus.unknown_message_id)
        row.update(ts=utc_now(), status=self.status)
        await self.gw.store_readings(self.id, [row], "ocpp")
        return call_result.DataTransfer(status=DataTransferStatus.accepted)

    @on(Action.diagnostics_status_notification)
    async def on_diag(self, status):
        await self.gw.ota_status(self.id, "diagnostics", status)
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    async def on_firmware(self, status):
        await self.gw.ota_status(self.id, "firmware", status)
        return call_result.FirmwareStatusNotification()


# every action a 1.6 charge point may send (the ones not routed answer NotImplemented)
_V16_ACTIONS = frozenset(a.value for a in Action)

__all__ = ["StationSession", "sampled_to_reading", "meter_values_to_rows",
           "NotSupportedError", "ProtocolError", "TypeConstraintViolationError", "Call",
           "AuthorizationStatus"]
_ = asyncio
