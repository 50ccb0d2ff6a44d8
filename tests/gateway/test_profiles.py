"""Charging-profile commands (issue 13) through the real API port, to a charge point built on the
ocpp package (which checks each call against OCPP 1.6's schema on its side): the station's answer
comes back, the composite schedule it reports is kept and shown, and a wrong profile is refused
with 400 naming the field before anything is sent."""
import copy

import pytest

from support.gwhttp import http
from support.smartstation import SmartStation
from support.stations import Connected, boot

pytestmark = pytest.mark.both_stores

PROFILE = {"connector_id": 1, "cs_charging_profiles": {
    "charging_profile_id": 7, "stack_level": 2, "charging_profile_purpose": "TxDefaultProfile",
    "charging_profile_kind": "Recurring", "recurrency_kind": "Daily",
    "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2030-12-31T00:00:00Z",
    "charging_schedule": {"duration": 86400, "start_schedule": "2027-01-01T00:00:00Z", "charging_rate_unit": "A",
                          "min_charging_rate": 6.0,
                          "charging_schedule_period": [{"start_period": 0, "limit": 16, "number_phases": 3},
                                                       {"start_period": 3600, "limit": 10.5}]}}}


async def test_profiles__set_clear_and_composite_through_the_api(gateway):
    gw = await gateway()
    async with Connected(gw.port, "CP-1", cls=SmartStation) as cp:
        assert (await boot(cp)).status == "Accepted"
        s, out = await http(gw, "POST", "/api/stations/CP-1/set-charging-profile", PROFILE)
        assert (s, out) == (200, {"status": "Accepted"}), (s, out)
        # what the station received, every field, after the ocpp package's schema check on its side
        got = cp.set_calls
        assert got == [(1, {
            "charging_profile_id": 7, "stack_level": 2, "charging_profile_purpose": "TxDefaultProfile",
            "charging_profile_kind": "Recurring", "recurrency_kind": "Daily",
            "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2030-12-31T00:00:00Z",
            "charging_schedule": {"duration": 86400, "start_schedule": "2027-01-01T00:00:00Z",
                                  "charging_rate_unit": "A", "min_charging_rate": 6.0,
                                  "charging_schedule_period": [{"start_period": 0, "limit": 16, "number_phases": 3},
                                                               {"start_period": 3600, "limit": 10.5}]}})], got
        cp.refuse = True
        s, out = await http(gw, "POST", "/api/stations/CP-1/set-charging-profile", PROFILE)
        assert (s, out) == (200, {"status": "Rejected"}), (s, out)
        cp.refuse = False

        s, out = await http(gw, "GET", "/api/stations/CP-1/composite-schedules")
        assert (s, out) == (200, []), (s, out)
        s, out = await http(gw, "POST", "/api/stations/CP-1/get-composite-schedule",
                            {"connector_id": 1, "duration": 600, "charging_rate_unit": "A"})
        want = {"status": "Accepted", "connectorId": 1, "scheduleStart": "2027-01-01T10:00:00Z",
                "chargingSchedule": {"duration": 600, "chargingRateUnit": "A",
                                     "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}]}}
        assert (s, out) == (200, want), (s, out)
        s, out = await http(gw, "GET", "/api/stations/CP-1/composite-schedules")
        assert s == 200 and len(out) == 1, out
        row = dict(out[0])
        assert row.pop("ts").endswith("Z"), out
        assert row == {"connector_id": 1, "status": "Accepted", "schedule_start": "2027-01-01T10:00:00Z",
                       "charging_schedule": want["chargingSchedule"], "duration": 600,
                       "charging_rate_unit": "A"}, row

        s, out = await http(gw, "POST", "/api/stations/CP-1/clear-charging-profile",
                            {"connector_id": 1, "charging_profile_purpose": "TxDefaultProfile", "stack_level": 2})
        assert (s, out) == (200, {"status": "Accepted"}), (s, out)
        assert cp.received[-1] == ("ClearChargingProfile", {"connector_id": 1, "charging_profile_purpose":
                                                            "TxDefaultProfile", "stack_level": 2}), cp.received
        assert cp.profiles == {}, cp.profiles
        s, out = await http(gw, "POST", "/api/stations/CP-1/clear-charging-profile", {"id": 7})
        assert (s, out) == (200, {"status": "Unknown"}), (s, out)
        # a station with nothing to compose answers Rejected: kept as the last answer all the same
        s, out = await http(gw, "POST", "/api/stations/CP-1/get-composite-schedule", {"connector_id": 1,
                                                                                      "duration": 60})
        assert (s, out) == (200, {"status": "Rejected"}), (s, out)
        s, out = await http(gw, "GET", "/api/stations/CP-1/composite-schedules")
        assert [(r["status"], r["charging_schedule"], r["charging_rate_unit"]) for r in out] == [
            ("Rejected", None, None)], out


def _bad(path, value):
    """PROFILE with the field at dotted `path` set to `value` (or removed for ...)."""
    b = copy.deepcopy(PROFILE)
    node = b
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if k.isdigit() else node[k]
    last = keys[-1]
    if value is ...:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return b


CSP = "cs_charging_profiles"
BAD = [
    # a text not among the allowed ones: the OCPP schema's words, with the choices
    (_bad(CSP + ".charging_profile_purpose", "Whatever"),
     "'Whatever' is not one of ['ChargePointMaxProfile', 'TxDefaultProfile', 'TxProfile'] (chargingProfilePurpose)"),
    (_bad(CSP + ".charging_profile_kind", "Sometimes"), "(chargingProfileKind)"),
    (_bad(CSP + ".stack_level", -1), "stack_level"),
    (_bad(CSP + ".stack_level", 101), "stack_level"),
    (_bad(CSP + ".recurrency_kind", ...), CSP + ".recurrency_kind is missing"),
    (_bad(CSP + ".recurrency_kind", "Monthly"), "'Monthly' is not one of ['Daily', 'Weekly'] (recurrencyKind)"),
    (_bad(CSP + ".valid_to", "2025-01-01T00:00:00Z"), CSP + ".valid_to 2025-01-01T00:00:00Z must be after"),
    (_bad(CSP + ".valid_from", "next tuesday"), CSP + ".valid_from 'next tuesday' is not an ISO 8601"),
    (_bad(CSP + ".charging_schedule.charging_rate_unit", "kW"), "(chargingRateUnit)"),
    (_bad(CSP + ".charging_schedule.charging_schedule_period", []), "charging_schedule_period"),
    (_bad(CSP + ".charging_schedule.charging_schedule_period",
          [{"start_period": i * 60, "limit": 16} for i in range(49)]), "charging_schedule_period"),
    (_bad(CSP + ".charging_schedule.charging_schedule_period.1.start_period", 0),
     CSP + ".charging_schedule.charging_schedule_period[1].start_period 0 must be greater"),
    (_bad(CSP + ".charging_schedule.charging_schedule_period.0.start_period", 5),
     CSP + ".charging_schedule.charging_schedule_period[0].start_period must be 0"),
    (_bad(CSP + ".charging_schedule.charging_schedule_period.0.limit", -1), "limit"),
    (_bad(CSP + ".charging_schedule.charging_schedule_period.0.limit", 1500), "period[0].limit 1500 is over 1000 A"),
    (_bad(CSP + ".charging_schedule.charging_schedule_period.0.limit", 16.25), "limit 16.25 has more than one"),
    (_bad(CSP + ".charging_schedule.charging_schedule_period.0.limit", float("nan")), "period.0.limit: input should be a finite number"),
    (_bad(CSP + ".charging_schedule.charging_schedule_period.0.limit", float("inf")), "period.0.limit: input should be a finite number"),
    (_bad(CSP + ".charging_schedule.charging_schedule_period.0.number_phases", 4), "number_phases"),
    (_bad(CSP + ".charging_schedule.start_schedule", ...), "charging_schedule.start_schedule is missing"),
    (_bad(CSP + ".transaction_id", 5), CSP + ".transaction_id goes with charging_profile_purpose TxProfile only"),
    (_bad(CSP + ".charging_profile_purpose", "ChargePointMaxProfile"), "connector_id must be 0"),
    (_bad(CSP + ".surprise", 1), "surprise is not a field"),
    (_bad("connector_id", ...), "connector_id is missing"),
]


async def test_profiles__bad_profile_refused_naming_the_field(gateway):
    gw = await gateway()
    async with Connected(gw.port, "CP-1", cls=SmartStation) as cp:
        assert (await boot(cp)).status == "Accepted"
        for body, words in BAD:
            s, out = await http(gw, "POST", "/api/stations/CP-1/set-charging-profile", body)
            assert s == 400 and out["error"].startswith("bad body for set-charging-profile: ") and \
                words in out["error"], (words, s, out)
        tx = _bad(CSP + ".charging_profile_purpose", "TxProfile")
        tx[CSP]["charging_profile_kind"] = "Relative"
        del tx[CSP]["recurrency_kind"]
        s, out = await http(gw, "POST", "/api/stations/CP-1/set-charging-profile", tx)
        assert (s, out["error"]) == (400, "bad body for set-charging-profile: cs_charging_profiles.charging_schedule."
                                          "start_schedule must be left out of a Relative profile (it starts with "
                                          "the transaction)"), out
        del tx[CSP]["charging_schedule"]["start_schedule"]
        tx["connector_id"] = 0
        s, out = await http(gw, "POST", "/api/stations/CP-1/set-charging-profile", tx)
        assert (s, out["error"]) == (400, "bad body for set-charging-profile: connector_id must be a connector "
                                          "(1 or more) for a TxProfile, not 0"), out
        for body, words in (({"connector_id": 1, "duration": 0}, "duration"),
                            ({"connector_id": 1, "duration": 7 * 86400 + 1}, "duration"),
                            ({"connector_id": 1, "duration": 60, "charging_rate_unit": "kW"}, "(chargingRateUnit)"),
                            ({"duration": 60}, "connector_id is missing")):
            s, out = await http(gw, "POST", "/api/stations/CP-1/get-composite-schedule", body)
            assert s == 400 and words in out["error"], (body, s, out)
        s, out = await http(gw, "POST", "/api/stations/CP-1/clear-charging-profile", {"stack_level": 500})
        assert s == 400 and "stack_level" in out["error"], out
        # none of them reached the station
        assert cp.set_calls == [] and cp.received == [], (cp.set_calls, cp.received)
