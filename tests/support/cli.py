"""Helpers for the CLI tests: the installed `picocharge` command in a subprocess, flash
snapshots, a fake of the gateway's station API."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path


def cli_argv():
    """argv of the installed `picocharge` console command (python -m picocharge.cli without it)."""
    script = Path(sys.executable).with_name("picocharge")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "picocharge.cli"]


def run_cli(*args, input=None, timeout=120, env=None):
    """The installed `picocharge` console command in a subprocess."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(cli_argv() + list(args), input=input,
                          capture_output=True, text=True, timeout=timeout, env=e)


def snapshot(folder):
    """{relative path: sha256} of every file under folder (a board's flash)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class FakeGatewayAPI:
    """A tiny HTTP server standing for the gateway's station API, with its access rules (reads
    from loopback need no token, writes do): POST /api/stations (400 without an id, 409 for
    a known one) and GET /api/stations/<id> (404 for an unknown one). Records requests."""

    def __init__(self, status=201, token=None):
        self.status = status
        self.token = token
        self.stations = {}  # id -> password
        self.requests = []  # (method, path, headers dict, parsed JSON body or None)

    def start(self):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        api = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def answer(self, code, out):
                data = json.dumps(out).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"null")
                api.requests.append(("POST", self.path, dict(self.headers), body))
                if api.token and self.headers.get("Authorization") != "Bearer " + api.token:
                    return self.answer(401, {"error": "unauthorized"})
                if self.path != "/api/stations":
                    return self.answer(404, {"error": "not found"})
                if not body.get("id"):
                    return self.answer(400, {"error": "id must be 1..64 characters"})
                if body["id"] in api.stations:
                    return self.answer(409, {"error": "station %s is already registered" % body["id"]})
                if api.status < 300:
                    api.stations[body["id"]] = body.get("password")
                self.answer(api.status, {"id": body.get("id"), "created": True})

            def do_GET(self):
                api.requests.append(("GET", self.path, dict(self.headers), None))
                sid = self.path[len("/api/stations/"):] if self.path.startswith("/api/stations/") else None
                if sid is None:
                    return self.answer(200, {"ok": True})
                if sid not in api.stations:
                    return self.answer(404, {"error": "unknown station %r" % sid})
                self.answer(200, {"id": sid, "state": "accepted"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def posts(self):
        """(path, headers, body) of the POSTs that named a station."""
        return [(p, h, b) for m, p, h, b in self.requests if m == "POST" and b]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
