"""The readings backlog on flash (firmware/flashq.py): the same checks under CPython and under
the unix-port micropython, with the RAM it costs measured there."""
import pytest

from support import backlog_checks
from support.dual import check_names, mp_run, run_checks


@pytest.mark.parametrize("name", check_names(backlog_checks))
def test_backlog__cpython(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dict(backlog_checks.CHECKS)[name]()


def test_backlog__micropython_runs_every_check(micropython, tmp_path):
    # 512K: the checks hold whole backlogs in lists to compare them (the firmware never does)
    done, out = run_checks(backlog_checks, tmp_path, heap="512K", timeout=300)
    assert done == check_names(backlog_checks), out


def test_backlog__ram_does_not_grow_with_the_backlog(tmp_path):
    # the heap a backlog holds (the FlashQ object and its integers), empty and with 48 h of
    # readings on flash, under the unix port (64-bit: a Pico's 32-bit words take about half)
    out = mp_run(r"""
import gc, os, flashq
os.chdir(%r)
p = flashq.pack_reading({"temp_c": 24.0, "humidity": 45.0, "current_a": 16.0, "voltage_v": 230.0,
                         "power_w": 3680.0, "energy_wh": 12345.678, "chip_temp_c": 30.1,
                         "status": "Charging", "fault": None})
def held(fill):
    gc.collect()
    a = gc.mem_alloc()
    q = flashq.FlashQ("q%%d" %% fill).load()
    for i in range(fill):
        q.append(1764500000 + 10 * i, p)
    gc.collect()
    return gc.mem_alloc() - a, q
e, _ = held(0)
f, q = held(17280)
print("RAM", e, f, len(q))
""" % str(tmp_path), timeout=300)
    line = [x for x in out.splitlines() if x.startswith("RAM ")][-1]
    empty, full, kept = (int(x) for x in line.split()[1:])
    assert kept > 400, out   # 48 h into the default 32 KB: ~500-600 readings on flash
    assert full - empty <= 256 and full < 2048, line
