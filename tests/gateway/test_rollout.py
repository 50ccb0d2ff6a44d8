"""Staged rollouts (issue 12, gateway/rollouts.py): a release to a fleet in waves, the next wave only
once every station of the current one reported Installed and booted the new version; stopped and
reported at the first failures; resumed by a gateway that restarts mid-rollout. The stations are
support.otaboard.OtaBoard charge points on real WebSockets, fetching the release over HTTP."""
import asyncio

import pytest

from support.cli import run_cli
from support.gwhttp import http
from support.otaboard import OtaBoard, make_bundle, tar_of
from support.stations import Connected, boot
from picocharge.gateway.store import Store

SIDS = ["CP-%d" % i for i in range(1, 7)]


def _pw(sid):
    return "password-of-%s-xxxx" % sid


async def _fleet(gw, tmp_path, fail=(), hold=()):
    for sid in SIDS:
        if sid not in gw.stations:
            await gw.register(sid, _pw(sid))
    bundle = make_bundle(tmp_path / "b", "0.2.0")
    s, out = await http(gw, "POST", "/api/releases", raw=tar_of(bundle), headers={
        "Authorization": "Bearer " + gw.settings.api_token, "Content-Type": "application/x-tar"})
    assert s == 201, out
    boards = {}
    for sid in SIDS:
        boards[sid] = await OtaBoard(gw.port, sid, _pw(sid), fail="install" if sid in fail else None,
                                     hold=hold[sid] if sid in hold else None).start()
    return boards


async def _until(gw, rid, pred, timeout=60):
    async def go():
        while True:
            s, ro = await http(gw, "GET", "/api/rollouts/%d" % rid)
            assert s == 200, ro
            if pred(ro):
                return ro
            await asyncio.sleep(0.05)
    return await asyncio.wait_for(go(), timeout)


def _states(ro):
    return {x["station"]: x["state"] for x in ro["stations"]}


async def _stop_all(boards):
    for b in boards.values():
        await b.stop()


async def test_rollout__six_stations_in_waves_of_two(gateway, tmp_path):
    gw = await gateway(auth="password")
    boards = await _fleet(gw, tmp_path)
    try:
        s, ro = await http(gw, "POST", "/api/rollouts", {"version": "0.2.0", "stations": SIDS, "wave": 2,
                                                         "max_failures": 1, "timeout": 60})
        assert s == 201 and ro["state"] == "running" and ro["id"] == 1, ro
        ro = await _until(gw, 1, lambda r: r["state"] != "running")
        assert (ro["state"], ro["reason"], ro["counts"]) == ("done", "every station runs 0.2.0", {"done": 6}), ro
        assert [(x["station"], x["detail"]) for x in ro["stations"]] == [
            (sid, "Installed, running 0.2.0") for sid in SIDS], ro
        for sid, b in boards.items():
            assert b.version == "0.2.0" and gw.stations[sid]["firmware"] == "0.2.0", sid
            assert [x[0] for x in b.received] == ["UpdateFirmware"], (sid, b.received)
        # the waves: no station of a wave was sent UpdateFirmware before every station of the wave
        # before it had reported Installed
        for k in (2, 4):
            before = max(boards[sid].marks["Installed"] for sid in SIDS[k - 2:k])
            after = min(boards[sid].marks["UpdateFirmware"] for sid in SIDS[k:k + 2])
            assert before < after, (k, {sid: b.marks for sid, b in boards.items()})
        s, views = await http(gw, "GET", "/api/stations")
        assert {v["id"]: (v["firmware"], v["firmware_status"]["status"]) for v in views} == {
            sid: ("0.2.0", "Installed") for sid in SIDS}, views
        s, rows = await http(gw, "GET", "/api/rollouts")
        assert [(r["id"], r["state"]) for r in rows] == [(1, "done")], rows
    finally:
        await _stop_all(boards)


