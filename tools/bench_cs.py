"""Central systems under test, as subprocesses: ours (`picocharge gateway`) and the
baseline (benchmarks/baseline_cs.py), plus what measures them from outside: a psutil
sampler (CPU%, RSS), a Prometheus `/metrics` reader, a mosquitto broker and an MQTT
subscriber that counts the telemetry the gateway forwards.

All of it binds 127.0.0.1 on free ports, and every process started here is stopped here.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil

from picocharge import paths

TARGETS = ("ours", "baseline")
_LISTEN = re.compile(r"listening on (?:http|ws)://([0-9.]+|\[[0-9a-f:]+\]|localhost):(\d+)")

# Metric names read from `GET /metrics`. The gateway's are what issue 4 asks for; the
# first name found wins, so a rename on either side is one line here.
STORED_METRICS = ("picocharge_readings_stored_total", "picocharge_meter_values_stored_total",
                  "baseline_readings_total")
CALLS_METRICS = ("picocharge_ocpp_messages_total", "picocharge_messages_total", "baseline_calls_total")
CONNECTED_METRICS = ("picocharge_stations_connected", "baseline_connected_stations")
DELIVERED_METRIC = "picocharge_uplink_delivered_total"  # label uplink="mqtt"|"thingspeak"
OUTBOX_METRIC = "picocharge_outbox_depth"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def baseline_script():
    """benchmarks/baseline_cs.py of the source checkout (it is not part of the wheel)."""
    p = paths._HERE.parent / "benchmarks" / "baseline_cs.py"
    if not p.is_file():
        raise FileNotFoundError("the baseline central system %s is missing: run the benchmark "
                                "from a source checkout of picocharge" % p)
    return p


def ours_argv(db, mqtt_url=None):
    # --api-auth none: the bench reads /metrics without a token (a token would work as well)
    argv = [sys.executable, "-m", "picocharge.cli", "gateway", "--auth", "none", "--api-auth", "none",
            "--host", "127.0.0.1", "--port", "0", "--db", str(db)]
    if mqtt_url:
        argv += ["--mqtt", mqtt_url]
    return argv


def baseline_argv():
    return [sys.executable, str(baseline_script()), "--host", "127.0.0.1", "--port", "0"]


class CentralSystem:
    """One central system process; `.ws_base` is the URL a station id is appended to."""

    def __init__(self, target, workdir, mqtt_url=None, start_timeout=30.0, db=None):
        if target not in TARGETS:
            raise ValueError("target %r: choose one of %s" % (target, ", ".join(TARGETS)))
        self.target = target
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.mqtt_url = mqtt_url
        self.db = db    # ours: a postgresql:// URL, or None for a fresh SQLite file in workdir
        self.start_timeout = start_timeout
        self.proc = None
        self.ps = None
        self.host = self.port = None
        self.log_path = self.workdir / ("%s.log" % target)

    @property
    def ws_base(self):
        path = "/ocpp/" if self.target == "ours" else "/"
        return "ws://%s:%d%s" % (self.host, self.port, path)

    @property
    def http_base(self):
        return "http://%s:%d" % (self.host, self.port)

    def start(self):
        if self.target == "ours":
            argv = ours_argv(self.db or (self.workdir / "gateway.db"), self.mqtt_url)
        else:
            argv = baseline_argv()
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd=str(self.workdir), start_new_session=True)
        try:
            self.ps = psutil.Process(self.proc.pid)
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline:
                m = _LISTEN.search(self.log_path.read_text(errors="replace"))
                if m:
                    self.host, self.port = m.group(1).strip("[]"), int(m.group(2))
                    return self
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        except BaseException:   # Ctrl-C while it starts: the caller has no handle to stop it yet
            self.stop()
            raise
        out = self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError("%s central system did not start (argv %s); its output:\n%s"
                           % (self.target, " ".join(argv), out))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self._log.close()
        self.proc = None

    def processes(self):
        """The processes whose CPU and RSS are the central system's."""
        return [self.ps]

    def metrics(self, timeout=10.0):
        """{name or name{labels}: value} from GET /metrics."""
        with urllib.request.urlopen(self.http_base + "/metrics", timeout=timeout) as r:
            return parse_prometheus(r.read().decode())

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


_GC = re.compile(r"gc: (\d+) full collections, longest pause ([0-9.]+) ms")


def gc_summary(log_path):
    """(full collections, longest pause ms) from our gateway's log line at stop, or (None, None)."""
    try:
        m = None
        for m in _GC.finditer(Path(log_path).read_text(errors="replace")):
            pass
    except OSError:
        return None, None
    return (int(m.group(1)), float(m.group(2))) if m else (None, None)


_GC_PAUSE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*gc pause ([0-9.]+) ms", re.M)


def gc_pauses(log_path):
    """[(wall time, ms)] of the pauses our gateway logged (20 ms or more; local-time stamps)."""
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return []
    out = []
    for m in _GC_PAUSE.finditer(text):
        t = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000.0
        out.append((t, float(m.group(3))))
    return out


