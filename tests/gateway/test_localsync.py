"""Local list sync (issue 14): the gateway keeps a station's Local Authorization List in step with its
id-tag list: Full at first connection, Differential after a change, Full again after VersionMismatch,
in messages no longer than the station's SendLocalListMaxLength; a station answering NotSupported is
left alone and shown so. The stations are charge points built on the ocpp package holding a real
list (version rules of OCPP 1.6 section 5.15)."""
import asyncio

import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action

from support import stations
from support.gwhttp import http
from support.stations import Connected, boot

pytestmark = pytest.mark.both_stores   # a storage test: on SQLite and on PostgreSQL


class ListHolder(stations.TestStation):
    """A charge point with a Local Authorization List: SendLocalListMaxLength entries per message,
    LocalAuthListMaxLength in all; a Differential whose version is not above its own is answered
    VersionMismatch (and so is the next one when `mismatch_next` is set)."""

    send_max = 100
    capacity = 5000
    lists = {}      # station id -> (version, {tag: idTagInfo}): its "flash", kept across connections

    def __init__(self, sid, ws):
        super().__init__(sid, ws)
        self.mismatch_next = False
        self.version, self.tags = self.lists.get(sid, (0, {}))

    @on(Action.get_configuration)
    def on_get_configuration(self, key=None):
        have = {"SendLocalListMaxLength": str(self.send_max), "LocalAuthListMaxLength": str(self.capacity)}
        self.received.append(("GetConfiguration", tuple(key or ())))
        return call_result.GetConfiguration(configuration_key=[
            {"key": k, "readonly": True, "value": v} for k, v in have.items() if not key or k in key])

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self):
        self.received.append(("GetLocalListVersion", self.version))
        return call_result.GetLocalListVersion(list_version=self.version)

    @on(Action.send_local_list)
    def on_send_local_list(self, list_version, update_type, local_authorization_list=None):
        entries = local_authorization_list or []
        self.received.append(("SendLocalList", list_version, update_type, len(entries)))
        if len(entries) > self.send_max:
            return call_result.SendLocalList(status="Failed")
        if update_type == "Differential" and (self.mismatch_next or list_version <= self.version):
            self.mismatch_next = False
            return call_result.SendLocalList(status="VersionMismatch")
        tags = {} if update_type == "Full" else dict(self.tags)
        for e in entries:
            if e.get("id_tag_info") is None:
                tags.pop(e["id_tag"], None)
            else:
                tags[e["id_tag"]] = e["id_tag_info"]
        if len(tags) > self.capacity:
            return call_result.SendLocalList(status="Failed")
        self.tags, self.version = tags, list_version
        self.lists[self.id] = (self.version, self.tags)
        return call_result.SendLocalList(status="Accepted")


class NoProfile(ChargePoint):
    """A charge point with none of these calls: the ocpp package answers each NotImplemented."""

    def __init__(self, sid, ws):
        super().__init__(sid, ws)
        self.received = []


class NoLocalList(stations.TestStation):
    @on(Action.send_local_list)
    def on_send_local_list(self, list_version, update_type, local_authorization_list=None):
        self.received.append(("SendLocalList", list_version, update_type))
        return call_result.SendLocalList(status="NotSupported")

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self):
        self.received.append(("GetLocalListVersion",))
        return call_result.GetLocalListVersion(list_version=0)


def _gateway_list(gw):
    """The gateway's list as the station should hold it (what the ocpp package gives a handler)."""
    out = {}
    for t in gw.id_tags:
        info = gw.idtags.info(t)
        d = {"status": info["status"]}
        if "parentIdTag" in info:
            d["parent_id_tag"] = info["parentIdTag"]
        if "expiryDate" in info:
            d["expiry_date"] = info["expiryDate"]
        out[t] = d
    return out


async def _synced(gw, runs):
    await asyncio.wait_for(gw.localsync.wait(runs), 60)
    return gw.localsync.runs


def _sends(cp):
    return [r[1:] for r in cp.received if r[0] == "SendLocalList"]


