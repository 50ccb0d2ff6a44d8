"""The control pilot's logic (firmware/pilot.py): the duty cycle for a limit and the EV's state
from synthetic, noisy pilot waveforms (debounced, the diode check), the same checks under CPython
and under the unix-port micropython (support/pilot_checks.py)."""
import pytest

from support import pilot_checks
from support.dual import check_names, run_checks


@pytest.mark.parametrize("name", check_names(pilot_checks))
def test_pilot__cpython(name):
    dict(pilot_checks.CHECKS)[name]()


def test_pilot__micropython_runs_every_check(micropython, tmp_path):
    done, out = run_checks(pilot_checks, tmp_path, heap="192K", timeout=60)
    assert done == check_names(pilot_checks), out
