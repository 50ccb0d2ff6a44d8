"""Shared fixtures, from tests/support (the helpers every test folder shares).

pyproject.toml's `pythonpath` puts tests/ (for `from support import ...`) and firmware/ (pure
firmware logic also runs under CPython: its flat modules import by name) on sys.path; no
test module changes sys.path or imports a conftest."""
import signal

import psutil
import pytest

from support.fixtures import (  # noqa: F401  (fixtures, found by pytest here)
    central, micropython, mplib_dir, mqtt_broker, password_gateway, pg_server, pg_url, station,
    station_scenario)

# A suite started as a background job of a non-interactive shell (`pytest ... &` in a script, a
# CI step that backgrounds it) inherits SIGINT ignored, and so would every process a test starts:
# the tests that stop a command with Ctrl-C would find it deaf to it. A handled signal is reset
# to the default in a child at exec, an ignored one is not, so the suite handles it again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _nothing_left_running(request):
    """After a test that had a tmp_path, kill what still works in it or names it (a command that
    a failed test left running, e.g. one that did not take its Ctrl-C: it ran on for an hour and
    held its ports). Torn down after the test's own fixtures, so only leftovers are met."""
    yield
    tmp = request.node.funcargs.get("tmp_path") if hasattr(request.node, "funcargs") else None
    if tmp is None:
        return
    from support.sim import procs_of
    for pid in procs_of(tmp):
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass
