"""A local server that follows ThingSpeak's published HTTP API, for tests.

Implements what PicoCharge uses:
- POST|GET /update (form or query: api_key, field1..field8, created_at, status...):
  answers the new entry id, or `0` when the write is refused (bad key, or faster than
  `min_interval` seconds since the channel's last accepted write: ThingSpeak's
  rate limit, 15 s on a free licence).
- POST /channels/<id>/bulk_update.json (JSON: write_api_key, updates[] with created_at or
  delta_t): at most `bulk_limit` entries (960 free); answers {"success": true} with 202,
  400 past the limit, 429 when called before the channel's interval has passed.
- POST /channels.json (api_key = account key, name, public_flag, field1..field8): creates a
  channel, private unless public_flag=true (ThingSpeak's default), and answers its write and
  read keys.
- GET /channels/<id>/feeds.json (api_key = the channel's Read API key, required for a private
  channel): the stored entries; a private channel read without its read key answers HTTP 400
  with `-1` (as ThingSpeak's feed controller does; the documented API requires the read key).
  `feeds_answer = (status, body)` makes every feeds read answer that instead.
`fail_with` makes every write answer that HTTP status (e.g. 500) until cleared;
`bad_header` adds a header line without a colon to every answer (urllib3 logs a warning with
the request's URL).

created_at is unique within a channel, at one-second resolution (MathWorks' Write Data and
Bulk-Write JSON Data pages: "The timestamp must be unique within channel"; "You cannot write new
data using timestamps that match existing data in the channel"). As the real service does, an
entry whose second the channel already holds is not stored: in a bulk write it is dropped
silently (the bulk write still answers 202 {"success": true}: ThingSpeak processes it later),
and a single write is answered `0` (no entry created). `dropped` holds every such entry as
(channel id, the entry as sent).
"""
import json
import socket
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Channel:
    def __init__(self, cid, write_key, name="", fields=None, read_key=None, public=False):
        self.id = cid
        self.write_key = write_key
        self.read_key = read_key or "R%014d" % cid
        self.public = public
        self.name = name
        self.fields = fields or {}
        self.entries = []
        self.last_write = None
        self.seconds = set()    # the created_at of every entry, as whole UTC seconds


def _second(created_at):
    """created_at (ISO 8601, 'YYYY-MM-DD hh:mm:ss' or epoch seconds) as a whole UTC second; the
    string itself when it is none of these."""
    v = str(created_at).strip()
    try:
        return int(float(v))
    except ValueError:
        pass
    try:
        d = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return v
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return int(d.timestamp())


