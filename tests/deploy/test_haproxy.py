"""deploy/haproxy.cfg run for real: Debian's HAProxy in front of two real `picocharge gateway`
processes (each on its own SQLite file, the same station registered on both), a charge point
built on the `ocpp` package connecting through it. The config is the shipped file with the
test's loopback addresses put in (tests/support/haproxy.py says what rendering changes)."""
import asyncio
import os
import signal
import socket
import ssl

import pytest
import websockets
from ocpp.v16 import call

from support import tls_certs
from support.gwhttp import http
from picocharge.cmd_demo import GatewayProcess
from support.gwhttp import TEST_TOKEN
from support.haproxy import (DEPLOY, PW, SID, DnsServer, HAProxy, OcppStation, Station, balancer_up, boot,
                             boot_and_meter, connected_on, gateway_api, gateway_port, readings, start_gateways)
from support.net import wait_until


async def test_haproxy__station_fails_over_to_the_other_gateway_when_its_own_dies(tmp_path, two_gateways):
    gws = two_gateways
    lb = await balancer_up(tmp_path, gws)
    try:
        url = "ws://127.0.0.1:%d/ocpp/%s" % (lb.port, SID)
        async with Station(url) as st:
            await boot_and_meter(st, "2026-01-01T10:00:00Z", 6.0)
            (first,) = await connected_on(gws)
            other = gws[1 - gws.index(first)]
            assert await readings(gateway_port(first)) == [("2026-01-01T10:00:00Z", 6.0)]
            assert await readings(gateway_port(other)) == []
            # the API through HAProxy: answered by a gateway (the one with the station, or not)
            s, health = await http(lb.port, "GET", "/healthz")
            assert s == 200 and health["status"] == "ok", health
            s, stations = await http(lb.port, "GET", "/api/stations")
            assert s == 200 and [x["id"] for x in stations] == [SID], stations

            os.killpg(first.proc.pid, signal.SIGKILL)       # the host dies: no close frame, no goodbye
            await asyncio.to_thread(first.proc.wait, 10)
            # HAProxy passes the dead gateway's closed connection on to the station
            await asyncio.wait_for(st.ws.wait_closed(), 20)
        dead = "gw%d" % (gws.index(first) + 1)
        await asyncio.to_thread(lb.wait_status, dead, "DOWN")    # its health check took it out
        # the station reconnects through HAProxy, as the firmware does after its backoff
        async with Station(url) as st:
            await boot_and_meter(st, "2026-01-01T10:00:10Z", 7.0)
            assert await connected_on([other]) == [other]
            assert await readings(gateway_port(other)) == [("2026-01-01T10:00:10Z", 7.0)]
            # and the API through HAProxy is the surviving gateway's
            assert await readings(lb.port) == [("2026-01-01T10:00:10Z", 7.0)]
            s, stations = await http(lb.port, "GET", "/api/stations")
            assert s == 200 and stations[0]["connected"] is True, stations
        assert lb.proc.poll() is None, lb.log.read_text()[-2000:]
    finally:
        lb.stop()


async def test_haproxy__a_hung_gateway_is_marked_down_and_its_stations_moved(tmp_path, two_gateways):
    """A gateway that stops answering (frozen here with SIGSTOP: its sockets stay open, so nothing
    tells the station) fails its health checks; HAProxy marks it down and closes its stations'
    tunnels (`on-marked-down shutdown-sessions`), and they reconnect to the other."""
    gws = two_gateways
    lb = await balancer_up(tmp_path, gws)
    frozen = None
    try:
        url = "ws://127.0.0.1:%d/ocpp/%s" % (lb.port, SID)
        async with Station(url) as st:
            await boot_and_meter(st, "2026-01-01T10:00:00Z", 6.0)
            (frozen,) = await connected_on(gws)
            other = gws[1 - gws.index(frozen)]
            os.killpg(frozen.proc.pid, signal.SIGSTOP)
            # closed by HAProxy once its checks time out twice (2 s each), not by the gateway
            await asyncio.wait_for(st.ws.wait_closed(), 30)
        assert lb.status()["gw%d" % (gws.index(frozen) + 1)].startswith("DOWN"), lb.status()
        async with Station(url) as st:
            await boot_and_meter(st, "2026-01-01T10:00:10Z", 7.0)
            assert await connected_on([other]) == [other]
            assert await readings(gateway_port(other)) == [("2026-01-01T10:00:10Z", 7.0)]
    finally:
        if frozen is not None:
            os.killpg(frozen.proc.pid, signal.SIGCONT)
        lb.stop()


