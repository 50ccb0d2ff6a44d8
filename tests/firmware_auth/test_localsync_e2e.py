"""Local list sync end to end: the real firmware on the unix board (charger.rfid on, cards tapped
from its control file) behind our real gateway, the two together (test_localsync.py runs the
gateway's sync against `ocpp`-package stations, test_rfid_e2e.py the firmware's list against an
`ocpp`-package central system). 1,000 id tags go into the gateway by the API's CSV import, as an
operator would put them; the station's sync is switched on through the API; the gateway sends
the list Full, in messages of the station's SendLocalListMaxLength (10), until the station
reports the gateway's listVersion. The list then decides offline (the gateway stopped): a tag
from the middle and one from the end start (LocalAuthorizeOffline), a tag not in the list does
not (AllowOfflineTxForUnknownId false), a tag Blocked through the API (which reached the station
by a Differential) is refused. Version mismatches: the station's list removed while it is off
(the boot's GetLocalListVersion sees 0: Full), and replaced by another list, of a higher
version, while it runs offline (it reconnects without a boot: the next Differential is answered
VersionMismatch, then Full); each time the station ends with the gateway's version and tags. A
tag changed while the station was cut off (the gateway up, the link cut by a TCP relay) reaches
it when it reconnects; a Full cut off after 37 of its 100 messages is sent Full again. The
stations run in the fixture's Pico-sized heap (192K)."""
import asyncio
import logging
import struct
import time

import pytest

from support.cards import rfid_config, tap
from support.gwhttp import TEST_TOKEN, http
from support.tcpcut import TcpCut

