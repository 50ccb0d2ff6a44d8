"""Fixtures for the gateway tests: an in-process gateway. The HTTP helpers and the charge
points built on the ocpp package are in tests/support (gwhttp, stations)."""
import os

import pytest

from support.gwhttp import TEST_TOKEN

# gateways started as processes (cmd_demo.GatewayProcess) take their admin token from here
os.environ.setdefault("PICOCHARGE_GATEWAY_API_TOKEN", TEST_TOKEN)


@pytest.fixture
async def gateway(tmp_path):
    """Factory: `await gateway(auth="none", ...)` -> started Gateway; all are stopped at the end.
    Its API token is TEST_TOKEN (admin) unless api_token= says otherwise; gwhttp.http sends it."""
    from picocharge.gateway.app import Gateway, Settings

    started = []

    async def make(**kw):
        kw.setdefault("db", str(tmp_path / "gw.db"))
        kw.setdefault("port", 0)
        kw.setdefault("auth", "none")
        kw.setdefault("thingspeak_url", None)
        kw.setdefault("gc_freeze", False)
        kw.setdefault("api_token", TEST_TOKEN)
        gw = Gateway(Settings(**kw))
        await gw.start()
        started.append(gw)
        return gw

    yield make
    for gw in started:
        await gw.stop()