def log_times(log_path, text):
    """[wall time] of our gateway's log lines holding `text` (local-time stamps)."""
    try:
        lines = Path(log_path).read_text(errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        if text in line:
            try:
                t = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1000.0
            except ValueError:
                continue
            out.append(t)
    return out


def parse_prometheus(text):
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.rpartition(" ")
        if not name:
            continue
        try:
            out[name.replace(" ", "")] = float(rest)
        except ValueError:
            continue
    return out


def stored_readings(metrics):
    return _first(metrics, STORED_METRICS)


def _first(metrics, names):
    for name in names:
        if name in metrics:
            return int(metrics[name])
    return None


def calls_total(metrics):
    return _first(metrics, CALLS_METRICS)


def connected_stations(metrics):
    return _first(metrics, CONNECTED_METRICS)


def gc_cpu_seconds(metrics):
    """The CPU seconds our gateway's collector took, all generations (picocharge_gc_cpu_seconds_total
    {generation=...}); None for a central system without the metric (the baseline)."""
    v = [x for k, x in metrics.items() if k.startswith("picocharge_gc_cpu_seconds_total")]
    return sum(v) if v else None


def uplink_counts(metrics, prefix):
    """{uplink label: value} for a metric family like name{uplink="mqtt"}."""
    out = {}
    for k, v in metrics.items():
        if k.startswith(prefix + "{"):
            m = re.search(r'uplink="([^"]+)"', k)
            if m:
                out[m.group(1)] = int(v)
    return out


class Sampler:
    """Samples a process's CPU and RSS every `period` s in a thread. `window()` marks the
    measurement window; figures: CPU% (100 = one core) inside it, peak RSS over the step,
    RSS at the window's end. `proc` may be a list of processes (several gateway processes):
    their CPU and RSS are summed, and a process that ended keeps the CPU it had used."""

    def __init__(self, proc, period=0.25):
        self.procs = list(proc) if isinstance(proc, (list, tuple)) else [proc]
        self._cpu_seen = {}
        self.period = period
        self.peak_rss = 0
        self.rss_samples = []
        self.cpu_samples = []   # (wall time, CPU seconds used so far): the timeline's CPU per slice
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self.idle_rss = self._rss()

    def _rss(self):
        total = 0
        for p in self.procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _cpu(self):
        for p in self.procs:
            try:
                t = p.cpu_times()
                self._cpu_seen[p.pid] = t.user + t.system
            except psutil.Error:
                pass    # ended: what it used until the last sample stays counted
        return sum(self._cpu_seen.values())

    def _run(self):
        while not self._stop.wait(self.period):
            r = self._rss()
            self.rss_samples.append((time.time(), r))
            self.cpu_samples.append((time.time(), self._cpu()))
            self.peak_rss = max(self.peak_rss, r)

    def start(self):
        self._t.start()
        return self

    def mark(self):
        return time.time(), self._cpu(), self._rss()

    def cpu_by_process(self):
        """{pid: CPU seconds used so far} (a process that ended: until it ended)."""
        self._cpu()
        return dict(self._cpu_seen)

    def stop(self):
        self._stop.set()
        self._t.join()
        self.peak_rss = max(self.peak_rss, self._rss())


class Broker:
    """mosquitto on 127.0.0.1:<free port>, no queue limit (a counting subscriber must not
    lose messages to the broker's default 1,000-message queue)."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.port = None
        self.proc = None

    def start(self):
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(exe):
            raise FileNotFoundError("mosquitto is not installed: apt-get install mosquitto "
                                    "(or run the benchmark with --no-mqtt)")
        self.port = free_port()
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "max_queued_messages 0\nmax_inflight_messages 0\n" % self.port)
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("mosquitto did not start on 127.0.0.1:%d" % self.port)

    @property
    def url(self):
        return "mqtt://127.0.0.1:%d" % self.port

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


_SEQ = re.compile(rb'"seq": ?(\d+)')


class TelemetryCounter:
    """Counts telemetry messages per station arriving at the broker (QoS 1 subscription to
    `<prefix>/+/telemetry`): the evidence that readings really reached the MQTT uplink."""

    def __init__(self, port, prefix="picocharge"):
        import paho.mqtt.client as mqtt

        self.count = 0
        self.stations = set()
        self.seqs = set()       # (station, seq): what arrived, each reading once
        self.duplicates = 0     # messages whose (station, seq) had arrived before
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="picocharge-bench")
        self.topic = "%s/+/telemetry" % prefix
        self._ready = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._ready.wait(10):
            self.stop()
            raise RuntimeError("could not subscribe to %s on 127.0.0.1:%d" % (self.topic, port))

    def _on_connect(self, client, userdata, flags, reason, props):
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client, userdata, msg):
        if msg.retain:
            # a copy of a station's last message the broker keeps (a cluster publishes telemetry
            # retained), handed over on a (re)subscribe: not a delivery
            return
        station = msg.topic.split("/")[-2]
        m = _SEQ.search(msg.payload)
        with self._lock:
            self.count += 1
            self.stations.add(station)
            if m:
                key = (station, int(m.group(1)))
                if key in self.seqs:
                    self.duplicates += 1
                else:
                    self.seqs.add(key)

    @property
    def distinct(self):
        return len(self.seqs)

    def reset(self):
        with self._lock:
            self.count = 0
            self.duplicates = 0
            self.stations.clear()
            self.seqs.clear()

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()
