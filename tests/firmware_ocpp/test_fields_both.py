"""The reading vocabulary (firmware/fields.py) and what the firmware derives from it, checked
under CPython and under the unix-port MicroPython alike (the checks: support/fields_checks.py)."""
import pytest

from support import fields_checks
from support.dual import check_names, run_checks


@pytest.mark.parametrize("name", check_names(fields_checks))
def test_fields__cpython(name):
    dict(fields_checks.CHECKS)[name]()


def test_fields__micropython_runs_every_check(tmp_path):
    done, out = run_checks(fields_checks, tmp_path, heap="192K")
    assert done == check_names(fields_checks), out
