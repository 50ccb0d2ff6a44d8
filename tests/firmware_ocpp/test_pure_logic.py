"""The OCPP firmware's pure logic (OCPP-J framing, payloads, time, configuration keys, the
journal, WebSocket framing), the same checks under CPython and under the unix-port micropython."""
import os
import subprocess
from pathlib import Path

import pytest

import pure_checks

_HERE = Path(__file__).resolve().parent
_FIRMWARE = _HERE.parents[1] / "firmware"


@pytest.mark.parametrize("name", [n for n, _ in pure_checks.CHECKS])
def test_pure__cpython(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dict(pure_checks.CHECKS)[name]()


def test_pure__micropython_runs_every_check(micropython, tmp_path):
    env = dict(os.environ, MICROPYPATH=".frozen:%s:%s" % (_FIRMWARE, _HERE))
    # 512K: one check builds a 64 KiB frame (64-bit length), more than a Pico would ever send
    r = subprocess.run([micropython, "-X", "heapsize=512K", str(_HERE / "pure_checks.py")],
                       cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    done = [line.split()[1] for line in r.stdout.splitlines() if line.startswith("ok ")]
    assert done == [n for n, _ in pure_checks.CHECKS], r.stdout
