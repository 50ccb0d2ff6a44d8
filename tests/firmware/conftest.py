"""Fixtures for firmware tests: `station(config, scenario=None)` makes a unix-board station."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fw_harness import Station  # noqa: E402


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
