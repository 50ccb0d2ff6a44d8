"""Frames read by orjson (gateway/csms.py: _fast_call, _dumps_result) get the answers json gave.

Each frame goes through a real WebSocket to a gateway as it runs, then to the same gateway with
the orjson path switched off (every frame read by json.loads and answered by json.dumps, as the
gateway did before): the answers must be the same text. The frames are the ones where the two
readers differ: integers past 64 bits (orjson: a float), NaN and 1E400 (orjson refuses them,
json takes them), lone surrogates (orjson refuses them; json takes them, and csms then refuses
the frame as malformed: no UTF-8 encoder downstream takes such a string), nesting between json's and orjson's limits, duplicate
keys, non-ASCII message ids (json escapes them in the answer, orjson would not). After every
frame the connection must still answer a Heartbeat.
"""
import asyncio
import json

import websockets

from picocharge.gateway import csms

_TS = "2026-11-30T12:00:00Z"
_STATUS = '{"connectorId": %s, "errorCode": "NoError", "status": "Available"}'
_DEEP = "[" * 1010 + "]" * 1010      # orjson reads it (its limit: 1,024), json's stack does not

FRAMES = [
    ('[2, "s1", "StatusNotification", %s]' % (_STATUS % "18446744073709551616"), "PropertyConstraintViolation"),
    ('[2, "s2", "StatusNotification", %s]' % (_STATUS % "-9223372036854775809"), "PropertyConstraintViolation"),
    ('[2, "s3", "StatusNotification", %s]' % (_STATUS % "99999999999999999999999"), "PropertyConstraintViolation"),
    ('[2, "s4", "StatusNotification", %s]' % (_STATUS % "18446744073709551615"), "PropertyConstraintViolation"),
    ('[2, "s5", "StatusNotification", %s]' % (_STATUS % "1E400"), "TypeConstraintViolation"),
    ('[2, "s6", "StatusNotification", %s]' % (_STATUS % "NaN"), "TypeConstraintViolation"),
    ('[2, "s7", "StatusNotification", %s]' % (_STATUS % "1.0"), "TypeConstraintViolation"),
    ('[2, "s8", "StatusNotification", %s]' % (_STATUS % "1"), None),
    ('[2, "t1", "StartTransaction", {"connectorId": 1, "idTag": "T1", "meterStart": 1%s, "timestamp": "%s"}]'
     % ("0" * 30, _TS), "PropertyConstraintViolation"),
    ('[2, "t2", "StartTransaction", {"connectorId": 1, "idTag": "T1", "meterStart": 1e30, "timestamp": "%s"}]'
     % _TS, "TypeConstraintViolation"),
    ('[2, "b1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": 1%s}]' % ("0" * 25),
     "TypeConstraintViolation"),
    ('[2, "a1", "Authorize", {"idTag": "\\ud800"}]', "FormationViolation"),
    ('[2, "a2", "Authorize", {"idTag": "\\ud83d\\ude00"}]', None),     # a pair: one character, U+1F600
    ('[2, "d1", "Heartbeat", {"x": %s}]' % _DEEP, "FormationViolation"),
    ('[2, "d2", "Heartbeat", {"x": [[[1]]]}]', "FormationViolation"),
    ('[2, "k1", "StatusNotification", {"connectorId": "one", "connectorId": 1, "errorCode": "NoError", '
     '"status": "Available"}]', None),
    ('[2, "k2", "StatusNotification", {"connectorId": 1, "connectorId": "one", "errorCode": "NoError", '
     '"status": "Available"}]', "TypeConstraintViolation"),
    ('[2, "m\\u00e9-1", "StatusNotification", %s]' % (_STATUS % "1"), None),
    ('[2, "m\u00e9-2", "StatusNotification", %s]' % (_STATUS % "1"), None),
    ('[2, "m\\u2028-3", "StatusNotification", %s]' % (_STATUS % "1"), None),
    ('[2, "m\\ud800", "StatusNotification", %s]' % (_STATUS % "1"), "FormationViolation"),
    ('[2.0, "f1", "StatusNotification", %s]' % (_STATUS % "1"), None),
    ('[99999999999999999999999, "u1", {}]', "PropertyConstraintViolation"),
    ('[2, "u2", "Heartbeat", {}, 1]', "FormationViolation"),
    ('[2, 7, "Heartbeat", {}]', "FormationViolation"),
    ('[2, "u3", "Heartbeat", []]', "FormationViolation"),
    ('[2, "m1", "MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": "%s", "sampledValue": '
     '[{"value": "1234", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]}]' % _TS, None),
    ('[2, "m2", "MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": "%s", "sampledValue": '
     '[{"value": "1234", "measurand": "Energy.Active.Import.Register", "unit": "Wh", "phase": 1%s}]}]}]'
     % (_TS, "0" * 30), "TypeConstraintViolation"),
]