async def test_localsync__1000_tags_full_then_differential_then_full_after_version_mismatch(gateway):
    ListHolder.lists = {}
    gw = await gateway(local_list_sync=True)
    csv = "id_tag,status,parent_id_tag,expiry_date\n" + "".join(
        "CARD-%04d,%s,%s,%s\n" % (i, "Blocked" if i % 9 == 0 else "Accepted", "FLEET" if i % 3 == 0 else "",
                                  "2031-01-01T00:00:00Z" if i % 4 == 0 else "") for i in range(1000))
    s, out = await http(gw, "POST", "/api/id-tags/import", raw=csv.encode(), headers={"Content-Type": "text/csv"})
    assert (s, out) == (200, {"imported": 1000, "version": 1000}), out
    async with Connected(gw.port, "CP-L", cls=ListHolder) as cp:
        await boot(cp)
        runs = await _synced(gw, 1)
        # first connection: its version (0) is not one the gateway gave it: Full, in 10 messages of 100
        assert cp.received[:2] == [("GetConfiguration", ("SendLocalListMaxLength", "LocalAuthListMaxLength")),
                                   ("GetLocalListVersion", 0)], cp.received[:2]
        assert _sends(cp) == [(1, "Full", 100)] + [(v, "Differential", 100) for v in range(2, 11)], _sends(cp)
        assert cp.tags == _gateway_list(gw) and cp.version == 10
        s, ll = await http(gw, "GET", "/api/stations/CP-L/local-list")
        assert (ll["list_version"], ll["in_sync"], ll["state"], ll["max_length"], ll["sync"]) == (
            10, True, "Accepted", 100, True), ll
        assert ll["detail"] == "Full update of 1000 tags in 10 messages, list version 10", ll
        # a change: only the changed tags go, Differential (one run per change, or fewer when they come at once)
        cp.received.clear()
        assert (await http(gw, "PUT", "/api/id-tags/CARD-0005", {"status": "Blocked"}))[0] == 200
        assert (await http(gw, "DELETE", "/api/id-tags/CARD-0006"))[0] == 200
        assert (await http(gw, "POST", "/api/id-tags", {"id_tag": "CARD-NEW", "parent_id_tag": "FLEET"}))[0] == 201
        while not gw.localsync.in_sync("CP-L") or gw.localsync.view("CP-L")["running"]:
            runs = await _synced(gw, runs + 1)
        sends = _sends(cp)
        assert sends and all(kind == "Differential" for _v, kind, _n in sends), sends
        assert sum(n for _v, _k, n in sends) == 3 and [v for v, _k, _n in sends] == list(range(11, 11 + len(sends)))
        assert cp.tags == _gateway_list(gw) and "CARD-0006" not in cp.tags and cp.tags["CARD-0005"] == {
            "status": "Blocked"}, cp.tags.get("CARD-0005")
        assert not [r for r in cp.received if r[0] in ("GetConfiguration", "GetLocalListVersion")], cp.received
        # the station answers the next Differential VersionMismatch: the whole list again, Full
        cp.received.clear()
        cp.mismatch_next = True
        v0 = cp.version
        assert (await http(gw, "PUT", "/api/id-tags/CARD-0007", {"expiry_date": "2030-01-01T00:00:00Z"}))[0] == 200
        runs = await _synced(gw, runs + 1)
        assert _sends(cp) == [(v0 + 1, "Differential", 1), (v0 + 1, "Full", 100)] + [
            (v, "Differential", 100) for v in range(v0 + 2, v0 + 11)], _sends(cp)
        assert cp.tags == _gateway_list(gw) and len(cp.tags) == 1000, len(cp.tags)
        assert gw.localsync.in_sync("CP-L")
        version = cp.version
    # it connects again with the list the gateway gave it: GetLocalListVersion says so, nothing is sent
    async with Connected(gw.port, "CP-L", cls=ListHolder) as cp:
        await boot(cp)
        runs = await _synced(gw, runs + 1)
        assert [r[0] for r in cp.received] == ["GetConfiguration", "GetLocalListVersion"], cp.received
        assert cp.version == version and gw.localsync.in_sync("CP-L")
    # its list was cleared meanwhile (version 0): Full, numbered on from the version it reports
    ListHolder.lists = {}
    async with Connected(gw.port, "CP-L", cls=ListHolder) as cp:
        await boot(cp)
        runs = await _synced(gw, runs + 1)
        assert _sends(cp) == [(1, "Full", 100)] + [(v, "Differential", 100) for v in range(2, 11)], _sends(cp)
        assert cp.tags == _gateway_list(gw)


async def test_localsync__a_station_older_than_the_kept_log_gets_the_whole_list(gateway, monkeypatch):
    from picocharge.gateway import idtags
    ListHolder.lists = {}
    gw = await gateway(local_list_sync=True)
    await gw.idtags.put_many([("T%02d" % i, "Accepted", None, None) for i in range(8)])
    async with Connected(gw.port, "CP-L", cls=ListHolder) as cp:
        await boot(cp)
        runs = await _synced(gw, 1)
        assert _sends(cp) == [(1, "Full", 8)], cp.received
    monkeypatch.setattr(idtags, "MAX_LOG", 12)
    monkeypatch.setattr(idtags, "KEEP_LOG", 4)
    await gw.idtags.put_many([("T%02d" % i, "Blocked", None, None) for i in range(6)])   # the log: 14 rows, pruned to 4
    assert await gw.store.run(lambda db: db.execute("SELECT MIN(version), COUNT(*) FROM id_tag_log").fetchone()[:]) \
        == (11, 4)
    async with Connected(gw.port, "CP-L", cls=ListHolder) as cp:
        await boot(cp)
        await _synced(gw, runs + 1)
        # its version is the gateway's, but the changes since are no longer all in the log: Full
        assert _sends(cp) == [(2, "Full", 8)], cp.received
        assert cp.tags == _gateway_list(gw) and cp.tags["T00"] == {"status": "Blocked"}


