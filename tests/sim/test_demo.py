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
from support.net import free_port
from support.sim import firmware_pids, procs_of, wait_gone


DEMO_1 = [sys.executable, "-m", "picocharge.cli", "demo", "-n", "1"]


def start_one_station_demo(args, env=None):
    """`picocharge demo -n 1 ARGS` in its own session, once its station runs: (Popen, lines so far)."""
    p = subprocess.Popen(DEMO_1 + ["--refresh", "60"] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=env, start_new_session=True)
    lines = []
    end = time.monotonic() + 60
    while time.monotonic() < end and not any(ln.startswith("1 stations running") for ln in lines):
        line = p.stdout.readline().decode()
        if not line:
            break
        lines.append(line)
    return p, lines


def wait_port_free(port, timeout=20):
    """Until a server could listen on `port` again (SO_REUSEADDR, as servers bind)."""
    import socket

    end = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                s.listen()
                return
            except OSError:
                if time.monotonic() > end:
                    raise
        time.sleep(0.2)


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
    p, lines = start_one_station_demo(["--port", "0", "--data", str(data)])
    running = procs_of(data)
    assert len(firmware_pids(data)) == 1 and len(running) >= 2, ("".join(lines), running)
    p.send_signal(getattr(signal, how))   # `kill`, a service manager, a closed terminal
    rest = p.communicate(timeout=30)[0].decode()
    assert p.returncode == 0, "".join(lines) + rest
    assert rest.rstrip().endswith("stopped"), rest
    assert wait_gone(running) == set(), "processes left behind: %s" % procs_of(data)


def test_demo__kill_9_takes_its_gateway_and_stations_along_and_the_next_demo_tidies_up(tmp_path):
    """`kill -9` runs no handler: the children must end by themselves (PR_SET_PDEATHSIG) and
    free the port, and the temporary folder left behind is removed by the next demo."""
    import tempfile

    env = dict(os.environ, TMPDIR=str(tmp_path))   # the demo's temporary folder goes here
    port = free_port()
    p, lines = start_one_station_demo(["--port", str(port)], env=env)
    (left,) = [d for d in tmp_path.iterdir() if d.name.startswith("picocharge-demo-%d-" % p.pid)]
    children = procs_of(left)
    assert len(firmware_pids(left)) == 1 and len(children) >= 2, ("".join(lines), children)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)
    assert wait_gone(children, timeout=20) == set(), "left running: %s" % procs_of(left)
    wait_port_free(port)
    assert left.is_dir()    # nobody could remove it: the next demo does
    q = subprocess.run(DEMO_1 + ["--port", "0", "--duration", "1"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert q.returncode == 0, q.stdout + q.stderr
    assert not left.exists() and not list(tmp_path.glob("picocharge-demo-*")), list(tmp_path.iterdir())
    assert tempfile.gettempdir() != str(tmp_path)   # this process' own setting was not touched
