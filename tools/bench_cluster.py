"""`picocharge bench --db postgresql --gw-procs N`: several gateway processes on one PostgreSQL
database, behind HAProxy (issue 15).

- `PostgresServer`: a throwaway PostgreSQL server from Debian's binaries (initdb + postgres,
  /usr/lib/postgresql/<version>/bin), on 127.0.0.1 and a free port, password authentication,
  started for a bench run and removed after it; or `PostgresServer(url=...)`, a server the
  operator gives (the bench then needs to be allowed CREATE DATABASE on it). Every step gets a
  fresh database, dropped once the step is counted.
- `HAProxy`: deploy/haproxy.cfg with one `server` line per gateway process between its markers
  and its `bind` lines on free loopback ports: the shipped balancing (leastconn, /healthz
  checks, redispatch, shutdown-sessions), as on several hosts.
- `GatewayCluster`: N `picocharge gateway` processes (bench_cs.CentralSystem, each on its own
  port, its own log) on one database, HAProxy in front. The stations connect to HAProxy; the
  bench reads every process's own /metrics on its own port and sums them (`metrics()`), samples
  every process's CPU and RSS, and counts what is stored in the database itself (`stored()`),
  which stays right when a process was killed and its counters went with it.

Why processes behind HAProxy rather than `picocharge gateway --workers N`: the workers share one
port (SO_REUSEPORT), so the bench could not reach each worker's /metrics, and a kill would be
seen through the kernel rather than through the load balancer a multi-host deployment has. The
balancer's CPU is measured and reported on its own (`lb_cpu_percent`).

- `CommandProbe` (`--kill-at`): a GetConfiguration through HAProxy's API to a sample of stations
  every second of the window, across the kill: per second how many were answered by the station
  asked, how many failed (and how), how many answers were wrong (another station's, or not the
  bench station's), and how long after the kill the killed process's stations answer again.

The throwaway server is pgserver.ThrowawayPostgres (as the test suite's): in a folder of the
system's temporary directory (as root it runs as the `postgres` user, who may not reach the
bench's workdir); its log is copied into the workdir at the end.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil

from picocharge import bench_cs, paths
from picocharge.firmware import fields
from picocharge.pgserver import ThrowawayPostgres
from picocharge.procs import child_options, stop_process

_ENERGY = fields.READINGS[fields.ENERGY][fields.KEY]   # the energy register's column
BEGIN = "# --- gateway servers"
# an HAProxy httplog line's status and termination state: `... 0/0/0/-1/46 502 209 - - SH-- 33/...`
_HTTPLOG = re.compile(r"\] \S+ \S+ \S+ (\d{3}) \S+ \S+ \S+ (\S{4}) ")
END = "# --- end of gateway servers ---"


class PostgresServer:
    """A PostgreSQL server for one bench run: a throwaway one started here (`url=None`,
    pgserver.ThrowawayPostgres) or one given."""

    SETTINGS = dict(ThrowawayPostgres.SETTINGS, shared_buffers="128MB")   # the gateway's bench, not the disk's

    def __init__(self, workdir, url=None):
        self.workdir = Path(workdir)
        self.given = url
        self.server = None
        self._n = 0

    @property
    def proc(self):
        return self.server.proc if self.server else None

    def start(self):
        if self.given:
            self._admin().close()
            return self
        self.server = ThrowawayPostgres(
            prefix="picocharge-bench-pg-", settings=self.SETTINGS,
            missing="--db postgresql starts a throwaway PostgreSQL server, and PostgreSQL is not installed "
                    "(no /usr/lib/postgresql/*/bin/initdb): apt-get install postgresql, or give "
                    "--db postgresql://USER:PASSWORD@HOST:PORT/DB of a server you have").start()
        return self

    def url(self, dbname=None):
        """The URL of database `dbname` on the server (None: the one to administer it from)."""
        if self.given:
            return self.given if dbname is None else urlunsplit(urlsplit(self.given)._replace(path="/" + dbname))
        return self.server.url(dbname or "postgres")

    def _admin(self):
        import psycopg

        try:
            return psycopg.connect(self.url(), autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as e:
            raise RuntimeError("cannot connect to the PostgreSQL server of --db: %s" % redact(str(e)))

    def create_database(self, label):
        """A new empty database for one step; its URL."""
        self._n += 1
        name = "bench_%d_%d_%s" % (os.getpid(), self._n, re.sub(r"[^a-z0-9_]", "_", label.lower()))[:60]
        with self._admin() as c:
            c.execute("CREATE DATABASE %s" % name)
        return self.url(name)

    def drop_database(self, url):
        name = url.rsplit("/", 1)[1].split("?", 1)[0]
        with self._admin() as c:
            c.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)

    def processes(self):
        """The server's processes (postmaster and backends) for CPU sampling; [] for a given server."""
        if self.proc is None:
            return []
        try:
            p = psutil.Process(self.proc.pid)
            return [p] + p.children(recursive=True)
        except psutil.Error:
            return []

    def stop(self):
        if self.server is not None:
            self.server.stop(keep_log=self.workdir / "postgres.log")
            self.server = None


