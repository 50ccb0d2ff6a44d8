"""OCPP 1.6 Smart Charging between the real firmware (unix board) and an `ocpp`-package central
system: the configuration keys, SetChargingProfile (and where it is Rejected), the composite
schedule the station reports, RemoteStartTransaction with a chargingProfile, ClearChargingProfile,
profiles kept across a power cut, the TxProfiles of a cut transaction dropped; every frame the
station sends is checked against the OCPP 1.6 JSON schemas."""
import time

from ocpp.v16 import call

from support.central import station_config, ts, validate_outgoing

KEYS = ["ChargeProfileMaxStackLevel", "ChargingScheduleAllowedChargingRateUnit", "ChargingScheduleMaxPeriods",
        "MaxChargingProfilesInstalled", "SupportedFeatureProfiles"]


def iso(epoch_s):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


def profile(pid, purpose, stack, kind, periods, unit="A", **kw):
    p = {"chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
         "chargingProfileKind": kind,
         "chargingSchedule": {"chargingRateUnit": unit,
                              "chargingSchedulePeriod": [{"startPeriod": s, "limit": lim} for s, lim in periods]}}
    if "start" in kw:
        p["chargingSchedule"]["startSchedule"] = iso(kw.pop("start"))
    p.update(kw)
    return p


def answer(cs, action):
    """The payload of the station's CALLRESULT to the last `action` the central system sent."""
    mid = cs.calls(action, direction="cs")[-1][1]
    got = [m for d, m in cs.frames if d == "cp" and m[0] == 3 and m[1] == mid]
    assert got, action
    return got[0][2]


async def composite(cs, connector, duration, unit=None):
    """GetCompositeSchedule: (scheduleStart epoch s, [(startPeriod, limit)]), checking the frame."""
    kw = {"charging_rate_unit": unit} if unit else {}
    r = await cs.call(call.GetCompositeSchedule(connector_id=connector, duration=duration, **kw))
    assert r.status == "Accepted", r
    p = answer(cs, "GetCompositeSchedule")
    sch = p["chargingSchedule"]
    assert p["connectorId"] == connector and sch["duration"] == duration, p
    assert sch["chargingRateUnit"] == (unit or "A"), p
    return ts(p["scheduleStart"].replace("Z", ".000Z") if "." not in p["scheduleStart"] else p["scheduleStart"]), [
        (q["startPeriod"], q["limit"]) for q in sch["chargingSchedulePeriod"]]


