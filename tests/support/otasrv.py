"""Over-the-air updates in tests: releases made by the real `picocharge release` CLI, a small
HTTP server that serves them and takes diagnostics uploads the way docs/ota.md says the gateway
does (HTTP Basic with the station's OCPP credentials, 401 otherwise), faults on demand, and a
central system that answers the Firmware Management notifications."""
import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from .central import CentralCP, CentralSystem
from .cli import run_cli
from .net import free_port


PASSWORD = "ocpp-pw-7788"   # CP-1's OCPP password: the release server's credentials too


def ota_config(url, key, **ota):
    """CP-1's config (support.central.station_config) with its OCPP password and ota.key."""
    from .central import station_config

    cfg = station_config(url, password=PASSWORD)
    cfg["ota"] = dict({"key": key}, **ota)
    return cfg


FS = "FirmwareStatusNotification"


async def booted(cs, st, n, version, statuses=True):
    """The n-th BootNotification of `st` at central system `cs`, from `version`; with `statuses`
    also the station's StatusNotifications after it (2 a boot). The BootNotification frame."""
    m = await cs.wait_call("BootNotification", n, station=st, timeout=40)
    assert m[3]["firmwareVersion"] == version, m
    if statuses:
        await cs.wait_call("StatusNotification", 2 * n, station=st, timeout=30)
    return m


async def fw_status(cs, status, n=1, st=None, timeout=60):
    """The n-th FirmwareStatusNotification saying `status`."""
    return await cs.wait_call(FS, n, station=st, timeout=timeout, pred=lambda m: m[3]["status"] == status)


def with_test_ca(station, cfg):
    """A station (not started) that verifies the test servers' certificate (support.firmware.TLS)
    with it on its flash as ocpp.ca_cert."""
    from .firmware import TLS

    cfg["ocpp"]["ca_cert"] = "ca.pem"
    st = station(cfg)
    (st.flash / "ca.pem").write_bytes((TLS / "cert.pem").read_bytes())
    return st


def flash_state(flash):
    """(fw/ptr text or None, the version each slot holds) of a board's flash folder."""
    flash = Path(flash)
    ptr = flash / "fw" / "ptr"
    slots = {}
    for s in ("a", "b"):
        m = flash / "fw" / s / "manifest.json"
        if m.is_file():
            slots[s] = json.loads(m.read_text())["version"]
    return (ptr.read_text() if ptr.is_file() else None), slots


def slot_intact(flash, slot):
    """Every file of the slot's manifest is there with its size and SHA-256 (never a mix)."""
    import hashlib

    d = Path(flash) / "fw" / slot
    m = json.loads((d / "manifest.json").read_text())
    bad = [e["name"] for e in m["files"]
           if not (d / e["name"]).is_file()
           or hashlib.sha256((d / e["name"]).read_bytes()).hexdigest() != e["sha256"]]
    assert not bad, "slot %s: %s" % (slot, bad)
    return m["version"]


def cli(*args):
    """`picocharge ARGS` (the installed command) as a subprocess; the CompletedProcess."""
    return run_cli(*args)


def make_key(path):
    r = cli("release", "key", "--out", str(path))
    assert r.returncode == 0, r.stderr
    return Path(path).read_text().strip()


def build_release(out, key_file, version, *extra):
    """The release folder <out>/<version> built by `picocharge release build`."""
    r = cli("release", "build", "--version", version, "--key-file", str(key_file), "--out", str(out),
            "--json", *extra)
    assert r.returncode == 0, r.stderr
    return Path(json.loads(r.stdout)["path"])


def resign(folder, key_hex):
    """Sign a release's (edited) manifest.json again with `key_hex` (picocharge.release.sign)."""
    from picocharge.release import sign

    folder = Path(folder)
    (folder / "manifest.sig").write_text(sign(key_hex, (folder / "manifest.json").read_bytes()))


