"""The MQTT uplink: umqtt.simple's packets over an asyncio stream with timeouts, keepalive
pings that do not depend on the telemetry interval, TLS, all against a real mosquitto."""
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from support.broker import Sub
from support.dual import mp_run
from support.firmware import TLS, base_config
from support.net import free_port, wait_port



def test_mqtt__connect_packet_is_the_one_umqtt_simple_sends(mplib_dir):
    # umqtt.simple's connect() writes to a recording socket; ours must give the same bytes
    out = mp_run(r"""
import umqtt.simple as us, mqtt_connect
class Rec:
    def __init__(self): self.buf = bytearray()
    def connect(self, a): pass
    def write(self, b, n=None): self.buf += b if n is None else b[:n]
    def read(self, n): return b' \x02\x00\x00'
class Mod:
    def socket(self): Mod.last = Rec(); return Mod.last
    def getaddrinfo(self, h, p): return [(0, 0, 0, '', (h, p))]
us.socket = Mod()
cases = [(b'picocharge-CP-7', 60, (b'picocharge/CP-7/status', b'{"state":"offline"}', 1, True), None, None),
         (b'picocharge-' + b'X' * 120, 300, (b't' * 40, b'{"state":"offline"}', 1, True), b'user', b'pass'),
         (b'c', 0, None, None, None)]
for cid, ka, will, user, pw in cases:
    c = us.MQTTClient(cid, 'h', keepalive=ka, user=user, password=pw)
    if will:
        c.set_last_will(will[0], will[1], retain=will[3], qos=will[2])
    c.connect()
    print(bytes(Mod.last.buf) == bytes(mqtt_connect.connect_packet(cid, ka, will, user, pw)))
""", path=[mplib_dir])
    assert out.split() == ["True", "True", "True"], out


