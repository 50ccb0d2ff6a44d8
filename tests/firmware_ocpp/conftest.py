"""Fixtures for the OCPP charge point tests: the firmware on the unix board against a central
system built on the `ocpp` package."""
import sys
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from csys import CentralSystem, Station  # noqa: E402


@pytest.fixture
def station(tmp_path):
    made = []

    def make(config, scenario=None, name="flash", heap="192K"):
        s = Station(tmp_path / name, config, scenario, heap)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.fixture
async def central():
    made = []

    async def make(**kw):
        cs = await CentralSystem(**kw).start()
        made.append(cs)
        return cs

    yield make
    for cs in made:
        await cs.stop()
