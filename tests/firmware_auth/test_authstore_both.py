"""The Local Auth List and cache on flash (firmware/authstore.py): 1,000 tags written and each
looked up by binary search with file seeks, Differential merges, the length limit, expiry, the
cache, the same checks under CPython and under the unix-port micropython (support/auth_checks.py)
in a 192K heap."""
import pytest

from support import auth_checks
from support.dual import check_names, run_checks


@pytest.mark.parametrize("name", check_names(auth_checks))
def test_authstore__cpython(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dict(auth_checks.CHECKS)[name]()


def test_authstore__micropython_runs_every_check(micropython, tmp_path):
    done, out = run_checks(auth_checks, tmp_path, heap="192K", timeout=120)
    assert done == check_names(auth_checks), out
