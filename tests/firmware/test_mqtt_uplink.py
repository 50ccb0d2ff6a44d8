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

from fw_harness import ROOT, mp_run
from helpers import free_port, wait_port
from test_station_e2e import Sub, base_config

TLS = ROOT / "tests" / "firmware_ocpp" / "tls"


def test_mqtt__connect_packet_is_the_one_umqtt_simple_sends(mplib_dir):
    # umqtt.simple's connect() writes to a recording socket; ours must give the same bytes
    out = mp_run(r"""
import sys
sys.path.append(%r)
import umqtt.simple as us, mqtt_uplink
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
    print(bytes(Mod.last.buf) == bytes(mqtt_uplink.connect_packet(cid, ka, will, user, pw)))
""" % str(mplib_dir))
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
        time.sleep(13)
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
