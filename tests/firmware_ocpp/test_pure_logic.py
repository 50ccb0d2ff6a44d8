"""The OCPP firmware's pure logic (OCPP-J framing, payloads, time, configuration keys, the
journal, WebSocket framing), the same checks under CPython and under the unix-port micropython."""
import pytest

from support import pure_checks
from support.dual import check_names, run_checks


@pytest.mark.parametrize("name", check_names(pure_checks))
def test_pure__cpython(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dict(pure_checks.CHECKS)[name]()


def test_pure__micropython_runs_every_check(micropython, tmp_path):
    # 512K: one check builds a 64 KiB frame (64-bit length), more than a Pico would ever send
    done, out = run_checks(pure_checks, tmp_path, heap="512K", timeout=120)
    assert done == [n for n, _ in pure_checks.CHECKS], out
