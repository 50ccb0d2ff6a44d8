"""Charge points built on the ocpp package against the real gateway (in-process): full sessions,
commands from the API, bad frames and refused handshakes."""
import asyncio
import json

import pytest
import websockets
from ocpp.v16 import call

from picocharge.gateway.app import STATION_401
from picocharge.gateway.store import is_url, redact
from support.gwhttp import basic, http
from support.stations import Connected, boot, meter


@pytest.mark.both_stores
async def test_session__full_transaction_is_stored_and_served_by_the_api(gateway):
    gw = await gateway(auth="none")
    async with Connected(gw.port, "CP-1") as cp:
        r = await boot(cp)
        assert (r.status, r.interval) == ("Accepted", 300), r
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
        a = await cp.call(call.Authorize(id_tag="TAG1"))
        assert a.id_tag_info == {"status": "Accepted"}, a
        st = await cp.call(call.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=100,
                                                 timestamp="2026-01-01T10:00:00Z"))
        assert st.transaction_id == 1 and st.id_tag_info == {"status": "Accepted"}, st
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
        await cp.call(call.MeterValues(connector_id=1, transaction_id=1, meter_value=[
            meter("2026-01-01T10:00:10Z", current=15.5, voltage=230.1, power=3566.55, energy=110,
                  temp=24.0, chip=31.5)]))
        # kWh and kW are converted to Wh and W
        await cp.call(call.MeterValues(connector_id=1, meter_value=[{"timestamp": "2026-01-01T10:00:20Z",
            "sampled_value": [{"value": "0.2", "measurand": "Energy.Active.Import.Register", "unit": "kWh"},
                              {"value": "3.5", "measurand": "Power.Active.Import", "unit": "kW"}]}]))
        dt = await cp.call(call.DataTransfer(vendor_id="PicoCharge", message_id="Humidity", data="41.5"))
        assert dt.status == "Accepted", dt      # older firmware's message
        dt = await cp.call(call.DataTransfer(vendor_id="PicoCharge", message_id="Climate",
                                             data='{"humidity":43,"board_temp_c":30.25}'))
        assert dt.status == "Accepted", dt
        dt = await cp.call(call.DataTransfer(vendor_id="PicoCharge", message_id="Climate", data='{"board_temp_c":29}'))
        assert dt.status == "Accepted", dt
        for bad in ("43", '{"humidity":"wet"}', '{"humidity":43,"pressure":1013}', "{}", "not json", None):
            dt = await cp.call(call.DataTransfer(vendor_id="PicoCharge", message_id="Climate", data=bad))
            assert dt.status == "Rejected" and "board_temp_c" in dt.data, (bad, dt)
        dt = await cp.call(call.DataTransfer(vendor_id="PicoCharge", message_id="Pressure", data="1013"))
        assert dt.status == "UnknownMessageId", dt
        dt = await cp.call(call.DataTransfer(vendor_id="Other", message_id="X", data="1"))
        assert dt.status == "UnknownVendorId", dt
        await cp.call(call.StopTransaction(meter_stop=300, timestamp="2026-01-01T10:01:00Z", transaction_id=1,
                                           reason="Local"))
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available"))
        hb = await cp.call(call.Heartbeat())
        assert hb.current_time.endswith("Z"), hb

        status, rows = await http(gw, "GET", "/api/stations/CP-1/readings")
        assert status == 200, rows
        got = [{k: v for k, v in r.items() if k != "ts" or v.startswith("2026-01")} for r in rows]
        assert got == [
            {"seq": 1, "ts": "2026-01-01T10:00:10Z", "temp_c": 24.0, "current_a": 15.5, "voltage_v": 230.1,
             "power_w": 3566.55, "energy_wh": 110.0, "chip_temp_c": 31.5, "status": "Charging"},
            {"seq": 2, "ts": "2026-01-01T10:00:20Z", "power_w": 3500.0, "energy_wh": 200.0, "status": "Charging"},
            {"seq": 3, "humidity": 41.5, "status": "Charging"},
            {"seq": 4, "humidity": 43.0, "chip_temp_c": 30.25, "status": "Charging"},
            {"seq": 5, "chip_temp_c": 29.0, "status": "Charging"},
        ], rows
        status, tx = await http(gw, "GET", "/api/stations/CP-1/transactions")
        assert [(t["id"], t["id_tag"], t["meter_start"], t["meter_stop"], t["start_ts"], t["stop_ts"], t["reason"])
                for t in tx] == [(1, "TAG1", 100, 300, "2026-01-01T10:00:00Z", "2026-01-01T10:01:00Z", "Local")], tx
        status, sts = await http(gw, "GET", "/api/stations")
        assert [(s["id"], s["connected"], s["status"], s["vendor"], s["last_reading"]["humidity"],
                 s["last_reading"]["energy_wh"]) for s in sts] == [
            ("CP-1", True, "Available", "PicoCharge", 43.0, 200.0)], sts
        status, one = await http(gw, "GET", "/api/stations/CP-1")
        assert one["id"] == "CP-1" and "password" not in one and "pw_hash" not in one, one


