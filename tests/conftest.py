"""Shared fixtures: free ports, a real MQTT broker, the MicroPython unix port."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
# shared test modules (fake_thingspeak, helpers) import by name from tests/
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))
# Pure firmware logic also runs under CPython: make its flat modules importable,
# appended so that nothing in it can shadow the standard library.
if str(FIRMWARE) not in sys.path:
    sys.path.append(str(FIRMWARE))


from helpers import Broker, free_port, wait_port  # noqa: E402,F401  (re-exported)


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
