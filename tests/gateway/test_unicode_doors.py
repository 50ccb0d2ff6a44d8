"""The gateway's network doors attacked from outside with text no UTF-8 peer can carry and other
malformed Unicode: lone UTF-16 surrogates as JSON escapes, invalid UTF-8 bytes, UTF-16 bytes,
NUL, noncharacters, a BOM, in OCPP frames, the WebSocket handshake, MQTT telemetry, the JSON API.

Two real gateways run as `picocharge gateway` processes for the whole module (SQLite; one with
password auth and MQTT ingest from a real mosquitto, one with --auth none), reached over real
sockets: websockets for OCPP, raw TCP where a library would refuse to send the bytes, paho (and
raw MQTT packets) for MQTT, urllib for the API. Each case checks the answer, that nothing of a
refused message was stored, that the gateway's log holds no traceback and no "--- Logging
error ---", and that the gateway still serves: /healthz ok, a normal station boots and its
MeterValues is answered and stored.
"""
import asyncio
import base64
import json
import os
import socket
import sqlite3
import struct
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest
import websockets

from picocharge.cmd_demo import GatewayProcess
from support.broker import Broker
from support.gwhttp import TEST_TOKEN, basic, http
from support.net import wait_until

PW = "unicode-doors-pw-01"
S = "CP-U"          # the station that sends the attacks (password gateway)
OK = "CP-OK"        # the normal station that must still be served after each case
MQ = "CP-M"         # the MQTT publisher's station
TS = "2026-11-30T12:00:00Z"
# lone surrogates as JSON escapes (text as it goes on the wire): high and low halves, upper and
# lower case hex, a reversed pair, a pair split by another escape
LONE = ["\\ud800", "\\uD800", "\\udbff", "\\uDBFF", "\\udc00", "\\uDC00", "\\udfff", "\\uDFFF",
        "\\ude00\\ud83d", "\\ud83d\\u0041\\ude00", "a\\ud83d", "\\ude00z"]


# --- the gateways ----------------------------------------------------------------------------
class Gw:
    def __init__(self, proc, db, mode):
        self.proc = proc
        self.db = db
        self.mode = mode        # --auth
        self.port = int(proc.url.rsplit(":", 1)[1])
        self.seen = 0       # log lines already checked

    def new_log(self):
        lines = self.proc.log[self.seen:]
        self.seen += len(lines)
        return lines

    def query(self, sql, args=()):
        db = sqlite3.connect("file:%s?mode=ro" % self.db, uri=True, timeout=10)
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def stored(self, sid):
        """What the database holds of a station: counts per table, and its boot fields."""
        out = {t: self.query("SELECT COUNT(*) FROM %s WHERE station=?" % t, (sid,))[0][0]
               for t in ("readings", "status_history", "transactions", "ota_status")}
        out["station"] = self.query("SELECT vendor, model, firmware FROM stations WHERE id=?", (sid,))
        return out


def _start(tmp, name, extra):
    db = str(tmp / ("%s.db" % name))
    proc = GatewayProcess(db, extra=("--thingspeak-url", "", "--clock-aligned-interval", "keep",
                                     "--response-timeout", "20", "--api-token", TEST_TOKEN,
                                     "--auth-fail-limit", "0") + tuple(extra)).start()
    return Gw(proc, db, extra[extra.index("--auth") + 1])


def _register(port, sid):
    req = urllib.request.Request("http://127.0.0.1:%d/api/stations" % port, method="POST",
                                 data=json.dumps({"id": sid, "password": PW}).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer " + TEST_TOKEN})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 201


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("broker")).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def gws(tmp_path_factory, broker):
    """{"password": Gw with MQTT ingest, "none": Gw with --auth none}."""
    tmp = tmp_path_factory.mktemp("gw")
    out = {}
    try:
        out["password"] = _start(tmp, "pw", ("--auth", "password", "--mqtt", "mqtt://127.0.0.1:%d/pc" % broker.port))
        out["none"] = _start(tmp, "none", ("--auth", "none"))
        for sid in (S, OK, MQ):
            _register(out["password"].port, sid)
        yield out
    finally:
        for g in out.values():
            g.proc.stop()
    for name, g in out.items():
        bad = [line for line in g.proc.log if "Traceback" in line or "Logging error" in line]
        assert not bad, (name, bad, g.proc.log[-40:])


def _hdr(sid=S, pw=PW):
    return basic(sid, pw)


async def _connect(gw, sid=S, headers="default"):
    h = (_hdr(sid) if headers == "default" else headers) if gw.mode != "none" else None
    return await websockets.connect("ws://127.0.0.1:%d/ocpp/%s" % (gw.port, sid), subprotocols=["ocpp1.6"],
                                    additional_headers=h, open_timeout=10, max_size=2 ** 20)


async def _ask(ws, frame):
    await ws.send(frame)
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


_n = [0]


async def _still_serves(gw, sid=OK):
    """The gateway's log since the last check holds no traceback and no logging error; /healthz is
    ok; a normal station boots and its MeterValues is answered and stored."""
    status, health = await http(gw.port, "GET", "/healthz")
    assert status == 200 and health["status"] == "ok", health
    _n[0] += 1
    energy = 1000 + _n[0]
    ws = await _connect(gw, sid)
    try:
        got = await _ask(ws, '[2,"ok-b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]')
        assert got[:2] == [3, "ok-b"] and got[2]["status"] == "Accepted", got
        got = await _ask(ws, json.dumps([2, "ok-m", "MeterValues", {"connectorId": 1, "meterValue": [
            {"timestamp": TS, "sampledValue": [{"value": str(energy), "measurand": "Energy.Active.Import.Register",
                                                 "unit": "Wh"}]}]}]))
        assert got == [3, "ok-m", {}], got
    finally:
        await ws.close()
    assert gw.query("SELECT COUNT(*) FROM readings WHERE station=? AND energy_wh=?", (sid, energy))[0][0] == 1
    lines = gw.new_log()
    bad = [line for line in lines if "Traceback" in line or "Logging error" in line or " ERROR " in line]
    assert not bad, bad


# --- 1. OCPP: a lone surrogate in every part of every CALL a station sends --------------------
_MV = {"timestamp": TS, "sampledValue": [{"value": "12.5", "context": "Sample.Periodic", "measurand": "Current.Import",
                                          "unit": "A", "location": "Outlet", "phase": "L1", "format": "Raw"}]}
CALLS = {
    "BootNotification": {"chargePointVendor": "V", "chargePointModel": "M", "firmwareVersion": "1.0",
                         "chargePointSerialNumber": "SN", "iccid": "I", "meterType": "MT"},
    "Authorize": {"idTag": "TAG1"},
    "StartTransaction": {"connectorId": 1, "idTag": "TAG1", "meterStart": 0, "timestamp": TS},
    "StopTransaction": {"meterStop": 10, "timestamp": TS, "transactionId": 1, "idTag": "TAG1", "reason": "Local",
                        "transactionData": [_MV]},
    "MeterValues": {"connectorId": 1, "meterValue": [_MV]},
    "StatusNotification": {"connectorId": 1, "errorCode": "NoError", "status": "Available", "info": "i",
                           "timestamp": TS, "vendorId": "VI", "vendorErrorCode": "E"},
    "DataTransfer": {"vendorId": "PicoCharge", "messageId": "Climate", "data": '{"humidity": 45}'},
    "DiagnosticsStatusNotification": {"status": "Uploaded"},
    "FirmwareStatusNotification": {"status": "Installed"},
}
MARK = "@@S@@"