class FakeThingSpeak:
    def __init__(self, min_interval=15.0, bulk_limit=960, account_key="ACCOUNTKEY", clock=time.monotonic):
        self.min_interval = min_interval
        self.bulk_limit = bulk_limit
        self.account_key = account_key
        self.clock = clock
        self.channels = {}
        self.requests = []          # (method, path, parsed body) of every request
        self.refused = 0            # writes answered 0 / 429
        self.refusals = []          # (path, status, body) of every write that was not stored
        self.fail_with = None       # HTTP status to answer every write with
        self.bad_header = False     # a malformed header line in every answer
        self.feeds_answer = None    # (status, body) for every feeds read
        self.dropped = []           # (channel id, entry) not stored: its created_at second was taken
        self.lock = threading.Lock()
        self._next_channel = 1000
        self.server = None
        self.thread = None

    # --- set-up -------------------------------------------------------------
    def add_channel(self, write_key, cid=None, name="", read_key=None, public=False):
        """A channel; private (ThingSpeak's default) unless public, read key R<id> unless given."""
        with self.lock:
            if cid is None:
                cid = self._next_channel
                self._next_channel += 1
            ch = Channel(cid, write_key, name, read_key=read_key, public=public)
            self.channels[cid] = ch
            return ch

    def entries(self, cid):
        with self.lock:
            return [dict(e) for e in self.channels[cid].entries]

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def start(self, port=0):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def setup(self):
                super().setup()
                with fake.lock:
                    fake._conns.add(self.connection)

            def finish(self):
                with fake.lock:
                    fake._conns.discard(self.connection)
                super().finish()

            def _reply(self, status, body, ctype="text/plain"):
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                if fake.bad_header:
                    self._headers_buffer.append(b"this line is not a header\r\n")
                self.end_headers()
                self.wfile.write(data)

            def _params(self):
                u = urllib.parse.urlsplit(self.path)
                params = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                ctype = self.headers.get("Content-Type", "")
                body = None
                if raw:
                    if "json" in ctype:
                        try:
                            body = json.loads(raw)
                        except ValueError:
                            body = {"__invalid__": raw.decode("latin-1")}
                    else:
                        params.update(dict(urllib.parse.parse_qsl(raw.decode(), keep_blank_values=True)))
                return u.path, params, body

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def _handle(self, method):
                path, params, body = self._params()
                with fake.lock:
                    fake.requests.append((method, path, body if body is not None else params))
                status, out, ctype = fake.handle(method, path, params, body)
                self._reply(status, out, ctype)

        self._conns = set()     # open client connections: stop() cuts them (keep-alive)
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        """The service goes away: no new connection, and the open ones (HTTP/1.1 keep-alive, which
        a handler thread would go on serving after shutdown()) are cut, so nothing is taken after."""
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            with self.lock:
                conns, self._conns = list(self._conns), set()
            for c in conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.server = None

    # --- the API ------------------------------------------------------------
    def _by_key(self, key):
        for ch in self.channels.values():
            if ch.write_key == key:
                return ch
        return None

    def _take_second(self, ch, entry):
        """True if the entry may be stored: no created_at, or a second the channel does not hold."""
        if "created_at" not in entry:
            return True
        sec = _second(entry["created_at"])
        if sec in ch.seconds:
            self.dropped.append((ch.id, dict(entry)))
            return False
        ch.seconds.add(sec)
        return True

    def _rate_ok(self, ch, now):
        return ch.last_write is None or now - ch.last_write >= self.min_interval

    def handle(self, method, path, params, body):
        with self.lock:
            if path == "/update" or path == "/update.json":
                if self.fail_with:
                    return self.fail_with, "error", "text/plain"
                ch = self._by_key(params.get("api_key") or params.get("key"))
                now = self.clock()
                if ch is None or not self._rate_ok(ch, now):
                    self.refused += 1
                    self.refusals.append((path, 200, "0"))
                    return 200, "0", "text/plain"
                entry = {k: v for k, v in params.items() if k.startswith("field") or k in ("created_at", "status")}
                if not self._take_second(ch, entry):
                    self.refusals.append((path, 200, "0"))
                    return 200, "0", "text/plain"
                entry["entry_id"] = len(ch.entries) + 1
                ch.entries.append(entry)
                ch.last_write = now
                return 200, str(entry["entry_id"]), "text/plain"
            if path.startswith("/channels/") and path.endswith("/bulk_update.json"):
                if self.fail_with:
                    return self.fail_with, "error", "text/plain"
                try:
                    cid = int(path.split("/")[2])
                except ValueError:
                    return 404, "not found", "text/plain"
                ch = self.channels.get(cid)
                if not isinstance(body, dict) or ch is None or body.get("write_api_key") != ch.write_key:
                    return 401, json.dumps({"status": "401", "error": "bad key"}), "application/json"
                ups = body.get("updates")
                if not isinstance(ups, list) or not ups:
                    return 400, json.dumps({"error": "updates missing"}), "application/json"
                if len(ups) > self.bulk_limit:
                    self.refusals.append((path, 400, len(ups)))
                    return 400, json.dumps({"error": "too many updates (max %d)" % self.bulk_limit}), "application/json"
                now = self.clock()
                if not self._rate_ok(ch, now):
                    self.refused += 1
                    self.refusals.append((path, 429, len(ups)))
                    return 429, json.dumps({"error": "rate limit"}), "application/json"
                base = time.time()
                for u in ups:
                    entry = {k: str(v) for k, v in u.items() if k.startswith("field") or k in ("created_at", "status")}
                    if "created_at" not in u and "delta_t" in u:
                        entry["delta_t"] = str(u["delta_t"])
                    if not self._take_second(ch, entry):
                        continue
                    entry["entry_id"] = len(ch.entries) + 1
                    ch.entries.append(entry)
                ch.last_write = now
                return 202, json.dumps({"success": True}), "application/json"
            if path == "/channels.json" and method == "POST":
                src = body if isinstance(body, dict) else params
                if src.get("api_key") != self.account_key:
                    return 401, json.dumps({"status": "401", "error": {"error_code": "error_auth_required"}}), "application/json"
                cid = self._next_channel
                self._next_channel += 1
                wkey = "W%014d" % cid
                fields = {k: src[k] for k in src if k.startswith("field")}
                ch = Channel(cid, wkey, src.get("name", ""), fields,
                             public=str(src.get("public_flag", "false")).lower() == "true")
                self.channels[cid] = ch
                out = {"id": cid, "name": ch.name, "public_flag": ch.public,
                       "api_keys": [{"api_key": wkey, "write_flag": True},
                                    {"api_key": ch.read_key, "write_flag": False}]}
                out.update(fields)
                return 200, json.dumps(out), "application/json"
            if path.startswith("/channels/") and path.endswith("/feeds.json"):
                if self.feeds_answer:
                    return self.feeds_answer[0], self.feeds_answer[1], "application/json"
                cid = int(path.split("/")[2])
                ch = self.channels.get(cid)
                if ch is None:
                    return 404, "-1", "text/plain"
                if not ch.public and params.get("api_key") != ch.read_key:
                    return 400, "-1", "application/json"
                return 200, json.dumps({"channel": {"id": cid}, "feeds": ch.entries}), "application/json"
            return 404, "not found", "text/plain"