STATION_PW = "station-password-0014"     # 16..40 printable ASCII, as the gateway takes them
N = 1000
TAGS = sorted("04%06X" % (i * 7919) for i in range(N))     # unique (i * 7919 < 0xFFFFFF), spread out
MIDDLE, LAST, BLOCKED = TAGS[N // 2], TAGS[-1], TAGS[N // 4]
UNKNOWN = "04FFFFF0"                    # not in TAGS (the largest is 04%06X of 999 * 7919)
LIST_BYTES = 8 + N * 48                 # authstore: a header and 48 bytes a record


@pytest.fixture
async def gw_pool(tmp_path):
    """Factory: `await gw_pool(port=0)` -> a started in-process gateway on tmp_path/gw.db (the
    same database each time: one stopped and started again on its port is the same gateway to
    the station); `await gw_pool.down(gw)` stops one (an outage); the others are stopped at the
    end of the test."""
    from picocharge.gateway.app import Gateway, Settings

    running = []

    async def make(port=0):
        gw = Gateway(Settings(db=str(tmp_path / "gw.db"), port=port, auth="password", thingspeak_url=None,
                              gc_freeze=False, api_token=TEST_TOKEN))
        await gw.start()
        running.append(gw)
        return gw

    async def down(gw):
        running.remove(gw)
        await gw.stop()

    make.down = down
    yield make
    for gw in running:
        await gw.stop()


async def until(what, fn, timeout=60, st=None, seen=None):
    """Poll `fn` (async) until it returns something true; in the failure, `seen` (a dict `fn`
    fills with what it saw last) and the station's console."""
    end = time.monotonic() + timeout
    while True:
        got = await fn()
        if got:
            return got
        assert time.monotonic() < end, (what, seen, st.tail(20) if st else None)
        await asyncio.sleep(0.1)


async def local_list(gw):
    s, view = await http(gw, "GET", "/api/stations/CP-1/local-list")
    assert s == 200, view
    return view


async def synced_at(gw, version, st):
    """Wait until the gateway's sync of CP-1 is Accepted at `version` and in step with the id
    tags; then ask the station itself (GetLocalListVersion through the API): `version` too."""
    seen = {}

    async def ok():
        v = seen["local-list"] = await local_list(gw)
        return v if (v["in_sync"] and v["list_version"] == version and not v["running"]) else None
    view = await until("local list at version %d" % version, ok, st=st, seen=seen)
    s, ans = await http(gw, "POST", "/api/stations/CP-1/get-local-list-version", {})
    assert s == 200 and ans == {"listVersion": version}, (s, ans)
    return view


def list_on_flash(st):
    """(listVersion, size) of the station's auth_list.bin on its flash folder."""
    raw = (st.flash / "auth_list.bin").read_bytes()
    assert raw[:4] == b"PCA1", raw[:8]
    return struct.unpack("<I", raw[4:8])[0], len(raw)


async def start_synced(gw_pool, station, cuttable=False):
    """A gateway with the 1,000 tags imported and CP-1's sync on; the station started (through
    a TcpCut relay if `cuttable`) and synced Full. (gateway, station, seconds from the accepted
    boot to the station holding the list, the relay or None)."""
    gw = await gw_pool()
    await gw.register("CP-1", STATION_PW)
    csv = "id_tag,status,parent_id_tag,expiry_date\r\n" + "".join(
        "%s,Accepted,%s,\r\n" % (t, "FLEET" if i % 2 else "") for i, t in enumerate(TAGS))
    s, out = await http(gw, "POST", "/api/id-tags/import", raw=csv.encode(), headers={"Content-Type": "text/csv"})
    assert s == 200 and out["imported"] == N, (s, out)
    s, view = await http(gw, "PUT", "/api/stations/CP-1/local-list", {"sync": True})
    assert s == 200 and view["sync"] is True and view["list_version"] is None, view

    cut = await TcpCut(gw.port).start() if cuttable else None
    port = cut.port if cut else gw.port
    st = station(rfid_config("ws://127.0.0.1:%d/ocpp" % port, password=STATION_PW)).start()
    await st.aexpect("[ocpp] I: boot accepted")
    t0 = time.monotonic()
    view = await synced_at(gw, N // 10, st)
    took = time.monotonic() - t0
    assert view["max_length"] == 10, view
    assert view["state"] == "Accepted" and view["detail"] == (
        "Full update of 1000 tags in 100 messages, list version 100"), view
    assert list_on_flash(st) == (100, LIST_BYTES)
    return gw, st, took, cut


async def test_localsync__1000_tags_full_in_tens_decide_offline_and_a_blocked_tag_comes_differential(
        station, gw_pool, caplog):
    caplog.set_level(logging.INFO, logger="picocharge.gateway")
    gw, st, took, _cut = await start_synced(gw_pool, station)
    print("Full sync of %d tags (100 SendLocalList of 10) behind the gateway: %.2f s from the accepted boot"
          % (N, took))
    s, conf = await http(gw, "POST", "/api/stations/CP-1/get-configuration",
                         {"key": ["LocalAuthorizeOffline", "AllowOfflineTxForUnknownId", "LocalAuthListEnabled"]})
    assert s == 200 and {k["key"]: k["value"] for k in conf["configurationKey"]} == {
        "LocalAuthorizeOffline": "true", "AllowOfflineTxForUnknownId": "false", "LocalAuthListEnabled": "true"}, conf

    s, out = await http(gw, "PUT", "/api/id-tags/" + BLOCKED, {"status": "Blocked"})
    assert s == 200 and out["status"] == "Blocked", out
    view = await synced_at(gw, 101, st)
    assert view["detail"] == "Differential update of 1 tag in 1 message, list version 101", view
    assert list_on_flash(st) == (101, LIST_BYTES)

    port = gw.port
    await gw_pool.down(gw)                          # the gateway down: the list decides
    await st.aexpect("[ocpp] W: link down")
    await tap(st, MIDDLE)
    await st.aexpect("[board] I: relay closed")
    await st.aexpect("[ocpp] I: transaction (local #1) started for %s" % MIDDLE)
    await tap(st, MIDDLE)
    await st.aexpect("[ocpp] I: transaction (local #1) stopped: Local")
    await tap(st, LAST)
    await st.aexpect("[ocpp] I: transaction (local #2) started for %s" % LAST)
    await tap(st, LAST)
    await st.aexpect("[ocpp] I: transaction (local #2) stopped: Local")
    await tap(st, UNKNOWN)
    await st.aexpect("[ocpp] W: idTag not authorized (Invalid): no transaction for %s" % UNKNOWN)
    await tap(st, BLOCKED)
    refused = await st.aexpect("[ocpp] W: idTag not authorized (Blocked): no transaction for %s" % BLOCKED)
    for _ in range(6):
        await st.aexpect("[board] I: led")
    n = st.lines.index(refused)
    assert [ln.split()[-1] for ln in st.lines[n:] if "[board] I: led" in ln][:6] == ["on", "off"] * 3, st.tail(20)
    assert "transaction (local #3)" not in "\n".join(st.lines), st.tail(20)

    gw2 = await gw_pool(port)                       # back: the two offline transactions replayed

    async def txs():
        s, rows = await http(gw2, "GET", "/api/stations/CP-1/transactions")
        return rows if s == 200 and len(rows) == 2 and all(r["reason"] == "Local" for r in rows) \
            else None
    rows = await until("the offline transactions replayed", txs, st=st)
    assert sorted(r["id_tag"] for r in rows) == sorted([MIDDLE, LAST]), rows


async def test_localsync__version_mismatch_list_removed_while_off_or_replaced_while_offline_then_full(
        station, gw_pool, caplog):
    caplog.set_level(logging.INFO, logger="picocharge.gateway")
    gw, st, _took, _cut = await start_synced(gw_pool, station)

    # 1. the list removed while the station is off: its boot's GetLocalListVersion says 0
    st.kill()
    (st.flash / "auth_list.bin").unlink()
    st.start()
    await st.aexpect("[ocpp] I: boot accepted")
    view = await synced_at(gw, 100, st)           # Full again from version 0: 1..100
    assert view["detail"] == "Full update of 1000 tags in 100 messages, list version 100", view
    assert list_on_flash(st) == (100, LIST_BYTES)
    assert any("local list version 0, the gateway gave it 100: Full update" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records if "local list" in r.getMessage()]

    # 2. replaced by another central system's list, ahead of the gateway's, while the station
    #    runs offline: it reconnects without a boot, so only the next Differential can tell
    port = gw.port
    await gw_pool.down(gw)
    await st.aexpect("[ocpp] W: link down")
    rogue = "04BADBAD"
    recs = b"".join(struct.pack("<20s20sIB3x", t.encode(), b"", 0, 0) for t in sorted([rogue] + TAGS[:9]))
    tmp = st.flash / "auth_list.tmp"
    tmp.write_bytes(b"PCA1" + struct.pack("<I", 150) + recs)
    tmp.replace(st.flash / "auth_list.bin")
    mark = len(st.lines)
    gw = await gw_pool(port)

    async def connected():
        s, v = await http(gw, "GET", "/api/stations/CP-1")
        return s == 200 and v["connected"]
    await until("CP-1 connected again", connected, st=st)
    assert "boot accepted" not in "\n".join(st.lines[mark:]), st.tail(20)
    s, ans = await http(gw, "POST", "/api/stations/CP-1/get-local-list-version", {})
    assert ans == {"listVersion": 150}, ans       # the gateway still believes 100: not asked at a reconnect
    assert (await local_list(gw))["list_version"] == 100

    s, out = await http(gw, "PUT", "/api/id-tags/" + BLOCKED, {"status": "Blocked"})
    assert s == 200, out
    view = await synced_at(gw, 200, st)           # Differential 101: VersionMismatch; Full 101..200
    assert view["detail"] == "Full update of 1000 tags in 100 messages, list version 200", view
    assert any("answered a Differential SendLocalList with VersionMismatch: Full update" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records if "local list" in r.getMessage()]
    assert list_on_flash(st) == (200, LIST_BYTES)

    await gw_pool.down(gw)                          # the gateway's tags, not the other list's
    await st.aexpect("[ocpp] W: link down")
    await tap(st, rogue)
    await st.aexpect("[ocpp] W: idTag not authorized (Invalid): no transaction for %s" % rogue)
    await tap(st, BLOCKED)
    await st.aexpect("[ocpp] W: idTag not authorized (Blocked): no transaction for %s" % BLOCKED)
    await tap(st, LAST)
    await st.aexpect("[ocpp] I: transaction (local #1) started for %s" % LAST)


async def test_localsync__a_tag_blocked_while_the_station_is_cut_off_reaches_it_when_it_reconnects(
        station, gw_pool):
    """The station reconnects without a boot (it kept its list and its state): the gateway must
    still send what changed meanwhile, or the station decides offline by a list that is wrong."""
    gw, st, _took, cut = await start_synced(gw_pool, station, cuttable=True)
    try:
        await cut.cut()                             # the station's link down, the gateway up
        await st.aexpect("[ocpp] W: link down")

        async def gone():
            s, v = await http(gw, "GET", "/api/stations/CP-1")
            return s == 200 and not v["connected"]
        await until("CP-1 disconnected", gone, st=st)
        s, out = await http(gw, "PUT", "/api/id-tags/" + BLOCKED, {"status": "Blocked"})
        assert s == 200 and out["status"] == "Blocked", out
        mark = len(st.lines)
        await cut.start()                           # back, no boot
        await synced_at(gw, 101, st)
        assert "boot accepted" not in "\n".join(st.lines[mark:]), st.tail(20)
        assert list_on_flash(st) == (101, LIST_BYTES)

        await cut.cut()
        await st.aexpect("[ocpp] W: link down")
        await tap(st, BLOCKED)
        await st.aexpect("[ocpp] W: idTag not authorized (Blocked): no transaction for %s" % BLOCKED)
    finally:
        await cut.cut()


async def test_localsync__a_full_update_cut_off_halfway_is_sent_full_again_not_taken_as_in_step(station, gw_pool):
    """The list removed while the board was off (its boot: Full again, from version 0), and the
    link cut after 37 of the 100 messages: the station holds the first 370 tags at version 37
    (or 36). When it is back (reconnected, or rebooted: the same version either way), the gateway
    must send it Full again, not only what changed since the list it had before."""
    gw, st, _took, cut = await start_synced(gw_pool, station, cuttable=True)
    try:
        st.kill()
        (st.flash / "auth_list.bin").unlink()
        tripped = cut.cut_after(b'"SendLocalList"', 37)
        st.start()
        await asyncio.wait_for(tripped, 60)
        await st.aexpect("[ocpp] W: link down")
        version, size = list_on_flash(st)
        assert version in (36, 37) and size == 8 + version * 10 * 48, (version, size)

        async def stopped():
            v = await local_list(gw)
            return v if not v["running"] else None
        view = await until("the cut-off sync ended", stopped, st=st)
        assert view["state"] == "Disconnected" and not view["in_sync"], view
        version = view["list_version"]              # 36 if the 37th's answer was lost
        mark = len(st.lines)
        await cut.start()                           # back, no boot
        view = await synced_at(gw, version + 100, st)
        assert view["detail"] == "Full update of 1000 tags in 100 messages, list version %d" % (version + 100), view
        assert "boot accepted" not in "\n".join(st.lines[mark:]), st.tail(20)
        assert list_on_flash(st) == (version + 100, LIST_BYTES)
    finally:
        await cut.cut()