def _leaves(v, path):
    """The path of every string leaf of a payload, as csms._lone_surrogate names it."""
    if isinstance(v, str):
        yield path
    elif isinstance(v, dict):
        for k, x in v.items():
            yield from _leaves(x, "%s.%s" % (path, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _leaves(x, "%s[%d]" % (path, i))


def _set(payload, path, value):
    """A copy of payload with the leaf at `path` ("payload.a[0].b") set to value."""
    p = json.loads(json.dumps(payload))
    node, parts = p, path.replace("[", ".[").split(".")[1:]
    for part in parts[:-1]:
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    last = parts[-1]
    if last.startswith("["):
        node[int(last[1:-1])] = value
    else:
        node[last] = value
    return p


def _ocpp_cases():
    cases = []
    k = 0
    for action, payload in CALLS.items():
        where = ["message id", "action"] + list(_leaves(payload, "payload")) + ["key", "nested key"]
        for w in where:
            esc = LONE[k % len(LONE)]
            k += 1
            if w == "message id":
                frame = json.dumps([2, MARK, action, payload])
            elif w == "action":
                frame = json.dumps([2, "m", MARK, payload])
            elif w == "key":
                frame = json.dumps([2, "m", action, dict(payload, **{MARK: "x"})])
                w = "payload.%s (the key)" % esc
            elif w == "nested key":
                if action not in ("MeterValues", "StopTransaction"):
                    continue
                top = "meterValue" if action == "MeterValues" else "transactionData"
                frame = json.dumps([2, "m", action, _set(payload, "payload.%s[0]" % top, dict(_MV, **{MARK: 1}))])
                w = "payload.%s[0].%s (the key)" % (top, esc)
            else:
                frame = json.dumps([2, "m", action, _set(payload, w, "v" + MARK)])
            cases.append(pytest.param(action, frame.replace(MARK, esc), w, id="%s-%s-%s" % (action, w, esc)))
    return cases


def _where_escaped(w):
    """How the CALLERROR names a key holding the escape: its characters as \\uXXXX (lower case)."""
    return w.encode().decode("unicode_escape").encode("ascii", "backslashreplace").decode() if "(the key)" in w else w


@pytest.mark.parametrize("mode", ["password", "none"])
async def test_unicode_doors__a_lone_surrogate_in_every_part_of_every_call_is_a_callerror_naming_where(gws, mode):
    """One station, booted, sends every CALL of _ocpp_cases on one connection: each one a
    FormationViolation CALLERROR naming where the lone surrogate is, nothing of it stored, and the
    connection answers a Heartbeat after it. The log is checked once at the end of the run (every
    refusal is logged once per station, then counted)."""
    gw = gws[mode]
    gw.new_log()
    ws = await _connect(gw)
    try:
        got = await _ask(ws, '[2,"b0","BootNotification",{"chargePointVendor":"V0","chargePointModel":"M0"}]')
        assert got[2]["status"] == "Accepted", got
        got = await _ask(ws, json.dumps([2, "t0", "StartTransaction", CALLS["StartTransaction"]]))
        assert got[:2] == [3, "t0"], got
        before = gw.stored(S)
        cases = _ocpp_cases()
        assert len(cases) > 60, len(cases)
        for case in cases:
            action, frame, where = case.values
            got = await _ask(ws, frame)
            uid = "-1" if where == "message id" else "m"
            want = "frame is not valid OCPP-J text: the string at %s holds a lone UTF-16 surrogate" % (
                _where_escaped(where))
            assert got[:3] == [4, uid, "FormationViolation"] and got[3].startswith(want) and got[4] == {}, \
                (frame, got, want)
            got = await _ask(ws, '[2,"hb","Heartbeat",{}]')
            assert got[:2] == [3, "hb"], (frame, got)
        assert gw.stored(S) == before, (gw.stored(S), before)
    finally:
        await ws.close()
    await _still_serves(gw)


async def _answered_nothing_stored(gw, frame, ok):
    """`frame` gets an answer `ok` accepts, the connection then serves a Heartbeat, nothing of the
    frame is stored, and the gateway still serves a normal station."""
    ws = await _connect(gw)
    before = gw.stored(S)     # after the connection: --auth none registers the station then
    try:
        got = await _ask(ws, frame)
        assert ok(got), (frame, got)
        got = await _ask(ws, '[2,"hb","Heartbeat",{}]')
        assert got[:2] == [3, "hb"], got
    finally:
        await ws.close()
    assert gw.stored(S) == before, (gw.stored(S), before)
    await _still_serves(gw)


# frames that are not lone surrogates but look like one, or carry other odd text: (frame, answer check)
ODD = [
    # an escaped backslash before "ud800": the text \ud800, no surrogate: answered
    pytest.param('[2,"o1","Authorize",{"idTag":"\\\\ud800"}]', lambda a: a[:2] == [3, "o1"], id="escaped-backslash"),
    pytest.param('[2,"o2","Authorize",{"idTag":"x\\\\\\\\ud800"}]', lambda a: a[:2] == [3, "o2"], id="two-backslashes"),
    # a real pair (U+1F600), upper case hex: answered
    pytest.param('[2,"o3","Authorize",{"idTag":"\\uD83D\\uDE00"}]', lambda a: a[:2] == [3, "o3"], id="pair"),
    # noncharacters U+FFFF and U+FFFE, raw and escaped: valid Unicode, answered (stored: see below)
    pytest.param('[2,"o4","Authorize",{"idTag":"\uffff\ufffe"}]', lambda a: a[:2] == [3, "o4"], id="nonchar-raw"),
    pytest.param('[2,"o5","Authorize",{"idTag":"\\uffff\\ufffe"}]', lambda a: a[:2] == [3, "o5"], id="nonchar-esc"),
    # NUL: no text column takes it, refused by the schema check
    pytest.param('[2,"o6","Authorize",{"idTag":"a\\u0000b"}]',
                 lambda a: a[:3] == [4, "o6", "PropertyConstraintViolation"] and "NUL" in a[3], id="nul"),
    # a raw NUL (a control character) in a JSON string: not JSON
    pytest.param('[2,"o7","Authorize",{"idTag":"a\u0000b"}]',
                 lambda a: a == [4, "-1", "FormationViolation", "frame is not valid JSON", {}], id="nul-raw"),
    # not a frame at all, with a lone surrogate in it (an object's key, a bare string): refused as
    # such, the connection lives on
    pytest.param('{"\\ud800": 1}', lambda a: a[:3] == [4, "-1", "FormationViolation"] and "surrogate" in a[3],
                 id="object-key-not-a-frame"),
    pytest.param('"\\udc00"', lambda a: a[:3] == [4, "-1", "FormationViolation"] and "surrogate" in a[3],
                 id="bare-string-not-a-frame"),
    pytest.param('[3, "\\ud800x", {}]', lambda a: a[:3] == [4, "-1", "FormationViolation"] and "surrogate" in a[3],
                 id="answer-to-no-call-with-surrogate-id"),
    # a BOM before the JSON: not JSON (RFC 8259: no BOM)
    pytest.param('\ufeff[2,"o8","Heartbeat",{}]',
                 lambda a: a == [4, "-1", "FormationViolation", "frame is not valid JSON", {}], id="bom"),
    pytest.param('[2,"o9","Authorize",{"idTag":"\ufeffT"}]', lambda a: a[:2] == [3, "o9"], id="bom-in-string"),
    # a lone surrogate inside the JSON text of DataTransfer's data (an escaped escape in the frame):
    # the frame is valid text; the data's JSON is read by the handler, which rejects it
    pytest.param(json.dumps([2, "d1", "DataTransfer", {"vendorId": "PicoCharge", "messageId": "Climate",
                                                      "data": '{"humidity": "\\ud800"}'}]),
                 lambda a: a[:2] == [3, "d1"] and a[2]["status"] == "Rejected", id="datatransfer-inner-value"),
    pytest.param(json.dumps([2, "d2", "DataTransfer", {"vendorId": "PicoCharge", "messageId": "Climate",
                                                      "data": '{"humidity": 40, "\\udfff": 1}'}]),
                 lambda a: a[:2] == [3, "d2"] and a[2]["status"] == "Rejected", id="datatransfer-inner-key"),
    pytest.param(json.dumps([2, "d3", "DataTransfer", {"vendorId": "PicoCharge", "messageId": "Humidity",
                                                      "data": "4\\ud8005"}]),
                 lambda a: a[:2] == [3, "d3"] and a[2]["status"] == "Rejected", id="datatransfer-humidity"),
]


@pytest.mark.parametrize("frame, ok", ODD)
@pytest.mark.parametrize("mode", ["password", "none"])
async def test_unicode_doors__odd_but_valid_text_and_nul_get_their_own_answer(gws, mode, frame, ok):
    await _answered_nothing_stored(gws[mode], frame, ok)


async def test_unicode_doors__noncharacters_and_a_bom_stored_read_back_by_the_api_and_the_csv_export(gws):
    """U+FFFF, U+FFFE and U+FEFF are valid Unicode: stored, and every reader gives them back."""
    gw = gws["password"]
    odd = "T\uffff\ufffe\ufeff"
    ws = await _connect(gw)
    try:
        got = await _ask(ws, json.dumps([2, "b", "BootNotification", {"chargePointVendor": "V" + odd,
                                                                      "chargePointModel": "M"}]))
        assert got[2]["status"] == "Accepted", got
        got = await _ask(ws, json.dumps([2, "s", "StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                                                       "status": "Available", "info": odd}]))
        assert got == [3, "s", {}], got
        got = await _ask(ws, json.dumps([2, "t", "StartTransaction", {"connectorId": 1, "idTag": odd, "meterStart": 0,
                                                                     "timestamp": TS}], ensure_ascii=False))
        assert got[:2] == [3, "t"], got
    finally:
        await ws.close()
    status, st = await http(gw.port, "GET", "/api/stations/%s" % S)
    assert status == 200 and st["vendor"] == "V" + odd, st
    status, hist = await http(gw.port, "GET", "/api/stations/%s/status-history" % S)
    assert status == 200 and any(h["info"] == odd for h in hist), hist
    status, csv = await http(gw.port, "GET", "/api/stations/%s/transactions.csv?from=2026-11-30T00:00:00Z" % S)
    assert status == 200 and odd in csv, csv
    status, page = await http(gw.port, "GET", "/api/fleet?q=CP-U")
    assert status == 200 and page["total"] == 1, page
    await _still_serves(gw)


# --- the answers to the gateway's own calls ----------------------------------------------------
ANSWERS = [
    pytest.param("get-configuration", {}, '[3,"{id}",{{"configurationKey":[{{"key":"K","readonly":false,'
                 '"value":"v\\ud800"}}]}}]', "payload.configurationKey[0].value", id="callresult-getconfiguration"),
    pytest.param("get-configuration", {}, '[3,"{id}",{{"unknownKey":["\\uDFFF"]}}]', "payload.unknownKey[0]",
                 id="callresult-unknownkey"),
    pytest.param("data-transfer", {"vendor_id": "V"}, '[3,"{id}",{{"status":"Accepted","data":"\\udbff"}}]',
                 "payload.data", id="callresult-datatransfer"),
    pytest.param("data-transfer", {"vendor_id": "V"}, '[3,"{id}",{{"status":"Accepted","\\ud800":1}}]',
                 "payload.\\ud800 (the key)", id="callresult-key"),
    pytest.param("get-configuration", {}, '[4,"{id}","InternalError","\\udc00",{{}}]', "error description",
                 id="callerror-description"),
    pytest.param("data-transfer", {"vendor_id": "V"}, '[4,"{id}","InternalError","d",{{"why":"\\ude00\\ud83d"}}]',
                 "error details.why", id="callerror-details"),
]


@pytest.mark.parametrize("command, body, answer, where", ANSWERS)
async def test_unicode_doors__an_answer_with_a_lone_surrogate_fails_the_api_call_at_once_naming_where(
        gws, command, body, answer, where):
    """Before: the answer was refused (a CALLERROR to the station) but the call it answered went on
    waiting, and the API said 504 "did not answer in time" after --response-timeout (20 s here)."""
    gw = gws["password"]
    ws = await _connect(gw)
    try:
        api = asyncio.ensure_future(http(gw.port, "POST", "/api/stations/%s/%s" % (S, command), body))
        call = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert call[0] == 2, call
        t0 = time.monotonic()
        got = await _ask(ws, answer.format(id=call[1]))
        assert got[:3] == [4, call[1], "FormationViolation"] and "the string at %s holds a lone" % where in got[3], got
        status, out = await asyncio.wait_for(api, 15)
        assert status == 502 and out["error"].startswith(
            "station %s answered %s with a frame the gateway refused: the string at %s holds a lone UTF-16 "
            "surrogate" % (S, call[2], where)), (status, out)
        assert out["code"] == "FormationViolation", out
        assert time.monotonic() - t0 < 15, "waited for the response timeout"
        got = await _ask(ws, '[2,"hb","Heartbeat",{}]')
        assert got[:2] == [3, "hb"], got
    finally:
        await ws.close()
    await _still_serves(gw)


# --- binary frames and invalid UTF-8 -------------------------------------------------------------
_BOOT_BAD = '[2,"u16","BootNotification",{"chargePointVendor":"V\\ud800","chargePointModel":"M"}]'
BINARY = [
    pytest.param(b'[2,"bin","Heartbeat",{}]', lambda a: a[:2] == [3, "bin"], id="utf8"),
    pytest.param(b'[2,"bin","Heartbeat",{"x":"\xff"}]',
                 lambda a: a[:3] == [4, "-1", "FormationViolation"] and "not UTF-8 text (byte 27 of a binary frame)"
                 in a[3], id="invalid-utf8"),
    pytest.param(b'[2,"bin","Authorize",{"idTag":"\xed\xa0\x80"}]',
                 lambda a: a[:3] == [4, "-1", "FormationViolation"] and "not UTF-8 text" in a[3], id="utf8-surrogate"),
    pytest.param(b'[2,"bin","Authorize",{"idTag":"\xc0\xaf"}]',
                 lambda a: a[:3] == [4, "-1", "FormationViolation"] and "not UTF-8 text" in a[3], id="overlong"),
    # UTF-16 and UTF-32: json.loads reads them, and the lone surrogate escape went unseen (stored:
    # SQLite's UTF-8 encoder raised, the station got InternalError, the log a traceback)
    pytest.param(_BOOT_BAD.encode("utf-16-le"),     # valid UTF-8 (NULs and ASCII), not JSON
                 lambda a: a == [4, "-1", "FormationViolation", "frame is not valid JSON", {}], id="utf16le"),
    pytest.param(_BOOT_BAD.encode("utf-16"),
                 lambda a: a[:3] == [4, "-1", "FormationViolation"] and "not UTF-8 text" in a[3], id="utf16-bom"),
    pytest.param(_BOOT_BAD.encode("utf-32-be"),
                 lambda a: a == [4, "-1", "FormationViolation", "frame is not valid JSON", {}], id="utf32be"),
    pytest.param(_BOOT_BAD.encode(),
                 lambda a: a[:3] == [4, "u16", "FormationViolation"] and
                 "payload.chargePointVendor holds a lone" in a[3], id="utf8-escape"),
    pytest.param(b"\xef\xbb\xbf" + b'[2,"bom","Heartbeat",{}]',
                 lambda a: a == [4, "-1", "FormationViolation", "frame is not valid JSON", {}], id="bom"),
]


@pytest.mark.parametrize("frame, ok", BINARY)
@pytest.mark.parametrize("mode", ["password", "none"])
async def test_unicode_doors__binary_frames_are_utf8_json_or_a_callerror(gws, mode, frame, ok):
    await _answered_nothing_stored(gws[mode], frame, ok)


def _ws_frame(op, payload, fin=True):
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | op]) + (bytes([0x80 | n]) if n < 126 else
                                                 bytes([0x80 | 126]) + struct.pack(">H", n))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _raw_ws(gw, path=b"/ocpp/" + S.encode(), auth=None, proto=b"ocpp1.6"):
    r, w = await asyncio.open_connection("127.0.0.1", gw.port)
    auth = auth if auth is not None else b"Authorization: " + _hdr()["Authorization"].encode() + b"\r\n"
    w.write(b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: " + proto + b"\r\n" + auth + b"\r\n")
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
    return r, w, head


_SPLIT = '[2,"sp","Authorize",{"idTag":"\u00e9\U0001F600"}]'.encode()
_CUT = _SPLIT.index(b"\xf0") + 2     # inside the 4-byte sequence of U+1F600


@pytest.mark.parametrize("frames", [
    [_ws_frame(1, b'[2,"u","Heartbeat",{"x":"\xff"}]')], [_ws_frame(1, b'[2,"u","Heartbeat",{"x":"\xed\xa0\x80"}]')],
    [_ws_frame(1, b'[2,"u","Heartbeat",{"x":"\xc0\xaf"}]')], [_ws_frame(1, b"\xff\xfe[\x00")],
    [_ws_frame(1, _SPLIT[:_CUT], fin=False), _ws_frame(0, b"\xff" + _SPLIT[_CUT + 1:])],
    [_ws_frame(8, struct.pack(">H", 1000) + b"\xff")], [_ws_frame(8, struct.pack(">H", 1000) + b"\xed\xa0\x80")]],
    ids=["ff", "surrogate", "overlong", "utf16", "fragments", "close-reason-ff", "close-reason-surrogate"])
async def test_unicode_doors__invalid_utf8_in_a_text_frame_closes_with_1007(gws, frames):
    """RFC 6455 8.1: a text message (or a close reason) that is not UTF-8 fails the connection, with
    1007 (aiohttp does it)."""
    gw = gws["password"]
    r, w, head = await _raw_ws(gw)
    port = w.get_extra_info("sockname")[1]
    try:
        assert head.startswith(b"HTTP/1.1 101"), head
        for f in frames:
            w.write(f)
        data = await asyncio.wait_for(r.readexactly(4), 10)
        assert data[0] == 0x88 and struct.unpack(">H", data[2:4])[0] == 1007, data
    finally:
        w.close()
    await _still_serves(gw)
    # the connection's end says why (before: "closed (1006)", as if the station had vanished)
    def reason():
        return gw.query("SELECT reason FROM connections WHERE station=? AND id=(SELECT MAX(id) FROM connections "
                        "WHERE station=? AND peer=?)", (S, S, "127.0.0.1:%d" % port))
    await asyncio.get_running_loop().run_in_executor(None, wait_until, lambda: reason() != [(None,)], 20, "its end")
    assert reason() == [("closed by the gateway (1007: Invalid UTF-8 text message)",)], reason()


async def test_unicode_doors__a_text_message_split_inside_a_character_across_fragments_is_answered(gws):
    gw = gws["password"]
    r, w, head = await _raw_ws(gw)
    try:
        assert head.startswith(b"HTTP/1.1 101"), head
        w.write(_ws_frame(1, _SPLIT[:_CUT], fin=False) + _ws_frame(0, _SPLIT[_CUT:]))
        b0, n = await asyncio.wait_for(r.readexactly(2), 10)
        got = json.loads(await asyncio.wait_for(r.readexactly(n), 10))
        assert b0 == 0x81 and got[:2] == [3, "sp"], got
    finally:
        w.close()
    await _still_serves(gw)


# --- 2. the WebSocket handshake ------------------------------------------------------------------
_ID_RULE = b"station id must be 1-48 characters"
_401 = (b"401", b"station id or password not accepted")
_101 = (b"101", b"Sec-WebSocket-Protocol: ocpp1.6")


def _basic(raw):
    return b"Authorization: Basic " + base64.b64encode(raw) + b"\r\n"


# (request, answer with --auth password, answer with --auth none when it differs)
HANDSHAKES = [
    pytest.param(dict(path=b"/ocpp/CP-%ED%A0%80"), (b"404", _ID_RULE), None, id="path-surrogate"),
    pytest.param(dict(path=b"/ocpp/CP-%FF"), (b"404", _ID_RULE), None, id="path-ff"),
    pytest.param(dict(path=b"/ocpp/CP-%C0%AF"), (b"404", _ID_RULE), None, id="path-overlong"),
    pytest.param(dict(path=b"/ocpp/CP-%00"), (b"404", _ID_RULE), None, id="path-nul"),
    pytest.param(dict(path=b"/ocpp/CP-%EF%BF%BF"), (b"404", _ID_RULE), None, id="path-uffff"),
    pytest.param(dict(path=b"/ocpp/" + b"A" * 4000), (b"404", _ID_RULE), None, id="path-long"),
    pytest.param(dict(path=b"/ocpp/CP-\xff"), (b"400", b"Invalid char in url path"), None, id="path-raw-ff"),
    pytest.param(dict(path=b"/ocpp/" + b"A" * 9000), (b"400", b"Got more than 8190 bytes"), None, id="path-too-long"),
    # a user name that is not UTF-8, or no Base64: malformed; --auth none looks at no credentials
    # (before: it refused these, contrary to "any station accepted")
    pytest.param(dict(auth=_basic(b"CP-\xff:" + PW.encode())), _401, _101, id="basic-user-ff"),
    pytest.param(dict(auth=b"Authorization: Basic \xe9\xe9\xe9\xe9\r\n"), _401, _101, id="basic-latin1"),
    # a password of any bytes is let through to the check (an AuthorizationKey need not be UTF-8)
    pytest.param(dict(auth=_basic(S.encode() + b":\xed\xa0\x80" + PW.encode())), _401, _101, id="basic-pw-surrogate"),
    pytest.param(dict(auth=_basic(S.encode())), _401, _101, id="basic-no-colon"),
    pytest.param(dict(auth=_basic(S.encode() + b":" + b"a" * 6000)), _401, _101, id="basic-huge"),
    pytest.param(dict(auth=_basic(S.encode() + b":" + b"a" * 9000)), (b"400", b"Got more than 8190 bytes"), None,
                 id="basic-too-huge"),
    pytest.param(dict(proto=b"\xed\xa0\x80"), (b"400", b"subprotocol ocpp1.6 required"), None, id="proto-surrogate"),
    pytest.param(dict(proto=b"\xff, ocpp1.6"), _101, None, id="proto-ff-and-ocpp"),
]


@pytest.mark.parametrize("req, want, want_none", HANDSHAKES)
@pytest.mark.parametrize("mode", ["password", "none"])
async def test_unicode_doors__handshakes_with_odd_paths_credentials_and_subprotocols(gws, mode, req, want, want_none):
    gw = gws[mode]
    status, text = want_none if mode == "none" and want_none else want
    r, w, head = await _raw_ws(gw, **req)
    try:
        body = head if head.startswith(b"HTTP/1.1 101") else head + await asyncio.wait_for(r.read(400), 10)
    finally:
        w.close()
    assert body.split(b" ")[1] == status and text in body, body[:400]
    await _still_serves(gw)


async def test_unicode_doors__basic_credentials_without_a_colon_are_logged_as_malformed(gws):
    """The station is told the one 401 text; the log said "wrong password", though none was sent."""
    gw = gws["password"]
    gw.new_log()
    r, w, head = await _raw_ws(gw, auth=_basic(S.encode()))
    w.close()
    assert head.startswith(b"HTTP/1.1 401"), head
    want = "station=%s refused (127.0.0.1): malformed Basic credentials: no ':' between the user (the station id) " \
           "and the password" % S
    await asyncio.get_running_loop().run_in_executor(
        None, wait_until, lambda: any(line.endswith(want) for line in gw.proc.log[gw.seen:]), 20, want)
    await _still_serves(gw)


# --- 3. MQTT ingest ------------------------------------------------------------------------------
MQTT_BAD = [
    pytest.param(b'{"temp_c": 20.5, "status": "\\ud800"}', id="status-surrogate"),
    pytest.param(b'{"temp_c": 20.5, "status": "Available\\udfff"}', id="status-suffix"),
    pytest.param(b'{"temp_c": 20.5, "ts": "\\uDBFF"}', id="ts-surrogate"),
    pytest.param(b'{"temp_c": 20.5, "ts": "2026-11-30T12:00:00Z\\udc00"}', id="ts-suffix"),
    pytest.param(b'{"temp_c": "\\ud800"}', id="value-surrogate"),
    pytest.param(b'{"temp_c": 1e999}', id="1e999"),
    pytest.param(b'{"temp_c": NaN}', id="nan"),
    pytest.param(b'{"temp_c": Infinity}', id="inf"),
    pytest.param(b'{"temp_c": -Infinity}', id="-inf"),
    pytest.param(b'{"temp_c": ' + b"9" * 400 + b"}", id="huge-int"),
    pytest.param(b'{"temp_c": ' + b"9" * 5000 + b"}", id="huger-int"),
    pytest.param(b'{"temp_c": 20.5, "x": "\xff"}', id="invalid-utf8"),
    pytest.param(b'{"temp_c": 20.5, "status": "\xed\xa0\x80"}', id="utf8-surrogate"),
    pytest.param(b'{"temp_c": 20.5, "status": "Available\\u0000"}', id="nul"),
    pytest.param('{"temp_c": 20.5, "status": "\\ud800"}'.encode("utf-16"), id="utf16-surrogate"),
]


def _publish(port, topic, payloads):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="doors-pub-%d" % os.getpid())
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        for p in payloads:
            c.publish(topic, p, qos=1).wait_for_publish(10)
    finally:
        c.loop_stop()
        c.disconnect()


def _readings(gw, sid):
    return gw.query("SELECT temp_c, status FROM readings WHERE station=? ORDER BY id", (sid,))


@pytest.mark.parametrize("payload", MQTT_BAD)
async def test_unicode_doors__mqtt_telemetry_with_bad_text_or_numbers_is_dropped(gws, broker, payload):
    gw = gws["password"]
    before = _readings(gw, MQ)
    marker = 10.0 + len(before)
    loop = asyncio.get_running_loop()
    # the bad message, then a good one: once the good one is stored, the bad one was handled
    await loop.run_in_executor(None, _publish, broker.port, "pc/%s/telemetry" % MQ,
                               [payload, b'{"temp_c": %g, "status": "Available"}' % marker])
    await loop.run_in_executor(None, wait_until, lambda: len(_readings(gw, MQ)) > len(before), 20, "the good one")
    assert _readings(gw, MQ) == before + [(marker, "Available")], _readings(gw, MQ)
    await _still_serves(gw)


def _raw_publish(port, topic):
    """A PUBLISH (MQTT 3.1.1, QoS 0) with the topic's bytes as given (paho encodes a str topic),
    then a PINGREQ: the broker's answer to it (b"" when it closed the connection)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        cid = b"doors-raw"
        vh = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack(">H", len(cid)) + cid
        s.sendall(b"\x10" + bytes([len(vh)]) + vh)
        assert s.recv(4) == b"\x20\x02\x00\x00"
        body = struct.pack(">H", len(topic)) + topic + b'{"temp_c": 30}'
        s.sendall(b"\x30" + bytes([len(body)]) + body + b"\xc0\x00")
        try:
            return s.recv(10)
        except ConnectionResetError:
            return b""
    finally:
        s.close()


# (topic, the broker's answer to the PINGREQ after it): mosquitto closes the connection of a
# publisher whose topic is not UTF-8 (or holds U+0000); the others reach the gateway, which drops
# them (not a station id)
TOPICS = [
    pytest.param(b"pc/CP-\xff/telemetry", b"", id="ff"),
    pytest.param(b"pc/\xed\xa0\x80/telemetry", b"", id="surrogate"),
    pytest.param(b"pc/\xc0\xaf/telemetry", b"", id="overlong"),
    pytest.param(b"pc/CP-M\x00/telemetry", b"", id="nul"),
    pytest.param("pc/CP-\u00e9/telemetry".encode(), b"\xd0\x00", id="e-acute"),
    pytest.param("pc/\ufeffCP-M/telemetry".encode(), b"\xd0\x00", id="bom"),
]


@pytest.mark.parametrize("topic, pong", TOPICS)
async def test_unicode_doors__mqtt_topics_not_utf8_or_not_a_station_id(gws, broker, topic, pong):
    gw = gws["password"]
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, _raw_publish, broker.port, topic) == pong
    before = _readings(gw, MQ)
    await loop.run_in_executor(None, _publish, broker.port, "pc/%s/telemetry" % MQ, [b'{"temp_c": 31}'])
    await loop.run_in_executor(None, wait_until, lambda: len(_readings(gw, MQ)) > len(before), 20, "the good one")
    assert _readings(gw, MQ) == before + [(31.0, None)], _readings(gw, MQ)
    assert gw.query("SELECT COUNT(*) FROM readings WHERE temp_c=30")[0][0] == 0
    await _still_serves(gw)


async def test_unicode_doors__mqtt_a_new_stations_first_messages_together_are_all_stored(tmp_path, broker):
    """--auth none: a station the gateway has not seen is registered by its first telemetry. Before:
    messages that came before that registration was written were dropped ("telemetry not stored:
    'CP-NEW'", store.add_station's KeyError for a station registered meanwhile)."""
    gw = _start(tmp_path, "burst", ("--auth", "none", "--mqtt", "mqtt://127.0.0.1:%d/pb" % broker.port))
    try:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, wait_until, lambda: any("mqtt: connected" in line for line in gw.proc.log),
                                   20, "the gateway's MQTT connection")
        await loop.run_in_executor(None, _publish, broker.port, "pb/CP-NEW/telemetry",
                                   [b'{"temp_c": %d}' % t for t in range(20, 26)])
        await loop.run_in_executor(None, wait_until, lambda: len(_readings(gw, "CP-NEW")) >= 6, 20, "6 readings")
        assert sorted(t for t, _s in _readings(gw, "CP-NEW")) == [20.0, 21.0, 22.0, 23.0, 24.0, 25.0]
        assert not [line for line in gw.proc.log if "not stored" in line], gw.proc.log
    finally:
        gw.proc.stop()


class LaxBroker:
    """An MQTT broker that forwards a topic that is not UTF-8, which MQTT forbids and mosquitto
    refuses (it closes the publisher's connection): once the gateway has subscribed, it sends it
    `publish` [(topic bytes, payload)], QoS 0. Enough of MQTT 5 and 3.1.1 for the gateway's client."""

    def __init__(self, publish):
        self.publish = publish
        self.server = None
        self.port = None
        self.sent = asyncio.Event()
        self.clients = []

    async def start(self):
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self):
        self.server.close()
        for w in self.clients:
            w.close()
        await asyncio.gather(*(w.wait_closed() for w in self.clients), return_exceptions=True)
        await self.server.wait_closed()

    @staticmethod
    async def _packet(r):
        head = (await r.readexactly(1))[0]
        n, mult = 0, 1
        while True:
            b = (await r.readexactly(1))[0]
            n += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                return head, await r.readexactly(n)

    @staticmethod
    def _out(head, body):
        n, enc = len(body), b""
        while True:
            b, n = n % 128, n // 128
            enc += bytes([b | (0x80 if n else 0)])
            if not n:
                return bytes([head]) + enc + body

    async def _client(self, r, w):
        self.clients.append(w)
        v5 = False
        try:
            while True:
                head, body = await self._packet(r)
                kind = head & 0xF0
                if kind == 0x10:        # CONNECT
                    v5 = body[6] == 5
                    w.write(b"\x20\x03\x00\x00\x00" if v5 else b"\x20\x02\x00\x00")
                elif kind == 0x80:      # SUBSCRIBE: every filter granted QoS 1, then the publications
                    pid, rest = body[:2], body[2:]
                    if v5:
                        rest = rest[1 + rest[0]:]     # properties (short: one length byte)
                    n = 0
                    while rest:
                        ln = struct.unpack(">H", rest[:2])[0]
                        rest, n = rest[2 + ln + 1:], n + 1
                    w.write(self._out(0x90, pid + (b"\x00" if v5 else b"") + b"\x01" * n))
                    for topic, payload in self.publish:
                        w.write(self._out(0x30, struct.pack(">H", len(topic)) + topic + (b"\x00" if v5 else b"")
                                          + payload))
                    self.sent.set()
                elif kind == 0x30 and head & 0x06:    # PUBLISH QoS 1 from the gateway: PUBACK
                    ln = struct.unpack(">H", body[:2])[0]
                    w.write(b"\x40\x02" + body[2 + ln:4 + ln])
                elif kind == 0xC0:      # PINGREQ
                    w.write(b"\xd0\x00")
                elif kind == 0xE0:      # DISCONNECT
                    break
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            w.close()


async def test_unicode_doors__mqtt_a_topic_not_utf8_from_a_lax_broker_is_dropped_and_ingest_goes_on(tmp_path):
    """Before: paho's message.topic raised UnicodeDecodeError in the gateway's on_message, outside the
    ingest's guard; paho re-raised it from loop_read without finishing the packet, so it was handled
    again at every read: a traceback each time, and no later telemetry."""
    good = b'{"temp_c": 22.5}'
    broker = await LaxBroker([(b"pf/CP-\xff/telemetry", good), (b"pf/\xed\xa0\x80/telemetry", good),
                              (b"pf/CP-FB/telemetry", good)]).start()
    gw = _start(tmp_path, "lax", ("--auth", "none", "--mqtt", "mqtt://127.0.0.1:%d/pf" % broker.port))
    try:
        await asyncio.wait_for(broker.sent.wait(), 20)
        await asyncio.get_running_loop().run_in_executor(None, wait_until, lambda: _readings(gw, "CP-FB"), 20,
                                                         "CP-FB's reading")
        assert _readings(gw, "CP-FB") == [(22.5, None)], _readings(gw, "CP-FB")
        assert gw.query("SELECT COUNT(*) FROM readings")[0][0] == 1
        await asyncio.get_running_loop().run_in_executor(
            None, wait_until, lambda: any("telemetry on a topic whose station id must be" in line
                                          for line in gw.proc.log), 20, "the drop logged")
        await _still_serves(gw)
    finally:
        gw.proc.stop()
        await broker.stop()


async def test_unicode_doors__auth_none_a_new_station_connecting_several_times_at_once_is_let_in(gws):
    """The same race at the WebSocket door (found beside the MQTT one): each connection of an id
    not yet known registered it, and all but the first raised store.add_station's KeyError out of
    the handshake: a 500 for the station and a traceback in the log."""
    gw = gws["none"]

    async def connect(sid):
        ws = await websockets.connect("ws://127.0.0.1:%d/ocpp/%s" % (gw.port, sid), subprotocols=["ocpp1.6"],
                                      open_timeout=10)
        await ws.close()
        return "101"

    for n in range(10):
        got = await asyncio.gather(*(connect("CP-NEW-%d" % n) for _ in range(4)), return_exceptions=True)
        assert got == ["101"] * 4, got
    await _still_serves(gw)


# --- 4. the JSON API and the dashboard ----------------------------------------------------------
_EXP = "2099-01-01T00:00:00Z"
_GROUP = {"name": "g", "limit_a": 32, "phases": 3, "members": [{"station": S, "connector": 1, "priority": 1}]}
_PROFILE = {"connector_id": 1, "cs_charging_profiles": {
    "charging_profile_id": 1, "stack_level": 0, "charging_profile_purpose": "TxDefaultProfile",
    "charging_profile_kind": "Absolute", "charging_schedule": {"charging_rate_unit": "A",
                                                               "charging_schedule_period": [{"start_period": 0,
                                                                                             "limit": 6}]}}}
# (method, path, a valid body): every string of each body gets a lone surrogate, one at a time
WRITES = [
    ("POST", "/api/stations", {"id": "CP-X", "password": "p" * 20, "thingspeak_channel": 1, "thingspeak_key": "WK",
                               "thingspeak_read_key": "RK"}),
    ("POST", "/api/stations/-/configuration", {"key": "ClockAlignedDataInterval", "value": "900"}),
    ("POST", "/api/id-tags", {"id_tag": "T1", "status": "Accepted", "parent_id_tag": "P1", "expiry_date": _EXP}),
    ("POST", "/api/id-tags/import", {"csv": "id_tag,status\r\nT1,Accepted\r\n"}),
    ("PUT", "/api/id-tags/T0", {"status": "Blocked", "parent_id_tag": "P1", "expiry_date": _EXP}),
    ("POST", "/api/load-groups", _GROUP),
    ("PUT", "/api/load-groups/g0", {"members": [{"station": S, "connector": 1, "priority": 1}]}),
    ("POST", "/api/stations/%s/reservations" % S, {"connector_id": 1, "id_tag": "T0", "expiry_date": _EXP}),
    ("PUT", "/api/stations/%s/password" % S, {"password": "q" * 20}),
    ("PUT", "/api/stations/%s/thingspeak" % S, {"thingspeak_channel": 1, "thingspeak_key": "WK2"}),
    ("POST", "/api/stations/%s/remote-start" % S, {"id_tag": "T0"}),
    ("POST", "/api/stations/%s/change-configuration" % S, {"key": "MeterValueSampleInterval", "value": "60"}),
    ("POST", "/api/stations/%s/get-configuration" % S, {"key": ["MeterValueSampleInterval"]}),
    ("POST", "/api/stations/%s/data-transfer" % S, {"vendor_id": "V", "message_id": "M", "data": "D"}),
    ("POST", "/api/stations/%s/reset" % S, {"type": "Soft"}),
    ("POST", "/api/stations/%s/trigger-message" % S, {"requested_message": "Heartbeat"}),
    ("POST", "/api/stations/%s/send-local-list" % S, {"list_version": 1, "update_type": "Full",
                                                      "local_authorization_list": [{"id_tag": "T0"}]}),
    ("POST", "/api/stations/%s/set-charging-profile" % S, _PROFILE),
    ("POST", "/api/stations/%s/update" % S, {"version": "1.0.0"}),
    ("POST", "/api/stations/%s/diagnostics" % S, {"start_time": TS}),
    ("POST", "/api/rollouts", {"version": "1.0.0", "stations": [S]}),
    ("POST", "/api/session", {"token": "pct_x"}),
]


def _api_cases():
    out = []
    k = 0
    for method, path, body in WRITES:
        for leaf in list(_leaves(body, "the body")) + ["key"]:
            esc = LONE[k % len(LONE)]
            k += 1
            if leaf == "key":
                raw = json.dumps(dict(body, **{MARK: 1})).replace(MARK, esc)
                where = "the key %s of the body" % esc.encode().decode("unicode_escape").encode(
                    "ascii", "backslashreplace").decode()
            else:
                raw = json.dumps(_set(body, leaf.replace("the body", "payload", 1), "v" + MARK)).replace(MARK, esc)
                where = leaf[len("the body."):]
            out.append(pytest.param(method, path, raw, where, id="%s %s %s" % (method, path, where)))
    return out


async def test_unicode_doors__api_bodies_with_a_lone_surrogate_are_400_naming_the_field(gws):
    """Every string of every writing endpoint's JSON body, as UTF-8 and as UTF-16 (which json.loads
    also reads). Before: change-configuration's value and get-configuration's keys were sent to the
    station; other fields got pydantic's "unable to parse raw data as a unicode string", or 201 (an
    unknown key)."""
    gw = gws["password"]
    assert (await http(gw.port, "POST", "/api/id-tags", {"id_tag": "T0"}))[0] == 201
    status, out = await http(gw.port, "POST", "/api/load-groups", dict(_GROUP, name="g0"))
    assert status == 201, out
    cases = _api_cases()
    assert len(cases) > 40, len(cases)
    stations_before = gw.query("SELECT id, pw_hash, ts_key FROM stations ORDER BY id")
    tags_before = gw.query("SELECT * FROM id_tags ORDER BY tag")
    for case in cases:
        method, path, raw, where = case.values
        for enc in ("utf-8", "utf-16"):
            status, out = await http(gw.port, method, path, raw=raw.encode(enc))
            assert status == 400 and out["error"] == (
                "%s holds a lone UTF-16 surrogate (an escape \\ud800-\\udfff, or its bytes, without its pair), "
                "which is no Unicode character: send UTF-8 text (a character above U+FFFF escaped as a "
                "surrogate pair)"
                % where), (method, path, raw, enc, status, out)
    assert gw.query("SELECT id, pw_hash, ts_key FROM stations ORDER BY id") == stations_before
    assert gw.query("SELECT * FROM id_tags ORDER BY tag") == tags_before
    await _still_serves(gw)


async def _raw_http(gw, head):
    r, w = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        w.write(head)
        data = await asyncio.wait_for(r.read(), 10)
    finally:
        w.close()
    return data


_BEARER = b"Authorization: Bearer " + TEST_TOKEN.encode() + b"\r\n"
_JSON = b"Content-Type: application/json\r\n"
_STATION = b"Authorization: " + basic(S, PW)["Authorization"].encode() + b"\r\n"


def _req(line, headers=_BEARER, body=b""):
    return (line + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + headers +
            (b"Content-Length: %d\r\n" % len(body) if body else b"") + b"\r\n" + body)


HTTP = [
    pytest.param(_req(b"POST /api/id-tags", _BEARER + _JSON, b'{"id_tag":"\xff"}'), b"400",
                 b"the body is not JSON ('utf-8' codec can't decode byte 0xff", id="body-ff"),
    # json.loads decodes bytes with surrogatepass: ED A0 80 became a lone surrogate in the id tag
    pytest.param(_req(b"POST /api/id-tags", _BEARER + _JSON, b'{"id_tag":"\xed\xa0\x80"}'), b"400",
                 b"id_tag holds a lone UTF-16 surrogate", id="body-utf8-surrogate"),
    pytest.param(_req(b"POST /api/stations/CP-U/change-configuration", _BEARER + _JSON,
                      b'{"key":"K","value":"\xed\xb0\x80"}'), b"400", b"value holds a lone UTF-16 surrogate",
                 id="body-utf8-surrogate-command"),
    pytest.param(_req(b"POST /api/id-tags", _BEARER + _JSON, b'{"id_tag":"T\\u0000"}'), b"400",
                 b"id_tag holds a NUL character", id="body-nul"),
    pytest.param(_req(b"POST /update.json", _JSON, b'{"api_key":"\\ud800","field1":"\\udc00"}'), b"401",
                 b"unknown api_key", id="ingest-json-surrogate"),
    pytest.param(_req(b"POST /update", b"Content-Type: application/x-www-form-urlencoded\r\n",
                      b"api_key=\xff&field1=1"), b"400", b"the body is not a form", id="ingest-form-ff"),
    pytest.param(_req(b"GET /update?api_key=%ED%A0%80&field1=%FF", b""), b"401", b"unknown api_key", id="ingest-query"),
    pytest.param(_req(b"GET /api/stations/CP-%ED%A0%80"), b"404", b"unknown station", id="path-station"),
    pytest.param(_req(b"GET /api/id-tags/%ED%A0%80%FF"), b"404", b"unknown id tag", id="path-tag"),
    pytest.param(_req(b"DELETE /api/id-tags/%C0%AF"), b"404", b"unknown id tag", id="path-tag-delete"),
    pytest.param(_req(b"PUT /api/load-groups/%ED%A0%80", _BEARER + _JSON, b'{"limit_a":1}'), b"404",
                 b"no load group", id="path-group"),
    pytest.param(_req(b"GET /api/id-tags?q=%ED%A0%80&status=%FF"), b"400", b"status must be", id="query-tags"),
    pytest.param(_req(b"GET /api/fleet?q=%ED%A0%80%FF"), b"200", b'"total":0', id="query-fleet"),
    pytest.param(_req(b"GET /api/readings.csv?from=%ED%A0%80"), b"400", b"is not ISO 8601", id="query-csv"),
    pytest.param(_req(b"GET /api/stations/CP-U/readings?since=%ED%A0%80"), b"400", b"is not ISO 8601",
                 id="query-since"),
    pytest.param(_req(b"GET /static/%ED%A0%80", b""), b"404", b"no such file", id="static"),
    pytest.param(_req(b"GET /nope%FF", b""), b"404", b"no such page", id="page"),
    pytest.param(_req(b"GET /station/%ED%A0%80", b""), b"200", b"<html", id="dashboard-station-page"),
    pytest.param(_req(b"GET /nope\xed\xa0\x80", b""), b"400", b"Invalid char in url path", id="raw-path"),
    pytest.param(_req(b"POST /api/id-tags", b"Cookie: picocharge_session=\xff\xed\xa0\x80\r\nX-CSRF-Token: \xff\r\n" +
                      _JSON, b'{"id_tag":"T"}'), b"401", b"API token required", id="cookie-bytes"),
    pytest.param(_req(b"GET /api/session", b"Cookie: \xe9=\xe9; picocharge_session=\"\\\xff\"\r\n"), b"401",
                 b"not signed in", id="cookie-quoted"),
    pytest.param(_req(b"GET /api/stations", b"Authorization: Bearer \xff\xed\xa0\x80\r\n"), b"401",
                 b"wrong API token", id="bearer-bytes"),
    pytest.param(_req(b"GET /metrics", b"Authorization: Bearer \xc3\xa9\r\n"), b"401", b"wrong API token",
                 id="metrics-bearer"),
    # the Host's bytes as \xNN (before: \udcff\udced, the surrogateescape aiohttp keeps them in)
    pytest.param(b"GET /api/stations HTTP/1.1\r\nHost: \xff\xed\r\nConnection: close\r\n" + _BEARER + b"\r\n", b"421",
                 b"Host '\\\\xff\\\\xed' is not a name this gateway serves", id="host-bytes"),
    # the stations' own HTTP doors (docs/ota.md), with the station's Basic credentials
    pytest.param(_req(b"GET /fw/%ED%A0%80/manifest.json", _STATION), b"404", b"no file manifest.json in a release",
                 id="fw-version"),
    pytest.param(_req(b"GET /fw/1.0.0/%FF%00", _STATION), b"404", b"no file", id="fw-file"),
    pytest.param(_req(b"PUT /diag/CP-U/%ED%A0%80.log", _STATION, b"abc"), b"400", b"a diagnostics file name is",
                 id="diag-name"),
    pytest.param(_req(b"PUT /diag/CP-%FF/x.log", _STATION, b"abc"), b"403", b"these are station CP-U's credentials",
                 id="diag-id"),
]


@pytest.mark.parametrize("req, status, text", HTTP)
async def test_unicode_doors__http_paths_queries_headers_and_bodies_with_bad_bytes(gws, req, status, text):
    gw = gws["password"]
    data = await _raw_http(gw, req)
    assert data.split(b" ")[1] == status and text in data, data[:600]
    await _still_serves(gw)


async def test_unicode_doors__a_dashboard_session_with_odd_csrf_bytes_is_403(gws):
    gw = gws["password"]
    # the session cookie from a real sign-in, the CSRF header with bytes no token has
    r = await _raw_http(gw, _req(b"POST /api/session", _JSON, json.dumps({"token": TEST_TOKEN}).encode()))
    cookie = [line for line in r.split(b"\r\n") if line.lower().startswith(b"set-cookie:")][0].split(b":", 1)[1]
    cookie = cookie.split(b";")[0].strip()
    for csrf in (b"\xff\xfe", b"\xed\xa0\x80", "\u00e9".encode(), b""):
        data = await _raw_http(gw, _req(b"POST /api/id-tags", b"Cookie: " + cookie + b"\r\nX-CSRF-Token: " + csrf +
                                        b"\r\n" + _JSON, b'{"id_tag":"T9"}'))
        assert data.split(b" ")[1] == b"403" and b"needs its X-CSRF-Token header" in data, data[:400]
    await _still_serves(gw)
