"""Test helpers shared by every test folder: free ports, waiting for a port, a real MQTT broker."""
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from picocharge.procs import stop_process


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, host="127.0.0.1"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("nothing listening on %s:%d after %.0fs" % (host, port, timeout))


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
