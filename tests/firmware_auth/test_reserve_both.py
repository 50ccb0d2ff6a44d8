"""The reservation's logic (firmware/cs_reserve.py and the connector's Reserved status): every
ReserveNow answer from the connector's state, the replacement under the same id,
CancelReservation, the record on flash and what a boot reads back, the same checks under CPython
and under the unix-port micropython (support/reserve_checks.py) in a 192K heap."""
import pytest

from support import reserve_checks
from support.dual import check_names, run_checks


@pytest.mark.parametrize("name", check_names(reserve_checks))
def test_reserve__cpython(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dict(reserve_checks.CHECKS)[name]()


def test_reserve__micropython_runs_every_check(micropython, tmp_path):
    done, out = run_checks(reserve_checks, tmp_path, heap="192K", timeout=60)
    assert done == check_names(reserve_checks), out
