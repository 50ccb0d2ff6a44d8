"""Values and times checked at the door (issue 10): what a station, an ingest client or an MQTT
publisher sends is refused when it is not a finite number in its physical range or not a time
in the sane window: an OCPP CALLERROR for that frame (the connection lives on), 400 for ingest,
a logged (once, counted) drop for MQTT. Nothing refused is stored, and the API stays JSON."""
import asyncio
import json
import logging
import time

import paho.mqtt.client as mqtt
import pytest
import websockets

from support.gwhttp import http
from picocharge.gateway.logonce import reset_all

pytestmark = pytest.mark.both_stores   # a storage test: on SQLite and on PostgreSQL


@pytest.fixture(autouse=True)
def _fresh_log_once():
    reset_all()     # what an earlier test logged does not hold back this test's lines


def _strict(text):
    """json.loads that refuses NaN/Infinity (what a browser's JSON.parse does)."""
    def refuse(c):
        raise ValueError("not JSON: %s" % c)
    return json.loads(text, parse_constant=refuse)


def _now_iso(offset=0):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))


def _mv(value, measurand="Current.Import", ts=None, unit=None):
    sv = {"value": value, "measurand": measurand}
    if unit:
        sv["unit"] = unit
    return {"connectorId": 1, "meterValue": [{"timestamp": ts or _now_iso(), "sampledValue": [sv]}]}


async def _frame(ws, uid, action, payload, raw=None):
    await ws.send(raw if raw is not None else json.dumps([2, uid, action, payload]))
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def test_door__ocpp_values_and_times_out_of_range_get_a_callerror_and_nothing_is_stored(gateway):
    gw = await gateway()
    future = _now_iso(2 * 86400)
    cases = [
        ("MeterValues", _mv("NaN"), "PropertyConstraintViolation"),
        ("MeterValues", _mv("1e999"), "PropertyConstraintViolation"),
        ("MeterValues", _mv("-Infinity", "Voltage"), "PropertyConstraintViolation"),
        ("MeterValues", _mv("5000", "Current.Import"), "PropertyConstraintViolation"),
        ("MeterValues", _mv("101", "Temperature", unit="Celsius"), None),     # in range: stored
        ("MeterValues", _mv("1000", "Temperature", unit="Celsius"), "PropertyConstraintViolation"),
        ("MeterValues", _mv("2e9", "Energy.Active.Import.Register", unit="kWh"), "PropertyConstraintViolation"),
        ("MeterValues", _mv("warm", "Voltage"), "TypeConstraintViolation"),
        ("MeterValues", _mv("1.5", ts="1999-12-31T23:59:59Z"), "PropertyConstraintViolation"),
        ("MeterValues", _mv("1.5", ts=future), "PropertyConstraintViolation"),
        ("MeterValues", _mv("1.5", ts="0001-01-01T00:00:00+01:00"), "TypeConstraintViolation"),
        ("MeterValues", _mv("1.5", ts="yesterday"), "TypeConstraintViolation"),
        ("StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "1970-01-01T00:00:00Z"},
         "PropertyConstraintViolation"),
        ("StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 10 ** 30, "timestamp": _now_iso()},
         "PropertyConstraintViolation"),
        ("StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "x"},
         "TypeConstraintViolation"),
        ("StopTransaction", {"transactionId": 1, "meterStop": 5, "timestamp": future}, "PropertyConstraintViolation"),
        ("StopTransaction", {"transactionId": 2 ** 70, "meterStop": 5, "timestamp": _now_iso()},
         "PropertyConstraintViolation"),
        ("StopTransaction", {"transactionId": 1, "meterStop": 5, "timestamp": _now_iso(),
                             "transactionData": [_mv("nan")["meterValue"][0]]}, "PropertyConstraintViolation"),
        ("MeterValues", dict(_mv("1.5"), connectorId=2 ** 70), "PropertyConstraintViolation"),
        ("MeterValues", dict(_mv("1.5"), connectorId=-1), "PropertyConstraintViolation"),
        ("MeterValues", dict(_mv("1.5"), transactionId=2 ** 70), "PropertyConstraintViolation"),
        ("StatusNotification", {"connectorId": 2 ** 64, "errorCode": "NoError", "status": "Available"},
         "PropertyConstraintViolation"),
        ("DataTransfer", {"vendorId": "PicoCharge", "messageId": "Climate", "data": '{"humidity": NaN}'},
         "PropertyConstraintViolation"),
        ("DataTransfer", {"vendorId": "PicoCharge", "messageId": "Climate", "data": '{"humidity": 1e999}'},
         "PropertyConstraintViolation"),
        ("DataTransfer", {"vendorId": "PicoCharge", "messageId": "Climate", "data": '{"board_temp_c": 500}'},
         "PropertyConstraintViolation"),
        ("DataTransfer", {"vendorId": "PicoCharge", "messageId": "Climate", "data": "[" * 5000},
         None),     # not JSON we can read: Rejected, as any other bad Climate data
        ("DataTransfer", {"vendorId": "PicoCharge", "messageId": "Humidity", "data": "nan"},
         "PropertyConstraintViolation"),
        # U+0000 in any text: no database text column takes it (PostgreSQL refuses it outright)
        ("BootNotification", {"chargePointVendor": "Pico\u0000Charge", "chargePointModel": "M"},
         "PropertyConstraintViolation"),
        ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available",
                                "info": "\u0000"}, "PropertyConstraintViolation"),
        ("StartTransaction", {"connectorId": 1, "idTag": "T\u0000", "meterStart": 0, "timestamp": _now_iso()},
         "PropertyConstraintViolation"),
    ]
    async with websockets.connect("ws://127.0.0.1:%d/ocpp/CP-1" % gw.port, subprotocols=["ocpp1.6"]) as ws:
        for i, (action, payload, code) in enumerate(cases):
            got = await _frame(ws, "m%d" % i, action, payload)
            if code is None:
                assert got[0] == 3, (action, payload, got)
            else:
                assert got[:3] == [4, "m%d" % i, code] and got[3], (action, payload, got)
        # a bare NaN in the frame itself: read as a float by Python's json, refused by the schema
        got = await _frame(ws, None, None, None, raw='[2, "nan", "StartTransaction", {"connectorId": 1, '
                                                     '"idTag": "T", "meterStart": NaN, "timestamp": "%s"}]'
                                                     % _now_iso())
        assert got[:3] == [4, "nan", "TypeConstraintViolation"], got
        got = await _frame(ws, "hb", "Heartbeat", {})      # the connection lives on
        assert got[:2] == [3, "hb"], got
    s, rows = await http(gw, "GET", "/api/stations/CP-1/readings")
    assert s == 200 and [r.get("chip_temp_c") for r in rows] == [101.0], rows
    tx = await gw.store.run(lambda db: db.execute("SELECT COUNT(*) FROM transactions").fetchone()[0])
    assert tx == 0, tx
    s, text = await http(gw, "GET", "/api/stations", headers={"Accept": "application/json"})
    assert s == 200
    _strict(json.dumps(text))


