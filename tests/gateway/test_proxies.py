"""Behind a load balancer (deploy/haproxy.cfg, nginx.conf): X-Forwarded-For names the client
for the sign-in limits only when the connection comes from a --trusted-proxy; from anyone else
the header changes nothing, so a client cannot pick the address its failures count against."""
import asyncio

import aiohttp

from support.cli import run_cli
from support.gwhttp import TEST_TOKEN, http

BAD = {"Authorization": "Bearer not-the-token-0000000000"}


def _xff(addr, headers=None):
    return dict(headers or {}, **{"X-Forwarded-For": addr})


async def test_proxies__trusted_proxy_limits_each_client_apart(gateway):
    gw = await gateway(trusted_proxies=("127.0.0.0/8",), auth_fail_limit=3)
    # three wrong tokens from one client behind the proxy: that client is held back...
    for _ in range(3):
        s, _out = await http(gw, "GET", "/api/stations", headers=_xff("203.0.113.7, 198.51.100.7", BAD))
        assert s == 401, s
    s, out = await http(gw, "GET", "/api/stations", headers=_xff("198.51.100.7", BAD))
    assert s == 429 and "too many wrong API tokens" in out["error"], (s, out)
    # ...but not another client of the same proxy, nor the proxy's own requests
    s, _out = await http(gw, "GET", "/api/stations", headers=_xff("198.51.100.8"))
    assert s == 200, s
    s, _out = await http(gw, "GET", "/api/stations")
    assert s == 200, s
    # a header the trusted proxy should never send: 400 naming what is wrong
    for bad, why in (("198.51.100.7, not-an-ip", "'not-an-ip' is not an IP address"),
                     (",".join(["192.0.2.1"] * 17), "17 entries")):
        s, out = await http(gw, "GET", "/api/stations", headers=_xff(bad))
        assert s == 400 and why in out["error"], (s, out)
    async with aiohttp.ClientSession() as session:     # the header twice
        async with session.get("http://127.0.0.1:%d/api/stations" % gw.port,
                               headers=[("Authorization", "Bearer " + TEST_TOKEN),
                                        ("X-Forwarded-For", "198.51.100.1"),
                                        ("X-Forwarded-For", "198.51.100.2")]) as r:
            assert r.status == 400 and "given 2 times" in (await r.json())["error"]


async def test_proxies__without_trust_the_header_changes_nothing(gateway):
    gw = await gateway(auth_fail_limit=3)
    for i in range(3):      # a new made-up address each time: the failures still add up on 127.0.0.1
        s, _out = await http(gw, "GET", "/api/stations", headers=_xff("198.51.100.%d" % i, BAD))
        assert s == 401, s
    s, out = await http(gw, "GET", "/api/stations", headers=_xff("198.51.100.99"))
    assert s == 429, (s, out)
    # a malformed header from an untrusted peer is not even read
    await asyncio.sleep(0)
    gw2 = await gateway(trusted_proxies=("192.0.2.0/24",))      # loopback is not that proxy
    s, _out = await http(gw2, "GET", "/api/stations", headers=_xff("not-an-ip"))
    assert s == 200, s


def test_proxies__a_bad_network_is_refused_by_the_command_line(tmp_path):
    r = run_cli("gateway", "--db", str(tmp_path / "gw.db"), "--port", "0", "--trusted-proxy", "10.0.0.0/8,300.1.2.3")
    assert r.returncode == 2 and "--trusted-proxy '300.1.2.3' is not an IP address or network" in r.stderr, r.stderr


def test_proxies__an_ipv4_proxy_seen_on_a_dual_stack_listener_is_still_trusted():
    # found reviewing: with --host ::, a connection from 10.0.0.5 arrives as ::ffff:10.0.0.5, which
    # no IPv4 network contains, and the header was ignored for every client
    from picocharge.gateway import proxies
    nets = proxies.networks(["10.0.0.0/8"])
    assert proxies.client_address(nets, "::ffff:10.0.0.5", "198.51.100.7") == "198.51.100.7"
    assert proxies.client_address(nets, "::ffff:192.0.2.9", "198.51.100.7") == "::ffff:192.0.2.9"
