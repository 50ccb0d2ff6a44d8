"""gateway/mqttfast.py: the MQTT uplink's batch of QoS 1 telemetry messages, written as paho
would write each, acknowledged through a real mosquitto; and the private parts of paho-mqtt it
relies on, checked so that a paho release that changes them fails here first. The uplink's
payload (uplinks.telemetry_payload) against the text fields.telemetry_json writes."""
import asyncio
import collections
import inspect
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings, strategies as st
from ocpp.v16 import call

from picocharge.firmware import fields
from picocharge.gateway import uplinks
from picocharge.gateway.mqttfast import BatchClient
from picocharge.gateway.store import reading_row
from picocharge.procs import stop_process

from support import tls_certs
from support.broker import Subscriber
from support.net import free_port, wait_port
from support.stations import Connected, boot, meter


def _queued(c):
    """Capture what a client hands to paho's out-packet queue."""
    got = []
    c._packet_queue = lambda command, packet, mid, qos, info=None: got.append(bytes(packet)) or 0
    return got


@pytest.mark.parametrize("proto", [mqtt.MQTTv5, mqtt.MQTTv311])
@pytest.mark.parametrize("retain", [False, True])
def test_mqttfast__each_packet_is_what_paho_publish_writes(proto, retain):
    msgs = [("picocharge/CP-1/telemetry", b'{"a":1}'), ("picocharge/St\u00e9-2/telemetry", b"x" * 200),
            ("p/" + "t" * 300, b"y" * 20000), ("q", b"")]     # 1, 2 and 3-byte remaining lengths
    ours = BatchClient(mqtt.CallbackAPIVersion.VERSION2, protocol=proto)
    paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=proto)
    s = socket.socket()
    try:
        ours._sock = paho._sock = s     # "connected": nothing is written, the queues are captured
        batch, one = _queued(ours), _queued(paho)
        mids = ours.publish_batch(msgs, retain=retain)
        for (topic, payload), mid in zip(msgs, mids):
            paho._send_publish(mid, topic.encode(), payload, 1, retain, False, None, None)
    finally:
        ours._sock = paho._sock = None
        s.close()
    assert len(batch) == 1 and len(mids) == 4 and len(set(mids)) == 4, (batch, mids)
    assert batch[0] == b"".join(one), (batch[0][:80], b"".join(one)[:80])
    assert ours.batch_unacked == set(mids), ours.batch_unacked


@pytest.mark.parametrize("n", [0, 127, 128, 16383, 16384, 2097151, 2097152, 268435455])
def test_mqttfast__remaining_length_is_paho_s_encoding(n):
    from picocharge.gateway.mqttfast import _remaining_length
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    assert _remaining_length(n) == bytes(c._pack_remaining_length(bytearray(), n))


def test_mqttfast__a_packet_past_mqtt_s_limit_is_refused():
    from picocharge.gateway.mqttfast import _remaining_length
    with pytest.raises(ValueError, match="268435456 bytes"):
        _remaining_length(268435456)


