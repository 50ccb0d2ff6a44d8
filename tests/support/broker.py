"""A real MQTT subscriber (paho) that records what arrives, and a broker that keeps sessions
across a restart (mosquitto persistence), so a test subscriber misses nothing during an outage."""
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from helpers import Broker, wait_port


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
            from helpers import free_port
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
        self.lock = threading.Lock()
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
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = self.on(topic)
            if len(got) >= n:
                return got
            time.sleep(0.05)
        return self.on(topic)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()
