"""Load balancers for the tests, each run with the configuration deploy/ ships, and the gateways
to put behind them.

HAProxy (Debian's `haproxy`): deploy/haproxy.cfg or deploy/haproxy-tls-passthrough.cfg rendered
for this machine, started in a temporary folder on free loopback ports, stopped by the test.
Rendering changes addresses and ports (and timeouts when a test asks), never how HAProxy
balances or checks:
- the lines between the "# --- gateway servers" and "# --- end of gateway servers ---" markers
  become one `server NAME 127.0.0.1:PORT check` line per gateway process of the test;
- or, for the compose setup, the shipped server-template stays and finds the gateways by DNS:
  its nameserver becomes the test's DnsServer, and `gateway:9000` the gateways' test port;
- each `bind :PORT` becomes `bind 127.0.0.1:<free port>` (`ports` maps the shipped port to it);
- `timeouts` replaces the value of `timeout NAME` lines that are in the file, in every section
  (a test that waits out an HTTP timeout sets it short instead of waiting 30 s); a name the file
  does not have is an error, so a test cannot set a timeout the shipped file lacks.

nginx (Debian's): deploy/nginx.conf rendered the same way (the upstream's server lines between
the same markers, `listen 8080;` on a free loopback port).

The gateways: real `picocharge gateway` processes, each on its own SQLite file, with the same
station SID registered on each (password PW), and a charge point built on the `ocpp` package.

A missing HAProxy or nginx is an error, not a skip: scripts/test.sh installs the packages.
"""
import asyncio
import csv
import io
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import dnslib
import dnslib.server
import websockets
from ocpp.v16 import call

from picocharge.cmd_demo import GatewayProcess
from picocharge.procs import child_options, stop_process

from .gwhttp import TEST_TOKEN, basic, http
from .net import free_port, wait_port
from .stations import TestStation as OcppStation, boot, meter

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


def render(text, servers, ports, timeouts=None, dns=None):
    """`text` (a shipped config) with `servers` [(name, host, port)] between the markers, each
    `bind :P` as `bind 127.0.0.1:ports[P]`, and `timeouts` {name: value} replacing those lines.
    With `servers` None the shipped lines between the markers stay (the compose setup: gateways
    found by DNS), their `gateway:9000` becoming `gateway:<dns[1]>`, and the resolvers' nameserver
    `127.0.0.1:<dns[0]>` (a DnsServer)."""
    lines = text.splitlines()
    begins = [i for i, line in enumerate(lines) if line.strip().startswith(BEGIN)]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise ValueError("the config needs one '%s ...' line and one '%s' line after it (found %d and %d)"
                         % (BEGIN, END, len(begins), len(ends)))
    indent = lines[begins[0]][:len(lines[begins[0]]) - len(lines[begins[0]].lstrip())]
    if servers is not None:
        body = [indent + "server %s %s:%d check" % s for s in servers]
    else:
        body = [line.replace(" gateway:9000 ", " gateway:%d " % dns[1]) for line in lines[begins[0] + 1:ends[0]]]
        if not any(" gateway:%d " % dns[1] in line for line in body):
            raise ValueError("no `gateway:9000` between the markers to find by DNS")
    lines = lines[:begins[0] + 1] + body + lines[ends[0]:]
    if dns is not None:
        named = [i for i, line in enumerate(lines) if re.match(r"\s*nameserver \S+ 127\.0\.0\.11:53\s*$", line)]
        if len(named) != 1:
            raise ValueError("the config needs one `nameserver NAME 127.0.0.11:53` line (Docker's DNS)")
        lines[named[0]] = re.sub(r"127\.0\.0\.11:53", "127.0.0.1:%d" % dns[0], lines[named[0]])
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

    def __init__(self, tmp, servers, config=DEPLOY / "haproxy.cfg", timeouts=None, dns=None):
        self.tmp = Path(tmp)
        self.servers = None if servers is None else list(servers)
        self.config = Path(config)
        self.timeouts = timeouts
        self.dns = dns      # with servers None: (DNS server port, the gateways' port)
        self.port = free_port()
        self.stats_port = free_port()
        self.proc = None
        self.path = self.tmp / ("rendered-" + self.config.name)
        self.log = self.tmp / "haproxy.log"

    def start(self):
        text = render(self.config.read_text(), self.servers,
                      {8080: self.port, 8443: self.port, 8404: self.stats_port}, self.timeouts, self.dns)
        self.path.write_text(text)
        rc, out = check(self.path)
        # found by DNS, the gateways are not known when HAProxy starts: that warning alone is expected
        bad = [line for line in out.splitlines() if ("[WARNING]" in line or "[ALERT]" in line) and not (
            self.servers is None and "could not resolve address 'gateway'" in line)]
        if rc != 0 or bad:
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

    def stats(self):
        """HAProxy's stats of the gateway servers: {server name: its CSV row} (status: UP, DOWN,
        MAINT...; addr: the address it has)."""
        with urllib.request.urlopen("http://127.0.0.1:%d/stats;csv" % self.stats_port, timeout=10) as r:
            text = r.read().decode()
        return {r["svname"]: r for r in csv.DictReader(io.StringIO(text.lstrip("# ")))
                if r["svname"] not in ("FRONTEND", "BACKEND") and r["pxname"] != "stats"}

    def status(self):
        """{server name: status} of the gateway servers, from HAProxy's stats (UP, DOWN, ...)."""
        return {name: r["status"] for name, r in self.stats().items()}

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


