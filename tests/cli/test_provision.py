"""picocharge provision: single boards (flags, prompts), fleets (CSV, TOML), refusals, gateway."""
import json

import pytest

from support import tls_certs
from support.cli import FakeGatewayAPI, run_cli, snapshot


def board_config(b):
    return json.loads((b.flash / "config.json").read_text())


def test_provision__flags_written_atomically_and_secrets_never_printed(vboards):
    b = vboards("bench", run_main=False)
    r = run_cli("provision", "-p", b.device, "--no-prompt", "--station-id", "CP-1", "--ssid", "shed",
                "--wifi-password", "hunter2-wifi", "--ocpp-url", "ws://10.0.0.2:9000/ocpp",
                "--thingspeak-channel", "1001", "--thingspeak-key", "TSKEY12345678",
                "--set", "sensors.current_scale=0.0012", "--set", "web.enabled=false")
    assert r.returncode == 0, r.stderr
    want = {"station_id": "CP-1",
            "wifi": {"ssid": "shed", "password": "hunter2-wifi"},
            "ocpp": {"url": "ws://10.0.0.2:9000/ocpp"},
            "thingspeak": {"channel_id": 1001, "write_key": "TSKEY12345678", "enabled": True},
            "sensors": {"current_scale": 0.0012},
            "web": {"enabled": False}}
    assert board_config(b) == want, (b.flash / "config.json").read_text()
    assert sorted(p.name for p in b.flash.iterdir()) == ["config.json"], "temporary file left behind"
    for secret in ("hunter2-wifi", "TSKEY12345678"):
        assert secret not in r.stdout + r.stderr, r.stdout
    assert r.stdout.splitlines()[0] == "provisioned CP-1 on %s: config.json written and verified" % b.device, r.stdout
    assert "wifi.password=***" in r.stdout and "thingspeak.write_key=***" in r.stdout, r.stdout

    # a second run merges: only the MQTT broker is added, the rest is kept
    r = run_cli("provision", "-p", b.device, "--no-prompt", "--mqtt-host", "10.0.0.3", "--mqtt-port", "1884")
    assert r.returncode == 0, r.stderr
    want["mqtt"] = {"host": "10.0.0.3", "port": 1884, "enabled": True}
    assert board_config(b) == want


def test_provision__prompts_for_missing_values_without_echoing_secrets(vboards, pc):
    b = vboards("bench", run_main=False)
    r = pc("provision", "-p", b.device, "--prompt",
           input="CP-2\nshed\nwifi-secret-2\nws://gw/ocpp\nocpp-secret-2\n12x\n1234567\nTSKEY-SECRET-2\nbroker.local\n")
    assert r.exit_code == 0, r.output
    assert board_config(b) == {"station_id": "CP-2", "wifi": {"ssid": "shed", "password": "wifi-secret-2"},
                               "ocpp": {"url": "ws://gw/ocpp", "password": "ocpp-secret-2"},
                               "thingspeak": {"channel_id": 1234567, "write_key": "TSKEY-SECRET-2", "enabled": True},
                               "mqtt": {"host": "broker.local", "enabled": True}}
    for secret in ("wifi-secret-2", "ocpp-secret-2", "TSKEY-SECRET-2"):   # hide_input: never echoed
        assert secret not in r.output, r.output
    for q in ("Station id: ", "Wi-Fi password for shed: ", "OCPP password (empty for none): ",
              "ThingSpeak channel id (empty for none): ", "a channel id is a whole number",
              "ThingSpeak write API key: ", "MQTT broker host (empty for none): "):
        assert q in r.output, (q, r.output)


def test_provision__prompts_accept_empty_answers_for_optional_settings(vboards, pc):
    b = vboards("bench", run_main=False)
    r = pc("provision", "-p", b.device, "--prompt", input="CP-3\n\n\n\n\n")
    assert r.exit_code == 0, r.output
    assert board_config(b) == {"station_id": "CP-3"}
    assert "OCPP password" not in r.output, r.output   # asked only with a central system


@pytest.mark.parametrize("args, key", [
    (["--station-id", "CP-3", "--mqtt-port", "70000"], "mqtt.port"),
    (["--station-id", "CP 3"], "station_id"),
    (["--station-id", "CP-3", "--ocpp-url", "http://gw/ocpp"], "ocpp.url"),
    (["--ssid", "x"], "station_id"),
])
def test_provision__bad_config_refused_before_anything_is_written(vboards, pc, args, key):
    b = vboards("bench", files={"config.json": '{"station_id": "OLD-1"}\n', "main.py": "print('hi')\n"},
                run_main=False)
    before = snapshot(b.flash)
    r = pc("provision", "-p", b.device, "--no-prompt", "--fresh", *args)
    assert r.exit_code == 1, r.output
    assert "nothing was written to any board" in r.output and "config key '%s'" % key in r.output, r.output
    assert snapshot(b.flash) == before, "the board's files changed"


