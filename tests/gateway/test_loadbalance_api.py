"""Load groups through the API (issue 13), on both stores: made, read, changed and removed with a
token that may (admin), refused with 400 naming the field when wrong, kept across a restart, and
the balancer's profiles cleared on the stations of a group removed."""
import pytest

from support.gwhttp import http
from support.smartstation import SmartStation
from support.stations import Connected, boot

pytestmark = pytest.mark.both_stores


async def test_loadbalance_api__crud_validation_and_restart(gateway, gw_db):
    gw = await gateway()
    for sid in ("CP-1", "CP-2"):
        s, out = await http(gw, "POST", "/api/stations", {"id": sid})
        assert s == 201, out
    body = {"name": "garage", "limit_a": 32, "phases": 3,
            "members": [{"station": "CP-1", "connector": 1}, {"station": "CP-2", "connector": 1, "priority": 2}]}
    for bad, words in (
            (dict(body, name="no spaces"), "bad group: name: string should match pattern"),
            (dict(body, limit_a=-1), "bad group: limit_a: input should be greater than or equal to 0"),
            (dict(body, phases=4), "bad group: phases: input should be less than or equal to 3"),
            (dict(body, members=[{"station": "CP-9"}]), "bad group: members[0].station CP-9 is not a registered"),
            (dict(body, members=[{"station": "CP-1"}, {"station": "CP-1", "connector": 1}]),
             "bad group: members[1] names CP-1 connector 1 twice"),
            (dict(body, members=[{"station": "CP-1", "priority": 101}]), "bad group: members.0.priority"),
            (dict(body, eco={"topic": "a/#", "fallback_a": 6}), "bad group: eco.topic must be one topic"),
            (dict(body, eco={"topic": "a/b", "fallback_a": 40}), "bad group: eco.fallback_a and eco.floor_a must "
                                                                  "be at most"),
            (dict(body, eco={"topic": "a/b", "fallback_a": 6}), "bad group: eco mode follows a value on MQTT: start "
                                                                 "the gateway with --mqtt-url"),
            (dict(body, eco={"topic": "a/b"}), "bad group: eco.fallback_a: field required"),
            (dict(body, colour="red"), "bad group: colour: extra inputs are not permitted")):
        s, out = await http(gw, "POST", "/api/load-groups", bad)
        assert s == 400 and out["error"].startswith(words), (words, s, out)
    s, out = await http(gw, "POST", "/api/load-groups", body)
    assert s == 201, out
    assert (out["name"], out["limit_a"], out["phases"], out["safe_share_a"], out["planner"],
            [(m["station"], m["connector"], m["priority"], m["connected"]) for m in out["members"]]) == (
        "garage", 32, 3, 16.0, "here", [("CP-1", 1, 0, False), ("CP-2", 1, 2, False)]), out
    # a connector is in one group
    s, out = await http(gw, "POST", "/api/load-groups", {"name": "other", "limit_a": 16,
                                                         "members": [{"station": "CP-2"}]})
    assert (s, out) == (400, {"error": "bad group: members[0]: CP-2 connector 1 is in group garage: take it out "
                                       "of that group first (a connector is in one group)"}), out
    s, out = await http(gw, "PUT", "/api/load-groups/garage", {"limit_a": 24})
    assert s == 200 and (out["limit_a"], out["safe_share_a"], len(out["members"])) == (24, 12.0, 2), out
    s, out = await http(gw, "PUT", "/api/load-groups/garage", {"name": "x"})
    assert s == 400 and out["error"].startswith("bad group: name is not a field to change"), out
    s, out = await http(gw, "PUT", "/api/load-groups/nope", {"limit_a": 24})
    assert s == 404 and out["error"] == "no load group 'nope' (GET /api/load-groups)", out
    await gw.stop()
    gw2 = await gateway(db=gw_db)
    s, out = await http(gw2, "GET", "/api/load-groups")
    assert s == 200 and [(g["name"], g["limit_a"], g["phases"], [(m["station"], m["priority"]) for m in g["members"]])
                         for g in out] == [("garage", 24, 3, [("CP-1", 0), ("CP-2", 2)])], out
    s, out = await http(gw2, "DELETE", "/api/load-groups/garage")
    assert (s, out) == (200, {"name": "garage", "removed": True}), out
    s, out = await http(gw2, "GET", "/api/load-groups/garage")
    assert s == 404, out
    s, out = await http(gw2, "GET", "/api/load-groups")
    assert (s, out) == (200, []), out


async def test_loadbalance_api__removed_group_clears_its_profiles_on_the_stations(gateway):
    gw = await gateway()
    async with Connected(gw.port, "CP-1", cls=SmartStation) as cp:
        assert (await boot(cp)).status == "Accepted"
        s, out = await http(gw, "POST", "/api/load-groups", {"name": "g", "limit_a": 20,
                                                             "members": [{"station": "CP-1"}]})
        assert s == 201, out
        await gw.loadbalance.settled()
        assert [p["charging_profile_purpose"] for _c, p in cp.profiles.values()] == ["TxDefaultProfile"], cp.profiles
        assert cp.limit_now(1, None) == 20.0
        s, out = await http(gw, "DELETE", "/api/load-groups/g")
        assert s == 200, out
        assert cp.profiles == {}, cp.profiles
        assert [r for r in cp.received if r[0] == "ClearChargingProfile"] == [
            ("ClearChargingProfile", {"connector_id": 1, "charging_profile_purpose": p, "stack_level": 5})
            for p in ("TxProfile", "TxDefaultProfile")], cp.received