class SilentBroker:
    """Accepts TCP connections and never answers a byte (a hung broker, a black-holing proxy)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = []
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append((time.monotonic(), c))

    def stop(self):
        self.sock.close()
        for _, c in self.accepted:
            c.close()


def test_station__silent_broker_times_out_and_the_firmware_goes_on(station):
    broker = SilentBroker()
    try:
        st = station(base_config(mqtt={"enabled": True, "host": "127.0.0.1", "port": broker.port})).start()
        st.expect("[meter] I:")
        t0 = time.monotonic()
        gaps = []
        while time.monotonic() - t0 < 14:
            t = time.monotonic()
            st.expect("[meter] I:", timeout=5)
            gaps.append(time.monotonic() - t)
        out = st.output()
        # sampling never stalled (a blocking connect used to freeze every task here)
        assert max(gaps) < 2.0 and len(gaps) >= 10, (gaps, out)
        downs = [l for l in st.lines if l.startswith("[mqtt] W: link down")]
        assert len(downs) >= 2 and "timeout: no CONNACK within 5s" in downs[0], out
        assert all(l.split("reconnect in ")[1][:-1].replace(".", "").isdigit()
                   and "." in l.split("reconnect in ")[1] for l in downs), downs  # "reconnect in 0.7s"
        # retried with backoff: each attempt is a new TCP connection, further apart each time
        times = [t for t, _ in broker.accepted]
        assert len(times) >= 2 and times[1] - times[0] >= 5.0, times
        assert "[mqtt] I: connected" not in out and "crashed" not in out, out
    finally:
        broker.stop()


def test_station__keepalive_pings_even_with_a_long_telemetry_interval(station, mqtt_broker):
    # keepalive 2 s, telemetry every 5 s: the broker drops a client silent for 3 s (1.5 x
    # keepalive), so pings must go out on the keepalive's clock, not the telemetry's
    sub = Sub(mqtt_broker.port)
    try:
        st = station(base_config(mqtt={"enabled": True, "host": "127.0.0.1", "port": mqtt_broker.port,
                                       "keepalive_s": 2, "interval_s": 5})).start()
        st.expect("[mqtt] I: connected")
        for _ in range(13):   # 13 s of the board's own time (a sample a second)
            st.expect("[meter] I:")
        status = [m for m in sub.msgs if m[0] == "picocharge/CP-7/status"]
        tel = [m for m in sub.msgs if m[0] == "picocharge/CP-7/telemetry"]
        assert status and all("offline" not in m[1] for m in status), status
        assert 2 <= len(tel) <= 4, tel  # every 5 s, not every sample
        assert "[mqtt] W" not in st.output() and st.output().count("[mqtt] I: connected") == 1, st.output()
        # the invalid twin: killed, the station falls silent and the broker sends the will
        st.proc.kill()
        will = sub.wait(lambda m: m[0] == "picocharge/CP-7/status" and "offline" in m[1], timeout=10,
                        what="last will")
        assert will[1] == '{"state":"offline"}', will
    finally:
        sub.close()


@pytest.fixture
def tls_broker(tmp_path):
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = tmp_path / "mosquitto-tls.conf"
    # `user root`: started as root, mosquitto drops to its own user, which cannot read key.pem
    # (0600); as anyone else the line is ignored
    conf.write_text("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n"
                    "certfile %s\nkeyfile %s\n" % (port, TLS / "cert.pem", TLS / "key.pem"))
    p = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield port
    finally:
        p.terminate()
        p.wait(5)


def test_station__mqtt_over_tls(station, tls_broker):
    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tls-sub")
    c.tls_set(ca_certs=str(TLS / "cert.pem"), cert_reqs=ssl.CERT_NONE)
    c.tls_insecure_set(True)
    c.on_message = lambda cl, u, m: got.append((m.topic, m.payload.decode()))
    c.connect("127.0.0.1", tls_broker)
    c.subscribe("picocharge/#", qos=1)
    c.loop_start()
    try:
        st = station(base_config(mqtt={"enabled": True, "host": "127.0.0.1", "port": tls_broker,
                                       "ssl": True, "interval_s": 1})).start()
        st.expect("[mqtt] I: connected to 127.0.0.1:%d (TLS)" % tls_broker, timeout=20)
        want = ("picocharge/CP-7/status", {"state": "online", "status": "Charging", "relay": True})
        end = time.monotonic() + 15
        while time.monotonic() < end and want not in [(t, json.loads(p)) for t, p in got]:
            time.sleep(0.1)
        assert want in [(t, json.loads(p)) for t, p in got], (got, st.output())
        tel = [json.loads(p) for t, p in got if t == "picocharge/CP-7/telemetry"]
        assert tel and tel[-1]["voltage_v"] > 200, (got, st.output())
        # no mqtt.ca_cert: encrypted, not verified, and the station says so
        assert st.output().count("[mqtt] W: TLS without verifying the server's certificate (mqtt.ca_cert "
                                 "not set)") == 1, st.output()
    finally:
        c.loop_stop()
        c.disconnect()


def test_station__mqtt_tls_to_a_plain_listener_fails_and_retries(station, mqtt_broker):
    st = station(base_config(mqtt={"enabled": True, "host": "127.0.0.1", "port": mqtt_broker.port,
                                   "ssl": True})).start()
    line = st.expect("[mqtt] W: link down", timeout=20)
    assert "reconnect in" in line, line
    st.expect("[meter] I:")
    assert "[mqtt] I: connected" not in st.output(), st.output()


class Mosquitto:
    """A real mosquitto on 127.0.0.1:<free port> with extra config lines, logging every event
    to a file (`connected(client_id)`: whether a CONNECT from that client was accepted)."""

    def __init__(self, d, *lines):
        d.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = d / "mosquitto.log"
        conf = d / "mosquitto.conf"
        # `user root`: started as root, mosquitto drops to its own user, which cannot read
        # files in the test's folders; as anyone else the line is ignored
        conf.write_text("listener %d 127.0.0.1\npersistence false\nuser root\nlog_dest file %s\n"
                        "log_type all\n%s\n" % (self.port, self.log, "\n".join(lines)))
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def text(self):
        return self.log.read_text() if self.log.exists() else ""

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)


def _tls_sub(port, ca, got, auth=None):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tls-sub-%d" % port)
    if ca:
        c.tls_set(ca_certs=str(ca))  # the subscriber verifies the broker too
    if auth:
        c.username_pw_set(*auth)
    c.on_message = lambda cl, u, m: got.append((m.topic, m.payload.decode()))
    c.connect("127.0.0.1", port)
    c.subscribe("picocharge/#", qos=1)
    c.loop_start()
    return c


def _downs(st):
    return [l for l in st.lines if l.startswith("[mqtt] W: link down")]


def test_station__mqtt_tls_verified_with_mqtt_ca_cert_and_refused_with_another_ca(station, tmp_path):
    from support import tls_certs

    c = tls_certs.make(tmp_path / "certs")
    broker = Mosquitto(tmp_path / "broker", "allow_anonymous true",
                       "certfile %s" % c.cert, "keyfile %s" % c.key)
    got = []
    sub = _tls_sub(broker.port, c.ca_pem, got)
    try:
        made = []
        for sid, ca in (("CP-7", c.ca_der), ("CP-8", c.wrong_der)):
            cfg = base_config(mqtt={"enabled": True, "host": "127.0.0.1", "port": broker.port, "ssl": True,
                                    "ca_cert": "ca.der", "user": "cp", "password": "mqtt-Secret-77",
                                    "interval_s": 1})
            cfg["station_id"] = sid
            st = station(cfg, name=sid)
            (st.flash / "ca.der").write_bytes(ca.read_bytes())
            made.append(st.start())
        good, wrong = made
        good.expect("[mqtt] I: connected to 127.0.0.1:%d (TLS)" % broker.port, timeout=20)
        end = time.monotonic() + 15
        while time.monotonic() < end and not [t for t, p in got if t == "picocharge/CP-7/telemetry"]:
            time.sleep(0.1)
        assert [t for t, p in got if t == "picocharge/CP-7/telemetry"], (got, good.output())
        assert "not verifying" not in good.output(), good.output()

        wrong.expect("[mqtt] W: link down: server certificate refused (The certificate is not correctly "
                     "signed by the trusted CA): check mqtt.ca_cert", timeout=20)
        wrong.expect("[mqtt] W: link down: server certificate refused", timeout=20)
        waits = [float(l.split("reconnect in ")[1][:-1]) for l in _downs(wrong)]
        assert len(waits) >= 2 and "connected" not in wrong.output(), wrong.output()
        # the broker accepted CP-7's CONNECT and never saw CP-8's (nor its password)
        log = broker.text()
        assert "as picocharge-CP-7" in log and "picocharge-CP-8" not in log, log
        assert not [t for t, p in got if "CP-8" in t], got
        for st in made:
            assert "mqtt-Secret-77" not in st.output(), st.output()
    finally:
        sub.loop_stop()
        sub.disconnect()
        broker.stop()


def test_station__mqtt_login_refused_says_why_and_retries(station, tmp_path):
    # mosquitto with a password file and no anonymous access; it answers a wrong password with
    # CONNACK 5 (not authorised), as MQTT 3.1.1 lets it
    d = tmp_path / "broker"
    d.mkdir()
    pwfile = d / "passwd"
    exe = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run([exe, "-b", "-c", str(pwfile), "cp", "Right-Pass-42"], check=True,
                   capture_output=True)
    pwfile.chmod(0o644)
    broker = Mosquitto(d, "allow_anonymous false", "password_file %s" % pwfile)
    got = []
    sub = _tls_sub(broker.port, None, got, auth=("cp", "Right-Pass-42"))
    try:
        made = []
        for sid, pw in (("CP-7", "Right-Pass-42"), ("CP-8", "Wrong-Pass-13")):
            cfg = base_config(mqtt={"enabled": True, "host": "127.0.0.1", "port": broker.port, "user": "cp",
                                    "password": pw, "interval_s": 1})
            cfg["station_id"] = sid
            made.append(station(cfg, name=sid).start())
        good, bad = made
        line = bad.expect("[mqtt] W: link down: broker refused the connection (CONNACK 5", timeout=20)
        assert ("not authorised: a bad user name or password, or a user the broker does not let "
                "connect: check mqtt.user and mqtt.password") in line, line
        bad.expect("[mqtt] W: link down: refused again (CONNACK 5); reconnect in", timeout=20)
        bad.expect("[mqtt] W: link down: refused again (CONNACK 5); reconnect in", timeout=20)
        downs = _downs(bad)
        assert sum("bad user name or password" in l for l in downs) == 1, downs  # once per change
        waits = [float(l.split("reconnect in ")[1][:-1]) for l in downs]
        assert len(waits) >= 3 and max(waits[1:]) > 1.0, waits  # backing off: 1 s, 2 s, 4 s...

        good.expect("[mqtt] I: connected to 127.0.0.1:%d" % broker.port, timeout=20)
        end = time.monotonic() + 15
        while time.monotonic() < end and not [t for t, p in got if t == "picocharge/CP-7/telemetry"]:
            time.sleep(0.1)
        assert [t for t, p in got if t == "picocharge/CP-7/telemetry"], (got, good.output())
        for st in made:
            assert "Right-Pass-42" not in st.output() and "Wrong-Pass-13" not in st.output(), st.output()
    finally:
        sub.loop_stop()
        sub.disconnect()
        broker.stop()
