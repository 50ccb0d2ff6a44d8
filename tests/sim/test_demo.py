"""`picocharge demo`: gateway + simulated stations, dashboard address, live table, clean stop."""
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request


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
        m = re.match(r"(DEMO-00[12])\s+online\s+\S+\s+[\d.]+\s+(\d+)\s", line)
        if m and 5 <= int(m.group(2)) <= 95:
            humid.add(m.group(1))
    out = "".join(lines)
    assert url, out
    assert charging == {"DEMO-001", "DEMO-002"}, out
    assert humid == {"DEMO-001", "DEMO-002"}, out
    page = urllib.request.urlopen(url, timeout=5).read().decode()
    assert "<html" in page.lower(), page[:200]
    os.killpg(p.pid, signal.SIGINT)   # Ctrl-C in the terminal
    rest = p.communicate(timeout=30)[0].decode()
    assert p.returncode == 0, out + rest
    assert rest.rstrip().endswith("stopped"), rest
    time.sleep(0.5)
    r = subprocess.run(["pgrep", "-f", str(data)], capture_output=True, text=True)
    assert r.stdout.strip() == "", "processes left behind: " + r.stdout
    # the readings are in the gateway's database, kept with --data
    assert (data / "gateway.db").is_file()
