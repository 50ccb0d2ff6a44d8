"""HAProxy (Debian's `haproxy`) for the tests, run with the shipped configuration: deploy/haproxy.cfg
(or deploy/haproxy-tls-passthrough.cfg) rendered with the test's addresses, started in a
temporary folder on free loopback ports, stopped by the test.

Rendering changes only what names this machine's places, never how HAProxy balances:
- the lines between the "# --- gateway servers" and "# --- end of gateway servers ---" markers
  become one `server NAME 127.0.0.1:PORT check` line per gateway process of the test;
- each `bind :PORT` becomes `bind 127.0.0.1:<free port>` (`ports` maps the shipped port to it);
- `timeouts` replaces the value of `timeout NAME` lines that are in the file, in every section
  (a test that waits out an HTTP timeout sets it short instead of waiting 30 s); a name the file
  does not have is an error, so a test cannot set a timeout the shipped file lacks.
A missing HAProxy is an error, not a skip: scripts/test.sh installs the package.
"""
import csv
import io
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from picocharge.procs import child_options, stop_process

from .net import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BEGIN = "# --- gateway servers"
END = "# --- end of gateway servers ---"


def find_haproxy():
    exe = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
    if not exe:
        raise RuntimeError("HAProxy is not installed: the deploy tests run deploy/haproxy.cfg in it. Install "
                           "Debian's package: apt-get install haproxy (scripts/test.sh does)")
    return exe


def render(text, servers, ports, timeouts=None):
    """`text` (a shipped config) with `servers` [(name, host, port)] between the markers, each
    `bind :P` as `bind 127.0.0.1:ports[P]`, and `timeouts` {name: value} replacing those lines."""
    lines = text.splitlines()
    begins = [i for i, line in enumerate(lines) if line.strip().startswith(BEGIN)]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise ValueError("the config needs one '%s ...' line and one '%s' line after it (found %d and %d)"
                         % (BEGIN, END, len(begins), len(ends)))
    indent = lines[begins[0]][:len(lines[begins[0]]) - len(lines[begins[0]].lstrip())]
    body = [indent + "server %s %s:%d check" % s for s in servers]
    lines = lines[:begins[0] + 1] + body + lines[ends[0]:]
    out, seen = [], set()
    for line in lines:
        m = re.match(r"^(\s*)bind :(\d+)\s*$", line)
        if m:
            shipped = int(m.group(2))
            if shipped not in ports:
                raise ValueError("no test port given for the config's `bind :%d`" % shipped)
            line = "%sbind 127.0.0.1:%d" % (m.group(1), ports[shipped])
        m = re.match(r"^(\s*)timeout (\S+)\s+\S+\s*$", line)
        if m and timeouts and m.group(2) in timeouts:
            seen.add(m.group(2))
            line = "%stimeout %s %s" % (m.group(1), m.group(2), timeouts[m.group(2)])
        out.append(line)
    missing = set(timeouts or ()) - seen
    if missing:
        raise ValueError("the config has no `timeout %s` line to change" % ", ".join(sorted(missing)))
    return "\n".join(out) + "\n"


def check(path):
    """`haproxy -c -f path`: (exit code, output)."""
    p = subprocess.run([find_haproxy(), "-c", "-f", str(path)], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


class HAProxy:
    """`HAProxy(tmp, [("gw1", "127.0.0.1", 9001), ...]).start()`: the shipped config rendered and
    checked with `haproxy -c` (no warning allowed), then run in the foreground as our child.
    `port` is the front (the shipped `bind :8080` or `:8443`), `stats_port` HAProxy's stats page."""

    def __init__(self, tmp, servers, config=DEPLOY / "haproxy.cfg", timeouts=None):
        self.tmp = Path(tmp)
        self.servers = list(servers)
        self.config = Path(config)
        self.timeouts = timeouts
        self.port = free_port()
        self.stats_port = free_port()
        self.proc = None
        self.path = self.tmp / ("rendered-" + self.config.name)
        self.log = self.tmp / "haproxy.log"

    def start(self):
        text = render(self.config.read_text(), self.servers,
                      {8080: self.port, 8443: self.port, 8404: self.stats_port}, self.timeouts)
        self.path.write_text(text)
        rc, out = check(self.path)
        if rc != 0 or "[WARNING]" in out or "[ALERT]" in out:
            raise RuntimeError("haproxy -c on %s rendered from %s (exit %d):\n%s" % (self.path, self.config, rc, out))
        with open(self.log, "wb") as log:
            # -db: in the foreground, our child; it logs to stdout (the config's `log stdout`)
            self.proc = subprocess.Popen([find_haproxy(), "-db", "-f", str(self.path)], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **child_options())
        try:
            wait_port(self.port)
            wait_port(self.stats_port)
        except TimeoutError:
            self.stop()
            raise RuntimeError("haproxy did not listen: %s" % self.log.read_text()[-2000:])
        return self

    def status(self):
        """{server name: status} of the gateway servers, from HAProxy's stats (UP, DOWN, ...)."""
        with urllib.request.urlopen("http://127.0.0.1:%d/stats;csv" % self.stats_port, timeout=10) as r:
            text = r.read().decode()
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        names = {s[0] for s in self.servers}
        return {r["svname"]: r["status"] for r in rows if r["svname"] in names}

    def wait_status(self, name, want, timeout=30):
        """Wait until HAProxy's health checks give server `name` the status `want` (UP, DOWN):
        HAProxy announces it nowhere a test can wait on, so its stats are read again."""
        end = time.monotonic() + timeout
        while True:
            got = self.status().get(name)
            if got is not None and got.split()[0] == want:
                return
            if time.monotonic() > end:
                raise AssertionError("HAProxy says %s is %r after %ds, not %s; its log:\n%s"
                                     % (name, got, timeout, want, self.log.read_text()[-2000:]))
            time.sleep(0.1)

    def stop(self):
        stop_process(self.proc)
        self.proc = None
