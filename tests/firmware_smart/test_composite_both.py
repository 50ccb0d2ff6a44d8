"""The composite-schedule table (OCPP 1.6 section 3.13 situations) and profile validation,
the same checks under CPython and under the unix-port micropython (support/smart_checks.py)."""
import pytest

from support import smart_checks
from support.dual import check_names, run_checks


@pytest.mark.parametrize("name", check_names(smart_checks))
def test_composite__cpython(name):
    dict(smart_checks.CHECKS)[name]()


def test_composite__micropython_runs_every_check(micropython, tmp_path):
    done, out = run_checks(smart_checks, tmp_path, heap="192K", timeout=60)
    assert done == check_names(smart_checks), out