@pytest.mark.parametrize("timeouts, quiet, stays_open", [
    ({"client": "2s", "server": "2s"}, 5, True),
    ({"client": "2s", "server": "2s", "tunnel": "2s"}, 5, False),
    pytest.param(None, 35, True, marks=pytest.mark.slow)],
    ids=["http-timeouts-2s", "tunnel-timeout-2s-too", "as-shipped-35s"])
async def test_haproxy__a_quiet_websocket_outlives_the_http_timeouts(tmp_path, timeouts, quiet, stays_open):
    """After the upgrade only `timeout tunnel` applies to a station's socket, and the shipped one
    (1 h) keeps it open while it is quiet. As shipped, the HTTP timeouts (client, server) are
    30 s: the socket stays quiet for 35 s. The quick case sets them to 2 s and waits 5 s; its
    control sets the tunnel timeout to 2 s as well, and then HAProxy closes the quiet socket,
    which shows that the other cases hold because of the tunnel timeout and not by chance."""
    (gw,) = start_gateways(tmp_path, 1)
    lb = None
    try:
        lb = HAProxy(tmp_path, [("gw1", "127.0.0.1", gateway_port(gw))], timeouts=timeouts).start()
        await asyncio.to_thread(lb.wait_status, "gw1", "UP")
        async with Station("ws://127.0.0.1:%d/ocpp/%s" % (lb.port, SID)) as st:
            await boot_and_meter(st, "2026-01-01T10:00:00Z", 6.0)
            # nothing crosses the socket now (no pings: the gateway's come every 60 s); the
            # time is what is tested here, so the test waits it out
            try:
                await asyncio.wait_for(st.ws.wait_closed(), quiet)
                closed = True
            except asyncio.TimeoutError:
                closed = False
            assert closed is not stays_open, (timeouts, lb.log.read_text()[-2000:])
            if stays_open:
                hb = await asyncio.wait_for(st.cp.call(call.Heartbeat()), 10)
                assert hb.current_time, hb
    finally:
        if lb:
            lb.stop()
        gw.stop()


async def test_haproxy__tls_passthrough_lets_a_station_sign_in_with_its_certificate(tmp_path):
    """deploy/haproxy-tls-passthrough.cfg: the TLS goes through HAProxy unopened, so the gateway
    sees the station's client certificate and signs it in by it (OCPP security profile 3), with
    no password; HAProxy's health checks speak TLS to /healthz."""
    certs = tls_certs.make(tmp_path / "tls")
    crt, key = tls_certs.client(certs, SID)
    ctx = ssl.create_default_context(cafile=str(certs.ca_pem))     # trusts the gateways' certificate
    gws = start_gateways(tmp_path, 2, ctx=ctx, extra=("--tls-cert", str(certs.cert), "--tls-key", str(certs.key),
                                              "--client-ca", str(certs.ca_pem), "--client-cert", "required"))
    station_ctx = ssl.create_default_context(cafile=str(certs.ca_pem))
    station_ctx.load_cert_chain(str(crt), str(key))
    lb = None
    try:
        lb = HAProxy(tmp_path, [("gw1", "127.0.0.1", gateway_port(gws[0])), ("gw2", "127.0.0.1", gateway_port(gws[1]))],
                     config=DEPLOY / "haproxy-tls-passthrough.cfg").start()
        for name in ("gw1", "gw2"):
            await asyncio.to_thread(lb.wait_status, name, "UP")
        # no password: the certificate alone says who the station is
        ws = await websockets.connect("wss://127.0.0.1:%d/ocpp/%s" % (lb.port, SID), subprotocols=["ocpp1.6"],
                                      ssl=station_ctx, open_timeout=10, ping_interval=None)
        cp = OcppStation(SID, ws)
        task = asyncio.create_task(cp.start())
        try:
            b = await boot(cp)
            assert b.status == "Accepted", b
            (on,) = [gw for gw in gws if (await asyncio.to_thread(gateway_api, gw, "GET", "/api/stations/" + SID, None, ctx))[
                "connected"]]
            st = await asyncio.to_thread(gateway_api, on, "GET", "/api/stations/" + SID, None, ctx)
            assert st["security_profile"] == 3, st
            assert any("OCPP security profile 3" in line for line in on.log), on.log[-10:]
        finally:
            task.cancel()
            await ws.close()
    finally:
        if lb:
            lb.stop()
        for gw in gws:
            gw.stop()