async def test_session__commands_from_the_api_reach_the_station_and_return_its_answer(gateway):
    gw = await gateway(auth="none")
    async with Connected(gw.port, "CP-2") as cp:
        await boot(cp)
        s, out = await http(gw, "POST", "/api/stations/CP-2/remote-start", {"id_tag": "TAG9"})
        assert (s, out) == (200, {"status": "Accepted"}), out
        s, out = await http(gw, "POST", "/api/stations/CP-2/remote-stop", {"transaction_id": 7})
        assert (s, out) == (200, {"status": "Accepted"}), out
        s, out = await http(gw, "POST", "/api/stations/CP-2/reset", {"type": "Hard"})
        assert (s, out) == (200, {"status": "Accepted"}), out
        s, out = await http(gw, "POST", "/api/stations/CP-2/get-configuration", {})
        assert (s, out) == (200, {"configurationKey": [
            {"key": "MeterValueSampleInterval", "readonly": False, "value": "60"}]}), out
        s, out = await http(gw, "POST", "/api/stations/CP-2/change-configuration",
                            {"key": "MeterValueSampleInterval", "value": 10})
        assert (s, out) == (200, {"status": "Accepted"}), out
        s, out = await http(gw, "POST", "/api/stations/CP-2/unlock-connector", {"connector_id": 1})
        assert (s, out) == (200, {"status": "NotSupported"}), out
        # the station does not implement ChangeAvailability: its CALLERROR comes back as 502
        s, out = await http(gw, "POST", "/api/stations/CP-2/change-availability", {"type": "Inoperative"})
        assert (s, out) == (502, {"error": "station CP-2 answered ChangeAvailability with NotImplemented: "
                                           "Request Action is recognized but not supported by the receiver",
                                  "code": "NotImplemented",
                                  "details": {"cause": "No handler for ChangeAvailability registered."}}), out
        s, out = await http(gw, "POST", "/api/stations/CP-2/reset", {"type": "Sideways"})
        assert (s, out) == (400, {"error": "bad body for reset: 'Sideways' is not one of ['Hard', 'Soft'] (type)"}), out
        s, out = await http(gw, "POST", "/api/stations/CP-2/remote-start", {})
        assert s == 400 and "id_tag" in out["error"], out
        assert cp.received == [("RemoteStartTransaction", "TAG9"), ("RemoteStopTransaction", 7),
                               ("Reset", "Hard"), ("ChangeConfiguration", "MeterValueSampleInterval", "10")], \
            cp.received
    await asyncio.sleep(0.1)
    s, out = await http(gw, "POST", "/api/stations/CP-2/reset", {"type": "Soft"})
    assert (s, out) == (409, {"error": "station CP-2 is not connected"}), out


async def _raw(port, sid="CP-RAW"):
    return await websockets.connect("ws://127.0.0.1:%d/ocpp/%s" % (port, sid), subprotocols=["ocpp1.6"])


