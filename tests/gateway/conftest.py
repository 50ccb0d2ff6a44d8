"""Fixtures for the gateway tests: an in-process gateway on a database of either back end. The
HTTP helpers and the charge points built on the ocpp package are in tests/support (gwhttp,
stations).

The storage tests run on both back ends: a module marked `pytestmark = pytest.mark.both_stores`
has each of its tests that uses `gateway` or `gw_db` run twice, on SQLite and on PostgreSQL (a
fresh database in the session's cluster, tests/support/postgres.py); every other test runs on
SQLite."""
import os

import pytest

from support.gwhttp import TEST_TOKEN

# gateways started as processes (cmd_demo.GatewayProcess) take their admin token from here
os.environ.setdefault("PICOCHARGE_GATEWAY_API_TOKEN", TEST_TOKEN)


def pytest_generate_tests(metafunc):
    # a test of a both_stores module may name its one back end: @pytest.mark.parametrize("store_kind", [...])
    own = any("store_kind" in m.args[0] for m in metafunc.definition.iter_markers("parametrize"))
    if "store_kind" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_stores") and not own:
        metafunc.parametrize("store_kind", ["sqlite", "postgresql"])


@pytest.fixture
def store_kind():
    """The back end of `gw_db` (and of `gateway`'s default database): sqlite unless the module
    is marked both_stores."""
    return "sqlite"


@pytest.fixture
def gw_db(request, tmp_path, store_kind):
    """The test's database: tmp_path/gw.db, or the URL of a new PostgreSQL database."""
    if store_kind == "sqlite":
        return str(tmp_path / "gw.db")
    # the files that go with a PostgreSQL database (tokens, releases) go to $XDG_DATA_HOME/picocharge
    request.getfixturevalue("monkeypatch").setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return request.getfixturevalue("pg_url")


@pytest.fixture
async def gateway(gw_db):
    """Factory: `await gateway(auth="none", ...)` -> started Gateway; all are stopped at the end.
    Its API token is TEST_TOKEN (admin) unless api_token= says otherwise; gwhttp.http sends it."""
    from picocharge.gateway.app import Gateway, Settings

    started = []

    async def make(**kw):
        kw.setdefault("db", gw_db)
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
