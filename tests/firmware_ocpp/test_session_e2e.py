"""The real firmware (main.py on the unix board) against a central system built on the `ocpp`
package: a full session checked frame by frame, remote start, ChangeConfiguration taking
effect, Reset, and every outgoing frame validated against the OCPP 1.6 JSON schemas."""

import pytest
from ocpp.v16 import call

from support.central import no_ts, sampled, station_config, ts, validate_outgoing

BOOT = {"chargePointVendor": "PicoCharge", "chargePointModel": "PicoCharge-1",
        "chargePointSerialNumber": "e6614103e7452d2f", "chargeBoxSerialNumber": "e6614103e7452d2f",
        "firmwareVersion": "0.1.0"}
def statuses(cs, connector=1):
    return [m[3]["status"] for m in cs.calls("StatusNotification") if m[3]["connectorId"] == connector]


def squash(actions):
    """The action sequence without heartbeats and with runs of MeterValues folded into one."""
    out = []
    for a in actions:
        if a == "Heartbeat" or (a == "MeterValues" and out and out[-1] == "MeterValues"):
            continue
        out.append(a)
    return out


async def test_session__boot_status_local_start_meter_remote_stop_remote_start_reconfigure(station, central):
    cs = await central(heartbeat=2)
    st = station(station_config(cs.url), scenario={"button": [[4.0, 4.5]]}).start()

    # boot: BootNotification with the board's identity, then connector 0 and 1 Available
    boot = await cs.wait_call("BootNotification", station=st)
    assert boot[3] == BOOT, boot
    assert cs.paths == ["/ocpp/CP-1"], cs.paths  # the station id appended to the URL
    await cs.wait_call("Heartbeat", station=st)
    first = cs.calls()[:3]
    assert [(m[2], no_ts(m[3])) for m in first[1:]] == [
        ("StatusNotification", {"connectorId": 0, "errorCode": "NoError", "status": "Available"}),
        ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"})], first

    # local start (button at t=4s): Preparing, Authorize, StartTransaction, Charging, meter values
    await cs.wait_call("MeterValues", 2, station=st)
    start = cs.calls("StartTransaction")[0]
    assert no_ts(start[3]) == {"connectorId": 1, "idTag": "LOCAL-TAG", "meterStart": 0}, start
    assert cs.calls("Authorize")[0][3] == {"idTag": "LOCAL-TAG"}
    mvs = cs.calls("MeterValues")
    for m in mvs:
        assert m[3]["connectorId"] == 1 and m[3]["transactionId"] == 1001, m
        assert len(m[3]["meterValue"]) == 1, m
        v = sampled(m[3]["meterValue"][0])
        assert abs(v["Voltage"] - 230) < 2 and abs(v["Current.Import"] - 16) < 0.3, m
        assert abs(v["Power.Active.Import"] - 3680) < 60 and v["Temperature"] == 24, m
    e = [sampled(m[3]["meterValue"][0])["Energy.Active.Import.Register"] for m in mvs]
    assert 0 < e[0] < e[1], e

    # remote stop: accepted for our transaction id, rejected for another one
    r = await cs.call(call.RemoteStopTransaction(transaction_id=999))
    assert r.status == "Rejected", r
    r = await cs.call(call.RemoteStopTransaction(transaction_id=1001))
    assert r.status == "Accepted", r
    stop = await cs.wait_call("StopTransaction", station=st)
    p = no_ts(stop[3])
    data = p.pop("transactionData")
    assert p == {"transactionId": 1001, "idTag": "LOCAL-TAG", "reason": "Remote",
                 "meterStop": p["meterStop"]}, stop
    begin = sampled(data[0], "Transaction.Begin", ["Energy.Active.Import.Register"])
    end = sampled(data[1], "Transaction.End", ["Energy.Active.Import.Register"])
    assert begin == {"Energy.Active.Import.Register": 0.0}, data
    assert p["meterStop"] == int(end["Energy.Active.Import.Register"]) >= int(e[-1]), (p, end, e)
    await st.aexpect("[board] I: relay open")
    await cs.wait_for(lambda d, m: statuses(cs)[-2:] == ["Finishing", "Available"], station=st,
                      what="Finishing then Available after the stop")
    assert statuses(cs) == ["Available", "Preparing", "Charging", "Finishing", "Available"], statuses(cs)
    assert squash(cs.actions()) == [
        "BootNotification", "StatusNotification", "StatusNotification", "StatusNotification",
        "Authorize", "StartTransaction", "StatusNotification", "MeterValues", "StopTransaction",
        "StatusNotification", "StatusNotification"], cs.actions()

    # remote start: no Authorize (AuthorizeRemoteTxRequests is false), a new transaction id
    r = await cs.call(call.RemoteStartTransaction(id_tag="REMOTE-1", connector_id=1))
    assert r.status == "Accepted", r
    start2 = await cs.wait_call("StartTransaction", 2, station=st)
    # the register keeps counting what flowed until the relay opened: meterStart >= last meterStop
    assert no_ts(start2[3]) == {"connectorId": 1, "idTag": "REMOTE-1",
                                "meterStart": start2[3]["meterStart"]}, start2
    assert p["meterStop"] <= start2[3]["meterStart"] <= p["meterStop"] + 2, (p, start2)
    r = await cs.call(call.RemoteStartTransaction(id_tag="REMOTE-2"))
    assert r.status == "Rejected", r  # one connector, busy
    assert len(cs.calls("Authorize")) == 1, cs.calls("Authorize")
    await cs.wait_call("MeterValues", 1, station=st, pred=lambda m: m[3]["transactionId"] == 1002)

    # ChangeConfiguration of MeterValueSampleInterval takes effect at once (1 s -> 3 s)
    r = await cs.call(call.ChangeConfiguration(key="MeterValueSampleInterval", value="3"))
    assert r.status == "Accepted", r
    n0 = len(cs.calls("MeterValues"))
    await cs.wait_call("MeterValues", n0 + 3, station=st, timeout=20)
    later = [ts(m[3]["meterValue"][0]["timestamp"]) for m in cs.calls("MeterValues")[n0:]]
    gaps = [round(b - a, 1) for a, b in zip(later, later[1:])]
    assert all(2.8 <= g <= 3.3 for g in gaps), gaps
    r = await cs.call(call.GetConfiguration(key=["MeterValueSampleInterval", "NoSuchKey"]))
    assert r.configuration_key == [{"key": "MeterValueSampleInterval", "readonly": False, "value": "3"}] \
        and r.unknown_key == ["NoSuchKey"], r

    # every frame the station sent is valid OCPP 1.6 (CALLs and the CALLRESULTs it gave)
    assert validate_outgoing(cs.frames) > 20
    ids = [m[1] for m in cs.calls()]
    assert len(ids) == len(set(ids)), ids


@pytest.mark.parametrize("kind", ["Hard", "Soft"])
async def test_reset__stops_the_transaction_and_restarts_the_board(station, central, kind):
    cs = await central(heartbeat=30)
    cfg = station_config(cs.url)
    st = station(cfg).start()
    await cs.wait_call("StatusNotification", 2, station=st)
    r = await cs.call(call.RemoteStartTransaction(id_tag="TAG-R"))
    assert r.status == "Accepted", r
    await cs.wait_call("MeterValues", 1, station=st)
    r = await cs.call(call.Reset(type=kind))
    assert r.status == "Accepted", r
    stop = await cs.wait_call("StopTransaction", station=st)
    assert stop[3]["reason"] == kind + "Reset" and stop[3]["transactionId"] == 1001, stop
    assert await st.await_exit(15) == 75, st.tail()  # the unix board's reset: exit 75 for the supervisor
    assert "[board] I: %s reset" % kind.lower() in st.tail(), st.tail()
    # the supervisor starts it again on the same flash: a fresh boot, nothing left to send
    n = len(cs.frames)
    n_status = len(cs.calls("StatusNotification"))
    st.start()
    await cs.wait_call("BootNotification", 2, station=st)
    await cs.wait_call("StatusNotification", n_status + 2, station=st)
    after = [m[2] for d, m in cs.frames[n:] if d == "cp" and m[0] == 2]
    assert "StopTransaction" not in after and "StartTransaction" not in after, after
    assert validate_outgoing(cs.frames) > 5


async def test_reset__hard_waits_for_the_stop_transaction_answer_none_replayed(station, central):
    # a MeterValues answered with a CALLERROR just before: the journal's retry interval (10 s)
    # is running when the Reset comes; the StopTransaction's answer takes 2 s
    cs = await central(heartbeat=30)
    st = station(station_config(cs.url)).start()
    await cs.wait_call("StatusNotification", 2, station=st)
    assert (await cs.call(call.RemoteStartTransaction(id_tag="TAG-R"))).status == "Accepted"
    await cs.wait_call("MeterValues", 1, station=st)
    cs.fail["MeterValues"] = 1
    cs.delay["StopTransaction"] = 2.0
    await st.aexpect("failed (MeterValues answered CALLERROR")
    assert (await cs.call(call.Reset(type="Hard"))).status == "Accepted"
    assert await st.await_exit(20) == 75, st.tail()
    out = st.tail(400)
    assert "unanswered" not in out, "\n".join(repr(f)[:160] for f in cs.frames[-8:])
    stops = cs.calls("StopTransaction")
    assert len(stops) == 1 and stops[0][3]["reason"] == "HardReset", stops
    results = [m for d, m in cs.frames if d == "cs" and m[0] == 3 and m[1] == stops[0][1]]
    assert len(results) == 1, "the StopTransaction was answered before the board reset"
    n = len(cs.frames)
    n_status = len(cs.calls("StatusNotification"))
    st.start()
    await cs.wait_call("BootNotification", 2, station=st)
    await cs.wait_call("StatusNotification", n_status + 2, station=st)
    after = [m[2] for d, m in cs.frames[n:] if d == "cp" and m[0] == 2]
    assert "StopTransaction" not in after and "MeterValues" not in after, after
    assert len(cs.calls("StopTransaction")) == 1
