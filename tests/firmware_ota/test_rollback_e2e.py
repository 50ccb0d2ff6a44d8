"""What an update survives: a power cut (SIGKILL) at each step of download, verify and switch
leaves a board that boots the old version or the new one, whole; a release that crashes at
boot, or is not Accepted in time, is rolled back and reported; an update waits for the
transaction to end before it reboots the station."""
import asyncio
import json

import pytest
from ocpp.v16 import call

from support.central import now_iso, validate_outgoing
from support.firmware import RESET_EXIT
from support.otasrv import booted, flash_state, fw_status, ota_config, replace_file, slot_intact


def _unfreeze(st):
    sc = json.loads(st.scenario_file.read_text())
    sc.pop("ota_freeze", None)
    st.scenario_file.write_text(json.dumps(sc))


@pytest.mark.parametrize("step, boots", [("download", "0.1.0"), ("downloaded", "0.1.0"), ("cleared", "0.1.0"),
                                         ("moved", "0.1.0"), ("pointed", "0.2.0")])
async def test_power_cut__at_each_step_boots_old_or_new_never_a_mix(
        station, ota_central, releases, server, fleet_key, step, boots):
    releases("0.2.0")
    if step == "download":
        server.stall["chargepoint.mpy"] = 1000     # half a file on flash when the power goes
    cs = await ota_central()
    st = station(ota_config(cs.url, fleet_key[1]),
                 scenario={"ota_freeze": [] if step == "download" else [step]}).start()
    await booted(cs, st, 1, "0.1.0", statuses=False)
    await cs.call(call.UpdateFirmware(location=server.url("0.2.0"), retrieve_date=now_iso()))
    if step == "download":
        assert await asyncio.get_running_loop().run_in_executor(None, server.stalled.wait, 30)
    else:
        await st.aexpect("frozen at update step %s" % step)
    st.kill()                                      # power cut
    server.release_stall()
    ptr, slots = flash_state(st.flash)
    _unfreeze(st)
    n_status = len(cs.calls("StatusNotification"))
    st.start()
    await booted(cs, st, 2, boots, statuses=False)
    await cs.wait_call("StatusNotification", n_status + 2, station=st)   # both connectors again
    for s in slots:                                # a slot the pointer may name is whole
        if ptr and ptr.split()[0] == s:
            assert slot_intact(st.flash, s) == boots
    if boots == "0.2.0":
        assert ptr == "a trial - 3 0.2.0", ptr
        await fw_status(cs, "Installed", st=st)
        return
    assert ptr is None, ptr
    # the board updates normally afterwards: the half-done staging is cleared
    server.stall.clear()
    await cs.call(call.UpdateFirmware(location=server.url("0.2.0"), retrieve_date=now_iso()))
    await fw_status(cs, "Installing", st=st)
    assert await st.await_exit(30) == RESET_EXIT, st.tail()
    st.start()
    await booted(cs, st, 3, "0.2.0", statuses=False)
    await fw_status(cs, "Installed", st=st)
    assert slot_intact(st.flash, "a") == "0.2.0"


async def test_rollback__release_crashing_at_boot_goes_back_and_reports(
        station, ota_central, releases, server, fleet_key):
    rel = releases("0.2.0")
    replace_file(rel, "app.py", b"raise RuntimeError('release 0.2.0 is broken')\n", fleet_key[1])
    cs = await ota_central()
    st = station(ota_config(cs.url, fleet_key[1], trial_boots=2)).start()
    await booted(cs, st, 1, "0.1.0", statuses=False)
    await cs.call(call.UpdateFirmware(location=server.url("0.2.0"), retrieve_date=now_iso()))
    await fw_status(cs, "Installing", st=st)
    assert await st.await_exit(30) == RESET_EXIT, st.tail()
    consoles = []
    for boot in (1, 2):          # the board's supervisor restarts it each time it resets
        st.start()
        assert await st.await_exit(30) == RESET_EXIT, st.tail()
        out = st.output()
        consoles.append(out)
        assert "on trial, boot %d of 2" % boot in out and "release 0.2.0 is broken" in out, out
        assert "the version on trial crashed: resetting" in out, out
    st.start()
    await booted(cs, st, 2, "0.1.0", statuses=False)
    assert "[boot] W: rollback from 0.2.0: crash loop (2 boots)" in st.output(), st.tail()
    await fw_status(cs, "InstallationFailed", st=st)
    m = await cs.wait_call("StatusNotification", station=st,
                           pred=lambda m: m[3]["connectorId"] == 0 and "info" in m[3])
    assert m[3]["info"] == "rollback 0.2.0: crash loop (2 boots)", m
    assert cs.statuses() == ["Downloading", "Downloaded", "Installing", "InstallationFailed"], cs.statuses()
    assert flash_state(st.flash)[0] is None and not (st.flash / "fw" / "note").exists()
    assert validate_outgoing(cs.frames) > 0