def test_provision__set_validates_keys_and_types(vboards, pc):
    b = vboards("bench", run_main=False)
    # a bad --set is a usage error (exit 2), named with the option
    r = pc("provision", "-p", b.device, "--no-prompt", "--station-id", "CP-4", "--set", "mqtt.portt=1")
    assert r.exit_code == 2 and "Invalid value for '--set': unknown config key 'mqtt.portt'" in r.output, r.output
    r = pc("provision", "-p", b.device, "--no-prompt", "--station-id", "CP-4", "--set", "mqtt.port=abc")
    assert r.exit_code == 2 and "mqtt.port: 'abc' is not a whole number" in r.output, r.output
    r = pc("provision", "-p", b.device, "--no-prompt", "--station-id", "CP-4", "--set", "mqtt.port")
    assert r.exit_code == 2 and "expected KEY=VALUE" in r.output, r.output
    assert not (b.flash / "config.json").exists()
    r = pc("provision", "-p", b.device, "--no-prompt", "--station-id", "CP-4", "--set", "mqtt.port=1885")
    assert r.exit_code == 0, r.output
    assert board_config(b) == {"station_id": "CP-4", "mqtt": {"port": 1885}}


def test_provision__usage_errors_exit_2(pc):
    r = pc("provision", "--thingspeak-channel", "abc")
    assert r.exit_code == 2, r.output
    r = pc("provision", "--only", "CP-1")
    assert r.exit_code == 2 and "--only picks rows of an --inventory file" in r.output, r.output
    r = pc("provision", "--station", "CP-1")
    assert r.exit_code == 2 and "--station is now --only" in r.output and "--only CP-1" in r.output, r.output
    r = pc("provision", "--inventory", "no-such-fleet.csv")
    assert r.exit_code == 2 and "'no-such-fleet.csv' does not exist" in r.output, r.output


CSV = """station_id,ssid,mqtt-host,mqtt.port,sensors.current_scale
CP-10,depot,10.1.0.1,1883,0.0011
CP-11,depot,10.1.0.1,1884,
"""


def test_provision__fleet_from_csv_over_two_boards(vboards, tmp_path):
    a, b = vboards("a-bench", run_main=False), vboards("b-bench", run_main=False)
    inv = tmp_path / "fleet.csv"
    inv.write_text(CSV)
    r = run_cli("provision", "--inventory", str(inv), "--wifi-password", "fleet-wifi-pw", "--json")
    assert r.returncode == 0, r.stderr
    common = {"wifi": {"ssid": "depot", "password": "fleet-wifi-pw"}}
    assert board_config(a) == dict(common, station_id="CP-10", mqtt={"host": "10.1.0.1", "port": 1883, "enabled": True},
                                   sensors={"current_scale": 0.0011})
    assert board_config(b) == dict(common, station_id="CP-11", mqtt={"host": "10.1.0.1", "port": 1884, "enabled": True})
    out = json.loads(r.stdout)
    assert [(s["station_id"], s["port"], s["written"]) for s in out["stations"]] == [
        ("CP-10", a.device, True), ("CP-11", b.device, True)], out
    assert out["stations"][0]["config"]["wifi"]["password"] == "***", out
    assert "fleet-wifi-pw" not in r.stdout + r.stderr

    # rows reordered: each board keeps the station it already holds
    inv.write_text(CSV.splitlines()[0] + "\n" + CSV.splitlines()[2] + "\n" + CSV.splitlines()[1] + "\n")
    r = run_cli("provision", "--inventory", str(inv), "--set", "log_level=debug")
    assert r.returncode == 0, r.stderr
    assert board_config(a)["station_id"] == "CP-10" and board_config(a)["log_level"] == "debug"
    assert board_config(b)["station_id"] == "CP-11" and board_config(b)["log_level"] == "debug"


