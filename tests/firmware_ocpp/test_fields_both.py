"""The reading vocabulary (firmware/fields.py) and what the firmware derives from it, checked
under CPython and under the unix-port MicroPython alike (the checks: fields_checks.py)."""
import os
import subprocess
from pathlib import Path

import pytest

import fields_checks

_HERE = Path(__file__).resolve().parent
_FIRMWARE = _HERE.parents[1] / "firmware"


@pytest.mark.parametrize("name", [n for n, _ in fields_checks.CHECKS])
def test_fields__cpython(name):
    dict(fields_checks.CHECKS)[name]()


def test_fields__micropython_runs_every_check(micropython, tmp_path):
    env = dict(os.environ, MICROPYPATH=".frozen:%s:%s" % (_FIRMWARE, _HERE))
    r = subprocess.run([micropython, "-X", "heapsize=192K", str(_HERE / "fields_checks.py")],
                       cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    done = [line.split()[1] for line in r.stdout.splitlines() if line.startswith("ok ")]
    assert done == [n for n, _ in fields_checks.CHECKS], r.stdout
