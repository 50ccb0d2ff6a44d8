"""Calls from an `ocpp`-package central system to the real firmware: configuration keys,
availability, TriggerMessage, the small Core calls, unsupported and malformed calls; boot
Rejected/Pending; over-temperature; Basic auth over ws:// and wss:// (security profiles 1, 2)."""
import json
import ssl
import time

import pytest
from ocpp.v16 import call

from support import tls_certs
from support.central import CentralSystem, sampled, station_config, ts, validate_outgoing
from support.firmware import TLS

ALL_KEYS = {
    "AllowOfflineTxForUnknownId", "AuthorizationCacheEnabled", "AuthorizeRemoteTxRequests", "ChargeProfileMaxStackLevel", "ChargingScheduleAllowedChargingRateUnit",
    "ChargingScheduleMaxPeriods", "ClockAlignedDataInterval", "ConnectionTimeOut",
    "ConnectorPhaseRotation", "GetConfigurationMaxKeys", "HeartbeatInterval",
    "LocalAuthListEnabled", "LocalAuthListMaxLength", "LocalAuthorizeOffline", "LocalPreAuthorize", "MaxChargingProfilesInstalled", "MeterValuesAlignedData",
    "MeterValuesAlignedDataMaxLength", "MeterValuesSampledData", "MeterValuesSampledDataMaxLength",
    "MeterValueSampleInterval", "NumberOfConnectors", "ReserveConnectorZeroSupported", "ResetRetries",
    "StopTransactionOnEVSideDisconnect", "StopTransactionOnInvalidId", "StopTxnAlignedData",
    "SendLocalListMaxLength", "StopTxnAlignedDataMaxLength", "StopTxnSampledData", "StopTxnSampledDataMaxLength",
    "SupportedFeatureProfiles", "TransactionMessageAttempts", "TransactionMessageRetryInterval",
    "UnlockConnectorOnEVSideDisconnect", "WebSocketPingInterval"}


def status_frames(cs, connector=1):
    return [(m[3]["status"], m[3]["errorCode"]) for m in cs.calls("StatusNotification")
            if m[3]["connectorId"] == connector]


