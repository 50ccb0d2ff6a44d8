"""Real MQTT brokers and subscribers for the tests: a broker on 127.0.0.1:<free port>
(mosquitto, else amqtt), one that keeps sessions across a restart (mosquitto persistence), so
a test subscriber misses nothing during an outage, and two paho subscribers that record what
arrives."""
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from picocharge.procs import stop_process

from .net import free_port, wait_port


class Broker:
    """A real MQTT broker on 127.0.0.1:<free port>: mosquitto, else amqtt."""

    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.port = None
        self.proc = None
        self.kind = None

    def start(self):
        if self.port is None:
            self.port = free_port()
        exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
        if exe:
            conf = self.tmp / "mosquitto.conf"
            conf.write_text("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n" % self.port)
            self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            self.kind = "mosquitto"
        else:
            amqtt = shutil.which("amqtt")
            if not amqtt:
                raise RuntimeError("no MQTT broker: apt-get install mosquitto (or pip install amqtt)")
            conf = self.tmp / "amqtt.yaml"
            conf.write_text("listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:%d\n"
                            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
                            "    allow_anonymous: true\n" % self.port)
            self.proc = subprocess.Popen([amqtt, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            self.kind = "amqtt"
        wait_port(self.port)
        return self

    def stop(self):
        stop_process(self.proc)
        self.proc = None


def _parse(p):
    try:
        return json.loads(p)
    except ValueError:
        return p


class PersistentBroker(Broker):
    """mosquitto with persistence in the test's tmp dir (sessions and queued QoS 1 survive a restart)."""

    def start(self):
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if self.port is None:
            self.port = free_port()
        d = Path(self.tmp) / "mosq"
        d.mkdir(exist_ok=True)
        conf = d / "mosquitto.conf"
        conf.write_text("listener %d 127.0.0.1\nallow_anonymous true\npersistence true\n"
                        "persistence_location %s/\n" % (self.port, d))
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.kind = "mosquitto"
        wait_port(self.port)
        return self


class Subscriber:
    def __init__(self, port, topic, client_id="test-sub", clean=True):
        self.messages = []      # (topic, payload bytes, retain)
        self.lock = threading.Condition()   # notified on each message
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        self.c.reconnect_delay_set(0.05, 0.2)
        self.ready = threading.Event()

        def on_connect(c, u, f, rc, p):
            c.subscribe(topic, qos=1)

        def on_subscribe(c, u, mid, rcs, p):
            self.ready.set()

        def on_message(c, u, m):
            with self.lock:
                self.messages.append((m.topic, m.payload, bool(m.retain)))
                self.lock.notify_all()

        self.c.on_connect = on_connect
        self.c.on_subscribe = on_subscribe
        self.c.on_message = on_message
        self.c.connect("127.0.0.1", port, keepalive=5)
        self.c.loop_start()
        if not self.ready.wait(10):
            raise TimeoutError("subscriber did not subscribe")

    def on(self, topic):
        with self.lock:
            return [(_parse(p), r) for t, p, r in self.messages if t == topic]

    def wait(self, topic, n, timeout=20):
        """The messages on `topic` once there are `n` of them (all there are after `timeout`)."""
        end = time.monotonic() + timeout
        with self.lock:
            while True:
                got = self.on(topic)
                left = end - time.monotonic()
                if len(got) >= n or left <= 0:
                    return got
                self.lock.wait(left)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


class Sub:
    """A paho subscriber collecting (topic, payload, retain) on the test broker."""

    def __init__(self, port, topic="picocharge/#"):
        self.msgs = []
        self._cond = threading.Condition()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-sub")
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(topic, qos=1)
        self.c.loop_start()

    def _on_message(self, c, u, m):
        with self._cond:
            self.msgs.append((m.topic, m.payload.decode(), m.retain))
            self._cond.notify_all()

    def wait(self, pred, timeout=15, what="message"):
        """The first message for which pred(message) holds, waiting for it to arrive."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in list(self.msgs):
                    if pred(m):
                        return m
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        raise AssertionError("no %s within %ds; got %r" % (what, timeout, self.msgs[-10:]))

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()
