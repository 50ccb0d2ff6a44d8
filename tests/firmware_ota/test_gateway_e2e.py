"""Issue 12 end to end, both halves together: the real firmware on the unix board, updated by the
real gateway. The release is made by `picocharge release build`, added with `picocharge gateway
release add` to the running gateway's database, served on the gateway's own port (/fw/, the
station's credentials), and the update is asked for through the HTTP API; a rollout takes a fleet
of boards in waves; diagnostics come back on /diag/ and are downloaded from the API."""
import asyncio
import time

import pytest

from support.cli import run_cli
from support.firmware import RESET_EXIT
from support.gwhttp import TEST_TOKEN, http
from support.otasrv import flash_state, ota_config, slot_intact

STATION_PW = "station-password-0042"     # 16..40 printable ASCII, as the gateway takes them


def _board(station, gw, fleet_key, sid):
    cfg = ota_config("ws://127.0.0.1:%d/ocpp" % gw.port, fleet_key[1])
    cfg["station_id"] = sid
    cfg["ocpp"]["password"] = STATION_PW
    return station(cfg, name="flash-" + sid)


async def _until(what, pred, timeout=90, show=None):
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "%s: not within %d s; %s" % (what, timeout, show() if show else "")
        await asyncio.sleep(0.1)


async def _reboots(boards, stop):
    """A board's reset ends its process (exit 75): start it again on its flash, as a board reboots."""
    while not stop.is_set():
        for st in boards:
            if st.proc is not None and st.proc.poll() is not None:
                assert st.proc.returncode == RESET_EXIT, st.tail()
                st.start()
        await asyncio.sleep(0.1)


def _add_release(gw, folder):
    r = run_cli("gateway", "release", "add", str(folder), "--db", gw.settings.db)
    assert r.returncode == 0, r.stderr
    return r.stdout


async def test_gateway_updates_the_real_firmware_over_the_air_and_gets_its_diagnostics(station, releases, fleet_key,
                                                                                       password_gateway):
    gw = password_gateway
    await gw.register("CP-1", STATION_PW)
    st = _board(station, gw, fleet_key, "CP-1").start()
    await _until("boot on 0.1.0", lambda: "CP-1" in gw.sessions and gw.stations["CP-1"].get("firmware") == "0.1.0",
                 show=st.tail)
    assert "release 0.2.0 added" in _add_release(gw, releases("0.2.0"))
    stop = asyncio.Event()
    rebooter = asyncio.get_running_loop().create_task(_reboots([st], stop))
    try:
        t0 = time.monotonic()
        s, ans = await http(gw, "POST", "/api/stations/CP-1/update", {"version": "0.2.0"})
        assert s == 200 and ans["location"] == "http://127.0.0.1:%d/fw/0.2.0/manifest.json" % gw.port, ans
        await _until("0.2.0 installed", lambda: gw.stations["CP-1"].get("firmware") == "0.2.0" and
                     (gw.station_view("CP-1")["firmware_status"] or {}).get("status") == "Installed", show=st.tail)
        took = time.monotonic() - t0
        s, hist = await http(gw, "GET", "/api/stations/CP-1/firmware-history")
        seen = [h["status"] for h in reversed(hist)]
        assert seen[:4] == ["Downloading", "Downloaded", "Installing", "Installed"], seen
        ptr, slots = flash_state(st.flash)
        assert slots.get(ptr.strip()[:1]) == "0.2.0" or "0.2.0" in slots.values(), (ptr, slots)
        for slot, version in slots.items():
            assert slot_intact(st.flash, slot) == version
        # the station's log, asked for through the API, comes back on /diag/ and is downloadable
        s, ans = await http(gw, "POST", "/api/stations/CP-1/diagnostics", {})
        assert s == 200 and ans["answer"]["fileName"].startswith("CP-1-"), ans
        await _until("diagnostics uploaded",
                     lambda: (gw.station_view("CP-1")["diagnostics_status"] or {}).get("status") == "Uploaded",
                     show=st.tail)
        s, files = await http(gw, "GET", "/api/stations/CP-1/diagnostics")
        assert [f["name"] for f in files] == [ans["answer"]["fileName"]], files
        s, body = await http(gw, "GET", "/api/stations/CP-1/diagnostics/" + files[0]["name"])
        assert s == 200 and "[ocpp]" in body and "boot accepted" in body, body[:500]
        assert STATION_PW not in body and fleet_key[1] not in body       # secrets never reach the log
        print("one station updated in %.1f s" % took)
    finally:
        stop.set()
        await rebooter


async def test_a_rollout_takes_real_boards_in_waves(station, releases, fleet_key, password_gateway):
    gw = password_gateway
    sids = ["CP-%d" % i for i in range(1, 5)]
    boards = []
    for sid in sids:
        await gw.register(sid, STATION_PW)
        boards.append(_board(station, gw, fleet_key, sid).start())
    _add_release(gw, releases("0.3.0"))
    await _until("4 boards on 0.1.0", lambda: all(s in gw.sessions and gw.stations[s].get("firmware") == "0.1.0"
                                                  for s in sids), timeout=120)
    stop = asyncio.Event()
    rebooter = asyncio.get_running_loop().create_task(_reboots(boards, stop))
    try:
        t0 = time.monotonic()
        s, ro = await http(gw, "POST", "/api/rollouts", {"version": "0.3.0", "stations": sids, "wave": 2})
        assert s in (200, 201), ro

        async def state():
            return (await http(gw, "GET", "/api/rollouts/%d" % ro["id"]))[1]
        cur = await state()
        end = time.monotonic() + 180
        while cur["state"] == "running":
            assert time.monotonic() < end, cur
            await asyncio.sleep(0.3)
            cur = await state()
        assert cur["state"] == "done", cur
        assert all(gw.stations[s].get("firmware") == "0.3.0" for s in sids)
        # waves: the second wave started only once the first had come back on the new version
        by = {x["station"]: x for x in cur["stations"]}
        first, second = [by[s] for s in sids[:2]], [by[s] for s in sids[2:]]
        assert max(x["finished"] for x in first) <= min(x["started"] for x in second), cur["stations"]
        print("rollout of %d boards in waves of 2: %.1f s" % (len(sids), time.monotonic() - t0))
    finally:
        stop.set()
        await rebooter