async def test_calls__configuration_availability_trigger_and_core_calls(station, central):
    cs = await central(heartbeat=60)
    st = station(station_config(cs.url)).start()
    await cs.wait_call("StatusNotification", 2, station=st)

    r = await cs.call(call.GetConfiguration())
    assert {k["key"] for k in r.configuration_key} == ALL_KEYS and not r.unknown_key, r
    got = {k["key"]: (k["value"], k["readonly"]) for k in r.configuration_key}
    assert got["HeartbeatInterval"] == ("60", False) and got["MeterValueSampleInterval"] == ("1", False)
    assert got["NumberOfConnectors"] == ("1", True) and got["ConnectionTimeOut"] == ("5", False), got
    for key, value, want in [("NoSuchKey", "1", "NotSupported"), ("NumberOfConnectors", "2", "Rejected"),
                             ("HeartbeatInterval", "soon", "Rejected"),
                             ("MeterValuesSampledData", "Voltage,Bogus", "Rejected"),
                             ("MeterValuesSampledData", "Energy.Active.Import.Register,Voltage", "Accepted"),
                             ("MeterValueSampleInterval", "7", "Accepted")]:
        r = await cs.call(call.ChangeConfiguration(key=key, value=value))
        assert r.status == want, (key, value, r)

    # availability: Inoperative -> Unavailable (and remote starts refused), Operative -> Available
    assert (await cs.call(call.ChangeAvailability(connector_id=1, type="Inoperative"))).status == "Accepted"
    await cs.wait_for(lambda d, m: status_frames(cs)[-1:] == [("Unavailable", "NoError")], station=st)
    assert (await cs.call(call.RemoteStartTransaction(id_tag="T"))).status == "Rejected"
    assert (await cs.call(call.ChangeAvailability(connector_id=2, type="Operative"))).status == "Rejected"
    assert (await cs.call(call.ChangeAvailability(connector_id=0, type="Operative"))).status == "Accepted"
    await cs.wait_for(lambda d, m: status_frames(cs)[-1:] == [("Available", "NoError")], station=st)

    # TriggerMessage: each requested message arrives (the Firmware Management ones say Idle)
    n_hb, n_st, n_boot = len(cs.calls("Heartbeat")), len(cs.calls("StatusNotification")), 1
    for msg, want in [("Heartbeat", "Accepted"), ("StatusNotification", "Accepted"),
                      ("MeterValues", "Accepted"), ("BootNotification", "Accepted"),
                      ("DiagnosticsStatusNotification", "Accepted"),
                      ("FirmwareStatusNotification", "Accepted")]:
        k = len(cs.calls(msg))
        r = await cs.call(call.TriggerMessage(requested_message=msg, connector_id=1))
        assert r.status == want, (msg, r)
        if want == "Accepted":           # the triggered message has gone out before the next trigger
            await cs.wait_call(msg, k + 1, station=st)
    await cs.wait_call("Heartbeat", n_hb + 1, station=st)
    await cs.wait_call("StatusNotification", n_st + 1, station=st)
    await cs.wait_call("BootNotification", n_boot + 1, station=st)
    mv = (await cs.wait_call("MeterValues", station=st))[3]
    assert "transactionId" not in mv and mv["connectorId"] == 1, mv
    assert set(sampled(mv["meterValue"][0], "Trigger", ["Energy.Active.Import.Register", "Voltage"])) == {
        "Energy.Active.Import.Register", "Voltage"}, mv

    assert (await cs.call(call.ClearCache())).status == "Accepted"
    assert (await cs.call(call.UnlockConnector(connector_id=1))).status == "NotSupported"
    assert (await cs.call(call.DataTransfer(vendor_id="com.acme", message_id="x", data="y"))).status == "UnknownVendorId"

    # an action we do not implement, and malformed frames: CALLERRORs, the link stays up
    conn = cs.conns[0]
    await conn.send('[2, "nope-1", "Coffee", {}]')    # every OCPP 1.6 call is taken: not this one
    await conn.send('[2, "bad-1", "Reset", {"type": "Warm"}]')
    await conn.send('[2, "bad-2", "RemoteStartTransaction", {}]')
    await conn.send("not json at all")
    await conn.send('[2, "bad-3", "ChangeConfiguration", {"key": "HeartbeatInterval", "value": 5}]')
    # more keys than GetConfigurationMaxKeys (50)
    await conn.send(json.dumps([2, "bad-4", "GetConfiguration", {"key": ["HeartbeatInterval"] * 51}]))
    await cs.wait_for(lambda d, m: len([1 for d2, m2 in cs.frames if d2 == "cp" and m2[0] == 4]) >= 6,
                      station=st, what="6 CALLERRORs")
    errors = [m for d, m in cs.frames if d == "cp" and m[0] == 4]
    assert [(m[1], m[2]) for m in errors] == [
        (errors[0][1], "NotImplemented"), ("bad-1", "PropertyConstraintViolation"),
        ("bad-2", "ProtocolError"), ("-1", "FormationViolation"),
        ("bad-3", "TypeConstraintViolation"), ("bad-4", "OccurenceConstraintViolation")], errors
    assert "GetConfigurationMaxKeys" in errors[-1][3], errors[-1]
    r = await cs.call(call.GetConfiguration(key=["HeartbeatInterval"] * 50))
    assert len(r.configuration_key) == 50, r
    # a value set by the central system may be a secret (AuthorizationKey is the security
    # extension's password): the log names the key and the answer, never the value
    secret = "0123456789abcdef0123456789abcdef"
    assert (await cs.call(call.ChangeConfiguration(key="AuthorizationKey", value=secret))).status == "NotSupported"
    await st.aexpect("ChangeConfiguration AuthorizationKey: NotSupported")
    assert secret not in "\n".join(st.lines), st.tail()
    assert errors[0][1] == "nope-1", errors[0]
    assert (await cs.call(call.GetConfiguration(key=["MeterValueSampleInterval"]))).configuration_key[0]["value"] == "7"
    assert cs.paths == ["/ocpp/CP-1"], "one connection throughout"

    # ChangeAvailability during a transaction is Scheduled and applied when it ends
    assert (await cs.call(call.RemoteStartTransaction(id_tag="T-A"))).status == "Accepted"
    await cs.wait_call("StartTransaction", station=st)
    assert (await cs.call(call.ChangeAvailability(connector_id=1, type="Inoperative"))).status == "Scheduled"
    assert (await cs.call(call.RemoteStopTransaction(transaction_id=1001))).status == "Accepted"
    await cs.wait_for(lambda d, m: status_frames(cs)[-1:] == [("Unavailable", "NoError")], station=st)
    assert validate_outgoing(cs.frames) > 20

    # configuration and availability persist across a reboot (power cut, same flash)
    st.kill()
    n = len(cs.calls("StatusNotification"))
    st.start()
    await cs.wait_call("StatusNotification", n + 2, station=st)
    assert status_frames(cs, 0)[-1] == ("Unavailable", "NoError") and status_frames(cs)[-1] == ("Unavailable", "NoError")
    r = await cs.call(call.GetConfiguration(key=["MeterValueSampleInterval", "MeterValuesSampledData"]))
    assert [k["value"] for k in r.configuration_key] == ["7", "Energy.Active.Import.Register,Voltage"], r


