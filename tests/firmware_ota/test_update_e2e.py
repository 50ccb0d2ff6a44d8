"""UpdateFirmware end to end: the unix-board firmware fetches a release made by `picocharge
release build` from a server that checks its Basic credentials, checks it, switches slots,
reboots and reports; every failure leaves it on a version that boots."""
from ocpp.v16 import call

from support.central import now_iso, validate_outgoing
from support.firmware import RESET_EXIT
from support.ota import flash_state, ota_config, slot_intact

FS = "FirmwareStatusNotification"


async def _booted(cs, st, n, version):
    """The n-th BootNotification, from `version`, Accepted, and the station's status after it."""
    m = await cs.wait_call("BootNotification", n, station=st, timeout=40)
    assert m[3]["firmwareVersion"] == version, m
    await cs.wait_call("StatusNotification", 2 * n, station=st, timeout=30)


async def _fs(cs, status, n=1, st=None, timeout=60):
    return await cs.wait_call(FS, n, station=st, timeout=timeout, pred=lambda m: m[3]["status"] == status)


async def test_update__full_update_boots_the_new_version_and_reports_installed(
        station, ota_central, releases, server, fleet_key):
    rel = releases("0.2.0")
    cs = await ota_central()
    st = station(ota_config(cs.url, fleet_key[1])).start()
    await _booted(cs, st, 1, "0.1.0")
    r = await cs.call(call.UpdateFirmware(location=server.url("0.2.0"), retrieve_date=now_iso()))
    assert r is not None
    await _fs(cs, "Installing", st=st)
    assert await st.await_exit(30) == RESET_EXIT, st.tail()
    ptr, slots = flash_state(st.flash)
    assert ptr == "a trial - 3 0.2.0" and slots == {"a": "0.2.0"}, (ptr, slots)
    assert slot_intact(st.flash, "a") == "0.2.0"
    st.start()   # the board's reset
    await _booted(cs, st, 2, "0.2.0")
    await _fs(cs, "Installed", st=st)
    assert cs.statuses() == ["Downloading", "Downloaded", "Installing", "Installed"], cs.statuses()
    ptr, _ = flash_state(st.flash)
    assert ptr == "a ok - 3 0.2.0", ptr
    assert not (st.flash / "fw" / "boots").exists() and not (st.flash / "fw" / "new").exists()
    # every file came once, with the station's credentials (the server answers 401 otherwise)
    names = sorted(p.name for p in rel.iterdir())
    got = sorted(r[1].rsplit("/", 1)[1] for r in server.requests)
    assert got == names and all(r[2] == 200 for r in server.requests), server.requests
    assert validate_outgoing(cs.frames) > 0
