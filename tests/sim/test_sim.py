"""`picocharge sim` through the real CLI: real firmware processes, a real broker."""
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest
from support.sim import firmware_pids, procs_of, wait_gone


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


def test_sim__the_ev_scenario_turns_the_pilot_on_and_a_station_without_ocpp_charges_the_car(tmp_path):
    """A station without OCPP (free charge) behind the control pilot: the shipped `ev` car plugs
    in at 2 s and asks for charge at 8 s; the relay closes only then, and the car draws the
    16 A the pilot offers (charger.max_current_a)."""
    r = run_cli("sim", "-n", "1", "--scenario", "ev", "--interval", "1", "--duration", "14",
                "--flash-root", str(tmp_path / "fleet"))
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = json.loads((tmp_path / "fleet" / "SIM-001" / "config.json").read_text())
    assert cfg["charger"]["pilot"] is True, cfg
    lines = [ln.split(" | ", 1)[1] for ln in r.stdout.splitlines() if ln.startswith("SIM-001 | ")]
    states = [ln for ln in lines if ln.startswith("[pilot] I: EV state")]
    assert [s.split()[4] for s in states][:2] == ["B", "C"], lines
    closed = lines.index("[board] I: relay closed")
    assert closed > lines.index(states[1]), lines       # not before the car asks for charge
    amps = [float(ln.split()[6]) for ln in lines[closed:] if ln.startswith("[meter] I:") and " relay" in ln]
    assert amps and all(15.0 <= a <= 17.0 for a in amps), lines


@pytest.mark.parametrize("cmd", ["sim", "run", "demo"])
def test_sim__help_says_which_micropython_runs_the_firmware(cmd):
    r = run_cli(cmd, "--help")
    text = " ".join(r.stdout.split())
    assert ("micropython named by $PICOCHARGE_MICROPYTHON (it always wins), else by $MICROPYTHON, else the "
            "first `micropython` on PATH; `picocharge doctor` shows which") in text, r.stdout


def test_sim__bad_options_are_usage_errors():
    r = run_cli("sim", "--central", "http://127.0.0.1:9/ocpp")
    assert r.returncode == 2 and "must start with ws:// or wss://" in r.stderr, r.stderr
    r = run_cli("sim", "--scenario", "no-such")
    assert r.returncode == 2 and "shipped: charging, ev, flaky, overheat" in r.stderr, r.stderr
    r = run_cli("sim", "-n", "0")
    assert r.returncode == 2, r.stderr
    r = run_cli("sim", "--set", "mqtt.portt=1")
    assert r.returncode == 2 and "unknown config key 'mqtt.portt'" in r.stderr, r.stderr
    r = run_cli("sim", "--set", "mqtt.port")
    assert r.returncode == 2 and "expected KEY=VALUE" in r.stderr, r.stderr
    r = run_cli("sim", "--mqtt", "http://broker")
    assert r.returncode == 2 and "expected mqtt://[user:password@]host[:port], or mqtts://" in r.stderr, r.stderr


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


def test_sim__charging_session_against_the_real_gateway(tmp_path):
    """--id-tag: the start button's press becomes a transaction the gateway accepts, and the
    session's meter values are stored as readings."""
    from picocharge.cmd_demo import GatewayProcess

    gw = GatewayProcess(tmp_path / "gw.db", extra=("--auth", "none")).start()
    try:
        gw.api("POST", "/api/id-tags", {"id_tag": "TAG-7", "status": "Accepted"})
        ws = gw.url.replace("http://", "ws://", 1) + "/ocpp"
        r = run_cli("sim", "-n", "1", "--central", ws, "--id-tag", "TAG-7", "--scenario", "charging",
                    "--interval", "1", "--meter-interval", "2", "--set", "ocpp.heartbeat_s=30",
                    "--duration", "20", "--flash-root", str(tmp_path / "fleet"))
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr
        assert "id_tag is empty" not in r.stdout, r.stdout[-3000:]
        tx = gw.api("GET", "/api/stations/SIM-001/transactions")
        assert [(t["id_tag"], t["connector"]) for t in tx] == [("TAG-7", 1)], tx
        readings = gw.api("GET", "/api/stations/SIM-001/readings")
        assert any(x.get("current_a", 0) > 10 and x.get("power_w", 0) > 1000 for x in readings), readings
        cfg_file = tmp_path / "fleet" / "SIM-001" / "config.json"
        assert cfg_file.stat().st_mode & 0o777 == 0o600, oct(cfg_file.stat().st_mode)   # it holds passwords
        cfg = json.loads(cfg_file.read_text())
        assert cfg["ocpp"]["id_tag"] == "TAG-7" and cfg["ocpp"]["heartbeat_s"] == 30, cfg
    finally:
        gw.stop()


def test_sim__a_central_system_nobody_listens_on_is_an_error(tmp_path):
    """--central ws://127.0.0.1:9/ocpp (nothing listens on port 9): the stations never connect,
    and sim says so and exits 1 instead of 0 after its --duration."""
    r = run_cli("sim", "-n", "2", "--central", "ws://127.0.0.1:9/ocpp", "--duration", "8",
                "--flash-root", str(tmp_path / "fleet"))
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr
    assert "2 of 2 station(s) never connected to ws://127.0.0.1:9/ocpp" in r.stderr, r.stderr
    assert "SIM-001: link down" in r.stderr and "picocharge doctor --gateway" in r.stderr, r.stderr


