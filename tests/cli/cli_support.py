"""Helpers shared by the CLI tests (imported by name; tests/cli is on sys.path)."""
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
    """A tiny HTTP server standing for the gateway's POST /api/stations; records requests."""

    def __init__(self, status=201, token=None):
        self.status = status
        self.token = token
        self.requests = []  # (path, headers dict, parsed JSON body)

    def start(self):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        api = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"null")
                api.requests.append((self.path, dict(self.headers), body))
                if api.token and self.headers.get("Authorization") != "Bearer " + api.token:
                    code, out = 401, {"error": "unauthorized"}
                elif self.path != "/api/stations":
                    code, out = 404, {"error": "not found"}
                else:
                    code, out = api.status, {"id": body.get("id"), "created": True}
                data = json.dumps(out).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                data = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
