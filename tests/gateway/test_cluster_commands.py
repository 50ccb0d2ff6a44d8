"""Commands across a kill (issue 15): a command sent to process A for a station on process B,
B killed with SIGKILL before the station answers, and the station reconnected to A at once (as
the bench's stations do through HAProxy): A answers 502 at its next tick, not after the response
timeout. Found by `picocharge bench --kill-at`'s command probe (calls that waited 7-8 s until the
station left A too). Two real `picocharge gateway` processes on one PostgreSQL database."""
import asyncio
import time

from ocpp.routing import on
from ocpp.v16.enums import Action

from support import stations
from support.gwcluster import kill, port_of, start_gateway, until
from support.gwhttp import http
from support.stations import Connected, boot


class _Mute(stations.TestStation):
    """Never answers RemoteStartTransaction."""

    @on(Action.remote_start_transaction)
    async def on_remote_start(self, id_tag, **kw):
        await asyncio.sleep(3600)


async def test_cluster_commands__holder_killed_station_back_on_the_asker_answered_502_at_once(pg_url):
    a = await asyncio.to_thread(start_gateway, pg_url, "--auth", "none", "--thingspeak-url", "")
    b = await asyncio.to_thread(start_gateway, pg_url, "--auth", "none", "--thingspeak-url", "")
    try:
        pa, pb = port_of(a), port_of(b)
        async with Connected(pb, "CP-7", cls=_Mute) as cp:
            await boot(cp)

            async def on_b():
                s, v = await http(pa, "GET", "/api/stations/CP-7")
                return s == 200 and v.get("connected")
            assert await until(on_b)
            asked = asyncio.ensure_future(http(pa, "POST", "/api/stations/CP-7/remote-start", {"id_tag": "T"}))
            await asyncio.sleep(0.5)
            t0 = time.monotonic()
            await asyncio.to_thread(kill, b)
        # the station is back at once, on the process that asked
        async with Connected(pa, "CP-7", cls=_Mute) as cp2:
            await boot(cp2)
            s, out = await asyncio.wait_for(asked, 40)
            took = time.monotonic() - t0
            assert s == 502 and out["disconnected"] is True and "stopped before the station's answer" in out["error"], \
                (s, out)
            assert took < 5, took       # not the 30 s response timeout (+5 s)
            # and the next command reaches it where it is now
            s, out = await http(pa, "POST", "/api/stations/CP-7/get-configuration", {"key": ["HeartbeatInterval"]})
            assert s == 200, (s, out)
    finally:
        for gw in (a, b):
            if gw.proc.poll() is None:
                await asyncio.to_thread(gw.stop)
