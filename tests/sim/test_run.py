"""`picocharge run`: the firmware on a simulated board in the terminal; Ctrl-C stops it cleanly."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import free_port
from sim_support import firmware_pids, procs_of, wait_gone


def _start_run(tmp_path, port):
    p = subprocess.Popen([sys.executable, "-m", "picocharge.cli", "run", "--flash", str(tmp_path / "SIM-9"),
                          "--web-port", str(port), "--scenario", "charging"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines = []
    end = time.monotonic() + 30
    while time.monotonic() < end:
        line = p.stdout.readline().decode()
        lines.append(line)
        if "Charging relay" in line or not line:
            break
    return p, lines


@pytest.mark.parametrize("how", ["ctrl-c", "SIGTERM", "SIGHUP"])
def test_run__shows_live_readings_and_stops_cleanly(tmp_path, how):
    port = free_port()
    p, lines = _start_run(tmp_path, port)
    assert any("[meter] I:" in l and " A " in l and " V " in l for l in lines), "".join(lines)
    assert "status page: http://127.0.0.1:%d/" % port in "".join(lines), "".join(lines)
    cfg = json.loads((tmp_path / "SIM-9" / "config.json").read_text())
    assert cfg["station_id"] == "SIM-9" and cfg["web"]["port"] == port, cfg
    fw = firmware_pids(tmp_path)
    assert len(fw) == 1, procs_of(tmp_path)
    if how == "ctrl-c":
        os.killpg(p.pid, signal.SIGINT)   # what Ctrl-C in a terminal does: the whole group
    else:
        p.send_signal(getattr(signal, how))   # `kill`, a service manager, a closed terminal
    out = p.communicate(timeout=15)[0].decode()
    assert p.returncode == 0, out
    assert "stopped SIM-9" in out, out
    assert wait_gone(fw) == set(), "firmware left running: %s" % procs_of(tmp_path)
    assert procs_of(tmp_path) == {}, "left behind: %s" % procs_of(tmp_path)


def test_run__refuses_a_bad_config_naming_the_key(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"station_id": "CP-1", "sensors": {"mains_hz": 40}}))
    r = subprocess.run([sys.executable, "-m", "picocharge.cli", "run", "--flash", str(tmp_path / "f"),
                        "--config", str(bad)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stderr
    assert "config key 'sensors.mains_hz': 40 is out of range 45..65" in r.stderr, r.stderr
    assert not (tmp_path / "f" / "config.json").exists()