async def test_localsync__not_supported_stops_the_tries_and_shows_it_and_opt_in_is_per_station(gateway, gw_db):
    ListHolder.lists = {}
    gw = await gateway()        # --local-list-sync off: only stations switched on
    assert (await http(gw, "POST", "/api/id-tags", {"id_tag": "CARD-1"}))[0] == 201
    async with Connected(gw.port, "CP-N", cls=NoLocalList) as cpn, \
            Connected(gw.port, "CP-OFF", cls=ListHolder) as cpoff, \
            Connected(gw.port, "CP-OLD", cls=NoProfile) as cpold:
        for cp in (cpn, cpoff, cpold):
            await boot(cp)
        s, ll = await http(gw, "GET", "/api/stations/CP-N/local-list")
        assert (ll["sync"], ll["sync_set"], ll["state"]) == (False, None, None), ll
        s, ll = await http(gw, "PUT", "/api/stations/CP-N/local-list", {"sync": True})
        assert (s, ll["sync"], ll["sync_set"]) == (200, True, True), ll
        s, _ = await http(gw, "PUT", "/api/stations/CP-OLD/local-list", {"sync": True})
        runs = await _synced(gw, 2)
        s, ll = await http(gw, "GET", "/api/stations/CP-N/local-list")
        assert (ll["state"], ll["detail"], ll["in_sync"]) == ("NotSupported", "SendLocalList answered NotSupported",
                                                              False), ll
        # a station without the profile at all (the ocpp package answers NotImplemented)
        s, ll = await http(gw, "GET", "/api/stations/CP-OLD/local-list")
        assert (ll["state"], ll["detail"]) == ("NotSupported", "GetLocalListVersion answered NotImplemented"), ll
        s, st = await http(gw, "GET", "/api/stations/CP-N")
        assert st["local_list"]["state"] == "NotSupported", st
        n_before = len(cpn.received)
        assert (await http(gw, "POST", "/api/id-tags", {"id_tag": "CARD-2"}))[0] == 201
        assert (await http(gw, "PUT", "/api/id-tags/CARD-1", {"status": "Blocked"}))[0] == 200
        # a change starts its syncs before the API answers: none was started (none running, none finished)
        assert (gw.localsync.runs, gw.localsync.view("CP-N")["running"]) == (runs, False)
        assert len(cpn.received) == n_before, cpn.received
        # the station without a switch is never called about its list
        assert not [r for r in cpoff.received if r[0] in ("SendLocalList", "GetLocalListVersion")], cpoff.received
        s, out = await http(gw, "PUT", "/api/stations/CP-N/local-list", {"sync": "yes"})
        assert (s, out) == (400, {"error": "sync must be true, false or null (the gateway's --local-list-sync "
                                           "decides)"}), out
    # the state is stored
    await gw.stop()
    gw2 = await gateway(db=gw_db)
    assert gw2.localsync.view("CP-N")["state"] == "NotSupported" and gw2.localsync.enabled("CP-N")


async def test_localsync__the_gateway_command_switches_it_on_for_every_station_with_local_list_sync(tmp_path):
    from picocharge.cmd_demo import GatewayProcess
    ListHolder.lists = {}
    gw = GatewayProcess(tmp_path / "gw.db",
                        extra=("--auth", "none", "--thingspeak-url", "", "--local-list-sync")).start()
    try:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, gw.api, "POST", "/api/id-tags", {"id_tag": "CARD-1", "parent_id_tag": "G"})
        port = int(gw.url.rsplit(":", 1)[1])
        async with Connected(port, "CP-P", cls=ListHolder) as cp:
            await boot(cp)
            for _ in range(600):        # the sync runs after the boot's answer: wait for the station's list
                if cp.version:
                    break
                await asyncio.sleep(0.05)
            assert (cp.version, cp.tags) == (1, {"CARD-1": {"status": "Accepted", "parent_id_tag": "G"}}), cp.received
            ll = await loop.run_in_executor(None, gw.api, "GET", "/api/stations/CP-P/local-list")
            assert (ll["sync"], ll["sync_set"], ll["list_version"]) == (True, None, 1), ll
    finally:
        gw.stop()
