"""The OCPP charge point tests: the firmware on the unix board (the `station` fixture) against
a central system built on the `ocpp` package (`central`), both from tests/support."""
import pytest

from support.central import OCPP_SCENARIO


@pytest.fixture
def station_scenario():
    """Every station here starts from a steady enclosure and a 16 A load."""
    return OCPP_SCENARIO
