"""The control pilot end to end: the real firmware with charger.pilot on the unix board, whose
simulated EV the test drives step by step (its control file), against an `ocpp`-package central
system. Plugged in without a transaction: Preparing; a transaction with the EV in state B:
SuspendedEV, relay open; state C: relay closed, Charging, the EV draws what the pilot's duty
allows (16 A, then 10 A under a TxProfile, and paused at 4 A: SuspendedEVSE); back to B: relay
open; unplugged: StopTransaction EVDisconnected, Finishing, Available; a missing diode, found
when a transaction starts the PWM: Faulted EVCommunicationError, the relay never closes."""
import json

from ocpp.v16 import call

from support.central import sampled, station_config, validate_outgoing


def status_frames(cs):
    return [(m[3]["status"], m[3]["errorCode"]) for m in cs.calls("StatusNotification") if m[3]["connectorId"] == 1]


def set_ev(st, **ev):
    tmp = st.flash / "ev.json.tmp"
    tmp.write_text(json.dumps(ev))
    tmp.replace(st.flash / "ev.json")


async def wait_status(cs, st, status, error="NoError"):
    await cs.wait_for(lambda d, m: status_frames(cs)[-1:] == [(status, error)], station=st,
                      what="StatusNotification %s" % status)


async def wait_current(cs, st, lo, hi):
    """A MeterValues of the transaction whose Current.Import is within lo..hi A."""
    def ok(d, m):
        if not (d == "cp" and m[0] == 2 and m[2] == "MeterValues" and "transactionId" in m[3]):
            return False
        mv = m[3]["meterValue"][0]
        return mv["sampledValue"][0]["context"] == "Sample.Periodic" and lo <= sampled(mv)["Current.Import"] <= hi
    return await cs.wait_for(ok, station=st, what="current %s..%s A" % (lo, hi), timeout=30)


async def test_pilot__plug_charge_limit_pause_unplug_and_diode_fault(station, central):
    cs = await central(heartbeat=60)
    cfg = station_config(cs.url)
    cfg["charger"] = {"max_current_a": 16, "supply_v": 230, "phases": 1, "pilot": True}
    st = station(cfg, scenario={"ev": {"state": "A", "diode": True, "max_a": 32.0, "control": "ev.json"}})
    st.start()
    await wait_status(cs, st, "Available")

    set_ev(st, state="B")                      # plugged in, no transaction
    await wait_status(cs, st, "Preparing")
    await st.aexpect("[pilot] I: EV state B")

    assert (await cs.call(call.RemoteStartTransaction(id_tag="T-PILOT"))).status == "Accepted"
    await cs.wait_call("StartTransaction", station=st)
    await wait_status(cs, st, "SuspendedEV")   # the EV does not ask yet: the relay stays open
    assert "[board] I: relay closed" not in "\n".join(st.lines), st.tail()

    n = len(st.lines)
    set_ev(st, state="C")                      # it asks for charge: the relay closes
    await st.aexpect("[board] I: relay closed")
    assert any("EV state C" in ln for ln in st.lines[n:]), st.tail()
    await wait_status(cs, st, "Charging")
    await wait_current(cs, st, 15.5, 16.5)     # the pilot offers charger.max_current_a, 16 A

    r = await cs.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles={
        "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}]}}))
    assert r.status == "Accepted", r
    await wait_current(cs, st, 9.5, 10.5)      # the EV follows the duty: 10 A

    r = await cs.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles={
        "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 4}]}}))
    assert r.status == "Accepted", r
    await st.aexpect("[board] I: relay open")  # below 6 A: paused
    await wait_status(cs, st, "SuspendedEVSE")
    assert (await cs.call(call.ClearChargingProfile(id=1))).status == "Accepted"
    await st.aexpect("[board] I: relay closed")
    await wait_status(cs, st, "Charging")

    set_ev(st, state="B")                      # the EV pauses: the relay opens
    await st.aexpect("[board] I: relay open")
    await wait_status(cs, st, "SuspendedEV")

    set_ev(st, state="A")                      # unplugged during the transaction
    stop = (await cs.wait_call("StopTransaction", station=st))[3]
    assert stop["reason"] == "EVDisconnected", stop
    await wait_status(cs, st, "Available")
    got = [s for s, _ in status_frames(cs)]
    assert got[got.index("SuspendedEV", got.index("Charging")):][-3:] == ["SuspendedEV", "Finishing", "Available"], got

    # an EV without the diode: seen once the pilot oscillates (the low level mirrors the high
    # one), i.e. when a transaction starts; a fault, and the relay stays open
    set_ev(st, state="C", diode=False)
    await wait_status(cs, st, "Preparing")
    n = len(st.lines)
    assert (await cs.call(call.RemoteStartTransaction(id_tag="T-DIODE"))).status == "Accepted"
    await wait_status(cs, st, "Faulted", "EVCommunicationError")
    assert not any("relay closed" in ln for ln in st.lines[n:]), st.tail()
    set_ev(st, state="A", diode=True)          # unplugged: the transaction stops, the fault clears
    stop = (await cs.wait_call("StopTransaction", 2, station=st))[3]
    assert stop["reason"] == "EVDisconnected", stop
    await wait_status(cs, st, "Available")
    assert not any("relay closed" in ln for ln in st.lines[n:]), st.tail()
    lines = "\n".join(st.lines)
    assert "Traceback" not in lines and "MemoryError" not in lines, st.tail(30)
    assert validate_outgoing(cs.frames) > 15
