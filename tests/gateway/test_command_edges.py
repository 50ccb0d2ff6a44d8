"""Commands to a station at the edges: a station that drops the link instead of answering
(issue 17), through the real API port and a charge point built on the ocpp package."""
import asyncio
import time

from ocpp.routing import on
from ocpp.v16.enums import Action

from support.gwhttp import http
from support import stations
from support.stations import Connected, boot


class DropsOnReset(stations.TestStation):
    """Receives Reset, then closes its connection 22 ms later without answering (as a board does
    that resets at once)."""

    @on(Action.reset)
    async def on_reset(self, type):
        self.received.append(("Reset", type))
        await asyncio.sleep(0.022)
        await self._connection.close()
        raise asyncio.CancelledError    # no answer: the link is gone


async def test_command__station_dropping_the_link_is_answered_at_once(gateway):
    gw = await gateway()    # response_timeout: the default 30 s
    assert gw.settings.response_timeout == 30
    async with Connected(gw.port, "CP-1", cls=DropsOnReset) as cp:
        assert (await boot(cp)).status == "Accepted"
        t0 = time.monotonic()
        s, out = await http(gw, "POST", "/api/stations/CP-1/reset", {"type": "Hard"})
        took = time.monotonic() - t0
    assert cp.received == [("Reset", "Hard")], cp.received
    assert (s, out) == (502, {
        "error": "station CP-1 disconnected after receiving Reset, before answering it (a reset station "
                 "reconnects and sends a BootNotification when it is up again)",
        "disconnected": True}), (s, out)
    # the answer came with the disconnect, not at the 30 s response timeout
    assert took < 10, took
    # the next command finds the station gone
    s, out = await http(gw, "POST", "/api/stations/CP-1/reset", {"type": "Soft"})
    assert (s, out) == (409, {"error": "station CP-1 is not connected"}), (s, out)


async def test_command__answered_call_is_unchanged(gateway):
    gw = await gateway()
    async with Connected(gw.port, "CP-2") as cp:
        assert (await boot(cp)).status == "Accepted"
        s, out = await http(gw, "POST", "/api/stations/CP-2/reset", {"type": "Soft"})
    assert (s, out) == (200, {"status": "Accepted"}), (s, out)
