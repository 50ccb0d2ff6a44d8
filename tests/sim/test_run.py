"""`picocharge run`: the firmware on a simulated board in the terminal; Ctrl-C stops it cleanly."""
import json
import os
import signal
import subprocess
import sys
import time

from helpers import free_port


def test_run__shows_live_readings_and_stops_cleanly_on_ctrl_c(tmp_path):
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "picocharge.cli", "run", "--flash", str(tmp_path / "SIM-9"),
                          "--web-port", str(port), "--scenario", "charging"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines = []
    end = time.monotonic() + 30
    while time.monotonic() < end:
        line = p.stdout.readline().decode()
        lines.append(line)
        if "Charging relay" in line:
            break
    assert any("[meter] I:" in l and " A " in l and " V " in l for l in lines), "".join(lines)
    assert "status page: http://127.0.0.1:%d/" % port in "".join(lines), "".join(lines)
    cfg = json.loads((tmp_path / "SIM-9" / "config.json").read_text())
    assert cfg["station_id"] == "SIM-9" and cfg["web"]["port"] == port, cfg
    os.killpg(p.pid, signal.SIGINT)   # what Ctrl-C in a terminal does: the whole group
    out = p.communicate(timeout=15)[0].decode()
    assert p.returncode == 0, out
    assert "stopped SIM-9" in out, out
    r = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert r.stdout.strip() == "", "left behind: " + r.stdout


def test_run__refuses_a_bad_config_naming_the_key(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"station_id": "CP-1", "sensors": {"mains_hz": 40}}))
    r = subprocess.run([sys.executable, "-m", "picocharge.cli", "run", "--flash", str(tmp_path / "f"),
                        "--config", str(bad)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stderr
    assert "config key 'sensors.mains_hz': 40 is out of range 45..65" in r.stderr, r.stderr
    assert not (tmp_path / "f" / "config.json").exists()