ALIGNED = ["Energy.Active.Import.Register", "Temperature"]


def clock_samples(cs):
    """The Sample.Clock MeterValues the station sent: [(payload, epoch s of the timestamp)]."""
    out = []
    for m in cs.calls("MeterValues"):
        mv = m[3]["meterValue"]
        if mv[0]["sampledValue"][0]["context"] == "Sample.Clock":
            assert len(mv) == 1 and m[3]["connectorId"] == 1, m
            assert sampled(mv[0], "Sample.Clock", ALIGNED)["Temperature"] == 24, m
            out.append((m[3], ts(mv[0]["timestamp"])))
    return out


def check_aligned(times, iv):
    """On the interval's grid from midnight UTC (to the millisecond), each slot at most once."""
    assert all(t % iv == 0 for t in times), times
    assert all(b - a > 0 and (b - a) % iv == 0 for a, b in zip(times, times[1:])), times


async def test_clock_aligned__idle_and_in_transaction_offline_dropped_humidity_persisted(station, central):
    cs = await central(heartbeat=60)
    st = station(station_config(cs.url, meter_interval_s=3600)).start()
    await cs.wait_call("StatusNotification", 2, station=st)
    r = await cs.call(call.GetConfiguration(key=["ClockAlignedDataInterval", "MeterValuesAlignedData",
                                                 "StopTxnAlignedData", "StopTxnAlignedDataMaxLength"]))
    assert [(k["value"], k["readonly"]) for k in r.configuration_key] == [
        ("0", False), (",".join(ALIGNED), False), ("", False), ("0", True)], r
    for key, value, want in [("ClockAlignedDataInterval", "-5", "Rejected"),
                             ("MeterValuesAlignedData", "Temperature,Humidity", "Rejected"),
                             ("StopTxnAlignedData", "Temperature", "Rejected"),
                             ("ClockAlignedDataInterval", "2", "Accepted")]:
        assert (await cs.call(call.ChangeConfiguration(key=key, value=value))).status == want, (key, value)

    # idle: MeterValues every 2 s on the clock, connector 1, no transaction; the enclosure's
    # humidity follows each one in a DataTransfer (OCPP 1.6 has no humidity measurand)
    await cs.wait_call("MeterValues", 3, station=st)
    await cs.wait_call("DataTransfer", 3, station=st)
    idle = clock_samples(cs)
    assert all("transactionId" not in p for p, _ in idle), idle
    check_aligned([t for _, t in idle], 2)
    acts = [a for a in cs.actions() if a in ("MeterValues", "DataTransfer")]
    assert acts[:6] == ["MeterValues", "DataTransfer"] * 3, acts
    for m in cs.calls("DataTransfer"):     # the enclosure's %RH and the RP2040's own temperature
        assert {k: v for k, v in m[3].items() if k != "data"} == {"vendorId": "PicoCharge", "messageId": "Climate"}, m
        data = json.loads(m[3]["data"])
        assert sorted(data) == ["board_temp_c", "humidity"] and data["humidity"] == 45, m
        assert 27 < data["board_temp_c"] < 33, m      # the unix board's scenario: 30 °C

    # in a transaction: the same samples carry its id (transaction messages, journalled)
    assert (await cs.call(call.RemoteStartTransaction(id_tag="T-CLK"))).status == "Accepted"
    await cs.wait_call("MeterValues", 2, station=st, pred=lambda m: m[3].get("transactionId") == 1001)
    assert (await cs.call(call.RemoteStopTransaction(transaction_id=1001))).status == "Accepted"
    await cs.wait_call("StopTransaction", station=st)
    in_tx = [p for p, _ in clock_samples(cs) if "transactionId" in p]
    assert len(in_tx) >= 2 and all(p["transactionId"] == 1001 for p in in_tx), in_tx
    acts = cs.actions()
    assert acts.index("StartTransaction") < acts.index("StopTransaction"), acts
    check_aligned([t for _, t in clock_samples(cs)], 2)
    assert validate_outgoing(cs.frames) > 10

    # offline and idle: clock-aligned samples are not transaction messages, they are dropped
    stop_id = cs.calls("StopTransaction")[-1][1]
    await cs.wait_for(lambda d, m: d == "cs" and m[0] == 3 and m[1] == stop_id, station=st,
                      what="the answer to StopTransaction")
    await st.aexpect("[meter] I:")       # a sample later: the station has the answer
    down = time.time()
    await cs.stop()
    await st.aexpect("[ocpp] W: link down")
    for _ in range(5):                   # two slots or more pass while the link is down
        await st.aexpect("[meter] I:")
    journal = (st.flash / "ocpp_journal.log").read_text()
    assert "Sample.Clock" not in journal, journal
    up = time.time()
    cs2 = await central(port=cs.port, heartbeat=60)
    cs2.data_transfer = "UnknownVendorId"
    await cs2.wait_call("MeterValues", 3, station=st)
    after = clock_samples(cs2)
    assert after and all(t >= up - 0.5 for _, t in after), (down, up, after)
    assert all("transactionId" not in p for p, _ in after), after
    # a central system that does not know our DataTransfer is asked once per connection
    assert len(cs2.calls("DataTransfer")) == 1, cs2.actions()
    await st.aexpect("DataTransfer Climate: UnknownVendorId")

    # the keys persist across a power cut
    st.kill()
    st.start()
    await cs2.wait_call("BootNotification", station=st)
    await cs2.wait_call("StatusNotification", 4, station=st)
    r = await cs2.call(call.GetConfiguration(key=["ClockAlignedDataInterval", "MeterValuesAlignedData"]))
    assert [k["value"] for k in r.configuration_key] == ["2", ",".join(ALIGNED)], r
    assert validate_outgoing(cs2.frames) > 5


