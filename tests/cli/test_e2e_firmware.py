"""deploy + provision a virtual board with the CLI, then it boots the deployed firmware:
its console shows readings, and its telemetry reaches a real MQTT broker."""
import json
import re
import time

import paho.mqtt.client as mqtt

from cli_support import run_cli

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