async def test_door__ingest_refuses_values_and_times_out_of_range_with_400_naming_the_field(gateway):
    gw = await gateway()
    s, out = await http(gw, "POST", "/api/stations", {"id": "CP-1", "thingspeak_channel": 3,
                                                      "thingspeak_key": "WKEY0000000001"})
    assert s == 201, out
    form = "application/x-www-form-urlencoded"
    for raw, ctype, msg in [
        (b"api_key=WKEY0000000001&field1=nan", form, "field1 must be a finite number"),
        (b"api_key=WKEY0000000001&field3=1e999", form, "field3 must be a finite number"),
        (b"api_key=WKEY0000000001&field2=150", form, "field2 150.0 is outside its range 0..100 %RH"),
        (b"api_key=WKEY0000000001&field4=-5", form, "field4 -5.0 is outside its range 0..1500 V"),
        (b"api_key=WKEY0000000001&field8=2.5", form, "field8 (status code) must be an integer"),
        (b"api_key=WKEY0000000001&field1=20&created_at=0001-01-01T00:00:00%2B01:00", form,
         "created_at/ts '0001-01-01T00:00:00+01:00' is not ISO 8601"),
        (b"api_key=WKEY0000000001&field1=20&created_at=1999-01-01T00:00:00Z", form,
         "created_at/ts 1999-01-01T00:00:00Z is before 2000-01-01T00:00:00Z"),
        (b"api_key=WKEY0000000001&field1=20&created_at=2999-01-01T00:00:00Z", form,
         "created_at/ts 2999-01-01T00:00:00Z is more than 24 hours ahead"),
        (b'{"api_key": "WKEY0000000001", "field1": NaN}', "application/json", "field1 must be a finite number"),
        (b'{"api_key": "WKEY0000000001", "field5": -1e999}', "application/json", "field5 must be a finite number"),
    ]:
        s, out = await http(gw, "POST", "/update", raw=raw, headers={"Content-Type": ctype})
        assert s == 400 and msg in out, (raw, s, out)
    s, rows = await http(gw, "GET", "/api/stations/CP-1/readings")
    assert rows == [], rows
    s, out = await http(gw, "POST", "/update", raw=b"api_key=WKEY0000000001&field1=21.5&field8=2",
                        headers={"Content-Type": form})
    assert s == 200, out


