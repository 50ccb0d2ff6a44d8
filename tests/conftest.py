"""Shared fixtures, from tests/support (the helpers every test folder shares).

pyproject.toml's `pythonpath` puts tests/ (for `from support import ...`) and firmware/ (pure
firmware logic also runs under CPython: its flat modules import by name) on sys.path; no
test module changes sys.path or imports a conftest."""
from support.fixtures import (  # noqa: F401  (fixtures, found by pytest here)
    central, micropython, mplib_dir, mqtt_broker, password_gateway, pg_server, pg_url, station,
    station_scenario)
