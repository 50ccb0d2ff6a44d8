"""Fixtures for the gateway tests: an in-process gateway and charge points built on the ocpp package.

The HTTP helpers are in gwhttp.py (tests import them from there: when tests/cli runs in the same
pytest session, `import conftest` finds tests/cli/conftest.py); re-exported here."""
import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent
for _p in (TESTS, TESTS / "gateway"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from gwhttp import TEST_TOKEN, basic, http  # noqa: E402,F401  (re-exported)

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