class DnsServer:
    """A DNS server on 127.0.0.1:<free port> (UDP; dnslib's) that answers A records for the name
    `gateway` with `addresses`, which a test changes as a compose scale would: Docker's DNS for
    the rendered deploy/haproxy.cfg."""

    def __init__(self, addresses):
        self.addresses = list(addresses)
        self.port = free_port()
        dns = self

        class Resolver(dnslib.server.BaseResolver):
            def resolve(self, request, handler):
                reply = request.reply()
                if request.q.qtype == dnslib.QTYPE.A and str(request.q.qname).rstrip(".") == "gateway":
                    for a in list(dns.addresses):
                        reply.add_answer(dnslib.RR("gateway.", dnslib.QTYPE.A, rdata=dnslib.A(a), ttl=1))
                elif str(request.q.qname).rstrip(".") != "gateway":
                    reply.header.rcode = dnslib.RCODE.NXDOMAIN
                return reply

        self.server = dnslib.server.DNSServer(Resolver(), address="127.0.0.1", port=self.port,
                                              logger=dnslib.server.DNSLogger("-request,-reply,-truncated,-error"))

    def start(self):
        self.server.start_thread()
        return self

    def stop(self):
        self.server.stop()


# --- nginx -------------------------------------------------------------------------------------

def find_nginx():
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not exe:
        raise RuntimeError("nginx is not installed: the deploy tests check and run deploy/nginx.conf. Install "
                           "Debian's package: apt-get install nginx (scripts/test.sh does)")
    return exe


