"""Firmware updates, rollouts and diagnostics requests across gateway processes (issue 15): two
real `picocharge gateway` processes on one PostgreSQL database, asked through A for stations
connected to B. The stations are support.otaboard.OtaBoard charge points (the `ocpp` package) on
real WebSockets, fetching the release and uploading their log over HTTP from the location they
were sent: B's, as the station reaches B, built by B (only B knows the station's link)."""
import asyncio

from support.gwcluster import port_of, start_gateway, until
from support.gwhttp import TEST_TOKEN, http
from support.otaboard import OtaBoard, make_bundle, tar_of

PW = {"CP-1": "password-of-cp-1-xxxx", "CP-2": "password-of-cp-2-xxxx", "CP-3": "password-of-cp-3-xxxx"}


async def _two(db):
    a = await asyncio.to_thread(start_gateway, db, "--thingspeak-url", "", "--response-timeout", "10")
    try:
        b = await asyncio.to_thread(start_gateway, db, "--thingspeak-url", "", "--response-timeout", "10")
    except BaseException:
        await asyncio.to_thread(a.stop)
        raise
    return a, b


async def _setup(pa, tmp_path):
    for sid, pw in PW.items():
        s, out = await http(pa, "POST", "/api/stations", {"id": sid, "password": pw})
        assert s == 201, out
    s, out = await http(pa, "POST", "/api/releases", raw=tar_of(make_bundle(tmp_path / "b", "0.2.0")),
                        headers={"Authorization": "Bearer " + TEST_TOKEN, "Content-Type": "application/x-tar"})
    assert s == 201, out


async def _connected_on_a(pa, sid):
    s, v = await http(pa, "GET", "/api/stations/" + sid)
    return s == 200 and v["connected"]


async def test_cluster_ota__update_and_diagnostics_sent_through_a_reach_a_station_on_b(pg_url, tmp_path):
    a, b = await _two(pg_url)
    board = None
    try:
        pa, pb = port_of(a), port_of(b)
        await _setup(pa, tmp_path)
        # connected nowhere: the same 409 as one process
        s, out = await http(pa, "POST", "/api/stations/CP-1/update", {"version": "0.2.0"})
        assert (s, out) == (409, {"error": "station CP-1 is not connected"}), out
        board = await OtaBoard(pb, "CP-1", PW["CP-1"]).start()
        assert await until(lambda: _connected_on_a(pa, "CP-1")), "A never saw CP-1 connected to B"

        s, out = await http(pa, "POST", "/api/stations/CP-1/update",
                            {"version": "0.2.0", "retrieve_date": "2026-11-30T12:00:00Z", "retries": 2})
        # the location is B's, as the station reaches it (its WebSocket's Host), built by B
        loc = "http://127.0.0.1:%d/fw/0.2.0/manifest.json" % pb
        assert (s, out) == (200, {"location": loc, "retrieve_date": "2026-11-30T12:00:00Z", "answer": {}}), out
        assert board.received == [("UpdateFirmware", loc, "2026-11-30T12:00:00Z")], board.received

        async def installed():
            s, h = await http(pa, "GET", "/api/stations/CP-1/firmware-history")
            return [x["status"] for x in h if x["kind"] == "firmware"] if s == 200 and any(
                x["status"] == "Installed" for x in h) else None
        got = await until(installed, 30)
        assert got is not None and set(got) >= {"Downloading", "Downloaded", "Installing", "Installed"}, got
        assert board.version == "0.2.0" and board.fetched["main.py"] == b"import app\napp.run()\n", board.fetched
        assert await until(lambda: _runs(pa, "CP-1", "0.2.0")), "A does not show CP-1 running 0.2.0"

        # a diagnostics request through A: the station uploads to B; A lists and serves the file
        s, out = await http(pa, "POST", "/api/stations/CP-1/diagnostics", {"start_time": "2026-11-30T00:00:00Z"})
        assert s == 200 and out["location"] == "http://127.0.0.1:%d/diag/CP-1/" % pb, out
        name = out["answer"]["fileName"]
        assert board.received[-1] == ("GetDiagnostics", out["location"], {"start_time": "2026-11-30T00:00:00Z"}), \
            board.received

        async def listed():
            s, files = await http(pa, "GET", "/api/stations/CP-1/diagnostics")
            return s == 200 and [f["name"] for f in files] == [name]
        assert await until(listed, 20), await http(pa, "GET", "/api/stations/CP-1/diagnostics")
        s, text = await http(pa, "GET", "/api/stations/CP-1/diagnostics/" + name)
        assert s == 200 and text == "\n".join(board.log) + "\n", text
        # a bad field is refused where the call is built (B), with the schema's words, through A
        s, out = await http(pa, "POST", "/api/stations/CP-1/diagnostics", {"retries": "2"})
        assert s == 400, out
    finally:
        if board is not None:
            await board.stop()
        await asyncio.to_thread(a.stop)
        await asyncio.to_thread(b.stop)


async def _runs(pa, sid, version):
    s, v = await http(pa, "GET", "/api/stations/" + sid)
    return s == 200 and v.get("firmware") == version


async def test_cluster_ota__a_rollout_made_on_a_updates_stations_on_a_and_b(pg_url, tmp_path):
    a, b = await _two(pg_url)
    boards = []
    try:
        pa, pb = port_of(a), port_of(b)
        await _setup(pa, tmp_path)
        # CP-1 and CP-3 on B, CP-2 on A; waves of one: B's, then A's, then B's again
        for sid, port in (("CP-1", pb), ("CP-2", pa), ("CP-3", pb)):
            boards.append(await OtaBoard(port, sid, PW[sid]).start())
        for sid in PW:
            assert await until(lambda: _connected_on_a(pa, sid)), "A never saw %s connected" % sid
        s, ro = await http(pa, "POST", "/api/rollouts", {"version": "0.2.0", "stations": ["CP-1", "CP-2", "CP-3"],
                                                         "wave": 1, "timeout": 60})
        assert s == 201, ro

        async def done():
            s, r = await http(pa, "GET", "/api/rollouts/%d" % ro["id"])
            return r if s == 200 and r["state"] in ("done", "stopped") else None
        end = await until(done, 60)
        assert end is not None, await http(pa, "GET", "/api/rollouts/%d" % ro["id"])
        assert (end["state"], [(x["station"], x["state"], x["detail"]) for x in end["stations"]]) == (
            "done", [(sid, "done", "Installed, running 0.2.0") for sid in ("CP-1", "CP-2", "CP-3")]), end
        for bd, port in zip(boards, (pb, pa, pb)):
            assert [r[:2] for r in bd.received] == [
                ("UpdateFirmware", "http://127.0.0.1:%d/fw/0.2.0/manifest.json" % port)], (bd.sid, bd.received)
        # one wave at a time: CP-2 was sent its update only after CP-1 had installed, CP-3 after CP-2
        m = [bd.marks for bd in boards]
        assert m[0]["Installed"] < m[1]["UpdateFirmware"] and m[1]["Installed"] < m[2]["UpdateFirmware"], m
    finally:
        for bd in boards:
            await bd.stop()
        await asyncio.to_thread(a.stop)
        await asyncio.to_thread(b.stop)
