"""UpdateFirmware end to end: the unix-board firmware fetches a release made by `picocharge
release build` from a server that checks its Basic credentials, checks it, switches slots,
reboots and reports; every failure leaves it on a version that boots."""
import json

from ocpp.v16 import call

from support.central import now_iso, validate_outgoing
from support.firmware import RESET_EXIT
from support.otasrv import (FS, booted, flash_state, fw_status, make_key, ota_config, resign, slot_intact,
                            with_test_ca)

from picocharge.release import key_id


async def test_update__full_update_boots_the_new_version_and_reports_installed(
        station, ota_central, releases, server, fleet_key):
    rel = releases("0.2.0")
    cs = await ota_central()
    st = station(ota_config(cs.url, fleet_key[1])).start()
    await booted(cs, st, 1, "0.1.0")
    r = await cs.call(call.UpdateFirmware(location=server.url("0.2.0"), retrieve_date=now_iso()))
    assert r is not None
    await fw_status(cs, "Installing", st=st)
    assert await st.await_exit(30) == RESET_EXIT, st.tail()
    ptr, slots = flash_state(st.flash)
    assert ptr == "a trial - 3 0.2.0" and slots == {"a": "0.2.0"}, (ptr, slots)
    assert slot_intact(st.flash, "a") == "0.2.0"
    st.start()   # the board's reset
    await booted(cs, st, 2, "0.2.0")
    await fw_status(cs, "Installed", st=st)
    assert cs.statuses() == ["Downloading", "Downloaded", "Installing", "Installed"], cs.statuses()
    ptr, _ = flash_state(st.flash)
    assert ptr == "a ok - 3 0.2.0", ptr
    assert not (st.flash / "fw" / "boots").exists() and not (st.flash / "fw" / "new").exists()
    # every file came once, with the station's credentials (the server answers 401 otherwise)
    names = sorted(p.name for p in rel.iterdir())
    got = sorted(r[1].rsplit("/", 1)[1] for r in server.requests)
    assert got == names and all(r[2] == 200 for r in server.requests), server.requests
    assert validate_outgoing(cs.frames) > 0


def _nothing_installed(st):
    ptr, slots = flash_state(st.flash)
    assert ptr is None and slots == {} and not (st.flash / "fw" / "new").exists(), (
        ptr, slots, sorted(p.name for p in (st.flash / "fw").iterdir()))


async def _refused(cs, st, server, version, info):
    """UpdateFirmware of `version` ends InstallationFailed with connector 0's `info`; the
    station goes on running the version it had."""
    await cs.call(call.UpdateFirmware(location=server.url(version), retrieve_date=now_iso()))
    await fw_status(cs, "InstallationFailed", st=st)
    m = await cs.wait_call("StatusNotification", station=st,
                           pred=lambda m: m[3]["connectorId"] == 0 and "info" in m[3])
    assert m[3]["info"] == info, m
    assert cs.statuses() == ["Downloading", "InstallationFailed"], cs.statuses()
    _nothing_installed(st)
    assert st.proc.poll() is None, st.tail()
    # Idle again: TriggerMessage says so
    assert (await cs.call(call.TriggerMessage(requested_message=FS))).status == "Accepted"
    await fw_status(cs, "Idle", st=st)


async def test_update__bad_signature_installs_nothing_and_fetches_no_file(
        station, ota_central, releases, server, fleet_key):
    rel = releases("0.2.0")
    sig = (rel / "manifest.sig").read_text()
    (rel / "manifest.sig").write_text(("0" if sig[0] != "0" else "1") + sig[1:])
    cs = await ota_central()
    st = station(ota_config(cs.url, fleet_key[1])).start()
    await booted(cs, st, 1, "0.1.0")
    await _refused(cs, st, server, "0.2.0", "0.2.0: bad signature (manifest.sig)")
    assert [r[1].rsplit("/", 1)[1] for r in server.requests] == ["manifest.json", "manifest.sig"], server.requests


async def test_update__release_signed_with_another_key_is_named_so(
        station, ota_central, releases, server, fleet_key, tmp_path):
    rel = releases("0.2.0")
    other = make_key(tmp_path / "other.key")
    m = json.loads((rel / "manifest.json").read_text())
    m["key_id"] = key_id(other)
    (rel / "manifest.json").write_text(json.dumps(m))
    resign(rel, other)
    cs = await ota_central()
    st = station(ota_config(cs.url, fleet_key[1])).start()
    await booted(cs, st, 1, "0.1.0")
    await _refused(cs, st, server, "0.2.0", "0.2.0: signed with another key (%s)" % key_id(other))