def _port_free_on(*hosts):
    """A TCP port nothing listens on at any of `hosts` (loopback addresses)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
            try:
                for h in hosts[1:]:
                    with socket.socket() as t:
                        t.bind((h, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free on all of %s" % (hosts,))


def _gateway_at(tmp_path, host, port, name):
    gw = GatewayProcess(tmp_path / (name + ".db"), host=host, port=port, extra=(
        "--api-token", TEST_TOKEN, "--thingspeak-url", "")).start()
    gateway_api(gw, "POST", "/api/stations", {"id": SID, "password": PW})
    return gw


async def test_haproxy__gateways_found_by_dns_as_compose_scales_them(tmp_path):
    """deploy/haproxy.cfg as compose runs it: no server line of ours, the shipped server-template
    finding the gateways by the name `gateway` through a DNS server (Docker's, here a test one
    answering 127.0.0.2 and 127.0.0.3); all that changes is the nameserver's address and the
    gateways' port. Scaled down (one address gone from DNS, its gateway stopped), HAProxy drops
    it and the station goes on through the other; scaled up again, it comes back."""
    hosts = ("127.0.0.2", "127.0.0.3")
    port = _port_free_on(*hosts)
    gws = {}
    dns = lb = None
    try:
        for i, h in enumerate(hosts):
            gws[h] = await asyncio.to_thread(_gateway_at, tmp_path, h, port, "gw%d" % i)
        dns = DnsServer(hosts).start()
        lb = await asyncio.to_thread(HAProxy(tmp_path, None, dns=(dns.port, port)).start)

        def up():
            return sorted(r["addr"] for r in lb.stats().values() if r["status"].startswith("UP"))

        want = ["%s:%d" % (h, port) for h in hosts]
        await asyncio.to_thread(wait_until, lambda: up() == want, 30, "both gateways found and UP")
        url = "ws://127.0.0.1:%d/ocpp/%s" % (lb.port, SID)
        async with Station(url) as st:
            await boot_and_meter(st, "2026-01-01T10:00:00Z", 6.0)
            (first,) = await connected_on(list(gws.values()))
            gone = next(h for h, gw in gws.items() if gw is first)
            kept = next(h for h in hosts if h != gone)
            dns.addresses = [kept]                              # `--scale gateway=1`
            await asyncio.to_thread(first.stop)                 # SIGTERM: it closes the station's socket
            await asyncio.wait_for(st.ws.wait_closed(), 20)
        await asyncio.to_thread(wait_until, lambda: up() == ["%s:%d" % (kept, port)], 30, "only %s UP" % kept)
        async with Station(url) as st:
            await boot_and_meter(st, "2026-01-01T10:00:10Z", 7.0)
            assert await connected_on([gws[kept]]) == [gws[kept]]
        gws[gone] = await asyncio.to_thread(_gateway_at, tmp_path, gone, port, "gw-again")
        dns.addresses = list(hosts)                             # `--scale gateway=2`
        await asyncio.to_thread(wait_until, lambda: up() == want, 30, "both gateways UP again")
    finally:
        if lb:
            lb.stop()
        if dns:
            dns.stop()
        for gw in gws.values():
            gw.stop()