async def test_smart__profiles_composite_remote_start_clear_and_reboot(station, central):
    cs = await central(heartbeat=60)
    cfg = station_config(cs.url)
    cfg["charger"] = {"max_current_a": 32, "supply_v": 230, "phases": 1}
    st = station(cfg).start()
    await cs.wait_call("StatusNotification", 2, station=st)

    r = await cs.call(call.GetConfiguration(key=KEYS))
    assert [(k["key"], k["value"], k["readonly"]) for k in r.configuration_key] == [
        ("ChargeProfileMaxStackLevel", "8", True), ("ChargingScheduleAllowedChargingRateUnit", "Current,Power", True),
        ("ChargingScheduleMaxPeriods", "24", True), ("MaxChargingProfilesInstalled", "8", True),
        ("SupportedFeatureProfiles", "Core,FirmwareManagement,LocalAuthListManagement,RemoteTrigger,Reservation,SmartCharging", True)], r
    assert (await cs.call(call.ChangeConfiguration(key="ChargingScheduleMaxPeriods", value="99"))).status == "Rejected"

    # nothing installed: the station's own maximum
    _, periods = await composite(cs, 1, 3600)
    assert periods == [(0, 32.0)], periods

    # Rejected where the specification says so
    now = int(time.time())
    for conn, p, why in [
            (1, profile(1, "TxProfile", 0, "Relative", [(0, 10)]), "a TxProfile needs a running transaction"),
            (1, profile(1, "ChargePointMaxProfile", 0, "Absolute", [(0, 10)], start=now), "connector 0"),
            (2, profile(1, "TxDefaultProfile", 0, "Relative", [(0, 10)]), "connectorId 2"),
            (1, profile(1, "TxDefaultProfile", 9, "Relative", [(0, 10)]), "stackLevel"),
            (1, profile(1, "TxDefaultProfile", 0, "Relative", [(s * 60, 10) for s in range(25)]),
             "ChargingScheduleMaxPeriods")]:
        r = await cs.call(call.SetChargingProfile(connector_id=conn, cs_charging_profiles=p))
        assert r.status == "Rejected", (p, r)
        await st.aexpect("[smart] W: SetChargingProfile rejected:")
        assert why in st.lines[-1] or why in "\n".join(st.lines[-3:]), (why, st.tail(5))

    # a ChargePointMaxProfile of 10 A and a default of 16 A dropping to 8 A in W after half an
    # hour: the composite is the smaller of the two at each moment
    start = now - 60
    r = await cs.call(call.SetChargingProfile(connector_id=0, cs_charging_profiles=profile(
        10, "ChargePointMaxProfile", 0, "Absolute", [(0, 10)], start=start)))
    assert r.status == "Accepted", r
    await st.aexpect("[smart] I: limit 10.0 A")
    r = await cs.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile(
        11, "TxDefaultProfile", 0, "Absolute", [(0, 3680), (1800, 1840)], unit="W", start=start)))
    assert r.status == "Accepted", r
    t0, periods = await composite(cs, 1, 3600)
    assert abs(t0 - time.time()) < 30, t0
    assert periods == [(0, 10.0), (start + 1800 - int(t0), 8.0)], (t0, periods)
    t0, periods = await composite(cs, 1, 3600, unit="W")
    assert periods == [(0, 2300.0), (start + 1800 - int(t0), 1840.0)], (t0, periods)
    _, periods = await composite(cs, 0, 3600)
    assert periods == [(0, 10.0)], periods

    # RemoteStartTransaction: a chargingProfile that is not a TxProfile is Rejected; a relative
    # TxProfile applies from the transaction's start
    r = await cs.call(call.RemoteStartTransaction(id_tag="T-SC", charging_profile=profile(
        12, "TxDefaultProfile", 0, "Relative", [(0, 6)])))
    assert r.status == "Rejected", r
    r = await cs.call(call.RemoteStartTransaction(id_tag="T-SC", charging_profile=profile(
        12, "TxProfile", 0, "Relative", [(0, 6), (600, 20)])))
    assert r.status == "Accepted", r
    start_tx = (await cs.wait_call("StartTransaction", station=st))[3]
    await st.aexpect("[smart] I: limit 6.0 A")
    t0, periods = await composite(cs, 1, 3600)
    assert [p[1] for p in periods] == [6.0, 10.0], periods
    want = ts(start_tx["timestamp"]) + 600 - t0
    assert abs(periods[1][0] - want) <= 1.5, (periods, want)

    # a TxProfile for another transaction is Rejected, for this one Accepted (stack level 1 wins)
    assert (await cs.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile(
        13, "TxProfile", 1, "Relative", [(0, 7)], transactionId=999)))).status == "Rejected"
    assert (await cs.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile(
        13, "TxProfile", 1, "Relative", [(0, 7)], transactionId=1001)))).status == "Accepted"
    await st.aexpect("[smart] I: limit 7.0 A")

    # ClearChargingProfile: by an unknown id Unknown, by purpose and stack level Accepted
    assert (await cs.call(call.ClearChargingProfile(id=77))).status == "Unknown"
    assert (await cs.call(call.ClearChargingProfile(charging_profile_purpose="TxProfile",
                                                    stack_level=1))).status == "Accepted"
    await st.aexpect("[smart] I: limit 6.0 A")
    assert validate_outgoing(cs.frames) > 20

    # a power cut: the profiles are on flash; the transaction is stopped (PowerLoss) and its
    # TxProfile goes with it, the max and default profiles stay
    st.kill()
    n = len(cs.calls("StatusNotification"))
    st.start()
    await cs.wait_call("StatusNotification", n + 2, station=st)
    await cs.wait_call("StopTransaction", station=st)
    t0, periods = await composite(cs, 1, 3600)
    assert periods == [(0, 10.0), (start + 1800 - int(t0), 8.0)], (t0, periods)
    assert (await cs.call(call.ClearChargingProfile(id=12))).status == "Unknown"   # the TxProfile is gone
    assert (await cs.call(call.ClearChargingProfile(connector_id=0))).status == "Accepted"
    assert (await cs.call(call.ClearChargingProfile())).status == "Accepted"
    _, periods = await composite(cs, 1, 3600)
    assert periods == [(0, 32.0)], periods
    assert validate_outgoing(cs.frames) > 30
    assert "Traceback" not in "\n".join(st.lines), st.tail(30)