def redact(text):
    """`text` with the password of any postgresql:// URL in it replaced."""
    return re.sub(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


def haproxy_config():
    """deploy/haproxy.cfg of the source checkout (the bench runs the shipped balancing)."""
    p = paths._HERE.parent / "deploy" / "haproxy.cfg"
    if not p.is_file():
        raise FileNotFoundError("%s is missing: run the benchmark from a source checkout of picocharge" % p)
    return p


def render_haproxy(text, servers, ports, maxconn, socket=None):
    """The shipped config with `servers` [(name, host, port)] between the markers, `bind :P` as
    `bind 127.0.0.1:ports[P]`, a `maxconn` in `global` sized for the run, and (`socket`) a stats
    socket the bench asks `show info` / `show stat` on."""
    lines = text.splitlines()
    b = [i for i, line in enumerate(lines) if line.strip().startswith(BEGIN)]
    e = [i for i, line in enumerate(lines) if line.strip() == END]
    if len(b) != 1 or len(e) != 1 or e[0] < b[0]:
        raise ValueError("deploy/haproxy.cfg needs one '%s ...' line and one '%s' line after it" % (BEGIN, END))
    indent = lines[b[0]][:len(lines[b[0]]) - len(lines[b[0]].lstrip())]
    lines = lines[:b[0] + 1] + [indent + "server %s %s:%d check" % s for s in servers] + lines[e[0]:]
    out = []
    for line in lines:
        m = re.match(r"^(\s*)bind :(\d+)\s*$", line)
        if m:
            line = "%sbind 127.0.0.1:%d" % (m.group(1), ports[int(m.group(2))])
        out.append(line)
        if line.strip() == "global":
            out.append("    maxconn %d" % maxconn)
            if socket:
                out.append("    stats socket %s mode 600 level user" % socket)
    return "\n".join(out) + "\n"


class HAProxy:
    def __init__(self, workdir, servers, maxconn):
        self.workdir = Path(workdir)
        self.servers = servers
        self.maxconn = maxconn
        self.port = bench_cs.free_port()
        self.stats_port = bench_cs.free_port()
        self.proc = None
        self.ps = None
        self.log_path = self.workdir / "haproxy.log"
        self.workdir.mkdir(parents=True, exist_ok=True)
        # (a short path: a unix socket's is at most 107 bytes, a test's workdir can be longer)
        self.socket = os.path.join(tempfile.gettempdir(), "picocharge-haproxy-%d-%d.sock" % (os.getpid(), self.port))
        self.info = []          # (time, `show info` fields the report keeps), every INFO_EVERY s
        self.final = None       # what stop() read last: `show info` and the frontend's `show stat` row
        self._sampling = None

    def start(self):
        exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.path.exists(exe):
            raise FileNotFoundError("--gw-procs runs the gateway processes behind HAProxy (deploy/haproxy.cfg), and "
                                    "it is not installed: apt-get install haproxy")
        self._raise_nofile()
        conf = self.workdir / "haproxy.cfg"
        conf.write_text(render_haproxy(haproxy_config().read_text(), self.servers,
                                       {8080: self.port, 8404: self.stats_port}, self.maxconn, self.socket))
        chk = subprocess.run([exe, "-c", "-f", str(conf)], capture_output=True, text=True, timeout=60)
        if chk.returncode != 0:
            raise RuntimeError("haproxy -c on %s (rendered from deploy/haproxy.cfg), exit %d:\n%s"
                               % (conf, chk.returncode, chk.stdout + chk.stderr))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([exe, "-db", "-f", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, **child_options())
        self.ps = psutil.Process(self.proc.pid)
        self._sampling = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    INFO_EVERY = 2.0
    INFO_KEPT = ("Idle_pct", "CurrConns", "ConnRate", "SessRate", "CumReq", "Run_queue", "Tasks")

    def show(self, command):
        """HAProxy's answer to a stats socket command (`show info`, `show stat`)."""
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as so:
            so.settimeout(5)
            so.connect(self.socket)
            so.sendall(command.encode() + b"\n")
            out = b""
            while True:
                b = so.recv(65536)
                if not b:
                    return out.decode(errors="replace")
                out += b

    def _show_info(self):
        return dict(ln.split(": ", 1) for ln in self.show("show info").splitlines() if ": " in ln)

    def _sample(self):
        stop = self._sampling
        while not stop.wait(self.INFO_EVERY):
            try:
                info = self._show_info()
            except OSError:
                continue
            self.info.append((time.time(), {k: info.get(k) for k in self.INFO_KEPT}))

    def _read_final(self):
        import csv
        import io

        info = self.show("show info")
        stat = self.show("show stat")
        (self.workdir / "show-info.txt").write_text(info)
        (self.workdir / "show-stat.csv").write_text(stat)
        rows = list(csv.DictReader(io.StringIO(stat.lstrip("# "))))
        fe = next((r for r in rows if r["pxname"] == "picocharge" and r["svname"] == "FRONTEND"), {})
        keep = ("req_tot", "ereq", "dreq", "hrsp_2xx", "hrsp_4xx", "hrsp_5xx", "scur", "smax", "slim", "stot",
                "rate_max", "conn_tot")
        self.final = {"info": {k: v for k, v in (ln.split(": ", 1) for ln in info.splitlines() if ": " in ln)
                               if k in self.INFO_KEPT + ("Maxconn", "Hard_maxconn", "MaxConnRate", "MaxSessRate")},
                      "frontend": {k: fe.get(k) for k in keep}}

    def log_summary(self):
        """The frontend's answers in HAProxy's log (option httplog): {"status": {code: n},
        "termination": {state: n}} (the state of the answers that were not 101 or 2xx: who ended the
        request and in which phase, e.g. cR-- a client that did not send its request in time)."""
        status, term = {}, {}
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return None
        for m in _HTTPLOG.finditer(text):
            code, state = m.group(1), m.group(2)
            status[code] = status.get(code, 0) + 1
            if not (code == "101" or code.startswith("2")):
                term[state] = term.get(state, 0) + 1
        return {"status": status, "termination": term}

    def _raise_nofile(self):
        """HAProxy needs two files per connection and refuses to start below what its maxconn needs;
        it inherits our limit, which we raise (as root, past the hard limit too)."""
        import resource

        need = 2 * self.maxconn + 128
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft >= need:
            return
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
        except (ValueError, OSError):
            raise RuntimeError("HAProxy needs about %d open files for %d stations and the limit here is %d (hard %d): "
                               "raise it (ulimit -n %d, as root) or use smaller --steps"
                               % (need, self.maxconn - 1000, soft, hard, need))

    def status(self):
        """{server name: UP/DOWN/...} from HAProxy's stats page."""
        import csv
        import io
        import urllib.request

        with urllib.request.urlopen("http://127.0.0.1:%d/stats;csv" % self.stats_port, timeout=10) as r:
            text = r.read().decode()
        return {r["svname"]: r["status"] for r in csv.DictReader(io.StringIO(text.lstrip("# ")))
                if r["svname"] not in ("FRONTEND", "BACKEND") and r["pxname"] == "gateways"}

    def wait_up(self, timeout=30.0):
        end = time.monotonic() + timeout
        st = {}
        while time.monotonic() < end:
            try:
                st = self.status()
                if st and all(v == "UP" for v in st.values()):
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError("HAProxy did not mark every gateway UP within %.0f s (%s); its log: %s"
                           % (timeout, st, self.log_path.read_text(errors="replace")[-1500:]))

    def stop(self):
        if self._sampling is not None:
            self._sampling.set()
        if self.proc is not None and self.proc.poll() is None:
            try:
                self._read_final()
            except (OSError, ValueError) as e:
                self.final = {"error": str(e)}
        stop_process(self.proc)
        self.proc = None

    def report(self):
        """What the step's load did to this HAProxy: its answers and how requests ended (its log),
        `show info` sampled through the step (Idle_pct: the share of time its thread waited for
        work), and the frontend's counters at the end."""
        idle = [float(i["Idle_pct"]) for _t, i in self.info if i.get("Idle_pct") not in (None, "")]
        return {"log": self.log_summary(), "final": self.final, "idle_pct_min": min(idle) if idle else None,
                "info": [dict(i, t=round(t, 1)) for t, i in self.info]}


class GatewayCluster:
    """`procs` gateway processes on the database `db_url`, HAProxy in front. The interface of
    bench_cs.CentralSystem that bench_run uses: ws_base, metrics(), processes(), log_path, stop()."""

    def __init__(self, workdir, db_url, procs, mqtt_url=None, stations=1000):
        self.workdir = Path(workdir)
        self.db_url = db_url
        self.gws = [bench_cs.CentralSystem("ours", self.workdir / ("gw%d" % (k + 1)), mqtt_url=mqtt_url, db=db_url)
                    for k in range(procs)]
        self.lbs = []
        # HAProxy holds two files per station (its side and the gateway's) and will not start
        # when its maxconn needs more than its open-files limit: past that, several HAProxy
        # processes share the stations (as several balancers behind one DNS name would)
        import resource

        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        per = max(1, (limit - 128) // 2 - 64)
        self.balancers = -(-stations // per)
        self.maxconn = -(-stations // self.balancers) + 64
        self.killed = []   # indices of the processes killed (kill())
        self.target = "ours"

    @property
    def log_path(self):
        return self.gws[0].log_path

    @property
    def log_paths(self):
        return [g.log_path for g in self.gws]

    @property
    def api_base(self):
        """The API through the (first) load balancer."""
        return "http://127.0.0.1:%d" % self.lbs[0].port

    @property
    def ws_base(self):
        return self.ws_bases[0]

    @property
    def ws_bases(self):
        """One URL per HAProxy; station i uses ws_bases[i % len]."""
        return ["ws://127.0.0.1:%d/ocpp/" % lb.port for lb in self.lbs]

    def start(self):
        try:
            self.gws[0].start()     # alone first: it applies the migrations
            for g in self.gws[1:]:
                g.start()
            servers = [("gw%d" % (k + 1), g.host, g.port) for k, g in enumerate(self.gws)]
            for b in range(self.balancers):
                self.lbs.append(HAProxy(self.workdir / ("haproxy%d" % (b + 1)), servers, self.maxconn).start())
            for lb in self.lbs:
                lb.wait_up()
        except BaseException:
            self.stop()
            raise
        return self

    def live(self):
        return [g for k, g in enumerate(self.gws) if k not in self.killed]

    def processes(self):
        return [g.ps for g in self.gws]

    def metrics(self, timeout=10.0):
        """Every live process's /metrics summed, name by name (counters and gauges alike: each
        process counts what went through it)."""
        total = {}
        for g in self.live():
            for k, v in g.metrics(timeout).items():
                total[k] = total.get(k, 0.0) + v
        return total

    def holder(self, lease="mqtt"):
        """The index of the live process holding `lease` (from its /healthz), or None."""
        import json
        import urllib.request

        for k, g in enumerate(self.gws):
            if k in self.killed:
                continue
            try:
                with urllib.request.urlopen(g.http_base + "/healthz", timeout=5) as r:
                    if lease in json.loads(r.read()).get("cluster", {}).get("leases", []):
                        return k
            except (OSError, ValueError):
                continue
        return None

    def kill(self, k):
        """SIGKILL process k (its process group: nothing of it says goodbye); returns time.time()."""
        g = self.gws[k]
        t = time.time()
        os.killpg(g.proc.pid, signal.SIGKILL)
        g.proc.wait(10)
        self.killed.append(k)
        return t

    def node_of(self, k):
        """The cluster's name of process k (its /healthz), or None."""
        try:
            with urllib.request.urlopen(self.gws[k].http_base + "/healthz", timeout=5) as r:
                return json.loads(r.read()).get("cluster", {}).get("process")
        except (OSError, ValueError):
            return None

    def stations_on(self, k):
        """The stations connected to process k (cluster_sessions), an empty set if unknown."""
        import psycopg

        node = self.node_of(k)
        if node is None:
            return set()
        with psycopg.connect(self.db_url, connect_timeout=10) as c:
            return {r[0] for r in c.execute("SELECT station FROM cluster_sessions WHERE node = %s", (node,))}

    def stored_count(self, stations_prefix="BENCH-"):
        import psycopg

        with psycopg.connect(self.db_url, connect_timeout=10) as c:
            return c.execute("SELECT count(*) FROM readings WHERE station LIKE %s",
                             (stations_prefix + "%",)).fetchone()[0]

    def stored(self, stations_prefix="BENCH-"):
        """Readings stored, counted in the database: {"count": n, "by_station": {station: set of its
        energy register values}}."""
        import psycopg

        by = {}
        n = 0
        with psycopg.connect(self.db_url, connect_timeout=10) as c:
            for station, wh in c.execute("SELECT station, %s FROM readings WHERE station LIKE %%s" % _ENERGY,
                                         (stations_prefix + "%",)):
                by.setdefault(station, set()).add(wh)
                n += 1
        return {"count": n, "by_station": by}

    def lb_report(self):
        """HAProxy.report() of each balancer (after stop(): its final counters are read then)."""
        return [lb.report() for lb in self.lbs]

    def stop(self):
        for lb in self.lbs:
            lb.stop()
        for g in self.gws:
            g.stop()


def probe_sample(n, k=20):
    """The bench station ids the command probe asks: k of the n, spread over them (the bench
    stations are numbered 1..n: bench_load.station_id)."""
    from picocharge.bench_load import station_id

    k = min(k, n)
    return [station_id(1 + i * n // k) for i in range(k)]


class CommandProbe:
    """`--kill-at`: a command (GetConfiguration, key "Identity") sent through the load balancer's
    API to each of `stations` once every `period` s from start() to stop(), one at a time per
    station (a command still waiting skips its station's next seconds). A bench station answers
    with its own id (bench_load.Station.answer): an answer is right when it is that station's,
    wrong when it is anything else. `report(t_kill, victims)` sums it up per second from the kill."""

    def __init__(self, api_base, stations, period=1.0, timeout=40.0):
        self.api_base = api_base.rstrip("/")
        self.stations = list(stations)
        self.period = period
        self.timeout = timeout     # the gateway's response timeout (30 s) + its cross-process wait (5 s)
        # (second it was sent for, station, outcome: "ok" | "wrong" | "<HTTP status>" | "error", seconds to the answer)
        self.sent = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = []

    def start(self):
        t0 = time.time()
        for sid in self.stations:
            t = threading.Thread(target=self._run, args=(sid, t0), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)

    def ask(self, sid):
        """One command to station sid: its outcome."""
        req = urllib.request.Request("%s/api/stations/%s/get-configuration" % (self.api_base, sid),
                                     data=json.dumps({"key": ["Identity"]}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                out = json.loads(r.read())
        except urllib.error.HTTPError as e:
            return str(e.code)
        except (OSError, ValueError):
            return "error"
        keys = out.get("configurationKey") if isinstance(out, dict) else None
        return "ok" if keys == [{"key": "Identity", "readonly": True, "value": sid}] else "wrong"

    def _run(self, sid, t0):
        tick = t0
        while not self._stop.is_set():
            now = time.time()
            if tick > now:
                if self._stop.wait(tick - now):
                    return
            t = time.time()
            outcome = self.ask(sid)
            with self._lock:
                self.sent.append((tick, sid, outcome, time.time() - t))
            tick += self.period * max(1, int((time.time() - tick) // self.period) + 1)

    def report(self, t_kill, victims):
        """Per second from the kill (negative: before it): sent, ok, failed, wrong; and for the
        sampled stations that were on the killed process (`victims`), the time from the kill until
        each had a command sent after the kill answered right (the last of them: `back_s`)."""
        with self._lock:
            sent = sorted(self.sent)
        per = {}
        fails = {}
        slow = []
        for t, sid, outcome, took in sent:
            sec = int((t - t_kill) // 1)
            row = per.setdefault(sec, {"s": sec, "sent": 0, "ok": 0, "failed": 0, "wrong": 0, "slowest_s": 0.0})
            row["sent"] += 1
            row["slowest_s"] = round(max(row["slowest_s"], took), 3)
            slow.append(took)
            if outcome == "ok":
                row["ok"] += 1
            elif outcome == "wrong":
                row["wrong"] += 1
            else:
                row["failed"] += 1
                fails[outcome] = fails.get(outcome, 0) + 1
        victims = set(victims) & set(self.stations)
        first_ok = {}
        for t, sid, outcome, _took in sent:
            if sid in victims and t >= t_kill and outcome == "ok" and sid not in first_ok:
                first_ok[sid] = t - t_kill
        not_back = sorted(victims - set(first_ok))
        return {"command": "GetConfiguration", "period_s": self.period, "stations": len(self.stations),
                "on_killed_process": len(victims),
                "sent": len(sent), "ok": sum(r["ok"] for r in per.values()),
                "failed": sum(r["failed"] for r in per.values()), "wrong": sum(r["wrong"] for r in per.values()),
                "failures": fails, "slowest_s": round(max(slow), 3) if slow else None,
                "per_second": [per[k] for k in sorted(per)],
                "back_s": max(first_ok.values()) if first_ok and not not_back else None,
                "not_back": not_back}
