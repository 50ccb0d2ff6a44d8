"""`picocharge run`: the firmware on a simulated board in the terminal; Ctrl-C stops it cleanly."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from support.net import free_port
from support.sim import firmware_pids, procs_of, wait_gone


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


def run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "picocharge.cli", "run", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_run__web_port_applies_to_an_existing_config_and_duration_stops_it(tmp_path):
    flash = tmp_path / "CP-7"
    flash.mkdir()
    (flash / "config.json").write_text(json.dumps({"station_id": "CP-7", "web": {"enabled": False, "port": 81}}))
    port = free_port()
    r = run_cli("--flash", str(flash), "--web-port", str(port), "--duration", "3")
    assert r.returncode == 0, r.stderr
    assert "status page: http://127.0.0.1:%d/" % port in r.stderr and "stopped CP-7" in r.stderr, r.stderr
    assert json.loads((flash / "config.json").read_text()) == {
        "station_id": "CP-7", "web": {"enabled": True, "port": port}}
    assert procs_of(tmp_path) == {}, procs_of(tmp_path)
    r = run_cli("--flash", str(flash), "--web-port", "0", "--duration", "1")
    assert r.returncode == 0 and "status page" not in r.stderr, r.stderr
    assert json.loads((flash / "config.json").read_text())["web"] == {"enabled": False, "port": port}


def test_run__a_config_that_is_not_json_is_named_with_its_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"station_id": "CP-1",\n "web": {"port": 80,}}\n')
    r = run_cli("--flash", str(tmp_path / "f"), "--config", str(bad))
    assert r.returncode == 1, r.stderr
    assert "Error: --config %s is not valid JSON at line 2, column 21 (Expecting property name" % bad in r.stderr, r.stderr
    assert not (tmp_path / "f").exists()
    flash = tmp_path / "g"
    flash.mkdir()
    (flash / "config.json").write_text('{"station_id": "CP-1"')
    r = run_cli("--flash", str(flash))
    assert r.returncode == 1, r.stderr
    assert "the board's config %s is not valid JSON at line 1, column 22" % (flash / "config.json") in r.stderr, r.stderr
    assert "edit it, give a good one with --config FILE (it replaces it), or delete it" in r.stderr, r.stderr
    (flash / "config.json").write_text('{"station_id": "CP 1"}')
    r = run_cli("--flash", str(flash))
    assert r.returncode == 1 and "config key 'station_id'" in r.stderr and "or delete it" in r.stderr, r.stderr