async def _wait(fn, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if await fn():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_door__mqtt_payloads_that_escaped_the_callback_are_dropped_and_later_telemetry_is_stored(
        gateway, mqtt_broker, caplog):
    caplog.set_level(logging.INFO)
    gw = await gateway(mqtt_url="mqtt://127.0.0.1:%d/pc" % mqtt_broker.port)
    assert await _wait(lambda: asyncio.sleep(0, gw.mqtt.connected))
    bad = [json.dumps({"temp_c": 20.0, "ts": "0001-01-01T00:00:00+01:00"}).encode(),
           b"[" * 100000 + b"]" * 100000,          # RecursionError in json.loads
           b'{"temp_c": 20.0, "status": "\xff\xfe"}',   # not UTF-8
           b'{"temp_c": ' + b"1" * (1 << 20) + b"}",  # 1 MB
           b'{"temp_c": NaN}', b'{"humidity": 1e999}', b'{"voltage_v": 99999}',
           json.dumps({"temp_c": 20.0, "ts": "2999-01-01T00:00:00Z"}).encode(),
           json.dumps({"temp_c": 20.0, "status": ["x"] * 1000}).encode()]
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="board")
    pub.connect("127.0.0.1", mqtt_broker.port)
    pub.loop_start()
    try:
        for p in bad:
            pub.publish("pc/CP-9/telemetry", p, qos=1).wait_for_publish(10)
        for _ in range(300):    # the same bad payload, again and again
            pub.publish("pc/CP-9/telemetry", b'{"temp_c": NaN}', qos=1)
        pub.publish("pc/CP-9/telemetry", json.dumps({"temp_c": 21.5, "status": "Available",
                                                     "ts": "2026-01-01T11:00:00Z"}), qos=1).wait_for_publish(10)
    finally:
        pub.loop_stop()
        pub.disconnect()

    async def stored():
        s, rows = await http(gw, "GET", "/api/stations/CP-9/readings")
        return s == 200 and rows
    assert await _wait(stored), gw.mqtt.dropped
    s, rows = await http(gw, "GET", "/api/stations/CP-9/readings")
    assert rows == [{"seq": 1, "ts": "2026-01-01T11:00:00Z", "temp_c": 21.5, "status": "Available"}], rows
    assert gw.mqtt.dropped == len(bad) + 300, gw.mqtt.dropped
    assert gw.mqtt.connected
    lines = [r for r in caplog.records if "mqtt ingest" in r.getMessage()]
    assert len(lines) <= len(bad), [r.getMessage() for r in lines]
    assert not [r for r in caplog.records if r.exc_info or "Exception in callback" in r.getMessage()], \
        [r.getMessage() for r in caplog.records if r.exc_info]
    nan = [r.getMessage() for r in lines if "temp_c must be a finite number" in r.getMessage()]
    assert len(nan) == 1, nan


async def test_door__a_station_repeating_a_refused_frame_is_logged_once_with_a_count(gateway, caplog):
    caplog.set_level(logging.INFO)
    gw = await gateway()
    async with websockets.connect("ws://127.0.0.1:%d/ocpp/CP-1" % gw.port, subprotocols=["ocpp1.6"]) as ws:
        for i in range(300):
            got = await _frame(ws, "m%d" % i, "MeterValues", _mv(str(5000 + i)))
            assert got[:3] == [4, "m%d" % i, "PropertyConstraintViolation"], got
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1 and "station=CP-1 msg=m0 action=MeterValues refused: PropertyConstraintViolation" \
        in refused[0], refused