@pytest.mark.parametrize("frame, expected", [
    ("this is not json", [4, "-1", "FormationViolation", "frame is not valid JSON", {}]),
    ('{"a": 1}', [4, "-1", "FormationViolation", None, {}]),
    ('[2, "m1", "FlyToTheMoon", {}]', [4, "m1", "NotImplemented", "unknown action 'FlyToTheMoon'", {}]),
    ('[2, "m2", "Heartbeat", {"extra": 1}]', [4, "m2", "FormationViolation", None, {}]),
    ('[2, "m3", "StatusNotification", {"connectorId": "one", "errorCode": "NoError", "status": "Available"}]',
     [4, "m3", "TypeConstraintViolation", "'one' is not of type 'integer' (connectorId)", {}]),
    ('[2, "m4", "Authorize", {"idTag": "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}]', [4, "m4", "TypeConstraintViolation", None, {}]),
    ('[2, "m5", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Flying"}]',
     [4, "m5", "FormationViolation", None, {}]),
    ('[2, "m6", "BootNotification", {"chargePointVendor": "V"}]', [4, "m6", "ProtocolError", None, {}]),
    ('[2, "m7", "Heartbeat", "not an object"]', [4, "m7", "FormationViolation", None, {}]),
    ('[9, "m8", {}]', [4, "m8", "PropertyConstraintViolation", None, {}]),
])
async def test_session__bad_frame_gets_callerror_and_connection_stays_open(gateway, frame, expected):
    gw = await gateway(auth="none")
    ws = await _raw(gw.port)
    try:
        await ws.send(frame)
        got = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if expected[3] is None:
            expected = expected[:3] + [got[3]] + expected[4:]
        assert got == expected, got
        # the same connection still works
        await ws.send('[2, "hb", "Heartbeat", {}]')
        ok = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert ok[:2] == [3, "hb"] and list(ok[2]) == ["currentTime"], ok
    finally:
        await ws.close()


async def test_session__oversized_frame_closes_with_1009_and_others_are_unaffected(gateway):
    gw = await gateway(auth="none", max_frame=4096)
    other = await _raw(gw.port, "CP-OK")
    ws = await _raw(gw.port)
    await ws.send('[2, "big", "DataTransfer", {"vendorId": "PicoCharge", "data": "%s"}]' % ("x" * 10000))
    with pytest.raises(websockets.ConnectionClosed) as e:
        await asyncio.wait_for(ws.recv(), 5)
    assert e.value.rcvd.code == 1009, e.value
    await other.send('[2, "hb", "Heartbeat", {}]')
    assert json.loads(await asyncio.wait_for(other.recv(), 5))[:2] == [3, "hb"]
    await other.close()


async def test_session__password_auth_refuses_before_the_upgrade(gateway):
    gw = await gateway(auth="password")
    s, out = await http(gw, "POST", "/api/stations", {"id": "CP-A", "password": "correct-horse-battery-1"})
    assert s == 201 and "password" not in out, out
    s, out = await http(gw, "POST", "/api/stations", {"id": "CP-B"})
    assert s == 201 and len(out["password"]) >= 16, out
    s, dup = await http(gw, "POST", "/api/stations", {"id": "CP-A", "password": "another-password-1"})
    assert (s, dup) == (409, {"error": "station CP-A is already registered"}), dup
    for sid, headers, why in [
        ("CP-A", basic("CP-A", "wrong-password"), "wrong password"),
        ("CP-A", None, "HTTP Basic credentials required"),
        ("CP-A", basic("CP-B", "correct-horse-battery-1"), "HTTP Basic credentials required"),
        ("CP-X", basic("CP-X", "whatever-pass"), "unknown station"),
    ]:
        with pytest.raises(websockets.InvalidStatus) as e:
            await websockets.connect("ws://127.0.0.1:%d/ocpp/%s" % (gw.port, sid), subprotocols=["ocpp1.6"],
                                     additional_headers=headers)
        resp = e.value.response
        # one answer whatever was wrong, so that it does not tell which station ids exist; the
        # reason (`why`) is in the gateway's log only
        assert (resp.status_code, resp.body.decode()) == (401, STATION_401 + "\n"), (sid, why, resp.body)
        assert resp.headers["WWW-Authenticate"].startswith("Basic"), resp.headers
    with pytest.raises(websockets.InvalidStatus) as e:
        await websockets.connect("ws://127.0.0.1:%d/ocpp/CP-A" % gw.port, additional_headers=basic("CP-A", "correct-horse-battery-1"))
    assert e.value.response.status_code == 400 and b"ocpp1.6" in e.value.response.body, e.value.response.body
    async with Connected(gw.port, "CP-A", headers=basic("CP-A", "correct-horse-battery-1")) as cp:
        assert (await boot(cp)).status == "Accepted"
    async with Connected(gw.port, "CP-B", headers=basic("CP-B", out["password"])) as cp:
        assert (await boot(cp)).status == "Accepted"
    s, m = await http(gw, "GET", "/metrics")
    assert "picocharge_ocpp_refused_total 5" in m, m