async def test_boot__rejected_then_pending_then_accepted_sends_nothing_else_before(station, central):
    cs = await central(heartbeat=1, boot_status="Rejected")
    st = station(station_config(cs.url)).start()
    await cs.wait_call("BootNotification", 2, station=st)
    cs.boot_status = "Pending"
    await cs.wait_call("BootNotification", 4, station=st)
    # while Pending the central system may configure the station
    r = await cs.call(call.GetConfiguration(key=["NumberOfConnectors"]))
    assert r.configuration_key[0]["value"] == "1", r
    cs.boot_status = "Accepted"
    await cs.wait_call("StatusNotification", 2, station=st)
    acts = cs.actions()
    k = acts.index("StatusNotification")
    assert k >= 5 and acts[:k] == ["BootNotification"] * k, acts
    # the retries follow the interval (1 s) of the answers
    boots = [i for i, (d, m) in enumerate(cs.frames) if d == "cp" and m[0] == 2 and m[2] == "BootNotification"]
    assert len(boots) == k
    await st.aexpect("boot accepted, heartbeat every 1s")
    await cs.wait_call("Heartbeat", 2, station=st)


async def test_boot__a_reset_while_pending_is_carried_out(station, central):
    cs = await central(heartbeat=30, boot_status="Pending")
    st = station(station_config(cs.url)).start()
    await cs.wait_call("BootNotification", 1, station=st)
    assert (await cs.call(call.Reset(type="Soft"))).status == "Accepted"
    assert await st.await_exit(15) == 75, st.tail()  # the unix board's reset: exit 75 for the supervisor
    assert "[board] I: soft reset" in st.tail(), st.tail()
    assert cs.actions() == ["BootNotification"], cs.actions()   # nothing else before the boot is accepted
    cs.boot_status = "Accepted"
    st.start()
    await cs.wait_call("StatusNotification", 2, station=st)


async def test_overtemperature__faulted_high_temperature_relay_open_then_back_to_charging(station, central):
    cs = await central(heartbeat=60)
    sc = {"timeline": [[5.0, "dht.temp_c", 65.0], [9.0, "dht.temp_c", 30.0]]}
    st = station(station_config(cs.url), scenario=sc).start()
    await cs.wait_call("StatusNotification", 2, station=st)
    assert (await cs.call(call.RemoteStartTransaction(id_tag="HOT"))).status == "Accepted"
    await st.aexpect("[board] I: relay closed")
    await cs.wait_for(lambda d, m: status_frames(cs)[-1:] == [("Faulted", "HighTemperature")], station=st,
                      what="Faulted HighTemperature")
    await st.aexpect("[board] I: relay open")
    await cs.wait_for(lambda d, m: status_frames(cs)[-1:] == [("Charging", "NoError")], station=st,
                      timeout=20, what="back to Charging")
    await st.aexpect("[board] I: relay closed")
    assert status_frames(cs) == [("Available", "NoError"), ("Preparing", "NoError"), ("Charging", "NoError"),
                                 ("Faulted", "HighTemperature"), ("Charging", "NoError")], status_frames(cs)
    temps = [sampled(m[3]["meterValue"][0])["Temperature"] for m in cs.calls("MeterValues")]
    assert max(temps) > 50, temps
    assert cs.calls("StopTransaction") == [], "the transaction survives the fault"
    assert validate_outgoing(cs.frames)


