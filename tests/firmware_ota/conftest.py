"""Over-the-air updates and diagnostics: the firmware on the unix board against a central
system built on the `ocpp` package and a release server (tests/support/otasrv.py), releases made
by the real `picocharge release` CLI."""
import pytest

from support.central import OCPP_SCENARIO
from support.otasrv import PASSWORD, OtaCentral, ReleaseServer, build_release, make_key


@pytest.fixture
def station_scenario():
    return OCPP_SCENARIO


@pytest.fixture(scope="session")
def fleet_key(tmp_path_factory):
    """(key file, key hex) made by `picocharge release key`."""
    d = tmp_path_factory.mktemp("key")
    k = make_key(d / "fleet.key")
    return d / "fleet.key", k


@pytest.fixture
def releases(tmp_path, fleet_key):
    """Factory: releases(version, *extra CLI args) -> the release folder, built by the CLI."""
    root = tmp_path / "releases"

    def make(version, *extra):
        return build_release(root, fleet_key[0], version, *extra)

    make.root = root
    root.mkdir()
    return make


@pytest.fixture
def server(releases):
    s = ReleaseServer(releases.root, {"CP-1": PASSWORD}).start()
    yield s
    s.stop()


@pytest.fixture
async def ota_central():
    made = []

    async def make(**kw):
        cs = await OtaCentral(**kw).start()
        made.append(cs)
        return cs

    yield make
    for cs in made:
        await cs.stop()