def nginx_t(conf, tmp):
    """`nginx -t` on `conf`, with its pid file and startup log in `tmp` (not the system's):
    (exit code, output)."""
    tmp = Path(tmp)
    p = subprocess.run([find_nginx(), "-t", "-p", str(tmp) + "/", "-c", str(conf), "-e", str(tmp / "error.log"),
                        "-g", "pid %s;" % (tmp / "nginx.pid")], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def render_nginx(text, ports, listen):
    """deploy/nginx.conf's text with one upstream `server 127.0.0.1:P ...;` per port in `ports`
    (the shipped lines' options kept) and `listen 8080;` as `listen 127.0.0.1:<listen>;`."""
    lines = text.splitlines()
    begins = [i for i, line in enumerate(lines) if line.strip().startswith(BEGIN)]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise ValueError("the config needs one '%s ...' line and one '%s' line after it" % (BEGIN, END))
    b, e = begins[0], ends[0]
    shipped = [line for line in lines[b + 1:e] if line.strip()]
    m = re.match(r"(\s*)server \S+ (.*);$", shipped[0]) if shipped else None
    if not m:
        raise ValueError("no `server ADDRESS OPTIONS;` line between the markers")
    body = ["%sserver 127.0.0.1:%d %s;" % (m.group(1), p, m.group(2)) for p in ports]
    text = "\n".join(lines[:b + 1] + body + lines[e:]) + "\n"
    text, n = re.subn(r"(?m)^(\s*)listen 8080;$", r"\g<1>listen 127.0.0.1:%d;" % listen, text)
    if n != 1:
        raise ValueError("the config has no `listen 8080;` line")
    return text


class Nginx:
    """`Nginx(tmp, [gateway ports]).start()`: deploy/nginx.conf rendered, checked with `nginx -t`
    (no warning allowed), run in the foreground as our child; `port` is its front."""

    def __init__(self, tmp, ports):
        self.tmp, self.ports, self.port, self.proc = Path(tmp), list(ports), free_port(), None
        self.log = self.tmp / "error.log"

    def start(self):
        conf = self.tmp / "nginx.conf"
        conf.write_text(render_nginx((DEPLOY / "nginx.conf").read_text(), self.ports, self.port))
        rc, out = nginx_t(conf, self.tmp)
        if rc != 0 or "[warn]" in out or "[emerg]" in out:
            raise RuntimeError("nginx -t on %s rendered from deploy/nginx.conf (exit %d):\n%s" % (conf, rc, out))
        self.proc = subprocess.Popen([find_nginx(), "-p", str(self.tmp) + "/", "-c", str(conf), "-e", str(self.log),
                                      "-g", "pid %s; daemon off;" % (self.tmp / "nginx.pid")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     **child_options())
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError("nginx did not listen: %s" % self.log.read_text()[-2000:])
        return self

    def stop(self):
        stop_process(self.proc)
        self.proc = None


# --- gateways behind the load balancer ---------------------------------------------------------

SID, PW = "CP-1", "password-123-4567"


def gateway_api(gw, method, path, body=None, ctx=None):
    """A gateway's API, directly (not through the load balancer); `ctx` trusts a TLS gateway's CA."""
    req = urllib.request.Request(gw.url + path, data=None if body is None else json.dumps(body).encode(),
                                 method=method, headers={"Content-Type": "application/json",
                                                         "Authorization": "Bearer " + TEST_TOKEN})
    with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
        return json.loads(r.read())


def start_gateways(tmp_path, n, extra=(), ctx=None):
    """`n` gateway processes (GatewayProcess: stop() each), SID registered on each."""
    gws = []
    try:
        for i in range(n):
            gws.append(GatewayProcess(tmp_path / ("gw%d.db" % (i + 1)), port=free_port(), extra=(
                "--api-token", TEST_TOKEN, "--thingspeak-url", "", *extra)).start())
            s = gateway_api(gws[-1], "POST", "/api/stations", {"id": SID, "password": PW}, ctx)
            assert s["id"] == SID, s
    except BaseException:
        for gw in gws:
            gw.stop()
        raise
    return gws


def gateway_port(gw):
    return int(gw.url.rsplit(":", 1)[1])


class Station:
    """`async with Station(url) as st:` an OcppStation (support.stations.TestStation) as SID on a
    WebSocket to `url`, st.cp; no client pings, so that only the load balancer's timeouts decide
    when a quiet socket closes."""

    def __init__(self, url, ssl=None):
        self.url, self.ssl = url, ssl

    async def __aenter__(self):
        self.ws = await websockets.connect(self.url, subprotocols=["ocpp1.6"], additional_headers=basic(SID, PW),
                                           open_timeout=10, ping_interval=None, ssl=self.ssl)
        self.cp = OcppStation(SID, self.ws)
        self.task = asyncio.create_task(self.cp.start())
        return self

    async def __aexit__(self, *exc):
        self.task.cancel()
        await self.ws.close()


async def connected_on(gws):
    """The gateways (asked directly) that have the station connected."""
    out = []
    for gw in gws:
        st = await asyncio.to_thread(gateway_api, gw, "GET", "/api/stations/" + SID)
        if st["connected"]:
            out.append(gw)
    return out


async def readings(port):
    s, rows = await http(port, "GET", "/api/stations/%s/readings" % SID)
    assert s == 200, rows
    return [(r["ts"], r["current_a"]) for r in rows]


async def boot_and_meter(st, ts, current):
    b = await boot(st.cp)
    assert b.status == "Accepted", b
    await st.cp.call(call.MeterValues(connector_id=1, meter_value=[meter(ts, current=current, temp=21.0)]))


async def balancer_up(tmp_path, gws):
    """HAProxy from deploy/haproxy.cfg in front of the gateways `gws` (named gw1, gw2, ...),
    started once its checks mark every one of them UP."""
    lb = await asyncio.to_thread(HAProxy(tmp_path, [("gw%d" % (i + 1), "127.0.0.1", gateway_port(g))
                                                    for i, g in enumerate(gws)]).start)
    try:
        for i in range(len(gws)):
            await asyncio.to_thread(lb.wait_status, "gw%d" % (i + 1), "UP")
    except BaseException:
        lb.stop()
        raise
    return lb