async def test_rollout__a_failing_station_stops_it_and_is_named(gateway, tmp_path):
    gw = await gateway(auth="password")
    boards = await _fleet(gw, tmp_path, fail=("CP-3",))
    try:
        s, ro = await http(gw, "POST", "/api/rollouts", {"version": "0.2.0", "stations": SIDS, "wave": 2})
        assert s == 201, ro
        ro = await _until(gw, ro["id"], lambda r: r["state"] != "running" and "updating" not in _states(r).values())
        assert ro["state"] == "stopped", ro
        assert ro["reason"] == "stopped at 1 failed station(s): CP-3 InstallationFailed", ro
        assert _states(ro) == {"CP-1": "done", "CP-2": "done", "CP-3": "failed", "CP-4": "done",
                               "CP-5": "skipped", "CP-6": "skipped"}, ro
        assert boards["CP-5"].received == [] and boards["CP-6"].received == [], "no update after the stop"
        assert boards["CP-3"].version == "0.1.0" and gw.stations["CP-3"]["firmware"] == "0.1.0"
        assert gw.station_view("CP-3")["firmware_status"]["status"] == "InstallationFailed"
        # another rollout may take the stations again once this one has stopped
        s, ro2 = await http(gw, "POST", "/api/rollouts", {"version": "0.2.0", "stations": ["CP-5"], "wave": 1})
        assert s == 201, ro2
        ro2 = await _until(gw, ro2["id"], lambda r: r["state"] == "done")
        assert _states(ro2) == {"CP-5": "done"}, ro2
    finally:
        await _stop_all(boards)


@pytest.mark.both_stores   # the OTA tables (migration 0002) on PostgreSQL too
async def test_rollout__a_gateway_restart_mid_rollout_resumes_it(gateway, tmp_path):
    gw = await gateway(auth="password")
    hold = {sid: asyncio.Event() for sid in ("CP-3", "CP-4")}
    boards = await _fleet(gw, tmp_path, hold=hold)
    port, db = gw.port, gw.settings.db
    try:
        s, ro = await http(gw, "POST", "/api/rollouts", {"version": "0.2.0", "stations": SIDS, "wave": 2,
                                                         "timeout": 120})
        assert s == 201, ro
        # the second wave has downloaded and waits to install
        ro = await _until(gw, 1, lambda r: [x["detail"] for x in r["stations"][2:4]] == ["Downloaded"] * 2)
        assert _states(ro) == {"CP-1": "done", "CP-2": "done", "CP-3": "updating", "CP-4": "updating",
                               "CP-5": "waiting", "CP-6": "waiting"}, ro
        await gw.stop()
        gw2 = await gateway(auth="password", port=port, db=db)
        for b in boards.values():
            await asyncio.wait_for(b.connected.wait(), 30)    # reconnected to the new gateway
        s, ro = await http(gw2, "GET", "/api/rollouts/1")
        assert ro["state"] == "running" and _states(ro)["CP-3"] == "updating", ro
        for ev in hold.values():
            ev.set()
        ro = await _until(gw2, 1, lambda r: r["state"] != "running")
        assert (ro["state"], ro["counts"]) == ("done", {"done": 6}), ro
        assert all(b.version == "0.2.0" for b in boards.values())
        assert all([x[0] for x in b.received] == ["UpdateFirmware"] for b in boards.values()), \
            {sid: b.received for sid, b in boards.items()}
    finally:
        await _stop_all(boards)


async def test_rollout__a_station_that_never_reports_times_out(gateway, tmp_path):
    gw = await gateway(auth="none")
    bundle = make_bundle(tmp_path / "b", "0.2.0")
    s, out = await http(gw, "POST", "/api/releases", raw=tar_of(bundle), headers={
        "Authorization": "Bearer " + gw.settings.api_token, "Content-Type": "application/x-tar"})
    assert s == 201, out
    async with Connected(gw.port, "CP-1") as cp:    # answers UpdateFirmware, then does nothing
        await boot(cp)
        await gw.register("CP-2")
        s, ro = await http(gw, "POST", "/api/rollouts", {"version": "0.2.0", "stations": ["CP-1", "CP-2"],
                                                         "wave": 1, "timeout": 5})
        assert s == 201, ro
        ro = await _until(gw, ro["id"], lambda r: r["state"] != "running", 30)
        assert ro["state"] == "stopped" and _states(ro) == {"CP-1": "failed", "CP-2": "skipped"}, ro
        assert ro["stations"][0]["detail"] == ("timeout: no Installed and reboot on 0.2.0 within 5 s (last status "
                                               "none, running unknown)"), ro
        assert ("UpdateFirmware", "http://127.0.0.1:%d/fw/0.2.0/manifest.json" % gw.port) in cp.received


