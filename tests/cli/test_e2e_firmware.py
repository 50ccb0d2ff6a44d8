"""deploy + provision a virtual board with the CLI, then it boots the deployed firmware:
its console shows readings, and its telemetry reaches a real MQTT broker."""
import json
import re
import time

import paho.mqtt.client as mqtt

from support.cli import run_cli

METER = re.compile(r"^\[meter\] I: [\d.]+ degC [\d.]+ %RH [\d.]+ A [\d.]+ V \d+ W [\d.]+ Wh chip [\d.]+ degC \w+")


def test_e2e__deployed_and_provisioned_board_boots_the_firmware(vboards, pc, mqtt_broker):
    msgs = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="cli-e2e-sub")
    sub.on_message = lambda c, u, m: msgs.append((m.topic, m.payload.decode()))
    sub.connect("127.0.0.1", mqtt_broker.port)
    sub.subscribe("picocharge/#", qos=1)
    sub.loop_start()
    b = vboards("station", run_main=True)
    try:
        r = run_cli("deploy", "--board", "unix", "-p", b.device)
        assert r.returncode == 0, r.stderr
        r = run_cli("provision", "-p", "station", "--no-prompt", "--station-id", "CP-70", "--ssid", "shed",
                    "--wifi-password", "pw-e2e-1", "--mqtt-host", "127.0.0.1", "--mqtt-port", str(mqtt_broker.port),
                    "--set", "mqtt.interval_s=1", "--set", "web.enabled=false", "--set", "sensors.interval_s=1")
        assert r.returncode == 0, r.stderr
        r = pc("monitor", "-p", "station", "--reset", "--duration", "5")
        assert r.exit_code == 0, r.output
        lines = r.stdout.splitlines()
        cfg_line = [l for l in lines if l.startswith("[app] I: config: ")]
        assert cfg_line, r.stdout
        cfg = json.loads(cfg_line[0][len("[app] I: config: "):])
        assert cfg["station_id"] == "CP-70" and cfg["wifi"] == dict(cfg["wifi"], ssid="shed", password="***"), cfg
        assert "pw-e2e-1" not in r.stdout
        readings = [l for l in lines if METER.match(l)]
        assert len(readings) >= 2, r.stdout
        end = time.monotonic() + 15
        while time.monotonic() < end and not any(t == "picocharge/CP-70/telemetry" for t, _ in msgs):
            time.sleep(0.1)
        tel = [json.loads(p) for t, p in msgs if t == "picocharge/CP-70/telemetry"]
        assert tel and {"temp_c", "current_a", "voltage_v", "power_w", "energy_wh"} <= set(tel[0]), msgs[-5:]
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_e2e__provisioned_board_registers_and_runs_ocpp_against_the_gateway(vboards, pc, tmp_path):
    """provision --register-gateway: the gateway knows the station and its generated password, and
    the deployed firmware boots against it over OCPP (password auth) with its readings stored."""
    from picocharge.cmd_demo import GatewayProcess

    gw = GatewayProcess(tmp_path / "gw.db").start()
    try:
        ws_url = gw.url.replace("http://", "ws://") + "/ocpp"
        b = vboards("station", run_main=True)
        r = run_cli("deploy", "--board", "unix", "-p", b.device)
        assert r.returncode == 0, r.stderr
        r = run_cli("provision", "-p", "station", "--no-prompt", "--station-id", "CP-71", "--ssid", "shed",
                    "--wifi-password", "pw-e2e-2", "--ocpp-url", ws_url, "--register-gateway", gw.url,
                    "--gateway-token", gw.token,     # the gateway's admin token: every API call needs one
                    "--set", "web.enabled=false", "--set", "sensors.interval_s=1", "--set", "ocpp.meter_interval_s=2",
                    "--json")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        st = out["stations"][0]
        assert st["registered"] is True and st["station_id"] == "CP-71" and st["written"], out
        assert "password" not in r.stdout.replace('"password": "***"', ""), r.stdout
        assert gw.api("GET", "/api/stations/CP-71")["connected"] is False
        r = pc("monitor", "-p", "station", "--reset", "--duration", "3")
        assert r.exit_code == 0, r.output

        def wait_for(ok, what, timeout=45):
            end, view = time.monotonic() + timeout, {}
            while time.monotonic() < end:
                view = gw.api("GET", "/api/stations/CP-71")
                if ok(view):
                    return view
                time.sleep(0.5)
            raise AssertionError("%s: %s\n%s" % (what, view, "\n".join(gw.log[-20:])))

        view = wait_for(lambda v: v["connected"] and v["status"] == "Available", "station never came up")
        assert view["vendor"] == "PicoCharge" and view["state"] == "accepted", view
        gw.api("POST", "/api/id-tags", {"id_tag": "E2E-TAG"})
        assert gw.api("POST", "/api/stations/CP-71/remote-start", {"id_tag": "E2E-TAG"})["status"] == "Accepted"
        view = wait_for(lambda v: v["status"] == "Charging" and v["last_reading"].get("current_a") is not None,
                        "no charging readings")
        assert view["last_reading"]["voltage_v"] > 0 and view["last_reading"]["temp_c"] > 0, view
        tx = gw.api("GET", "/api/stations/CP-71/transactions")
        assert len(tx) == 1 and tx[0]["id_tag"] == "E2E-TAG", tx
    finally:
        gw.stop()
    assert not any("Traceback" in l for l in gw.log), "\n".join(gw.log[-30:])