async def _answers(gw):
    """The text of the answer to every frame of FRAMES, one connection; a Heartbeat after each."""
    out = []
    ws = await websockets.connect("ws://127.0.0.1:%d/ocpp/CP-J" % gw.port, subprotocols=["ocpp1.6"],
                                  max_size=2 ** 20)
    try:
        for frame, _code in FRAMES:
            await ws.send(frame)
            out.append(await asyncio.wait_for(ws.recv(), 10))
            await ws.send('[2, "hb", "Heartbeat", {}]')
            hb = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert hb[:2] == [3, "hb"] and list(hb[2]) == ["currentTime"], (frame[:80], hb)
    finally:
        await ws.close()
    return out


async def test_frames_orjson__same_answers_as_json_and_the_connection_lives_on(gateway, monkeypatch):
    gw = await gateway(auth="none")
    fast = await _answers(gw)
    with monkeypatch.context() as m:
        m.setattr(csms, "_fast_call", lambda raw: None)
        m.setattr(csms, "_dumps_result", lambda uid, out: json.dumps([3, uid, out], separators=(",", ":")))
        before = await _answers(gw)
    for (frame, code), got, want in zip(FRAMES, fast, before):
        assert got == want, (frame[:120], got, want)
        ans = json.loads(got)
        if code is None:
            assert ans[0] == 3, (frame[:120], got)
        else:
            assert ans[0] == 4 and ans[2] == code, (frame[:120], got)
    # the integers past 64 bits are named as sent, not as orjson's floats
    assert "18446744073709551616 is out of range" in fast[0], fast[0]
    assert "99999999999999999999999" in fast[2] and "e+22" not in fast[2], fast[2]
    assert json.loads(fast[len(FRAMES) - 6]) == [4, "u1", "PropertyConstraintViolation",
                                                 "unknown message type id 99999999999999999999999", {}]
    # a lone surrogate is refused where it is; in the message id, the answer's id is "-1" (OCPP-J's
    # id for a frame whose id cannot be read): the station could not match that string anyway
    i = [f for f, _c in FRAMES].index('[2, "a1", "Authorize", {"idTag": "\\ud800"}]')
    assert json.loads(fast[i])[:2] == [4, "a1"] and "payload.idTag holds a lone UTF-16 surrogate" in fast[i], fast[i]
    i = [f for f, _c in FRAMES].index('[2, "m\\ud800", "StatusNotification", %s]' % (_STATUS % "1"))
    assert json.loads(fast[i])[:2] == [4, "-1"] and "message id holds a lone" in fast[i], fast[i]
    # a non-ASCII message id comes back escaped, as json.dumps writes it
    i = [f for f, _c in FRAMES].index('[2, "m\u00e9-2", "StatusNotification", %s]' % (_STATUS % "1"))
    assert fast[i] == '[3,"m\\u00e9-2",{}]', fast[i]
    assert fast[i + 1] == '[3,"m\\u2028-3",{}]', fast[i + 1]