async def test_rollout__refusals_and_cancel(gateway, tmp_path):
    gw = await gateway(auth="none")
    for sid in ("CP-1", "CP-2"):
        await gw.register(sid)
    s, out = await http(gw, "POST", "/api/rollouts", {"version": "0.2.0", "stations": "all"})
    assert (s, out) == (400, {"error": "no release 0.2.0 on this gateway: add it first (POST /api/releases, or "
                                       "`picocharge gateway release add DIR`)"}), out
    bundle = make_bundle(tmp_path / "b", "0.2.0")
    s, out = await http(gw, "POST", "/api/releases", raw=tar_of(bundle), headers={
        "Authorization": "Bearer " + gw.settings.api_token, "Content-Type": "application/x-tar"})
    cases = [({"version": "0.2.0", "stations": ["CP-9"]}, "unknown stations: CP-9 (GET /api/stations lists them)"),
             ({"version": "0.2.0", "stations": []}, 'stations must be a list of 1..10000 station ids, or "all"'),
             ({"version": "0.2.0", "stations": "all", "wave": 0}, "wave must be an integer 1..10000"),
             ({"version": "0.2.0", "stations": "all", "timeout": 1}, "timeout must be an integer 5..604800"),
             ({"version": "0.2.0", "stations": "all", "speed": 3},
              "speed: not a field here (the fields: version, stations, wave, max_failures, timeout)"),
             ({"version": "../x", "stations": "all"},
              "version: a version is 1-32 characters of A-Z a-z 0-9 . _ + - (docs/ota.md)")]
    for body, why in cases:
        s, out = await http(gw, "POST", "/api/rollouts", body)
        assert (s, out) == (400, {"error": why}), (body, out)
    # the stations are not connected: the rollout waits for them (until its timeout)
    s, ro = await http(gw, "POST", "/api/rollouts", {"version": "0.2.0", "stations": "all", "wave": 2})
    assert s == 201 and _states(ro) == {"CP-1": "waiting", "CP-2": "waiting"}, ro
    ro = await _until(gw, ro["id"], lambda r: set(_states(r).values()) == {"updating"})
    assert [x["detail"] for x in ro["stations"]] == ["waiting for the station to connect"] * 2, ro
    s, out = await http(gw, "POST", "/api/rollouts", {"version": "0.2.0", "stations": ["CP-2"]})
    assert (s, out) == (400, {"error": "stations already in a running rollout: CP-2 (cancel it first)"}), out
    # its release stays while it runs, through the API and the CLI
    s, out = await http(gw, "DELETE", "/api/releases/0.2.0")
    assert (s, out) == (409, {"error": "release 0.2.0 is being rolled out (rollout 1): cancel it first (POST "
                                       "/api/rollouts/1/cancel)"}), out
    r = await asyncio.to_thread(run_cli, "gateway", "release", "remove", "0.2.0", "--db", gw.settings.db)
    assert r.returncode == 1 and "release 0.2.0 is being rolled out (rollout 1)" in r.stderr, r.stderr
    s, ro = await http(gw, "POST", "/api/rollouts/%d/cancel" % ro["id"])
    assert s == 200 and ro["state"] == "cancelled" and set(_states(ro).values()) == {"cancelled"}, ro
    s, out = await http(gw, "GET", "/api/rollouts/99")
    assert (s, out) == (404, {"error": "no rollout 99 (GET /api/rollouts lists them)"}), out
    s, out = await http(gw, "GET", "/api/rollouts/x")
    assert (s, out) == (400, {"error": "a rollout id is a positive integer"}), out


