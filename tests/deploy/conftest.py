"""Fixtures of the deploy tests (the helpers are in tests/support/haproxy.py)."""
import pytest

from support.haproxy import start_gateways


@pytest.fixture
def two_gateways(tmp_path):
    """Two real `picocharge gateway` processes, each on its own SQLite file, the station SID
    registered on both; stopped after the test."""
    gws = start_gateways(tmp_path, 2)
    yield gws
    for gw in gws:
        gw.stop()