@pytest.mark.both_stores
async def test_session__new_password_for_a_replaced_board(gateway):
    gw = await gateway(auth="password")
    await gw.register("CP-R", "old-board-pass1")
    url = "ws://127.0.0.1:%d/ocpp/CP-R" % gw.port
    async with Connected(gw.port, "CP-R", headers=basic("CP-R", "old-board-pass1")) as cp:
        assert (await boot(cp)).status == "Accepted"
        s, out = await http(gw, "PUT", "/api/stations/CP-R/password", {"password": "new-board-password-2"})
        assert s == 200 and out["id"] == "CP-R" and "password" not in out, out
        assert (await cp.call(call.Heartbeat())).current_time   # the open session carries on
    with pytest.raises(websockets.InvalidStatus) as e:
        await websockets.connect(url, subprotocols=["ocpp1.6"], additional_headers=basic("CP-R", "old-board-pass1"))
    assert e.value.response.status_code == 401
    async with Connected(gw.port, "CP-R", headers=basic("CP-R", "new-board-password-2")) as cp:
        assert (await boot(cp)).status == "Accepted"
    s, out = await http(gw, "PUT", "/api/stations/CP-R/password")     # none given: one is generated
    assert s == 200 and len(out["password"]) >= 16, out
    async with Connected(gw.port, "CP-R", headers=basic("CP-R", out["password"])) as cp:
        assert (await boot(cp)).status == "Accepted"
    for body, status, why in [({"password": "short"}, 400, "16..40 printable ASCII characters"),
                              ({"password": 12345678}, 400, "16..40 printable ASCII characters")]:
        s, out = await http(gw, "PUT", "/api/stations/CP-R/password", body)
        assert s == status and why in out["error"], (body, s, out)
    s, out = await http(gw, "PUT", "/api/stations/CP-NONE/password", {"password": "whatever-123"})
    assert s == 404 and "unknown station" in out["error"], out


@pytest.mark.both_stores
async def test_session__pending_station_waits_for_the_operator(gateway):
    gw = await gateway(auth="pending")
    async with Connected(gw.port, "CP-NEW", headers=basic("CP-NEW", "its-own-pass")) as cp:
        r = await boot(cp)
        assert (r.status, r.interval) == ("Pending", 60), r
    s, out = await http(gw, "POST", "/api/stations/CP-NEW/accept")
    assert (s, out["state"]) == (200, "accepted"), out
    async with Connected(gw.port, "CP-NEW", headers=basic("CP-NEW", "its-own-pass")) as cp:
        assert (await boot(cp)).status == "Accepted"
    # the password it came with is now its password
    with pytest.raises(websockets.InvalidStatus) as e:
        await websockets.connect("ws://127.0.0.1:%d/ocpp/CP-NEW" % gw.port, subprotocols=["ocpp1.6"],
                                 additional_headers=basic("CP-NEW", "not-its-pass"))
    assert e.value.response.status_code == 401
    s, out = await http(gw, "POST", "/api/stations/CP-NEW/reject")
    async with Connected(gw.port, "CP-OTHER", headers=basic("CP-OTHER", "other-pass-1")) as cp:
        assert (await boot(cp)).status == "Pending"
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect("ws://127.0.0.1:%d/ocpp/CP-NEW" % gw.port, subprotocols=["ocpp1.6"],
                                 additional_headers=basic("CP-NEW", "its-own-pass"))


@pytest.mark.both_stores
async def test_session__a_pending_station_stores_nothing_until_accepted(gateway):
    # found attacking the gateway: a station nobody accepted started, metered and stopped a
    # transaction, all stored and exported
    from ocpp.exceptions import SecurityError

    gw = await gateway(auth="pending")
    async with Connected(gw.port, "CP-NEW", headers=basic("CP-NEW", "its-own-password-1")) as cp:
        assert (await boot(cp)).status == "Pending"
        assert (await cp.call(call.Heartbeat())).current_time
        for c in (call.StartTransaction(connector_id=1, id_tag="T", meter_start=0, timestamp="2026-11-30T12:00:00Z"),
                  call.MeterValues(connector_id=1, meter_value=[meter("2026-11-30T12:00:10Z", current=10.0)]),
                  call.StatusNotification(connector_id=1, error_code="NoError",
                                                                      status="Charging")):
            with pytest.raises(SecurityError) as e:
                await cp.call(c, suppress=False)
            assert "not accepted by the operator yet" in str(e.value), e.value
    s, out = await http(gw, "GET", "/api/transactions.csv")
    assert s == 200 and out.strip().count("\n") == 0, out       # the header alone
    s, out = await http(gw, "POST", "/api/stations/CP-NEW/accept")
    assert s == 200, out
    async with Connected(gw.port, "CP-NEW", headers=basic("CP-NEW", "its-own-password-1")) as cp:
        assert (await boot(cp)).status == "Accepted"
        r = await cp.call(call.StartTransaction(connector_id=1, id_tag="T", meter_start=0,
                                                timestamp="2026-11-30T12:00:00Z"))
        assert r.transaction_id, r