@pytest.fixture
def tls():
    """The test server's TLS context: a self-signed certificate for 127.0.0.1 made for these
    tests only (valid 100 years; the station does not verify it: no CA bundle on a board)."""
    d = TLS
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(d / "cert.pem"), str(d / "key.pem"))
    return ctx


async def test_auth__basic_auth_profile_1_ws_and_profile_2_wss_and_a_wrong_password(station, central, tls):
    pw = "Cs-Pass-0123456789"
    cs = await central(heartbeat=60, credentials=("CP-1", pw))
    cs2 = CentralSystem(heartbeat=60, credentials=("CP-1", pw))
    import websockets
    from websockets.asyncio.server import basic_auth
    cs2.server = await websockets.serve(cs2._handler, "127.0.0.1", cs2.port, subprotocols=["ocpp1.6"],
                                        process_request=basic_auth(realm="ocpp", credentials=("CP-1", pw)),
                                        ssl=tls)
    try:
        good = station(station_config(cs.url, password=pw), name="good").start()
        secure = station(station_config(cs2.url.replace("ws://", "wss://"), password=pw), name="tls").start()
        bad = station(station_config(cs.url, password="not-the-password"), name="bad").start()
        await bad.aexpect("refused the credentials (HTTP 401): check ocpp.password")
        await cs.wait_call("StatusNotification", 2, station=good)
        await cs2.wait_call("StatusNotification", 2, station=secure)
        assert cs.paths == ["/ocpp/CP-1"] and cs2.paths == ["/ocpp/CP-1"], (cs.paths, cs2.paths)
        # no ocpp.ca_cert: encrypted, not verified, and the station says so at each connection
        assert ("[ocpp] W: TLS without verifying the server's certificate (ocpp.ca_cert not set): anyone "
                "on the path can read the credentials") in secure.lines, secure.tail()
        for s in (good, secure, bad):
            out = "\n".join(s.lines)
            assert pw not in out and "not-the-password" not in out, s.tail()
        assert validate_outgoing(cs2.frames)
    finally:
        await cs2.stop()


async def test_authorize__invalid_idtag_no_transaction_and_deauthorized_stop(station, central):
    cs = await central(heartbeat=60, auth_status="Invalid")
    st = station(station_config(cs.url), scenario={"button": [[3.0, 3.5]]}).start()
    await cs.wait_call("Authorize", station=st)
    await cs.wait_for(lambda d, m: status_frames(cs)[-2:] == [("Preparing", "NoError"), ("Available", "NoError")],
                      station=st, what="Preparing then Available")
    await st.aexpect("idTag not authorized (Invalid): no transaction")
    assert cs.calls("StartTransaction") == [], cs.actions()
    # a remote start is not authorized first; the StartTransaction answer says Invalid: stop it
    assert (await cs.call(call.RemoteStartTransaction(id_tag="BAD"))).status == "Accepted"
    stop = await cs.wait_call("StopTransaction", station=st)
    assert stop[3]["reason"] == "DeAuthorized" and stop[3]["transactionId"] == 1001, stop
    await cs.wait_for(lambda d, m: status_frames(cs)[-1:] == [("Available", "NoError")], station=st)
    assert validate_outgoing(cs.frames)


async def test_callerrors__on_status_and_heartbeat_keep_the_link_and_are_not_retried(station, central):
    cs = await central(heartbeat=1)
    cs.fail = {"StatusNotification": 1, "Heartbeat": 1}
    st = station(station_config(cs.url)).start()
    await cs.wait_call("Heartbeat", 3, station=st)
    errors = [m[1] for d, m in cs.frames if d == "cs" and m[0] == 4]
    assert len(errors) == 2, cs.frames
    assert [m[3]["connectorId"] for m in cs.calls("StatusNotification")] == [0, 1], cs.actions()
    assert cs.paths == ["/ocpp/CP-1"], "one connection throughout"
    await st.aexpect("StatusNotification answered CALLERROR InternalError")
    await st.aexpect("Heartbeat answered CALLERROR InternalError")