def test_provision__fleet_from_toml_with_pinned_port_and_station_filter(vboards, tmp_path, pc):
    a, b = vboards("a-bench", run_main=False), vboards("b-bench", run_main=False)
    inv = tmp_path / "fleet.toml"
    inv.write_text("""
[wifi]
ssid = "yard"

[[station]]
station_id = "CP-20"
port = "b-bench"
ocpp = { url = "ws://gw:9000/ocpp" }

[[station]]
station_id = "CP-21"
port = "%s"
"mqtt-host" = "broker"
""" % a.device)
    r = pc("provision", "--inventory", str(inv), "--only", "CP-20")
    assert r.exit_code == 0, r.output
    assert board_config(b) == {"station_id": "CP-20", "wifi": {"ssid": "yard"}, "ocpp": {"url": "ws://gw:9000/ocpp"}}
    assert not (a.flash / "config.json").exists(), "a board not selected was written"
    assert "boards left untouched (no inventory row for them): %s" % a.device in r.stdout, r.stdout
    r = pc("provision", "--inventory", str(inv))
    assert r.exit_code == 0, r.output
    assert board_config(a) == {"station_id": "CP-21", "wifi": {"ssid": "yard"},
                               "mqtt": {"host": "broker", "enabled": True}}
    r = pc("provision", "--inventory", str(inv), "--only", "CP-99")
    assert r.exit_code == 1 and "station CP-99 is not in" in r.output, r.output


def test_provision__fleet_with_one_bad_row_writes_no_board(vboards, tmp_path, pc):
    a, b = vboards("a-bench", run_main=False), vboards("b-bench", run_main=False)
    inv = tmp_path / "fleet.csv"
    inv.write_text("station_id,mqtt.port\nCP-30,1883\nCP-31,99999\n")
    r = pc("provision", "--inventory", str(inv))
    assert r.exit_code == 1, r.output
    assert "config key 'mqtt.port': 99999 is out of range 1..65535" in r.output, r.output
    assert "column mqtt.port in fleet.csv, line 3" in r.output, r.output
    assert not (a.flash / "config.json").exists() and not (b.flash / "config.json").exists()


@pytest.mark.parametrize("text, msg", [
    ("station_id,nosuch\nCP-1,1\n", "fleet.csv, line 1 (the header), column 2: unknown column 'nosuch'. "
     "A column is one of provision's flag names (country, id-tag, log-level, mqtt-host,"),
    ("station_id,ocpp-ulr\nCP-1,ws://x/ocpp\n", "column 2: unknown column 'ocpp-ulr' (did you mean ocpp-url"),
    ("station_id,wifi.sid\nCP-1,x\n", "unknown column 'wifi.sid' (did you mean wifi.ssid"),
    ('station_id,mqtt.port\nCP-1,1\n"CP-\n2",x\n', "fleet.csv, line 4: mqtt.port: 'x' is not a whole number"),
    ("ssid\nx\n", "fleet.csv, line 2: no station_id"),
    ("station_id\nCP-1\nCP-1\n", "station CP-1 appears twice"),
    ("station_id\n", "has a header but no station rows"),
])
def test_provision__inventory_errors_name_the_line(pc, tmp_path, vboards, text, msg):
    vboards("bench", run_main=False)
    inv = tmp_path / "fleet.csv"
    inv.write_text(text)
    r = pc("provision", "--inventory", str(inv))
    assert r.exit_code == 1 and msg in r.output, r.output


def test_provision__registers_with_gateway_generated_password(vboards, pc):
    b = vboards("bench", run_main=False)
    gw = FakeGatewayAPI(token="gw-token-1").start()
    try:
        r = pc("provision", "-p", b.device, "--no-prompt", "--station-id", "CP-40",
               "--ocpp-url", "ws://127.0.0.1:9/ocpp", "--register-gateway", gw.url,
               "--gateway-token", "gw-token-1")
        assert r.exit_code == 0, r.output
        cfg = board_config(b)
        pw = cfg["ocpp"]["password"]
        assert len(pw) == 32 and int(pw, 16) >= 0, pw
        assert len(gw.posts()) == 1, gw.requests
        path, headers, body = gw.posts()[0]
        assert (path, body) == ("/api/stations", {"id": "CP-40", "password": pw}), gw.requests
        assert headers["Authorization"] == "Bearer gw-token-1" and headers["Content-Type"] == "application/json"
        assert pw not in r.output and "gw-token-1" not in r.output, r.output
        assert "registered with the gateway at %s (password ***)" % gw.url in r.output

        # a rerun keeps the board's password: already registered, nothing posted, no token needed
        r = pc("provision", "-p", b.device, "--no-prompt", "--register-gateway", gw.url, "--gateway-token", "wrong")
        assert r.exit_code == 0, r.output
        assert "already registered with the gateway at %s; the board keeps its OCPP password" % gw.url in r.output, r.output
        assert len(gw.posts()) == 1 and board_config(b)["ocpp"]["password"] == pw, gw.requests
    finally:
        gw.stop()


