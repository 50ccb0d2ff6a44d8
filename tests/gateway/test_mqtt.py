"""MQTT uplink and ingest against a real mosquitto: QoS 1 telemetry, retained status, last will,
ingest without feedback loops, and a broker outage that loses nothing."""
import asyncio
import json
import time

import paho.mqtt.client as mqtt
import pytest
from ocpp.v16 import call

from support.gwhttp import http
from support.broker import PersistentBroker, Subscriber
from support.stations import Connected, boot, meter

pytestmark = pytest.mark.both_stores   # a storage test: on SQLite and on PostgreSQL


async def _send(cp, first, n, status=None):
    for i in range(first, first + n):
        await cp.call(call.MeterValues(connector_id=1, meter_value=[
            meter("2026-01-01T10:%02d:%02dZ" % (i // 60, i % 60), current=float(i), energy=i * 10)]))


def _expected(first, n, status="Charging"):
    return [{"current_a": float(i), "energy_wh": float(i * 10), "status": status,
             "ts": "2026-01-01T10:%02d:%02dZ" % (i // 60, i % 60), "seq": i, "src": "gateway"}
            for i in range(first, first + n)]


async def _wait(fn, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if await asyncio.get_running_loop().run_in_executor(None, fn):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_mqtt__telemetry_status_and_ingest_without_feedback(gateway, mqtt_broker):
    sub = Subscriber(mqtt_broker.port, "pc/#")
    try:
        gw = await gateway(mqtt_url="mqtt://127.0.0.1:%d/pc" % mqtt_broker.port)
        assert await _wait(lambda: gw.mqtt.connected)
        async with Connected(gw.port, "CP-1") as cp:
            await boot(cp)
            await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
            await _send(cp, 1, 3)
            got = await asyncio.to_thread(sub.wait, "pc/CP-1/telemetry", 3)
            assert [p for p, _r in got] == _expected(1, 3), got
            raw = [p for t, p, _r in sub.messages if t == "pc/CP-1/telemetry"][0]
            assert raw == (b'{"current_a": 1.0, "energy_wh": 10.0, "status": "Charging", '
                           b'"ts": "2026-01-01T10:00:01Z", "seq": 1,"src":"gateway"}'), raw
        assert await _wait(lambda: "CP-1" not in gw.sessions)
        await asyncio.sleep(0.2)
        # retained: a subscriber that comes later still gets the station's and the gateway's status
        late = Subscriber(mqtt_broker.port, "pc/+/status", client_id="late")
        try:
            got = await asyncio.to_thread(late.wait, "pc/CP-1/status", 1)
            assert got[-1] == ({"state": "offline", "status": "Charging"}, True), got
            assert (await asyncio.to_thread(late.wait, "pc/gateway/status", 1))[-1] == ({"state": "online"}, True)
        finally:
            late.close()
        # a board publishes on the same broker and prefix: stored once, re-published once, no loop
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="board")
        pub.connect("127.0.0.1", mqtt_broker.port)
        pub.loop_start()
        pub.publish("pc/CP-9/telemetry", json.dumps({"temp_c": 21.5, "humidity": 40, "status": "Available",
                                                      "ts": "2026-01-01T11:00:00Z"}), qos=1).wait_for_publish(5)
        pub.publish("pc/CP-9/telemetry", b"not json", qos=1).wait_for_publish(5)
        pub.publish("pc/CP-9/telemetry", json.dumps({"temp_c": "hot"}), qos=1).wait_for_publish(5)
        pub.loop_stop()
        pub.disconnect()
        got = await asyncio.to_thread(sub.wait, "pc/CP-9/telemetry", 3 + 1)
        await asyncio.sleep(0.5)
        s, rows = await http(gw, "GET", "/api/stations/CP-9/readings")
        assert rows == [{"seq": 4, "ts": "2026-01-01T11:00:00Z", "temp_c": 21.5, "humidity": 40.0,
                         "status": "Available"}], rows
        ours = [p for p, _r in sub.on("pc/CP-9/telemetry") if isinstance(p, dict) and p.get("src") == "gateway"]
        assert ours == [{"temp_c": 21.5, "humidity": 40.0, "status": "Available", "ts": "2026-01-01T11:00:00Z",
                         "seq": 4, "src": "gateway"}], sub.on("pc/CP-9/telemetry")
        s, m = await http(gw, "GET", "/metrics")
        assert 'picocharge_uplink_delivered_total{uplink="mqtt"} 4' in m and \
            'picocharge_outbox_depth{uplink="mqtt"} 0' in m and 'picocharge_ingest_total{path="mqtt"} 1' in m, m
    finally:
        sub.close()


async def test_mqtt__broker_outage_loses_nothing_and_keeps_order(gateway, tmp_path):
    broker = PersistentBroker(tmp_path).start()
    sub = Subscriber(broker.port, "pc/+/telemetry", client_id="keeper", clean=False)
    try:
        gw = await gateway(mqtt_url="mqtt://127.0.0.1:%d/pc" % broker.port, mqtt_ingest=False)
        assert await _wait(lambda: gw.mqtt.connected)
        async with Connected(gw.port, "CP-1") as cp:
            await boot(cp)
            await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
            await _send(cp, 1, 5)
            assert len(await asyncio.to_thread(sub.wait, "pc/CP-1/telemetry", 5)) == 5
            broker.stop()
            assert await _wait(lambda: not gw.mqtt.connected)
            await _send(cp, 6, 10)          # stored and acknowledged while the broker is down
            s, m = await http(gw, "GET", "/metrics")
            assert 'picocharge_outbox_depth{uplink="mqtt"} 10' in m, m
            broker.start()
            await _send(cp, 16, 5)
            got = await asyncio.to_thread(sub.wait, "pc/CP-1/telemetry", 20, timeout=30)
        assert [p for p, _r in got] == _expected(1, 20), [p["seq"] for p, _r in got]
    finally:
        sub.close()
        broker.stop()


async def test_mqtt__ingest_with_password_auth_takes_only_registered_stations(gateway, mqtt_broker):
    gw = await gateway(auth="password", mqtt_url="mqtt://127.0.0.1:%d/pc" % mqtt_broker.port)
    assert await _wait(lambda: gw.mqtt.connected)
    await gw.register("CP-R", "password-123")
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="boards")
    pub.connect("127.0.0.1", mqtt_broker.port)
    pub.loop_start()
    try:
        for sid in ("INTRUDER", "CP-R", "INTRUDER"):
            pub.publish("pc/%s/telemetry" % sid, json.dumps({"temp_c": 30.5, "ts": "2026-01-01T12:00:00Z"}),
                        qos=1).wait_for_publish(5)
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert await _wait(lambda: gw.metrics.ingest["mqtt"] >= 1)
    await asyncio.sleep(0.5)            # the intruder's messages had time to arrive too
    s, stations = await http(gw, "GET", "/api/stations")
    assert [st["id"] for st in stations] == ["CP-R"], stations
    s, rows = await http(gw, "GET", "/api/stations/CP-R/readings")
    assert [(r["temp_c"], r["ts"]) for r in rows] == [(30.5, "2026-01-01T12:00:00Z")], rows
    assert gw.metrics.ingest["mqtt"] == 1
