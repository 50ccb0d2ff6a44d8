"""`picocharge sim` through the real CLI: real firmware processes, a real broker."""
import json
import os
import signal
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
import pytest
from sim_support import firmware_pids, procs_of, wait_gone


def run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "picocharge.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_sim__stations_publish_to_a_real_broker(mqtt_broker, tmp_path):
    got = {}
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_message = lambda c, u, m: got.setdefault(m.topic, []).append(json.loads(m.payload))
    c.connect("127.0.0.1", mqtt_broker.port)
    c.subscribe("picocharge/#", qos=1)
    c.loop_start()
    try:
        r = run_cli("sim", "-n", "3", "--mqtt", "mqtt://127.0.0.1:%d" % mqtt_broker.port,
                    "--interval", "1", "--duration", "6", "--flash-root", str(tmp_path / "fleet"),
                    "--scenario", "flaky")
        time.sleep(0.5)
    finally:
        c.loop_stop()
        c.disconnect()
    assert r.returncode == 0, r.stdout + r.stderr
    for sid in ("SIM-001", "SIM-002", "SIM-003"):
        tel = got.get("picocharge/%s/telemetry" % sid)
        assert tel, (sid, sorted(got), r.stdout[-2000:])
        # the flaky scenario is a 60 Hz, 120 V supply
        assert any(abs(t.get("voltage_v", 0) - 120) < 3 for t in tel), tel
        assert (tmp_path / "fleet" / sid / "config.json").is_file()
    lines = r.stdout.splitlines()
    assert any(l.startswith("SIM-002 | [meter] I:") for l in lines), r.stdout[-2000:]
    # every station got its own seed: their DHT11 errors differ
    assert len({json.dumps(got["picocharge/%s/telemetry" % s][:3]) for s in ("SIM-001", "SIM-002", "SIM-003")}) == 3


def test_sim__bad_options_are_usage_errors():
    r = run_cli("sim", "--central", "http://127.0.0.1:9/ocpp")
    assert r.returncode == 2 and "must start with ws:// or wss://" in r.stderr, r.stderr
    r = run_cli("sim", "--scenario", "no-such")
    assert r.returncode == 2 and "shipped: charging, flaky, overheat" in r.stderr, r.stderr
    r = run_cli("sim", "-n", "0")
    assert r.returncode == 2, r.stderr


@pytest.mark.parametrize("how", ["ctrl-c", "SIGTERM", "SIGHUP"])
def test_sim__a_stop_signal_leaves_no_station_running(tmp_path, how):
    root = tmp_path / "fleet"
    p = subprocess.Popen([sys.executable, "-m", "picocharge.cli", "sim", "-n", "2", "--interval", "1",
                          "--flash-root", str(root)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    seen, lines = set(), []
    end = time.monotonic() + 30
    while time.monotonic() < end and len(seen) < 2:
        line = p.stdout.readline().decode()
        if not line:
            break
        lines.append(line)
        if "| [meter] I:" in line:
            seen.add(line.split(" |", 1)[0])
    assert seen == {"SIM-001", "SIM-002"}, "".join(lines)
    fw = firmware_pids(root)
    assert len(fw) == 2, procs_of(root)
    if how == "ctrl-c":
        os.killpg(p.pid, signal.SIGINT)
    else:
        p.send_signal(getattr(signal, how))
    out = p.communicate(timeout=30)[0].decode()
    assert p.returncode == 0, "".join(lines) + out
    assert wait_gone(fw) == set(), "stations left running: %s" % procs_of(root)
    assert procs_of(tmp_path) == {}, "left behind: %s" % procs_of(tmp_path)
