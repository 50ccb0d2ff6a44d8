"""The fixtures every test folder shares (tests/conftest.py imports them): a real MQTT broker,
the unix-port micropython and the board libraries, firmware stations, and a central system
built on the `ocpp` package."""
import pytest

from .broker import Broker
from .central import CentralSystem
from .firmware import Station
from .postgres import PostgresServer


@pytest.fixture
def mqtt_broker(tmp_path):
    """A started broker (`.port`); `.stop()` / `.start()` to simulate an outage on the same port."""
    b = Broker(tmp_path).start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def micropython():
    """Path of the unix-port `micropython` (PICOCHARGE_MICROPYTHON / MICROPYTHON / PATH)."""
    from picocharge.unixport import find_micropython

    return find_micropython()


@pytest.fixture(scope="session")
def mplib_dir():
    """Folder with the board libraries (umqtt.simple, microdot) fetched from PyPI."""
    from picocharge.mplibs import lib_dir

    return lib_dir()


@pytest.fixture
def station_scenario():
    """The unix board's scenario every `station` starts from (a test's own scenario is merged
    over it, key by key); None: the board's defaults, and no scenario file unless the test
    gives one. tests/firmware_ocpp overrides it with central.OCPP_SCENARIO."""
    return None


@pytest.fixture
def station(tmp_path, station_scenario):
    """Factory: station(config, scenario=None, name="flash", heap="192K") -> a Station (the
    real firmware on the unix board) on tmp_path/name, not started; `.start()` it. Configs
    for one connected to a central system: central.station_config(cs.url). Every station is
    stopped at the end of the test."""
    made = []

    def make(config, scenario=None, name="flash", heap="192K"):
        sc = scenario
        if station_scenario is not None:
            sc = dict(station_scenario)
            sc.update(scenario or {})
        s = Station(tmp_path / name, config, sc, heap)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.fixture
async def password_gateway(tmp_path):
    """Our gateway in-process (port 0: `.port`), stations admitted by password (register them
    through the API), the test admin token (support.gwhttp.TEST_TOKEN), no ThingSpeak; stopped
    at the end of the test. For the firmware's end-to-end tests against our own central system."""
    from picocharge.gateway.app import Gateway, Settings

    from .gwhttp import TEST_TOKEN

    gw = Gateway(Settings(db=str(tmp_path / "gw.db"), port=0, auth="password", thingspeak_url=None,
                          gc_freeze=False, api_token=TEST_TOKEN))
    await gw.start()
    yield gw
    await gw.stop()


@pytest.fixture
async def central():
    """Factory: `await central(**kw)` -> a started central.CentralSystem; all are stopped at
    the end of the test."""
    made = []

    async def make(**kw):
        cs = await CentralSystem(**kw).start()
        made.append(cs)
        return cs

    yield make
    for cs in made:
        await cs.stop()


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL cluster of this test process (tests/support/postgres.py), on 127.0.0.1 on a
    free port; stopped at the end of the session."""
    srv = PostgresServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def pg_url(pg_server):
    """The URL of a new, empty database in the session's PostgreSQL, dropped after the test."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)