async def test_update__corrupted_file_installs_nothing(station, ota_central, releases, server, fleet_key):
    rel = releases("0.2.0")
    data = bytearray((rel / "ocpp_link.mpy").read_bytes())
    data[len(data) // 2] ^= 0xFF     # same size, one byte flipped at rest
    (rel / "ocpp_link.mpy").write_bytes(bytes(data))
    cs = await ota_central()
    st = station(ota_config(cs.url, fleet_key[1])).start()
    await booted(cs, st, 1, "0.1.0")
    await _refused(cs, st, server, "0.2.0", "0.2.0: ocpp_link.mpy corrupted (SHA-256)")


async def test_update__truncated_download_is_retried_then_download_failed(
        station, ota_central, releases, server, fleet_key):
    releases("0.2.0")
    server.cut["app.mpy"] = 100       # full Content-Length, 100 bytes, connection closed
    cs = await ota_central()
    st = station(ota_config(cs.url, fleet_key[1])).start()
    await booted(cs, st, 1, "0.1.0")
    await cs.call(call.UpdateFirmware(location=server.url("0.2.0"), retrieve_date=now_iso(),
                                      retries=2, retry_interval=1))
    await fw_status(cs, "DownloadFailed", st=st)
    assert cs.statuses() == ["Downloading", "DownloadFailed"], cs.statuses()
    assert len(server.gets("app.mpy")) == 3, (server.requests, st.tail())    # a first try and 2 retries
    assert st.output().count("failed (") == 3 and "app.mpy ended after 100 of" in st.output(), st.tail()
    _nothing_installed(st)


async def test_update__server_gone_mid_download_then_back_succeeds(
        station, ota_central, releases, server, fleet_key):
    releases("0.2.0")
    server.cut["chargepoint.mpy"] = 1000   # the server dies in the middle of a file ...
    cs = await ota_central()
    st = station(ota_config(cs.url, fleet_key[1])).start()
    await booted(cs, st, 1, "0.1.0")
    await cs.call(call.UpdateFirmware(location=server.url("0.2.0"), retrieve_date=now_iso(),
                                      retries=5, retry_interval=2))
    await st.aexpect("(1 of 6 tries)")
    server.stop()                          # ... and stays away for a try ...
    await st.aexpect("(2 of 6 tries)")
    assert "(2 of 6 tries): OSError(111" in st.output(), st.tail()   # connection refused
    server.cut.clear()
    server.start()                         # ... then comes back
    await fw_status(cs, "Installing", st=st)
    assert await st.await_exit(30) == RESET_EXIT, st.tail()
    st.start()
    await booted(cs, st, 2, "0.2.0")
    await fw_status(cs, "Installed", st=st)
    assert cs.statuses() == ["Downloading", "Downloaded", "Installing", "Installed"], cs.statuses()


async def test_update__server_gone_for_good_is_download_failed(
        station, ota_central, releases, server, fleet_key):
    releases("0.2.0")
    cs = await ota_central()
    st = station(ota_config(cs.url, fleet_key[1])).start()
    await booted(cs, st, 1, "0.1.0")
    server.stop()
    await cs.call(call.UpdateFirmware(location=server.url("0.2.0"), retrieve_date=now_iso(),
                                      retries=1, retry_interval=1))
    await fw_status(cs, "DownloadFailed", st=st)
    assert cs.statuses() == ["Downloading", "DownloadFailed"], cs.statuses()
    _nothing_installed(st)


async def test_update__endless_header_line_is_a_failed_download_not_a_full_heap(
        station, ota_central, fleet_key):
    import asyncio

    from support.net import free_port

    port = free_port()
    served = []

    async def evil(reader, writer):   # a server that never ends its status line
        served.append(1)
        await reader.readline()
        try:
            writer.write(b"HTTP/1.0 200 OK\r\nX-Junk: ")
            for _ in range(200):
                writer.write(b"A" * 1024)
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    srv = await asyncio.start_server(evil, "127.0.0.1", port)
    try:
        cs = await ota_central()
        st = station(ota_config(cs.url, fleet_key[1])).start()
        await booted(cs, st, 1, "0.1.0")
        await cs.call(call.UpdateFirmware(location="http://127.0.0.1:%d/fw/0.2.0/manifest.json" % port,
                                          retrieve_date=now_iso(), retries=1, retry_interval=1))
        await fw_status(cs, "DownloadFailed", st=st)
        assert "a response header line is longer than 512 bytes" in st.output(), st.tail()
        assert "MemoryError" not in st.output() and st.proc.poll() is None, st.tail()
        assert len(served) == 2
    finally:
        srv.close()
        await srv.wait_closed()


async def test_update__over_https_verified_against_the_ca_on_flash(
        station, ota_central, releases, fleet_key, tmp_path):
    from support.otasrv import PASSWORD, ReleaseServer

    releases("0.2.0")
    srv = ReleaseServer(releases.root, {"CP-1": PASSWORD}, tls=True).start()
    try:
        cs = await ota_central()
        st = with_test_ca(station, ota_config(cs.url, fleet_key[1])).start()
        await booted(cs, st, 1, "0.1.0")
        await cs.call(call.UpdateFirmware(location=srv.url("0.2.0"), retrieve_date=now_iso()))
        await fw_status(cs, "Installing", st=st)
        assert await st.await_exit(30) == RESET_EXIT, st.tail()
        assert "TLS without verifying" not in st.output(), st.tail()
        st.start()
        await booted(cs, st, 2, "0.2.0")
        await fw_status(cs, "Installed", st=st)
        assert srv.gets("app.mpy") == [("GET", "/fw/0.2.0/app.mpy", 200)]
    finally:
        srv.stop()


async def test_update__waits_for_retrieve_date_and_trigger_says_idle_meanwhile(
        station, ota_central, releases, server, fleet_key):
    from datetime import datetime, timedelta, timezone

    releases("0.2.0")
    cs = await ota_central()
    st = station(ota_config(cs.url, fleet_key[1])).start()
    await booted(cs, st, 1, "0.1.0")
    at = datetime.now(timezone.utc) + timedelta(seconds=4)
    await cs.call(call.UpdateFirmware(location=server.url("0.2.0"),
                                      retrieve_date=at.strftime("%Y-%m-%dT%H:%M:%S.000Z")))
    assert (await cs.call(call.TriggerMessage(requested_message=FS))).status == "Accepted"
    await fw_status(cs, "Idle", st=st)
    assert server.requests == [] and "Downloading" not in cs.statuses(), server.requests
    await fw_status(cs, "Installing", st=st)
    assert server.first_get >= at.timestamp() - 0.01, (server.first_get, at.timestamp())
    assert cs.statuses() == ["Idle", "Downloading", "Downloaded", "Installing"], cs.statuses()


async def test_update__release_for_another_board_is_refused_one_with_this_board_installs(
        station, ota_central, releases, server, fleet_key):
    releases("0.2.0", "--with-board", "pico_w")
    releases("0.2.1", "--with-board", "unix")
    cs = await ota_central()
    st = station(ota_config(cs.url, fleet_key[1])).start()
    await booted(cs, st, 1, "0.1.0")
    await _refused(cs, st, server, "0.2.0", "0.2.0: release is for board pico_w")
    await cs.call(call.UpdateFirmware(location=server.url("0.2.1"), retrieve_date=now_iso()))
    await fw_status(cs, "Installing", st=st)
    assert await st.await_exit(30) == RESET_EXIT, st.tail()
    assert (st.flash / "fw" / "a" / "board.mpy").is_file()   # the slot's board module shadows the top's
    st.start()
    await booted(cs, st, 2, "0.2.1")
    await fw_status(cs, "Installed", st=st)


async def test_update__over_https_while_the_ocpp_link_is_wss(station, ota_central, releases, fleet_key):
    """Two TLS sessions at once in the 192K heap: the wss:// link and the release's https."""
    from support.otasrv import PASSWORD, ReleaseServer

    releases("0.2.0")
    srv = ReleaseServer(releases.root, {"CP-1": PASSWORD}, tls=True).start()
    try:
        cs = await ota_central(tls=True)
        st = with_test_ca(station, ota_config(cs.url, fleet_key[1])).start()
        await booted(cs, st, 1, "0.1.0")
        await cs.call(call.UpdateFirmware(location=srv.url("0.2.0"), retrieve_date=now_iso()))
        await fw_status(cs, "Installing", st=st)
        assert await st.await_exit(30) == RESET_EXIT, st.tail()
        st.start()
        await booted(cs, st, 2, "0.2.0")
        await fw_status(cs, "Installed", st=st)
        assert "MemoryError" not in st.output(), st.tail()
    finally:
        srv.stop()