class _Harness:
    """A rollout of `stations` in waves of 2 on a real store, followed by rollouts.Rollouts with
    a gateway where none of its stations is connected. `reads`: the rollout's reads of its rows
    (a woken rollout queues one at once); `results`: what each of its store calls answered."""

    def __init__(self, tmp_path, stations):
        from picocharge.gateway import rollouts as R, store as st
        self.st, self.ids = st, ["CP-%d" % i for i in range(stations)]
        self.store = Store(str(tmp_path / "gw.db"))
        self.reads, self.busy, self.results = [], [], []
        h = self

        class Gw:
            stations = {sid: {"firmware": "0.1.0", "state": "accepted"} for sid in self.ids + ["CP-X", "CP-Y"]}
            sessions, origins, cluster = {}, {}, None

            class store:
                @staticmethod
                def run(fn, *args):
                    if fn in (st.rollout_rows, getattr(st, "rollout_judged", None)):
                        h.reads.append(args)
                    fut = h.store.run(fn, *args)
                    fut.add_done_callback(lambda f: h.results.append(f.result()) if not f.exception() else None)
                    h.busy.append(fut)
                    return fut

            def elsewhere(self, sid):
                return False
        self.rollouts = R.Rollouts(Gw())

    async def start(self):
        from picocharge.gateway.store import now_iso
        await self.store.start()
        self.rid = await self.store.run(self.st.add_rollout, "0.2.0", 2, 2, 3600, self.ids, now_iso())
        self.rollouts._start(self.rid)
        return await asyncio.wait_for(self.settled(), 30)

    async def settled(self):
        """The rollout waits for news: its wave started (a read, the wave written) and was looked at
        (a second read), its store calls all answered, and nothing more came of it."""
        while True:
            n, calls = len(self.reads), len(self.busy)
            for _ in range(50):
                await asyncio.sleep(0)
            if n >= 2 and len(self.reads) == n and len(self.busy) == calls and all(f.done() for f in self.busy):
                return n
            if self.busy:
                await asyncio.wait(self.busy)

    async def stop(self):
        self.rollouts.stop()
        await self.store.stop()


async def test_rollout__only_news_of_its_wave_wakes_it(tmp_path):
    """A rollout's step reads and walks its stations (~60 ms of CPU at 10,000 before it read only
    its wave): a boot or a firmware status of a station outside its current wave (another wave, or
    no rollout at all) changes nothing in it and must not wake it; one of its wave does."""
    h = _Harness(tmp_path, 4)
    try:
        n = await h.start()
        for sid in ("CP-2", "CP-3", "CP-X", "CP-Y"):     # the next wave, and stations of no rollout
            h.rollouts.wake(sid)
        for _ in range(50):
            await asyncio.sleep(0)
        assert len(h.reads) == n, "a station outside the wave woke the rollout: %d reads of its rows" % (
            len(h.reads) - n)
        h.rollouts.wake("CP-1")     # its wave: looked at again
        while len(h.reads) == n:
            await asyncio.sleep(0)
    finally:
        await h.stop()


async def test_rollout__a_step_reads_its_wave_not_every_station(tmp_path):
    """A rollout of 1,000 stations in waves of 2: starting a wave and each look at it (a status of a
    wave's station) read the wave's rows, not the 1,000 (before: every station's, each step)."""
    h = _Harness(tmp_path, 1000)
    try:
        n = await h.start()
        h.rollouts.wake("CP-1")
        while len(h.reads) == n:
            await asyncio.sleep(0)
        await h.settled()
        rows = [len(r[0]["stations"]) if r and isinstance(r[0], dict) and "stations" in r[0] else len(r)
                for r in h.results if isinstance(r, list) and r and isinstance(r[0], dict)]
        assert rows and max(rows) <= 2, rows
        ro = (await h.store.run(h.st.rollout_rows, h.rid))[0]
        assert [s["state"] for s in ro["stations"]][:3] == ["updating", "updating", "waiting"], ro["stations"][:3]
    finally:
        await h.stop()