def test_mqttfast__not_connected_queues_nothing():
    c = BatchClient(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    assert c.publish_batch([("t", b"p")]) is None and not c.batch_unacked


def test_mqttfast__the_private_parts_of_paho_it_uses_are_as_they_were():
    """BatchClient's docstring lists them; paho-mqtt 2.2.0 is what it was written against."""
    sig = lambda f: list(inspect.signature(f).parameters)   # noqa: E731
    assert sig(mqtt.Client._packet_queue) == ["self", "command", "packet", "mid", "qos", "info"]
    assert sig(mqtt.Client._handle_pubackcomp) == ["self", "cmd"]
    assert sig(mqtt.Client._sock_recv) == ["self", "bufsize"]
    assert sig(mqtt.Client._mid_generate) == ["self"]
    assert sig(mqtt.Client.loop_read) == ["self", "max_packets"]
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    assert c._sock is None and c._protocol == mqtt.MQTTv5
    assert {"command", "packet", "to_process"} <= set(c._in_packet), c._in_packet
    assert isinstance(c._out_packet, collections.deque)
    # the out-packet paho's writer takes: a QoS 1 PUBLISH asks nothing more of it once written
    src = inspect.getsource(mqtt.Client._packet_write)
    assert "packet['qos'] == 0" in src and "_sock_send(" in src, src
    # PUBACK and PUBCOMP go through _handle_pubackcomp with these names
    src = inspect.getsource(mqtt.Client._packet_handle)
    assert 'self._handle_pubackcomp("PUBACK")' in src, src
    # uplinks._topic reads a received topic's bytes when it is not UTF-8 (m.topic raises)
    m = mqtt.MQTTMessage(topic=b"pc/\xff/telemetry")
    with pytest.raises(UnicodeDecodeError):
        m.topic
    assert bytes(m._topic) == b"pc/\xff/telemetry"


class _AclBroker:
    """mosquitto on a free port whose ACL lets anonymous clients publish under ok/ only."""

    def __init__(self, tmp):
        self.port = free_port()
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        # mosquitto started as root reads its ACL file as the user it drops to: not from the
        # test's 0700 tmp_path
        self.dir = tempfile.mkdtemp(prefix="acl-")
        os.chmod(self.dir, 0o755)
        acl = os.path.join(self.dir, "acl")
        with open(acl, "w") as f:
            f.write("topic readwrite ok/#\n")
        os.chmod(acl, 0o644)
        conf = tmp / "mosquitto.conf"
        conf.write_text("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"
                        "acl_file %s\n"
                        % (self.port, acl))
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def test_mqttfast__a_batch_through_mosquitto_each_message_on_its_topic_each_acknowledged(tmp_path):
    broker = _AclBroker(tmp_path)
    sub = c = None
    try:
        sub = Subscriber(broker.port, "ok/#")
        c = BatchClient(mqtt.CallbackAPIVersion.VERSION2, client_id="batch-test", protocol=mqtt.MQTTv5)
        done, refused = threading.Event(), []
        c.on_batch_done = done.set
        c.on_refused = lambda mid, reason: refused.append((mid, reason))
        connected = threading.Event()
        c.on_connect = lambda cl, ud, fl, rc, pr: connected.set()
        c.connect("127.0.0.1", broker.port, 30)
        c.loop_start()      # paho's own thread: BatchClient.loop_read drains what it read ahead
        assert connected.wait(10)
        # paho's own publish works beside the batches (its PUBACK through paho's path)
        info = c.publish("ok/status", b"s", qos=1)
        info.wait_for_publish(10)
        assert info.is_published()
        # 1,500 messages on 500 topics in one batch, the last refused by the broker's ACL (mosquitto
        # 2.0 closes an MQTT 5 connection after the PUBACK of a refused QoS 1 PUBLISH: last, so
        # that nothing after it is lost with the connection)
        msgs = [("ok/CP-%03d/telemetry" % (i % 500), b'{"seq":%d}' % i) for i in range(1499)]
        msgs.append(("denied/CP-499/telemetry", b'{"seq":1499}'))
        mids = c.publish_batch(msgs, retain=False)
        assert done.wait(20), "%d of %d PUBACKs missing" % (len(c.batch_unacked), len(mids))
        assert not c.batch_unacked
        assert refused == [(mids[-1], 0x87)], refused
        # every message the ACL allows at the subscriber, once, on its own topic, in order per topic
        for t in ("ok/CP-000/telemetry", "ok/CP-498/telemetry", "ok/CP-499/telemetry"):
            want = [p for tt, p in msgs if tt == t]
            got = sub.wait(t, len(want))
            assert [p for p, _r in got] == [json.loads(p) for p in want], (t, got[:3])
        with sub.lock:
            tel = [m for m in sub.messages if m[0].endswith("/telemetry")]
            assert len(tel) == 1499 and not any(r for _t, _p, r in tel), len(tel)
    finally:
        if c is not None:
            c.loop_stop()
            c.disconnect()
        if sub is not None:
            sub.close()
        broker.stop()


async def test_mqttfast__the_gateway_over_tls_forwards_a_batch_each_reading_once(gateway, tmp_path, monkeypatch):
    """mqtts://: BatchClient reads TLS records ahead (64 KiB a recv) while the uplink also drains
    what the SSL object decrypted (sock.pending()): 300 readings in one MeterValues, forwarded in
    chunks, every PUBACK taken, every reading at a subscriber once."""
    pki = tls_certs.make(tmp_path / "pki")
    d = tempfile.mkdtemp(prefix="mqtts-")      # readable by the user mosquitto drops to
    os.chmod(d, 0o755)
    for f in (pki.cert, pki.key):
        shutil.copy(f, d)
        os.chmod(os.path.join(d, f.name), 0o644)
    plain, tls = free_port(), free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("per_listener_settings false\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"
                    "listener %d 127.0.0.1\nlistener %d 127.0.0.1\ncertfile %s/server.crt\nkeyfile %s/server.key\n"
                    % (plain, tls, d, d))
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sub = None
    try:
        wait_port(plain)
        wait_port(tls)
        sub = Subscriber(plain, "pc/#")
        monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_pem))    # the gateway verifies the broker by it
        gw = await gateway(mqtt_url="mqtts://127.0.0.1:%d/pc" % tls)
        for _ in range(200):
            if gw.mqtt.connected:
                break
            await asyncio.sleep(0.05)
        assert gw.mqtt.connected, "the gateway did not connect over TLS"
        mv = [meter("2026-01-01T%02d:%02d:%02dZ" % (10 + i // 3600, i // 60 % 60, i % 60), energy=float(i))
              for i in range(300)]
        async with Connected(gw.port, "CP-T") as cp:
            await boot(cp)
            await cp.call(call.MeterValues(connector_id=1, meter_value=mv))
        got = await asyncio.to_thread(sub.wait, "pc/CP-T/telemetry", 300)
        assert [p["energy_wh"] for p, _r in got] == [float(i) for i in range(300)], [p for p, _r in got][:3]
        for _ in range(200):
            if gw.mqtt.delivered >= 300 and not gw.mqtt._unacked:
                break
            await asyncio.sleep(0.05)
        assert gw.mqtt.delivered == 300 and gw.mqtt.refused == 0, (gw.mqtt.delivered, gw.mqtt.refused)
    finally:
        if sub is not None:
            sub.close()
        stop_process(proc)
        shutil.rmtree(d, ignore_errors=True)


_VALUE = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-2 ** 70, 2 ** 70))
_TEXT = st.one_of(st.none(), st.text(max_size=12))