def replace_file(folder, name, data, key_hex):
    """Put `data` in a release as `name`, update its manifest entry and sign it again: a release
    whose code differs (e.g. one that crashes at boot), still authentic."""
    import hashlib

    folder = Path(folder)
    (folder / name).write_bytes(data)
    m = json.loads((folder / "manifest.json").read_text())
    entry = {"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    m["files"] = [e for e in m["files"] if e["name"] != name] + [entry]
    (folder / "manifest.json").write_text(json.dumps(m, separators=(",", ":")))
    resign(folder, key_hex)


class ReleaseServer:
    """http://127.0.0.1:<port>/fw/<version>/<file> from `root` (a folder of releases), and
    PUT /diag/<station>/<name>, both for `credentials` {user: password} only.

    Faults: `cut[name] = n` sends the first n bytes of that file with its full Content-Length
    and closes (a truncated download); `stall[name] = n` sends n bytes and then holds the
    connection until `release_stall()`; `stop()` / `start()` take it away and bring it back on
    the same port. `requests` records (method, path, status)."""

    def __init__(self, root, credentials, port=None, tls=False):
        self.tls = tls        # https with support/tls/cert.pem (a self-signed 127.0.0.1)
        self.root = Path(root)
        self.credentials = credentials
        self.port = port or free_port()
        self.cut = {}
        self.stall = {}
        self.stalled = threading.Event()
        self._go = threading.Event()
        self.requests = []
        self.first_get = None   # time.time() of the first GET
        self.uploads = {}     # path -> body bytes
        self.conns = set()    # open client connections: stop() cuts them too
        self.httpd = None

    def url(self, version, name="manifest.json"):
        return "%s://127.0.0.1:%d/fw/%s/%s" % ("https" if self.tls else "http", self.port, version, name)

    @property
    def diag_url(self):
        return "%s://127.0.0.1:%d/diag/CP-1/" % ("https" if self.tls else "http", self.port)

    def start(self):
        server = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"   # keep-alive, as aiohttp (the gateway) serves

            def log_message(self, *a):
                pass

            def setup(self):
                super().setup()
                server.conns.add(self.connection)

            def finish(self):
                server.conns.discard(self.connection)
                super().finish()

            def _authorized(self):
                h = self.headers.get("Authorization", "")
                if h.startswith("Basic "):
                    user, _, pw = base64.b64decode(h[6:]).decode().partition(":")
                    if server.credentials.get(user) == pw:
                        return True
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="fw"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                server.requests.append((self.command, self.path, 401))
                return False

            def do_GET(self):
                if server.first_get is None:
                    server.first_get = time.time()
                if not self._authorized():
                    return
                parts = self.path.split("/")
                p = server.root / parts[2] / parts[3] if len(parts) == 4 and parts[1] == "fw" else None
                if p is None or not p.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    server.requests.append(("GET", self.path, 404))
                    return
                data = p.read_bytes()
                server.requests.append(("GET", self.path, 200))
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                name = parts[3]
                if name in server.cut:
                    self.wfile.write(data[:server.cut[name]])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if name in server.stall:
                    self.wfile.write(data[:server.stall[name]])
                    self.wfile.flush()
                    server.stalled.set()
                    server._go.wait(60)
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(data)

            def do_PUT(self):
                if not self._authorized():
                    return
                n = int(self.headers.get("Content-Length", "-1"))
                if not self.path.startswith("/diag/CP-1/") or not 0 <= n <= 1 << 20:
                    self.send_response(400)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    server.requests.append(("PUT", self.path, 400))
                    return
                server.uploads[self.path] = (self.headers.get("Content-Type"), self.rfile.read(n))
                server.requests.append(("PUT", self.path, 201))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.httpd.daemon_threads = True
        if self.tls:
            import ssl

            from .firmware import TLS

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(TLS / "cert.pem"), str(TLS / "key.pem"))
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def release_stall(self):
        self._go.set()

    def stop(self):
        if self.httpd:
            self._go.set()
            self.httpd.shutdown()
            self.httpd.server_close()
            for c in list(self.conns):   # kept-alive connections go with the server
                try:
                    c.shutdown(2)
                except OSError:
                    pass
            self.httpd = None

    def gets(self, name):
        return [r for r in self.requests if r[0] == "GET" and r[1].endswith("/" + name)]


class OtaCP(CentralCP):
    @on(Action.firmware_status_notification)
    def on_fw_status(self, status):
        return call_result.FirmwareStatusNotification()

    @on(Action.diagnostics_status_notification)
    def on_diag_status(self, status):
        return call_result.DiagnosticsStatusNotification()


class OtaCentral(CentralSystem):
    """support.central.CentralSystem that also answers FirmwareStatusNotification and
    DiagnosticsStatusNotification."""

    def __init__(self, tls=False, **kw):
        super().__init__(**kw)
        self.tls = tls        # wss:// with support/tls/cert.pem (a self-signed 127.0.0.1)
        self.cls = type("CP", (OtaCP,), {"cs": self})

    @property
    def url(self):
        return "%s://127.0.0.1:%d/ocpp" % ("wss" if self.tls else "ws", self.port)

    async def start(self):
        if not self.tls:
            return await super().start()
        import ssl

        import websockets

        from .firmware import TLS

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(TLS / "cert.pem"), str(TLS / "key.pem"))
        self.server = await websockets.serve(self._handler, "127.0.0.1", self.port,
                                             subprotocols=self.subprotocols, ssl=ctx)
        return self

    def statuses(self, action="FirmwareStatusNotification"):
        return [m[3]["status"] for m in self.calls(action)]

    def versions(self):
        return [m[3].get("firmwareVersion") for m in self.calls("BootNotification")]