def test_provision__bad_gateway_token_refused_before_any_board_is_written(vboards, pc):
    b = vboards("bench", run_main=False)
    gw = FakeGatewayAPI(token="gw-token-1").start()
    try:
        r = pc("provision", "-p", b.device, "--no-prompt", "--station-id", "CP-42",
               "--ocpp-url", "ws://127.0.0.1:9/ocpp", "--register-gateway", gw.url, "--gateway-token", "wrong")
        assert r.exit_code == 1, r.output
        assert "HTTP 401" in r.output and "--gateway-token" in r.output, r.output
        assert "nothing was written to any board" in r.output, r.output
        assert not (b.flash / "config.json").exists()
        assert gw.posts() == [] and gw.stations == {}, gw.requests
    finally:
        gw.stop()


def test_provision__register_gateway_rerun_against_the_real_gateway(vboards, tmp_path):
    """The first run registers CP-50 only; running the same command for the fleet registers
    CP-51 and reports CP-50 as already registered; a new password for a registered station is
    refused before any board is written, unless --replace-password says the board was replaced."""
    from picocharge.cmd_demo import GatewayProcess

    a, b = vboards("a-bench", run_main=False), vboards("b-bench", run_main=False)
    inv = tmp_path / "fleet.csv"
    inv.write_text("station_id,ocpp-url,port\nCP-50,ws://127.0.0.1:9/ocpp,a-bench\n"
                   "CP-51,ws://127.0.0.1:9/ocpp,b-bench\n")
    gw = GatewayProcess(tmp_path / "gw.db", extra=("--api-token", "gw-token-5")).start()
    env = {"PICOCHARGE_GATEWAY_TOKEN": "gw-token-5"}
    try:
        r = run_cli("provision", "--inventory", str(inv), "--only", "CP-50", "--register-gateway", gw.url,
                    env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert [s["id"] for s in gw.api("GET", "/api/stations")] == ["CP-50"]
        pw50 = board_config(a)["ocpp"]["password"]

        # the token also under the name the gateway itself reads it from
        r = run_cli("provision", "--inventory", str(inv), "--register-gateway", gw.url,
                    env={"PICOCHARGE_GATEWAY_API_TOKEN": "gw-token-5"})
        assert r.returncode == 0, r.stdout + r.stderr
        assert "provisioned CP-50 on %s" % a.device in r.stdout, r.stdout
        assert "already registered with the gateway at %s; the board keeps its OCPP password" % gw.url in r.stdout, r.stdout
        assert "registered with the gateway at %s (password ***)" % gw.url in r.stdout, r.stdout
        assert sorted(s["id"] for s in gw.api("GET", "/api/stations")) == ["CP-50", "CP-51"]
        assert board_config(a)["ocpp"]["password"] == pw50

        before = (snapshot(a.flash), snapshot(b.flash))
        r = run_cli("provision", "--inventory", str(inv), "--register-gateway", gw.url,
                    "--ocpp-password", "another-password-1", env=env)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "CP-50 (on %s), CP-51 (on %s)" % (a.device, b.device) in r.stderr, r.stderr
        assert "Nothing was written to any board" in r.stderr and "another-password-1" not in r.stderr, r.stderr
        assert (snapshot(a.flash), snapshot(b.flash)) == before
        assert "--replace-password" in r.stderr, r.stderr

        # a replaced board: --replace-password gives the station its new password on the gateway too
        r = run_cli("provision", "--inventory", str(inv), "--only", "CP-50", "--register-gateway", gw.url,
                    "--ocpp-password", "another-password-1", "--replace-password", env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "its password there is now the board's new one (***)" in r.stdout, r.stdout
        assert "another-password-1" not in r.stdout + r.stderr
        assert board_config(a)["ocpp"]["password"] == "another-password-1"
        assert _ocpp_handshake(gw.url, "CP-50", "another-password-1") == 101
        assert _ocpp_handshake(gw.url, "CP-50", pw50) == 401
    finally:
        gw.stop()


def _ocpp_handshake(url, sid, password):
    """The HTTP status the gateway answers a station's OCPP WebSocket handshake with."""
    import base64

    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    auth = base64.b64encode(("%s:%s" % (sid, password)).encode()).decode()
    try:
        with connect(url.replace("http://", "ws://") + "/ocpp/" + sid, subprotocols=["ocpp1.6"],
                     additional_headers={"Authorization": "Basic " + auth}, open_timeout=10):
            return 101
    except InvalidStatus as e:
        return e.response.status_code


def test_provision__unreachable_gateway_says_what_to_do(vboards, pc):
    from support.net import free_port

    b = vboards("bench", run_main=False)
    r = pc("provision", "-p", b.device, "--no-prompt", "--station-id", "CP-41", "--ocpp-url", "ws://gw/ocpp",
           "--register-gateway", "http://127.0.0.1:%d" % free_port())
    assert r.exit_code == 1, r.output
    assert "cannot reach the gateway" in r.output and "--register-gateway" in r.output, r.output
    assert "Nothing was written to any board" in r.output, r.output
    assert not (b.flash / "config.json").exists()


def test_provision__dry_run_shows_masked_config_and_writes_nothing(vboards, pc):
    b = vboards("bench", run_main=False)
    r = pc("provision", "-p", b.device, "--no-prompt", "--dry-run", "--json", "--station-id", "CP-80",
           "--mqtt-host", "h", "--mqtt-password", "mq-secret-9")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["stations"] == [{"port": b.device, "station_id": "CP-80", "written": False, "registered": False,
                                "config": {"station_id": "CP-80",
                                           "mqtt": {"host": "h", "password": "***", "enabled": True}}}], out
    assert "mq-secret-9" not in r.output
    assert not (b.flash / "config.json").exists()


def test_provision__bad_key_in_the_boards_config_suggests_fresh(vboards, pc):
    b = vboards("bench", files={"config.json": '{"station_id": "OLD-2", "mqtt": {"port": 0}}'}, run_main=False)
    r = pc("provision", "-p", b.device, "--no-prompt", "--ssid", "x")
    assert r.exit_code == 1, r.output
    assert "config key 'mqtt.port': 0 is out of range" in r.output and "--fresh starts from an empty config" in r.output, r.output
    r = pc("provision", "-p", b.device, "--no-prompt", "--fresh", "--station-id", "NEW-2")
    assert r.exit_code == 0, r.output
    assert board_config(b) == {"station_id": "NEW-2"}


def test_provision__row_pinned_to_an_absent_port_is_listed_as_not_connected(vboards, tmp_path):
    b = vboards("bench", run_main=False)
    inv = tmp_path / "fleet.csv"
    inv.write_text("station_id,ssid,port\nCP-70,depot,/dev/ttyACM-absent\nCP-71,depot,\n")
    r = run_cli("provision", "--inventory", str(inv))
    assert r.returncode == 0, r.stderr
    assert board_config(b) == {"station_id": "CP-71", "wifi": {"ssid": "depot"}}
    assert "not provisioned (no board connected for them): CP-70" in r.stdout, r.stdout
    # asked for by name, it is an error
    r = run_cli("provision", "--inventory", str(inv), "--only", "CP-70")
    assert r.returncode == 1, r.stderr
    assert ("fleet.csv, line 2 pins station CP-70 to port /dev/ttyACM-absent, which is not connected "
            "(connected: %s)" % b.device) in r.stderr, r.stderr


def test_provision__warns_when_the_board_has_no_firmware(vboards):
    bare = vboards("bare", run_main=False)
    r = run_cli("provision", "-p", bare.device, "--no-prompt", "--station-id", "CP-72")
    assert r.returncode == 0, r.stderr
    assert ("warning: no firmware on the board at %s (no /main.py): run `picocharge deploy -p %s`, or "
            "nothing on it uses this config" % (bare.device, bare.device)) in r.stderr, r.stderr
    deployed = vboards("deployed", files={"main.py": "print('hi')\n"}, run_main=False)
    r = run_cli("provision", "-p", deployed.device, "--no-prompt", "--station-id", "CP-73")
    assert r.returncode == 0 and "no firmware" not in r.stderr, r.stderr


def _certs(d):
    """tests/support/tls_certs.py's certificates for one test: a CA, another CA, server certificates."""
    return tls_certs, tls_certs.make(d)


def test_provision__ca_cert_copied_as_der_and_the_firmware_verifies_with_it(vboards, tmp_path):
    import hashlib
    import threading
    import time

    from support.fake_thingspeak import FakeThingSpeak
    from support.firmware import Station

    certs, c = _certs(tmp_path / "certs")
    der = c.ca_der.read_bytes()
    name = "ca-%s.der" % hashlib.sha256(der).hexdigest()[:8]
    ts = FakeThingSpeak(min_interval=1).start()
    ts.server.shutdown()
    ts.server.socket = certs.server_context(c.cert, c.key).wrap_socket(ts.server.socket, server_side=True)
    threading.Thread(target=ts.server.serve_forever, daemon=True).start()
    ch = ts.add_channel("TSKEY12345678")
    url = "https://127.0.0.1:%d" % ts.server.server_address[1]
    b = vboards("bench", run_main=False)
    fw = None
    try:
        # the CA as PEM on this computer: the board gets DER (MicroPython's ssl takes only DER)
        r = run_cli("provision", "-p", b.device, "--no-prompt", "--station-id", "CP-1",
                    "--thingspeak-url", url, "--thingspeak-channel", str(ch.id),
                    "--thingspeak-key", "TSKEY12345678", "--set", "web.enabled=false",
                    "--set", "thingspeak.min_interval_s=1", "--ca-cert", str(c.ca_pem))
        assert r.returncode == 0, r.stderr
        assert (b.flash / name).read_bytes() == der, sorted(p.name for p in b.flash.iterdir())
        cfg = board_config(b)
        assert [cfg.get(u, {}).get("ca_cert") for u in ("ocpp", "mqtt", "thingspeak")] == [name] * 3, cfg
        assert ("  CA commonName=PicoCharge test CA (%d bytes DER) copied to /%s, verifies ocpp, mqtt, thingspeak"
                % (len(der), name)) in r.stdout.splitlines(), r.stdout
        assert "TSKEY12345678" not in r.stdout + r.stderr, r.stdout

        # the firmware on that flash verifies ThingSpeak's certificate with it and writes
        fw = Station(b.flash).start()   # the flash as provisioned: its config.json, the CA
        fw.expect("[thingspeak] I: stored entry", timeout=30)
        assert ts.entries(ch.id), fw.output()
        assert "not verifying" not in fw.output() and "TSKEY12345678" not in fw.output(), fw.output()

        # another CA for ThingSpeak only: a file of its own, the other uplinks keep theirs
        r = run_cli("provision", "-p", b.device, "--no-prompt", "--ca-cert", str(c.wrong_der),
                    "--ca-for", "thingspeak")
        assert r.returncode == 0, r.stderr
        other = "ca-%s.der" % hashlib.sha256(c.wrong_der.read_bytes()).hexdigest()[:8]
        cfg = board_config(b)
        assert [cfg[u]["ca_cert"] for u in ("ocpp", "mqtt", "thingspeak")] == [name, name, other], cfg
        assert (b.flash / name).exists() and (b.flash / other).read_bytes() == c.wrong_der.read_bytes()
    finally:
        if fw:
            fw.stop()
        ts.stop()


@pytest.mark.parametrize("content,words", [
    (b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n",
     "is not an X.509 certificate (PEM with -----BEGIN CERTIFICATE-----, or DER)"),
    (b"hello, I am not a certificate\n", "is not an X.509 certificate"),
    (b"\x30\x82\x01\x00garbage", "is not an X.509 certificate"),
    (None, "holds 2 certificates; the board takes one"),
])
def test_provision__ca_cert_that_is_not_one_certificate_is_refused(vboards, tmp_path, content, words):
    certs, c = _certs(tmp_path / "certs")
    bad = tmp_path / "ca-file"
    bad.write_bytes(content if content is not None else c.ca_pem.read_bytes() + c.wrong_pem.read_bytes())
    b = vboards("bench", files={"config.json": '{"station_id": "OLD-1"}\n'}, run_main=False)
    before = snapshot(b.flash)
    r = run_cli("provision", "-p", b.device, "--no-prompt", "--station-id", "CP-1", "--ca-cert", str(bad))
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "--ca-cert" in r.stderr and words in r.stderr, r.stderr
    assert snapshot(b.flash) == before, "the board was written"


def test_provision__ca_cert_column_in_the_inventory(vboards, tmp_path):
    import hashlib

    _mod, c = _certs(tmp_path / "certs")
    inv = tmp_path / "fleet.csv"
    inv.write_text("station_id,ocpp-url,ca-cert\nCP-1,wss://gw.example:9000/ocpp,certs/ca.pem\n")
    b = vboards("bench", run_main=False)
    r = run_cli("provision", "--inventory", str(inv), "--no-prompt", "--ca-for", "ocpp")
    assert r.returncode == 0, r.stderr
    name = "ca-%s.der" % hashlib.sha256(c.ca_der.read_bytes()).hexdigest()[:8]
    cfg = board_config(b)
    assert cfg["ocpp"] == {"url": "wss://gw.example:9000/ocpp", "ca_cert": name} and "mqtt" not in cfg, cfg
    assert (b.flash / name).read_bytes() == c.ca_der.read_bytes()


# --- OCPP security profile 3: the station's own certificate and key ---------------------

def _station_pki(d):
    """The operator CA and certificates for CP-1 and CP-2 made with `picocharge gateway ca` (openssl),
    in d/stations as <id>.crt/.key; plus the gateway's server certificates (tests/support/tls_certs.py)."""
    for args in (["init"], ["issue", "CP-1"], ["issue", "CP-2"]):
        r = run_cli("gateway", "ca", *args, "--dir", str(d / "ca"), *(["--out", str(d / "stations")]
                                                                     if args[0] == "issue" else []))
        assert r.returncode == 0, r.stderr
    return d / "ca" / "ca.crt", d / "stations", tls_certs.make(d / "server")


def _der(path, kind):
    import subprocess
    return subprocess.run(["openssl", kind, "-in", str(path), "-outform", "DER"], capture_output=True,
                          check=True).stdout


def test_provision__client_cert_copied_as_der_and_the_firmware_signs_in_with_it(vboards, tmp_path):
    import hashlib
    import re
    import signal
    import subprocess
    import sys
    import threading
    import time

    from picocharge.unixport import start_firmware

    client_ca, stations, srv = _station_pki(tmp_path)
    db = str(tmp_path / "gw.db")
    assert run_cli("gateway", "add-station", "CP-1", "--db", db, "--password", "never-used-password").returncode == 0
    gw = subprocess.Popen([sys.executable, "-m", "picocharge.cli", "gateway", "--port", "0", "--db", db,
                           "--tls-cert", str(srv.cert), "--tls-key", str(srv.key), "--client-ca", str(client_ca),
                           "--client-cert", "required"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = vboards("bench", run_main=False)
    fw = None
    try:
        m = re.match(r"gateway listening on https://127\.0\.0\.1:(\d+)$", gw.stdout.readline().strip())
        assert m, gw.stderr.read() if gw.poll() is not None else "no port"
        url = "wss://127.0.0.1:%s/ocpp" % m.group(1)
        r = run_cli("provision", "-p", b.device, "--no-prompt", "--station-id", "CP-1", "--ocpp-url", url,
                    "--set", "web.enabled=false", "--ca-cert", str(srv.ca_pem), "--ca-for", "ocpp",
                    "--client-cert", str(stations / "CP-1.crt"), "--client-key", str(stations / "CP-1.key"))
        assert r.returncode == 0, r.stderr
        cert_der, key_der = _der(stations / "CP-1.crt", "x509"), _der(stations / "CP-1.key", "pkey")
        h = hashlib.sha256(cert_der).hexdigest()[:8]
        assert (b.flash / ("client-%s.der" % h)).read_bytes() == cert_der
        assert (b.flash / ("client-%s.key" % h)).read_bytes() == key_der
        cfg = board_config(b)
        assert (cfg["ocpp"]["client_cert"], cfg["ocpp"]["client_key"]) == (
            "client-%s.der" % h, "client-%s.key" % h), cfg
        line = [ln for ln in r.stdout.splitlines() if "client certificate" in ln]
        assert line and line[0].startswith("  client certificate CN=CP-1 (valid until ") and line[0].endswith(
            "bytes DER) copied to /client-%s.der, its key /client-%s.key: signs in over wss:// without a password "
            "(OCPP security profile 3)" % (h, h)), r.stdout
        key_pem = (stations / "CP-1.key").read_text()
        body = "".join(key_pem.splitlines()[1:-1])
        assert body[:40] not in r.stdout + r.stderr, r.stdout       # the key never printed

        # the firmware on that flash signs in with its certificate, no password: BootNotification Accepted
        fw = start_firmware(b.flash)
        out = []
        threading.Thread(target=lambda: out.extend(ln.decode() for ln in fw.stdout), daemon=True).start()
        end = time.monotonic() + 40
        while time.monotonic() < end and not any("boot accepted" in ln for ln in out):
            time.sleep(0.2)
        assert any("boot accepted" in ln for ln in out), "".join(out)
        assert not any("basic auth" in ln for ln in out), "".join(out)
    finally:
        if fw:
            fw.terminate()
            fw.wait(5)
        gw.send_signal(signal.SIGTERM)
        _out, err = gw.communicate(timeout=20)
    assert re.search(r"station=CP-1 connected from \S+ \(OCPP security profile 3: client certificate", err), err


@pytest.mark.parametrize("which,args,code,words", [
    ("cn", ["--station-id", "CP-1"], 2, "CP-2.crt is for CN=CP-2, not for station CP-1: the gateway takes a "
                                        "certificate only from the station its CN names"),
    ("mismatch", ["--station-id", "CP-1"], 2, "CP-2.key is not the key of"),
    ("notcert", ["--station-id", "CP-1"], 2, "is not an X.509 certificate (PEM or DER)"),
    ("notkey", ["--station-id", "CP-1"], 2, "is not a private key (PEM or DER, unencrypted)"),
    ("alone", ["--station-id", "CP-1"], 2, "--client-cert and --client-key go together"),
    ("ws", ["--station-id", "CP-1", "--ocpp-url", "ws://gw.example:9000/ocpp"], 1,
     "config key 'ocpp.client_cert': is presented over TLS only: ocpp.url must start with wss://; fix the OCPP "
     "URL: a client certificate needs a wss:// --ocpp-url"),
    ("noid", [], 2, "a client certificate is checked against the station id (its CN): give --station-id"),
])
def test_provision__client_cert_checked_before_anything_is_written(vboards, tmp_path, which, args, code, words):
    _ca, st, _srv = _station_pki(tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    pair = {"cn": (st / "CP-2.crt", st / "CP-2.key"), "mismatch": (st / "CP-1.crt", st / "CP-2.key"),
            "notcert": (junk, st / "CP-1.key"), "notkey": (st / "CP-1.crt", junk),
            "alone": (st / "CP-1.crt", None), "ws": (st / "CP-1.crt", st / "CP-1.key"),
            "noid": (st / "CP-1.crt", st / "CP-1.key")}[which]
    b = vboards("bench", files={"config.json": '{"ocpp": {"url": "wss://gw.example:9000/ocpp"}}\n'}, run_main=False)
    before = snapshot(b.flash)
    files = ["--client-cert", str(pair[0])] + (["--client-key", str(pair[1])] if pair[1] else [])
    for dry in ([], ["--dry-run"]):
        r = run_cli("provision", "-p", b.device, "--no-prompt", *args, *files, *dry)
        assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
        assert words in " ".join(r.stderr.split()), r.stderr
        assert snapshot(b.flash) == before, "the board was written"


def test_provision__client_certs_for_a_fleet_from_a_folder_or_inventory_columns(vboards, tmp_path):
    _ca, st, _srv = _station_pki(tmp_path)
    a, b = vboards("a-bench", run_main=False), vboards("b-bench", run_main=False)
    inv = tmp_path / "fleet.csv"
    inv.write_text("station_id,ocpp-url,port\nCP-1,wss://gw.example:9000/ocpp,%s\nCP-2,wss://gw.example:9000/ocpp,%s\n"
                   % (a.device, b.device))
    r = run_cli("provision", "--inventory", str(inv), "--no-prompt", "--client-cert-dir", str(st), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for board, sid in ((a, "CP-1"), (b, "CP-2")):
        cfg = board_config(board)
        assert (board.flash / cfg["ocpp"]["client_cert"]).read_bytes() == _der(st / (sid + ".crt"), "x509"), sid
        assert (board.flash / cfg["ocpp"]["client_key"]).read_bytes() == _der(st / (sid + ".key"), "pkey"), sid
        entry = [e for e in out["stations"] if e["station_id"] == sid][0]
        assert entry["client_cert"]["cn"] == sid and entry["client_cert"]["file"] == cfg["ocpp"]["client_cert"], entry
    assert "PRIVATE KEY" not in r.stdout

    # columns, relative to the inventory; a row whose certificate is another station's: no board is written
    before = (snapshot(a.flash), snapshot(b.flash))
    inv.write_text("station_id,ocpp-url,port,client-cert,client-key\n"
                   "CP-1,wss://gw.example:9000/ocpp,%s,stations/CP-1.crt,stations/CP-1.key\n"
                   "CP-2,wss://gw.example:9000/ocpp,%s,stations/CP-1.crt,stations/CP-1.key\n" % (a.device, b.device))
    r = run_cli("provision", "--inventory", str(inv), "--no-prompt", "--fresh")
    assert r.returncode == 2, (r.stdout, r.stderr)
    err = " ".join(r.stderr.split())
    assert "columns client-cert/client-key in fleet.csv, line 3" in err and "is for CN=CP-1, not for station CP-2" \
        in err, err
    assert (snapshot(a.flash), snapshot(b.flash)) == before, "a board was written"
    # one station's pair for the whole fleet is refused
    r = run_cli("provision", "--inventory", str(inv), "--client-cert", str(st / "CP-1.crt"), "--client-key",
                str(st / "CP-1.key"))
    assert r.returncode == 2 and "--client-cert/--client-key are one station's" in r.stderr, r.stderr