async def test_session__pending_admission_needs_credentials(gateway):
    """Without Basic credentials there is no password to become the station's: refused, so that
    nobody can connect under the id once the operator accepts it."""
    gw = await gateway(auth="pending")
    for headers in (None, basic("CP-OTHER", "someone-elses"), basic("CP-ANON", "")):
        with pytest.raises(websockets.InvalidStatus) as e:
            await websockets.connect("ws://127.0.0.1:%d/ocpp/CP-ANON" % gw.port, subprotocols=["ocpp1.6"],
                                     additional_headers=headers)
        resp = e.value.response
        assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Basic"), resp
        assert resp.body.decode() == STATION_401 + "\n", (headers, resp.body)
    s, out = await http(gw, "GET", "/api/stations")
    assert (s, out) == (200, []), out
    # a station already known without a password (an older gateway admitted some): refused too
    await gw.register("CP-NOPW", None, state="accepted")
    with pytest.raises(websockets.InvalidStatus) as e:
        await websockets.connect("ws://127.0.0.1:%d/ocpp/CP-NOPW" % gw.port, subprotocols=["ocpp1.6"])
    assert e.value.response.status_code == 401 and e.value.response.body.decode() == STATION_401 + "\n", \
        e.value.response.body     # why ("station has no password set ...") is in the log
    s, out = await http(gw, "PUT", "/api/stations/CP-NOPW/password", {"password": "now-it-has-one-now-1"})
    assert s == 200, out
    async with Connected(gw.port, "CP-NOPW", headers=basic("CP-NOPW", "now-it-has-one-now-1")) as cp:
        assert (await boot(cp)).status == "Accepted"


@pytest.mark.both_stores
async def test_session__id_tag_list_decides_authorize_and_start(gateway):
    gw = await gateway(auth="none")
    s, out = await http(gw, "POST", "/api/id-tags", {"id_tag": "GOOD", "status": "Accepted"})
    assert s == 201, out
    await http(gw, "POST", "/api/id-tags", {"id_tag": "STOLEN", "status": "Blocked"})
    async with Connected(gw.port, "CP-T") as cp:
        await boot(cp)
        assert (await cp.call(call.Authorize(id_tag="GOOD"))).id_tag_info == {"status": "Accepted"}
        assert (await cp.call(call.Authorize(id_tag="STOLEN"))).id_tag_info == {"status": "Blocked"}
        assert (await cp.call(call.Authorize(id_tag="NOBODY"))).id_tag_info == {"status": "Invalid"}
        st = await cp.call(call.StartTransaction(connector_id=1, id_tag="NOBODY", meter_start=0,
                                                 timestamp="2026-01-01T10:00:00Z"))
        assert st.id_tag_info == {"status": "Invalid"}, st