def _tls_certs(d):
    """tests/support/tls_certs.py's certificates for one test: a CA, a second CA, server certificates."""
    return tls_certs, tls_certs.make(d)


async def _wss_central(server_ctx, pw):
    """A central system over wss:// that records the Authorization header of every HTTP
    request that reaches it (a refused TLS handshake never does)."""
    import websockets
    from websockets.asyncio.server import basic_auth

    cs = CentralSystem(heartbeat=60, credentials=("CP-1", pw))
    cs.auth_seen = []
    check = basic_auth(realm="ocpp", credentials=("CP-1", pw))

    async def process(conn, request):
        cs.auth_seen.append(request.headers.get("Authorization"))
        return await check(conn, request)

    cs.server = await websockets.serve(cs._handler, "127.0.0.1", cs.port, subprotocols=["ocpp1.6"],
                                       process_request=process, ssl=server_ctx)
    return cs


async def test_auth__wss_verifies_the_server_with_ocpp_ca_cert(station, tmp_path):
    # security profile 2: with the right CA the station connects; with another CA, or a
    # certificate for another host name, it refuses before its password goes out, says why,
    # and keeps retrying with backoff
    certs, c = _tls_certs(tmp_path / "certs")
    pw = "Cs-Pass-0123456789"
    good_cs = await _wss_central(certs.server_context(c.cert, c.key), pw)
    wrong_cs = await _wss_central(certs.server_context(c.cert, c.key), pw)
    other_cs = await _wss_central(certs.server_context(c.other_cert, c.other_key), pw)
    try:
        made = []
        for name, cs, ca in (("good", good_cs, c.ca_der), ("wrong-ca", wrong_cs, c.wrong_der),
                             ("other-host", other_cs, c.ca_pem)):  # PEM on flash works too
            st = station(station_config(cs.url.replace("ws://", "wss://"), password=pw,
                                        ca_cert="ca.crt", reconnect_max_s=4), name=name)
            (st.flash / "ca.crt").write_bytes(ca.read_bytes())
            made.append(st.start())
        good, wrong, other = made
        await good_cs.wait_call("StatusNotification", 2, station=good)
        assert good_cs.auth_seen and good_cs.auth_seen[0].startswith("Basic "), good_cs.auth_seen
        assert "not verifying" not in "\n".join(good.lines), good.tail()

        await wrong.aexpect("[ocpp] W: link down: server certificate refused (The "
                                  "certificate is not correctly signed by the trusted CA): check ocpp.ca_cert")
        await other.aexpect("[ocpp] W: link down: server certificate refused (The certificate "
                           "Common Name (CN) does not match with the expected CN)")
        for st in (wrong, other):  # retried, further apart each time (1 s doubling, capped at 4 s)
            await st.aexpect("server certificate refused", timeout=10)
            await st.aexpect("server certificate refused", timeout=10)
            await st.aexpect("reconnecting in", timeout=10)   # the line after the refusal
            waits = [float(l.split("reconnecting in ")[1][:-1]) for l in st.lines if "reconnecting in" in l]
            assert len(waits) >= 3 and max(waits[1:]) > 1.0, (waits, st.tail())
        assert wrong_cs.auth_seen == [] and other_cs.auth_seen == [], (wrong_cs.auth_seen, other_cs.auth_seen)
        assert wrong_cs.frames == [] and other_cs.frames == []
        for st in made:
            out = "\n".join(st.lines)
            assert pw not in out and "Q1AtMTpDcy1QYXNz" not in out, st.tail()  # nor its Base64
    finally:
        for cs in (good_cs, wrong_cs, other_cs):
            await cs.stop()



async def test_clock_aligned__a_fresh_config_reports_every_quarter_hour(station, central):
    # issue 16: a station provisioned without clock_aligned_s reports while idle
    cs = await central(heartbeat=60)
    cfg = station_config(cs.url)
    del cfg["ocpp"]["clock_aligned_s"]
    st = station(cfg).start()
    await cs.wait_call("StatusNotification", 2, station=st)
    r = await cs.call(call.GetConfiguration(key=["ClockAlignedDataInterval"]))
    assert r.configuration_key == [{"key": "ClockAlignedDataInterval", "readonly": False, "value": "900"}], r
