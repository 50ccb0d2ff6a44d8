"""The firmware-process helper (picocharge.fwproc, support.firmware.Station) waits for events:
a wait ends when the line comes or the firmware ends, and async waits leave the event loop
running (a central system in the same loop goes on answering the station)."""
import asyncio
import time

import pytest

# a config the firmware refuses at boot: it prints the error and exits 78
BAD = {"station_id": "CP-7", "mqtt": {"enabled": True, "port": 1883}}


def test_fwproc__expect_fails_as_soon_as_the_firmware_ends_without_the_line(station):
    st = station(BAD).start()
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match=r"no console line with 'never printed' within 60s \(exit 78\)"):
        st.expect("never printed", timeout=60)
    assert time.monotonic() - t0 < 30, "waited for the timeout, not for the exit"
    assert "[config] E: config key 'mqtt.host'" in st.output(), st.output()


async def test_fwproc__await_exit_and_aexpect_leave_the_event_loop_running(station):
    st = station(BAD).start()
    ticks = 0

    async def tick():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(tick())
    try:
        assert await st.await_exit(30) == 78, st.tail()
    finally:
        task.cancel()
    assert ticks >= 3, ticks   # a blocking wait would have let it run once at most
    with pytest.raises(AssertionError, match="exit 78"):
        await st.aexpect("never printed", timeout=60)