def test_sim__set_and_mqtt_credentials_reach_the_config(tmp_path):
    root = tmp_path / "fleet"
    r = run_cli("sim", "-n", "1", "--mqtt", "mqtt://alice:s%3Acret@127.0.0.1:9", "--set", "log_level=debug",
                "--duration", "1", "--flash-root", str(root))
    assert r.returncode == 0, r.stderr
    cfg = json.loads((root / "SIM-001" / "config.json").read_text())
    assert cfg["mqtt"] == {"enabled": True, "host": "127.0.0.1", "port": 9, "interval_s": 2,
                           "user": "alice", "password": "s:cret"}, cfg
    assert cfg["log_level"] == "debug", cfg
    assert "s:cret" not in r.stdout + r.stderr
    # mqtts:// is MQTT over TLS: mqtt.ssl, port 8883 unless given
    r = run_cli("sim", "-n", "1", "--mqtt", "mqtts://broker.example", "--duration", "1", "--flash-root", str(root))
    assert r.returncode == 0, r.stderr
    cfg = json.loads((root / "SIM-001" / "config.json").read_text())
    assert cfg["mqtt"] == {"enabled": True, "host": "broker.example", "port": 8883, "interval_s": 2, "ssl": True}, cfg


def test_sim__removes_the_temporary_flash_folder_it_made(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    r = subprocess.run([sys.executable, "-m", "picocharge.cli", "sim", "-n", "1", "--duration", "2"],
                       capture_output=True, text=True, timeout=60, env=dict(os.environ, TMPDIR=str(tmp)))
    assert r.returncode == 0, r.stderr
    assert "picocharge-sim-" in r.stderr and "(removed at the end)" in r.stderr, r.stderr
    assert list(tmp.iterdir()) == [], list(tmp.iterdir())


@pytest.mark.parametrize("cmd", [["sim", "-n", "1"], ["demo", "-n", "1", "--port", "0"]])
def test_sim__no_micropython_leaves_no_temporary_folder(tmp_path, cmd):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    r = subprocess.run([sys.executable, "-m", "picocharge.cli", *cmd], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, TMPDIR=str(tmp),
                                            PICOCHARGE_MICROPYTHON=str(tmp_path / "no-micropython")))
    assert r.returncode == 1, r.stderr
    assert "is not an executable micropython" in r.stderr, r.stderr
    assert list(tmp.iterdir()) == [], list(tmp.iterdir())


def test_sim__stations_present_certificates_over_wss_to_the_real_gateway(tmp_path):
    """--ca-cert and --client-cert-dir: simulated stations verify the gateway's certificate and
    sign in with their own (OCPP security profile 3), as provisioned boards do."""
    from picocharge.cmd_demo import GatewayProcess
    from support import tls_certs

    pki = tls_certs.make(tmp_path / "pki")
    ca_dir, out = tmp_path / "ca", tmp_path / "stations"
    assert run_cli("gateway", "ca", "init", "--dir", str(ca_dir)).returncode == 0
    for sid in ("SIM-001", "SIM-002"):
        assert run_cli("gateway", "ca", "issue", sid, "--dir", str(ca_dir), "--out", str(out)).returncode == 0
    gw = GatewayProcess(tmp_path / "gw.db", extra=(
        "--tls-cert", str(pki.cert), "--tls-key", str(pki.key), "--client-ca", str(ca_dir / "ca.crt"),
        "--client-cert", "required"))
    ctx = ssl.create_default_context(cafile=str(pki.ca_pem))

    def api(method, path, body=None):
        req = urllib.request.Request(gw.url + path, data=json.dumps(body).encode() if body else None, method=method,
                                     headers={"Content-Type": "application/json", "Authorization": "Bearer " + gw.token})
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return json.loads(r.read())
    try:
        gw.start()
        assert gw.url.startswith("https://"), gw.url
        port = int(gw.url.rsplit(":", 1)[1])
        for sid in ("SIM-001", "SIM-002"):
            api("POST", "/api/stations", {"id": sid, "password": "never-used-password-1"})
        wss = "wss://127.0.0.1:%d/ocpp" % port
        # a station without its certificate is named before anything starts
        r = run_cli("sim", "-n", "3", "--central", wss, "--ca-cert", str(pki.ca_pem), "--client-cert-dir", str(out),
                    "--duration", "1", "--flash-root", str(tmp_path / "nope"))
        assert r.returncode == 2 and "SIM-003.crt or" in r.stderr and "picocharge gateway ca issue SIM-003" in r.stderr
        r = run_cli("sim", "-n", "2", "--central", wss, "--ca-cert", str(pki.ca_pem), "--client-cert-dir", str(out),
                    "--duration", "15", "--flash-root", str(tmp_path / "fleet"), timeout=90)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr
        for sid in ("SIM-001", "SIM-002"):
            st = api("GET", "/api/stations/" + sid)
            assert st["security_profile"] == 3 and st["last_seen"], st
            cfg = json.loads((tmp_path / "fleet" / sid / "config.json").read_text())
            assert cfg["ocpp"]["client_cert"].startswith("client-") and "password" not in cfg["ocpp"], cfg
            assert (tmp_path / "fleet" / sid / cfg["ocpp"]["client_key"]).stat().st_mode & 0o777 == 0o600
    finally:
        gw.stop()