@pytest.mark.both_stores
async def test_session__removing_a_station_closes_it_refuses_it_and_keeps_its_readings(gateway, mqtt_broker):
    """DELETE /api/stations/<id>: the open connection is closed, the station is refused from
    then on, its retained MQTT status is deleted; its readings stay and show again when the id
    is registered anew."""
    from support.broker import Subscriber
    gw = await gateway(auth="password", mqtt_url="mqtt://127.0.0.1:%d/pc" % mqtt_broker.port)
    for _ in range(200):
        if gw.mqtt.connected:
            break
        await asyncio.sleep(0.05)
    await gw.register("CP-D", "board-pass-123")
    await gw.register("CP-K", "board-pass-456")
    hdr = basic("CP-D", "board-pass-123")
    async with Connected(gw.port, "CP-D", headers=hdr) as cp, \
            Connected(gw.port, "CP-K", headers=basic("CP-K", "board-pass-456")) as other:
        await boot(cp)
        await boot(other)
        await cp.call(call.MeterValues(connector_id=1, meter_value=[meter("2026-01-01T10:00:01Z", current=7.5)]))
        s, out = await http(gw, "DELETE", "/api/stations/CP-D")
        assert (s, out) == (200, {"id": "CP-D", "removed": True, "was_connected": True}), out
        await asyncio.wait_for(cp._connection.wait_closed(), 10)
        assert cp._connection.close_code == 1000 and "removed" in cp._connection.close_reason
        assert (await other.call(call.Heartbeat())).current_time    # the others carry on
    with pytest.raises(websockets.InvalidStatus) as e:
        await websockets.connect("ws://127.0.0.1:%d/ocpp/CP-D" % gw.port, subprotocols=["ocpp1.6"],
                                 additional_headers=hdr)
    assert e.value.response.status_code == 401 and e.value.response.body.decode() == STATION_401 + "\n"
    s, out = await http(gw, "GET", "/api/stations/CP-D")
    assert s == 404, out
    s, out = await http(gw, "GET", "/api/stations")
    assert [st["id"] for st in out] == ["CP-K"], out
    s, out = await http(gw, "DELETE", "/api/stations/CP-D")
    assert s == 404 and "unknown station" in out["error"], out
    # the retained status is gone for a subscriber that comes later; CP-K's is still there
    await asyncio.sleep(0.3)
    late = Subscriber(mqtt_broker.port, "pc/+/status", client_id="late")
    try:
        assert (await asyncio.to_thread(late.wait, "pc/CP-K/status", 1))[-1][1] is True
        await asyncio.sleep(0.5)
        assert late.on("pc/CP-D/status") == [], late.messages
    finally:
        late.close()
    # registered anew: its history is there, with its new password
    await gw.register("CP-D", "new-board-pass-1")
    s, out = await http(gw, "GET", "/api/stations/CP-D/readings")
    assert [r["current_a"] for r in out] == [7.5], out
    async with Connected(gw.port, "CP-D", headers=basic("CP-D", "new-board-pass-1")) as cp:
        assert (await boot(cp)).status == "Accepted"


@pytest.mark.both_stores
def test_session__gateway_cli_adds_lists_and_removes_stations_offline(gw_db):
    import subprocess
    import sys
    db = gw_db

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "picocharge.cli", "gateway"] + list(args) + ["--db", db],
                              capture_output=True, text=True, timeout=60)
    r = cli("add-station", "CP-1", "--thingspeak-channel", "42", "--thingspeak-key", "WKEY1")
    assert r.returncode == 0 and "password: " in r.stdout, r
    pw = r.stdout.split("password: ")[1].split()[0]
    r = cli("add-station", "CP-2", "--password", "correct-horse-battery-2")
    assert r.returncode == 0 and "password" not in r.stdout, r
    r = cli("stations", "--json")
    rows = json.loads(r.stdout)
    assert [(s["id"], s["thingspeak_channel"], s["has_password"]) for s in rows] == [
        ("CP-1", 42, True), ("CP-2", None, True)], r.stdout
    assert pw not in r.stdout and "WKEY1" not in r.stdout
    r = cli("add-station", "CP-1")
    assert r.returncode == 1 and "already in" in r.stderr, r
    r = cli("remove-station", "CP-1")
    assert r.returncode == 0 and "CP-1 removed" in r.stdout, r
    r = cli("remove-station", "CP-1")
    assert r.returncode == 1 and "no station CP-1" in r.stderr and "gateway stations" in r.stderr, r
    assert [s["id"] for s in json.loads(cli("stations", "--json").stdout)] == ["CP-2"]