def test_frames_orjson__a_valid_call_is_read_by_orjson_and_answered_as_json_writes_it():
    frame = FRAMES[-2][0]
    uid, action, payload = csms._fast_call(frame)
    assert (uid, action, payload) == tuple(json.loads(frame)[1:]), (uid, action, payload)
    assert csms._fast_call(frame.encode()) == (uid, action, payload)
    for frame in ('[3, "x", {}]', '[2, "x", "Heartbeat"]', '[2, "x", "Heartbeat", {"a": NaN}]', "nope",
                  '[2, "x", 5, {}]'):
        assert csms._fast_call(frame) is None, frame
    out = {"currentTime": _TS, "interval": 300, "status": csms.RegistrationStatus.accepted}
    assert csms._dumps_result("id-1", out) == json.dumps([3, "id-1", out], separators=(",", ":"))
    assert csms._dumps_result("\u00e9", {}) == '[3,"\\u00e9",{}]'
    assert csms._dumps_result("i", {"n": 2 ** 70}) == '[3,"i",{"n":%d}]' % 2 ** 70


def _station_row(db):
    return tuple(db.execute("SELECT vendor, model FROM stations WHERE id='CP-S'").fetchone() or ())


async def _ask(ws, frame):
    await ws.send(frame)
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def test_frames_orjson__a_lone_surrogate_in_a_boot_is_refused_and_nothing_is_written(gateway, caplog):
    """Before: json read "\\ud800" into a str that SQLite's UTF-8 encoder refused (UnicodeEncodeError),
    the station got InternalError and the gateway logged a traceback; the vendor stayed in memory."""
    gw = await gateway(auth="none")
    ws = await websockets.connect("ws://127.0.0.1:%d/ocpp/CP-S" % gw.port, subprotocols=["ocpp1.6"])
    try:
        got = await _ask(ws, '[2, "b1", "BootNotification", {"chargePointVendor": "V\\ud800", "chargePointModel": "M"}]')
        assert got[:3] == [4, "b1", "FormationViolation"] and got[4] == {} and got[3].startswith(
            "frame is not valid OCPP-J text: the string at payload.chargePointVendor holds a lone UTF-16 "
            "surrogate"), got
        # nothing of it kept: no vendor in the database nor in memory
        assert await gw.store.run(_station_row) in ((), (None, None)), await gw.store.run(_station_row)
        assert gw.stations.get("CP-S", {}).get("vendor") is None, gw.stations.get("CP-S")
        # the connection lives on
        got = await _ask(ws, '[2, "hb", "Heartbeat", {}]')
        assert got[:2] == [3, "hb"], got
        # in a key, deeper, after a valid pair: named where it is
        got = await _ask(ws, '[2, "b2", "BootNotification", {"chargePointVendor": "\\ud83d\\ude00", '
                             '"chargePointModel": "M", "x": [{"\\udfff": 1}]}]')
        assert got[:3] == [4, "b2", "FormationViolation"] and "the string at payload.x[0].\\udfff (the key) " \
            "holds" in got[3], got
        # a trailing one in a CALLRESULT is refused too, by its id
        got = await _ask(ws, '[3, "gw-1", {"status": "Accepted\\udbff"}]')
        assert got[:3] == [4, "gw-1", "FormationViolation"] and "payload.status holds" in got[3], got
        # the station boots with a valid frame
        got = await _ask(ws, '[2, "b3", "BootNotification", {"chargePointVendor": "V\\u00e9", "chargePointModel": "M"}]')
        assert got[:2] == [3, "b3"] and got[2]["status"] == "Accepted", got
    finally:
        await ws.close()
    assert await gw.store.run(_station_row) == ("V\u00e9", "M")
    assert "UnicodeEncodeError" not in caplog.text and "handler failed" not in caplog.text, caplog.text
    assert "station=CP-S msg=b1 refused: a lone surrogate in payload.chargePointVendor" in caplog.text, caplog.text
