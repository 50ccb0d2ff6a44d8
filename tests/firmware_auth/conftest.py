"""Local authorization tests: the firmware on the unix board (RFID taps from its scenario's
control file) against a central system built on the `ocpp` package."""
import pytest

from support.central import OCPP_SCENARIO


@pytest.fixture
def station_scenario():
    """A steady enclosure and a 16 A load; cards from rfid.txt; every LED change logged."""
    return dict(OCPP_SCENARIO, rfid_control="rfid.txt", led_log=True)
