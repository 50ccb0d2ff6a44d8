"""`picocharge demo`: gateway + simulated stations, dashboard address, live table, clean stop."""
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request

import pytest
from sim_support import firmware_pids, procs_of, wait_gone


def test_demo__gateway_stations_live_table_and_nothing_left_behind(tmp_path):
    data = tmp_path / "demo"
    p = subprocess.Popen([sys.executable, "-m", "picocharge.cli", "demo", "-n", "2", "--port", "0",
                          "--refresh", "3", "--data", str(data)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines = []
    url = None
    charging, humid = set(), set()
    end = time.monotonic() + 90
    while time.monotonic() < end and (len(charging) < 2 or len(humid) < 2):
        line = p.stdout.readline().decode()
        if not line:
            break
        lines.append(line)
        m = re.match(r"dashboard: (http://127\.0\.0\.1:\d+/)", line)
        if m:
            url = m.group(1)
        m = re.match(r"(DEMO-00[12])\s+online\s+Charging\s+[\d.]+\s+\S+\s+([\d.]+)\s+(\d+)", line)
        if m and float(m.group(2)) > 10 and int(m.group(3)) > 1000:
            charging.add(m.group(1))
        # humidity reaches the gateway only as the clock-aligned DataTransfer the demo turns on
        # with the board's RP2040 temperature, in the last column
        m = re.match(r"(DEMO-00[12])\s+online\s+\S+\s+[\d.]+\s+(\d+)\s.*\s([\d.]+)$", line.rstrip())
        if m and 5 <= int(m.group(2)) <= 95 and 20 < float(m.group(3)) < 45:
            humid.add(m.group(1))
    out = "".join(lines)
    assert url, out
    assert charging == {"DEMO-001", "DEMO-002"}, out
    assert humid == {"DEMO-001", "DEMO-002"}, out
    page = urllib.request.urlopen(url, timeout=5).read().decode()
    assert "<html" in page.lower(), page[:200]
    running = procs_of(data)   # the gateway (--db under data) and each station's firmware
    assert len(firmware_pids(data)) == 2 and len(running) >= 3, running
    os.killpg(p.pid, signal.SIGINT)   # Ctrl-C in the terminal
    rest = p.communicate(timeout=30)[0].decode()
    assert p.returncode == 0, out + rest
    assert rest.rstrip().endswith("stopped"), rest
    assert wait_gone(running) == set(), "processes left behind: %s" % procs_of(data)
    # the readings are in the gateway's database, kept with --data; the board (RP2040)
    # temperature came with the humidity, in the Climate DataTransfer
    assert (data / "gateway.db").is_file()
    db = sqlite3.connect(str(data / "gateway.db"))
    try:
        board = dict(db.execute("SELECT station, MAX(chip_temp_c) FROM readings WHERE chip_temp_c IS NOT NULL "
                                "GROUP BY station").fetchall())
    finally:
        db.close()
    assert set(board) == {"DEMO-001", "DEMO-002"} and all(20 < t < 45 for t in board.values()), board


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP"])
def test_demo__a_stop_signal_leaves_no_process_behind(tmp_path, how):
    data = tmp_path / "demo"
    p = subprocess.Popen([sys.executable, "-m", "picocharge.cli", "demo", "-n", "1", "--port", "0",
                          "--refresh", "60", "--data", str(data)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines = []
    end = time.monotonic() + 60
    while time.monotonic() < end and not any(l.startswith("1 stations running") for l in lines):
        line = p.stdout.readline().decode()
        if not line:
            break
        lines.append(line)
    running = procs_of(data)
    assert len(firmware_pids(data)) == 1 and len(running) >= 2, ("".join(lines), running)
    p.send_signal(getattr(signal, how))   # `kill`, a service manager, a closed terminal
    rest = p.communicate(timeout=30)[0].decode()
    assert p.returncode == 0, "".join(lines) + rest
    assert rest.rstrip().endswith("stopped"), rest
    assert wait_gone(running) == set(), "processes left behind: %s" % procs_of(data)
