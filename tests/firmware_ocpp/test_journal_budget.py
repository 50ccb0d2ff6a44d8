"""The OCPP journal's flash budget, RAM index and compaction cost (journal_checks.py), the same
checks under CPython and under the unix-port micropython."""
import re

import pytest

from support import journal_checks
from support.central import station_config
from support.dual import run_checks


@pytest.mark.parametrize("name", [n for n, _ in journal_checks.CHECKS if "ram" not in n])
def test_journal__cpython(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dict(journal_checks.CHECKS)[name]()


def test_journal__micropython_runs_every_check(micropython, tmp_path):
    done, out = run_checks(journal_checks, tmp_path, heap="192K", timeout=120)
    assert done == [n for n, _ in journal_checks.CHECKS], out


async def test_journal__budget_comes_from_backlog_journal_kb(station, central):
    # the central system goes away mid-transaction with a 16 KB journal: meter samples (~780
    # bytes each, one a second) fill it in ~20 s, then the oldest are dropped; the default
    # 64 KB would take ~80 s
    cs = await central(heartbeat=60)
    cfg = station_config(cs.url)
    cfg["backlog"] = {"journal_kb": 16}
    st = station(cfg, scenario={"button": [[4.0, 4.5]]}).start()
    await cs.wait_call("StartTransaction", station=st, timeout=30)
    await cs.stop()
    await st.aexpect("[ocpp] W: link down", timeout=15)
    line = await st.aexpect("[journal] W: journal full", timeout=90)
    m = re.search(r"journal full \((\d+) messages, (\d+) bytes\)", line)
    assert m and 16384 - 1024 <= int(m.group(2)) <= 16384 + 1024, line
    # what was kept still goes out when the central system is back
    cs2 = await central(port=cs.port, heartbeat=60)
    await cs2.wait_call("MeterValues", int(m.group(1)) - 1, station=st, timeout=60)