async def test_rollback__no_boot_accepted_within_trial_goes_back_and_reports(
        station, ota_central, releases, server, fleet_key):
    releases("0.2.0")
    cs = await ota_central()
    st = station(ota_config(cs.url, fleet_key[1], trial_s=10)).start()
    await booted(cs, st, 1, "0.1.0", statuses=False)
    await cs.call(call.UpdateFirmware(location=server.url("0.2.0"), retrieve_date=now_iso()))
    await fw_status(cs, "Installing", st=st)
    assert await st.await_exit(30) == RESET_EXIT, st.tail()
    cs.boot_status = "Pending"        # the central system does not accept the new version
    st.start()
    await booted(cs, st, 2, "0.2.0", statuses=False)
    assert await st.await_exit(40) == RESET_EXIT, st.tail()
    assert "[ota] W: rollback from 0.2.0: no BootNotification Accepted" in st.output(), st.tail()
    cs.boot_status = "Accepted"
    st.start()
    await cs.wait_call("BootNotification", 2, station=st, timeout=40,       # the old version's second
                       pred=lambda m: m[3]["firmwareVersion"] == "0.1.0")
    await fw_status(cs, "InstallationFailed", st=st)
    m = await cs.wait_call("StatusNotification", station=st,
                           pred=lambda m: m[3]["connectorId"] == 0 and "info" in m[3])
    assert m[3]["info"] == "rollback 0.2.0: no BootNotification Accepted", m
    assert flash_state(st.flash)[0] is None


async def test_update__during_a_transaction_waits_for_its_end(
        station, ota_central, releases, server, fleet_key):
    releases("0.2.0")
    cs = await ota_central()
    st = station(ota_config(cs.url, fleet_key[1])).start()
    await booted(cs, st, 1, "0.1.0", statuses=False)
    await cs.wait_call("StatusNotification", 2, station=st)
    assert (await cs.call(call.RemoteStartTransaction(id_tag="OTA-TAG"))).status == "Accepted"
    await cs.wait_call("StartTransaction", station=st)
    await cs.call(call.UpdateFirmware(location=server.url("0.2.0"), retrieve_date=now_iso()))
    await fw_status(cs, "Downloaded", st=st)
    await st.aexpect("release 0.2.0 waits for the transaction to end")
    await cs.wait_call("MeterValues", len(cs.calls("MeterValues")) + 2, station=st)   # it charges on
    assert "Installing" not in cs.statuses() and st.proc.poll() is None, cs.statuses()
    assert (await cs.call(call.RemoteStopTransaction(transaction_id=1001))).status == "Accepted"
    stop = await cs.wait_call("StopTransaction", station=st)
    inst = await fw_status(cs, "Installing", st=st)
    assert cs.frames.index(("cp", stop)) < cs.frames.index(("cp", inst)), cs.frames[-10:]
    assert await st.await_exit(30) == RESET_EXIT, st.tail()
    st.start()
    await booted(cs, st, 2, "0.2.0", statuses=False)
    await fw_status(cs, "Installed", st=st)


async def test_rollback__second_release_crashing_goes_back_to_the_first_slot(
        station, ota_central, releases, server, fleet_key):
    releases("0.2.0")
    rel3 = releases("0.3.0")
    replace_file(rel3, "app.py", b"raise RuntimeError('release 0.3.0 is broken')\n", fleet_key[1])
    cs = await ota_central()
    st = station(ota_config(cs.url, fleet_key[1], trial_boots=1)).start()
    await booted(cs, st, 1, "0.1.0", statuses=False)
    for version, n in (("0.2.0", 1), ("0.3.0", 2)):
        await cs.call(call.UpdateFirmware(location=server.url(version), retrieve_date=now_iso()))
        await fw_status(cs, "Installing", n, st=st)
        assert await st.await_exit(30) == RESET_EXIT, st.tail()
        st.start()
        if version == "0.2.0":
            await booted(cs, st, 2, "0.2.0", statuses=False)
            await fw_status(cs, "Installed", st=st)
    assert await st.await_exit(30) == RESET_EXIT, st.tail()     # 0.3.0 crashes on its one trial boot
    assert flash_state(st.flash) == ("b trial a 1 0.3.0", {"a": "0.2.0", "b": "0.3.0"}), flash_state(st.flash)
    st.start()
    await booted(cs, st, 3, "0.2.0", statuses=False)                          # back on slot a
    await fw_status(cs, "InstallationFailed", st=st)
    assert flash_state(st.flash)[0] == "a ok - 1 -", flash_state(st.flash)
    assert slot_intact(st.flash, "a") == "0.2.0"
    assert cs.statuses() == ["Downloading", "Downloaded", "Installing", "Installed",
                             "Downloading", "Downloaded", "Installing", "InstallationFailed"], cs.statuses()
