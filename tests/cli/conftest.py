"""Fixtures for the device commands: virtual boards driven through the real mpremote."""
import pytest
from click.testing import CliRunner


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    """Each test sees only the virtual boards it starts (their announcements live here)."""
    d = tmp_path / "vboards"
    monkeypatch.setenv("PICOCHARGE_STATE_DIR", str(d))
    monkeypatch.delenv("PICOCHARGE_PORT", raising=False)
    return d


@pytest.fixture
def vboards(tmp_path, state_dir):
    """Factory: vboards("name", files={"main.py": "..."}, run_main=True) -> started VirtualBoard."""
    from picocharge.vboard import VirtualBoard

    started = []

    def make(name="board", files=None, run_main=True):
        flash = tmp_path / ("flash-" + name)
        flash.mkdir(parents=True, exist_ok=True)
        for rel, text in (files or {}).items():
            p = flash / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(text if isinstance(text, bytes) else text.encode())
        b = VirtualBoard(flash, name=name, state=state_dir, run_main=run_main).start()
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


@pytest.fixture
def trace():
    """Every device operation of CliRunner-invoked commands (picocharge.device.TRACE)."""
    from picocharge import device

    device.TRACE = []
    yield device.TRACE
    device.TRACE = None


@pytest.fixture
def pc():
    """Invoke the real `picocharge` click group in-process: pc("deploy", "--json")."""
    from picocharge.cli import cli

    def invoke(*args, input=None):
        return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)

    return invoke
