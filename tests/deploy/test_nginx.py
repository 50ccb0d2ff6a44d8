"""deploy/nginx.conf run for real: Debian's nginx in front of two real `picocharge gateway`
processes, a charge point built on the `ocpp` package connecting through it. The config is the
shipped file with the gateways' loopback ports between its "gateway servers" markers and its
`listen 8080` on a free loopback port; nothing else changes."""
import asyncio
import os
import signal

from support.gwhttp import http
from support.haproxy import SID, Nginx, Station, boot_and_meter, connected_on, gateway_port, readings


async def test_nginx__websocket_and_api_through_it_and_a_dead_gateway_is_passed_over(tmp_path, two_gateways):
    gws = two_gateways
    ng = Nginx(tmp_path, [gateway_port(gw) for gw in gws]).start()
    try:
        url = "ws://127.0.0.1:%d/ocpp/%s" % (ng.port, SID)
        async with Station(url) as st:      # the Upgrade went through: the station boots
            await boot_and_meter(st, "2026-01-01T10:00:00Z", 6.0)
            (first,) = await connected_on(gws)
            other = gws[1 - gws.index(first)]
            s, stations = await http(ng.port, "GET", "/api/stations")
            assert s == 200 and [x["id"] for x in stations] == [SID], stations
            os.killpg(first.proc.pid, signal.SIGKILL)
            await asyncio.to_thread(first.proc.wait, 10)
            await asyncio.wait_for(st.ws.wait_closed(), 20)
        # no health check in nginx: the refused connection sends the station on to the other
        # gateway (proxy_next_upstream error), this time and the next
        for i in (1, 2):
            async with Station(url) as st:
                await boot_and_meter(st, "2026-01-01T10:00:%02dZ" % (10 * i), 6.0 + i)
                assert await connected_on([other]) == [other]
        assert await readings(ng.port) == [("2026-01-01T10:00:10Z", 7.0), ("2026-01-01T10:00:20Z", 8.0)]
    finally:
        ng.stop()