async def test_session__thingspeak_read_key_from_the_cli_on_a_database_of_an_older_gateway(gateway, tmp_path):
    """An older gateway's stations table has no ts_read_key: opening it adds the column, and
    add-station --thingspeak-read-key stores the key, which no listing shows."""
    import sqlite3
    import subprocess
    import sys
    db = str(tmp_path / "old.db")
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE stations (id TEXT PRIMARY KEY, pw_hash TEXT, state TEXT NOT NULL DEFAULT 'accepted', "
                "ts_channel INTEGER, ts_key TEXT, vendor TEXT, model TEXT, firmware TEXT, status TEXT, "
                "error_code TEXT, last_seen TEXT, created_at TEXT NOT NULL)")
    con.execute("INSERT INTO stations (id, ts_channel, ts_key, created_at) VALUES "
                "('CP-OLD', 7, 'WKEYOLD', '2026-01-01T00:00:00Z')")
    con.commit()
    con.close()

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "picocharge.cli", "gateway"] + list(args) + ["--db", db],
                              capture_output=True, text=True, timeout=60)
    r = cli("add-station", "CP-1", "--password", "correct-horse-battery-1", "--thingspeak-read-key", "RKEY1")
    assert r.returncode == 2 and "--thingspeak-read-key goes with --thingspeak-channel" in r.stderr, r
    r = cli("add-station", "CP-1", "--password", "correct-horse-battery-1", "--thingspeak-channel", "42",
            "--thingspeak-key", "WKEY1", "--thingspeak-read-key", "has space")
    assert r.returncode == 2 and "no spaces" in r.stderr, r
    r = cli("add-station", "CP-1", "--password", "correct-horse-battery-1", "--thingspeak-channel", "42",
            "--thingspeak-key", "WKEY1", "--thingspeak-read-key", "RKEY1")
    assert r.returncode == 0 and "RKEY1" not in r.stdout + r.stderr, r
    r = cli("stations", "--json")
    assert r.returncode == 0 and "RKEY1" not in r.stdout, r
    gw = await gateway(db=db)
    assert {s: (st["ts_channel"], st["ts_key"], st["ts_read_key"]) for s, st in gw.stations.items()} == {
        "CP-1": (42, "WKEY1", "RKEY1"), "CP-OLD": (7, "WKEYOLD", None)}, gw.stations
    s, out = await http(gw, "GET", "/api/stations")
    assert s == 200 and "RKEY1" not in json.dumps(out), out


@pytest.mark.both_stores
async def test_session__add_station_password_from_the_environment_and_json_output(gateway, gw_db):
    """The password can come from PICOCHARGE_STATION_PASSWORD (not in ps or the shell history);
    --json prints what a script needs, the password only when it was generated; the station
    then connects with it."""
    import os
    import subprocess
    import sys
    db = gw_db

    def cli(*args, env=None):
        e = {k: v for k, v in os.environ.items() if k != "PICOCHARGE_STATION_PASSWORD"}
        e.update(env or {})
        return subprocess.run([sys.executable, "-m", "picocharge.cli", "gateway", "add-station"] + list(args)
                              + ["--db", db], capture_output=True, text=True, timeout=60, env=e)
    r = cli("CP-ENV", "--json", env={"PICOCHARGE_STATION_PASSWORD": "from-the-env-var-1"})
    assert r.returncode == 0, r
    assert json.loads(r.stdout) == {"id": "CP-ENV", "state": "accepted", "thingspeak_channel": None,
                                    "db": redact(db)}, r.stdout
    assert "from-the-env-var-1" not in r.stdout + r.stderr, r
    assert not is_url(db) or ":***@" in r.stdout, r.stdout    # a PostgreSQL URL's password is never printed
    r = cli("CP-GEN", "--json", "--pending")
    assert r.returncode == 0, r
    out = json.loads(r.stdout)
    generated = out.pop("password")
    assert out == {"id": "CP-GEN", "state": "pending", "thingspeak_channel": None, "db": redact(db)} and \
        len(generated) >= 16, r.stdout
    r = cli("CP-BAD", env={"PICOCHARGE_STATION_PASSWORD": "short"})
    assert r.returncode == 2 and "PICOCHARGE_STATION_PASSWORD" in r.stderr and "16..40" in r.stderr, r
    r = cli("CP-TXT", env={"PICOCHARGE_STATION_PASSWORD": "from-the-env-var-2"})
    assert (r.returncode, r.stdout) == (0, "station CP-TXT added to %s\n" % redact(db)), r

    gw = await gateway(db=db, auth="password")
    async with Connected(gw.port, "CP-ENV", headers=basic("CP-ENV", "from-the-env-var-1")) as cp:
        assert (await boot(cp)).status == "Accepted"
    async with Connected(gw.port, "CP-GEN", headers=basic("CP-GEN", generated)) as cp:
        assert (await boot(cp)).status == "Pending"
    with pytest.raises(websockets.InvalidStatus) as e:
        await websockets.connect("ws://127.0.0.1:%d/ocpp/CP-TXT" % gw.port, subprotocols=["ocpp1.6"],
                                 additional_headers=basic("CP-TXT", "from-the-env-var-1"))
    assert e.value.response.status_code == 401, e.value.response
    async with Connected(gw.port, "CP-TXT", headers=basic("CP-TXT", "from-the-env-var-2")) as cp:
        assert (await boot(cp)).status == "Accepted"