@settings(max_examples=400, deadline=None)
@given(values=st.lists(_VALUE, min_size=len(fields.READING_KEYS), max_size=len(fields.READING_KEYS)),
       status=_TEXT, ts=_TEXT, seq=st.integers(0, 2 ** 63 - 1))
def test_mqttfast__the_payload_is_the_text_telemetry_json_writes(values, status, ts, seq):
    row = dict(zip(fields.READING_KEYS, values), status=status, ts=ts, id=seq, station="CP-1")
    want = fields.telemetry_json(reading_row(row))[:-1] + ',"src":"gateway"}'
    assert uplinks.telemetry_payload(row) == want
    assert uplinks.MqttUplink.payload(row) == want


def test_mqttfast__the_payload_of_a_bench_reading():
    row = dict.fromkeys(fields.READING_KEYS)
    row.update(current_a=16.0, voltage_v=230.0, power_w=3680.0, energy_wh=1234.5, temp_c=21.5, status="Charging",
               ts="2026-01-01T10:00:00Z", id=7)
    assert uplinks.telemetry_payload(row) == (
        '{"temp_c": 21.5, "current_a": 16.0, "voltage_v": 230.0, "power_w": 3680.0, "energy_wh": 1234.5, '
        '"status": "Charging", "ts": "2026-01-01T10:00:00Z", "seq": 7,"src":"gateway"}')
