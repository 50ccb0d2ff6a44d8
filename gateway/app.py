"""The gateway: `Gateway(Settings(...))`, `await gw.start()`, `gw.port`, `await gw.stop()`.

It ties together the listening port (server.Listener serving web.make_app: OCPP
WebSocket, dashboard, API), the OCPP sessions (csms.StationSession), the store
(store.Store), the credentials (auth.py) and the uplinks (uplinks.MqttUplink,
uplinks.ThingSpeakUplink). The session handlers call the service methods below; they
never touch the database or the network themselves.
"""
import asyncio
import base64
import dataclasses
import functools
import gc
import hashlib
import hmac
import logging
import os
import re
import time
from dataclasses import dataclass

from websockets.exceptions import ConnectionClosed

from picocharge.firmware import fields

from . import auth, ca, openapi
from .commands import COMMANDS, CommandError, apply_at_boot, send_call, send_command  # noqa: F401  (COMMANDS, CommandError: re-exported)
from .csms import StationSession, quiet_ocpp_frames, utc_now, write_last_seen_many
from .gctune import GcTuner
from .idtags import IdTags
from .loadbalance import LEASE as LB_LEASE, LoadBalancer
from .localsync import LocalSync
from .metrics import GatewayMetrics
from .pending import PendingStations
from .reservations import Reservations
from .rollouts import Rollouts
from .server import Listener, tls_context as server_tls_context
from .store import Store, StoreError, add_ota_status, last_ota_status, now_iso
from .uplinks import MqttUplink, ThingSpeakUplink
from .web import make_app
from .writekeys import WriteKeys

log = logging.getLogger(__name__)

AUTH_MODES = ("password", "pending", "none")
API_AUTH_MODES = ("token", "none")
# OCPP security profiles, as the log line of each connection names them (0: not one of them)
_PROFILES = {0: "no credentials checked, --auth none", 1: "HTTP Basic over ws://", 2: "HTTP Basic over wss://",
             3: "client certificate over wss://"}
# the one answer to a station whose id or password is not accepted, whichever it was (the
# reason is logged): the answer must not tell an outsider which station ids exist
STATION_401 = "station id or password not accepted (HTTP Basic: user = station id, password = ocpp.password)"
# a Host header a station's WebSocket named, as it may go into the URLs the gateway sends it back
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?$")


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 9000
    db: str = "picocharge-gateway.db"
    auth: str = "password"
    mqtt_url: str = None
    mqtt_ingest: bool = True
    thingspeak_url: str = "https://api.thingspeak.com"
    thingspeak_interval: float = 15.0
    thingspeak_bulk_limit: int = 960
    retention_days: float = 30.0
    api_token: str = None
    heartbeat_interval: int = 300
    max_frame: int = 65536
    ping_interval: float = 60.0
    response_timeout: float = 30.0
    gc_freeze: bool = True
    tls_cert: str = None    # PEM certificate (chain) and key: OCPP security profile 2 (wss://, https://)
    tls_key: str = None
    client_ca: str = None   # PEM operator CA: stations may present a certificate it signed (security profile 3)
    client_cert: str = "optional"   # with client_ca: "required" refuses stations without a certificate
    client_crl: str = None  # PEM CRL signed by client_ca: revoked station certificates (read again when it changes)
    # --- the HTTP edge: credentials and limits (docs/gateway.md "Limits") ---
    api_auth: str = "token"         # token: every /api call and /metrics need a token or a session; none: open
    tokens_file: str = None         # default: <db>.tokens
    allowed_hosts: tuple = ()       # Host names served besides localhost, loopback and the bind address
    max_connections: int = 20000    # open connections (OCPP + HTTP); the next gets 503
    max_body: int = 1024 * 1024     # request body bytes (413)
    max_line: int = 8190            # request line bytes
    max_field: int = 8190           # one header line's bytes
    max_headers: int = 100          # header lines per request
    idle_timeout: float = 30.0      # a connection with no request in progress (idle or half a head) is closed
    body_timeout: float = 10.0      # a request body must arrive within this (408)
    auth_fail_limit: int = 10       # failed credentials per client address / station id per minute (then 429)
    trusted_proxies: tuple = ()     # networks whose X-Forwarded-For names the client (proxies.py)
    max_pending: int = 100          # --auth pending: unknown stations waiting for an operator at most
    # every station's Local Authorization List kept in step with the id-tag list, unless its own
    # switch says otherwise (localsync.py; PUT /api/stations/<id>/local-list)
    local_list_sync: bool = False
    # ClockAlignedDataInterval given to each station at its accepted boot when its own differs
    # (None: left as the station has it; `picocharge gateway` defaults to 900, docs/gateway.md)
    clock_aligned_interval: int = None
    reuse_port: bool = False    # listen with SO_REUSEPORT: a worker of `--workers N` (workers.py)

    @property
    def scheme(self):
        return "https" if self.tls_cert else "http"


def tls_context(s):
    """The server's SSLContext for Settings with tls_cert (None without); ValueError says what is wrong."""
    return server_tls_context(s.tls_cert, s.tls_key, s.client_ca, s.client_cert)


class Metrics:
    def __init__(self):
        self.messages = 0
        self.profiles = {}      # OCPP security profile -> stations authenticated with it
        self.readings = 0
        self.refused = 0
        self.dropped_answers = 0   # CALLRESULTs/CALLERRORs that answered no pending call (csms)
        self.replayed = {"StartTransaction": 0, "StopTransaction": 0}   # answered again, changed nothing
        self.http_requests = 0
        self.http_refused = 0   # connections answered 503 at --max-connections
        self.ingest = {"http": 0, "mqtt": 0}
        self._window = [(time.monotonic(), 0)]

    def rate(self):
        """Messages per second over the last ~10 s (sampled when asked)."""
        now = time.monotonic()
        w = self._window
        w.append((now, self.messages))
        while len(w) > 2 and now - w[1][0] > 10:
            w.pop(0)
        t0, m0 = w[0]
        return (self.messages - m0) / (now - t0) if now > t0 else 0.0


SEEN_FLUSH_S = 1.0     # the stations' last_seen due are written together this often


class GcWatch:
    """Times the collector's passes (gc.callbacks): how many full (generation 2) collections
    ran and the longest pause, which is what sets the p99 of a gateway with thousands of
    connections; summed up in the log when the gateway stops."""

    report_ms = 20.0   # pauses this long are logged one by one (with the time: the bench places them)

    def __init__(self):
        self.full = 0
        self.longest_ms = 0.0
        self.longest_gen = None
        self.cpu_s = [0.0, 0.0, 0.0]    # the collector's CPU by generation (picocharge_gc_cpu_seconds)
        self.passes = [0, 0, 0]
        self._t0 = self._c0 = None

    def __call__(self, phase, info):
        if phase == "start":
            self._t0 = time.perf_counter()
            self._c0 = time.thread_time()
        elif self._t0 is not None:
            ms = (time.perf_counter() - self._t0) * 1000.0
            self._t0 = None
            gen = info.get("generation")
            if gen in (0, 1, 2):
                self.cpu_s[gen] += time.thread_time() - self._c0
                self.passes[gen] += 1
            if gen == 2:
                self.full += 1
            if ms > self.longest_ms:
                self.longest_ms, self.longest_gen = ms, gen
            if ms >= self.report_ms:
                # cpu: the collector's own work; the rest of the wall time is the process
                # waiting for a core (a busy machine), which a station sees all the same
                log.info("gc pause %.1f ms (cpu %.1f ms, generation %s, %s collected)", ms,
                         (time.thread_time() - self._c0) * 1000.0, info.get("generation"),
                         info.get("collected"))

    def summary(self):
        return "gc: %d full collections, longest pause %.1f ms (generation %s)" % (
            self.full, self.longest_ms, self.longest_gen)


class _Connected:
    """`sid in gw.connected`: connected to this process or, in a cluster, to another one."""

    __slots__ = ("gw",)

    def __init__(self, gw):
        self.gw = gw

    def __contains__(self, sid):
        cl = self.gw.cluster
        return sid in self.gw.sessions or (cl is not None and sid in cl.remote)


class Gateway:
    def __init__(self, settings):
        if settings.auth not in AUTH_MODES:
            raise ValueError("auth %r: choose one of %s" % (settings.auth, ", ".join(AUTH_MODES)))
        if settings.api_auth not in API_AUTH_MODES:
            raise ValueError("api_auth %r: choose one of %s" % (settings.api_auth, ", ".join(API_AUTH_MODES)))
        self.settings = settings
        self.store = Store(settings.db)
        self.metrics = Metrics()
        self.sessions = {}
        self.cluster = None     # cluster.Cluster on PostgreSQL: the other gateway processes on the database
        self.connected = _Connected(self)
        self.stations = {}      # id -> station row (dict), the auth and uplink cache
        self.write_keys = WriteKeys(self)   # ThingSpeak write key -> station (/update); changed() when one is set
        self.pending = PendingStations(self)    # the stations waiting for an operator; note(sid) when one changes
        self.last = {}          # id -> last reading dict (merged)
        self.id_tags = {}       # tag -> status (idtags.IdTags keeps the rest)
        self.idtags = IdTags(self)
        self.localsync = LocalSync(self)
        self.idtags.on_change = self.localsync.tags_changed
        self.reservations = Reservations(self)
        self.loadbalance = LoadBalancer(self)   # load groups (loadbalance.py): planned in this process
        self._verified = {}     # (id, sha256(password)) -> pw_hash it was checked against
        self.station_profile = {}   # id -> the OCPP security profile of its last authentication
        self.revocations = None     # ca.Revocations of --client-crl
        self.key_changes = set()    # ids with an AuthorizationKey change waiting for its answer (commands.py)
        self.origins = {}       # id -> (scheme, Host) its WebSocket came with: where it fetches releases
        self.ota_last = {}      # (id, "firmware" | "diagnostics") -> (status, ts, seq) of its last notification
        self.rollouts = Rollouts(self)
        self.port = None
        self.front = None       # the server.Listener
        self.liveness = None    # ocpp_ws.Liveness: pings the stations that went quiet
        self.gc_tuner = None    # gctune.GcTuner (Settings.gc_freeze, on by default)
        self.seen_due = {}      # station -> last_seen not written yet (flush_seen, every second)
        self.tokens = auth.TokenStore(settings.tokens_file or auth.tokens_path(settings.db))
        self.first_token = None     # the admin token made at first start, in clear (shown once)
        self.web_sessions = auth.Sessions()
        self.throttle = auth.Throttle(limit=settings.auth_fail_limit)
        self.prom = GatewayMetrics(self)
        self.uplinks = []
        self.mqtt = None
        self.thingspeak = None
        self._tasks = []
        self._boot_tasks = set()    # apply_at_boot runs, one per station that just booted
        self.started_at = None
        self.gc_watch = None

    # --- life cycle -------------------------------------------------------------
    async def start(self):
        s = self.settings
        tls = tls_context(s)    # a bad certificate stops the start before anything is opened
        if s.client_crl:
            if not s.client_ca:
                raise ValueError("a client CRL (--client-crl) needs the CA that signed it: give --client-ca too")
            if not os.path.isfile(s.client_crl):
                raise ValueError("client CRL not found: %s (`picocharge gateway ca revoke` writes DIR/ca.crl)"
                                 % s.client_crl)
            try:
                self.revocations = ca.Revocations(s.client_crl, s.client_ca)
            except ca.CaError as e:
                raise ValueError(str(e))
        quiet_ocpp_frames(log.isEnabledFor(logging.DEBUG))   # frames (id tags, config values) only at debug
        await self.store.start()
        if self.store.dialect == "postgresql":
            # imported here, as the back end is (store.backend_for): psycopg is not loaded on SQLite
            from .cluster import Cluster
            self.cluster = Cluster(self, s.db)
            await self.cluster.start()
        for row in await self.store.run(Store.station_rows):
            self.stations[row["id"]] = row
        await self.idtags.load()
        await self.localsync.load()
        self.last = await self.store.run(_last_readings)
        await self.loadbalance.start()
        self.ota_last = await self.store.run(last_ota_status)
        if s.auth == "none":
            log.warning("auth=none: ANY station is accepted without a password (demos and benchmarks only)")
        self._setup_tokens()
        if s.mqtt_url:
            self.mqtt = MqttUplink(self, s.mqtt_url, ingest=s.mqtt_ingest)
            self.uplinks.append(self.mqtt)
        if s.thingspeak_url:
            self.thingspeak = ThingSpeakUplink(self, s.thingspeak_url, s.thingspeak_interval,
                                               s.thingspeak_bulk_limit)
            self.uplinks.append(self.thingspeak)
        if self.cluster is not None:
            await self.cluster.first_leases()   # which uplink work is this process's, before it starts
        for u in self.uplinks:
            await u.start()
        self.front = Listener(make_app(self), s, self.metrics)
        self.port = await self.front.start(s.host, s.port, ssl=tls)
        self._tasks.append(asyncio.get_running_loop().create_task(self._maintenance()))
        self._tasks.append(asyncio.get_running_loop().create_task(self._flush_seen_every(SEEN_FLUSH_S)))
        await self.rollouts.resume()
        self.started_at = time.time()
        if s.gc_freeze:
            # long-lived start-up objects leave the collector's view; fewer full collections.
            # Thresholds (gctune.py): while stations connect, a young collection sees about 2,000
            # new objects (short pauses keep a storm's p99 down), a middle one every 5 young
            # ones, and a full one waits for 1,000 middle ones, so the ~300 objects of each of
            # 10,000 connections are not walked again and again while a fleet connects
            # ((50000, 20, 100) had 400-700 ms middle collections there); once the fleet is in,
            # 20,000, above the awaits in flight of every connection.
            gc.collect()
            gc.freeze()
            self.gc_tuner = GcTuner()
            self.gc_tuner.start()
        self.gc_watch = GcWatch()
        gc.callbacks.append(self.gc_watch)
        log.info("gateway listening on %s://%s:%d (auth=%s%s)", s.scheme, s.host, self.port, s.auth,
                 ", station certificates from %s %s" % (s.client_ca, s.client_cert) if s.client_ca else "")

    async def stop(self):
        if self.gc_watch is not None:
            if self.gc_watch in gc.callbacks:
                gc.callbacks.remove(self.gc_watch)
            log.info("%s", self.gc_watch.summary())
        if self.liveness is not None:
            self.liveness.stop()
        if self.gc_tuner is not None:
            self.gc_tuner.stop()
        self.rollouts.stop()
        self.localsync.stop()
        await self.loadbalance.stop()
        for t in self._tasks + list(self._boot_tasks):
            t.cancel()
        if self.front:
            await self.front.stop(self._close_sessions)
        for u in self.uplinks:
            await u.stop()
        if self.cluster is not None:
            await self.cluster.stop()
        await self.flush_seen()
        await self.store.stop()
        self._tasks = []

    async def _flush_seen_every(self, period):
        while True:
            await asyncio.sleep(period)
            await self.flush_seen()

    async def flush_seen(self):
        """The stations' last_seen due (StationSession._seen), written in one statement."""
        if not self.seen_due:
            return
        due, self.seen_due = self.seen_due, {}
        try:
            await self.store.run(write_last_seen_many, list(due.items()))
        except StoreError:      # a full disk: kept for the next flush (store.error says why)
            for sid, ts in due.items():
                self.seen_due.setdefault(sid, ts)

    async def _maintenance(self):
        while True:
            await asyncio.sleep(3600)
            try:
                await self.apply_retention()
            except Exception:
                log.exception("retention run failed")

    async def apply_retention(self, now=None):
        """Delete what is older than --retention-days: readings (by their own timestamp), status
        history, connections that ended (and open ones of stations not connected now: left by a
        gateway that stopped without closing them) and transactions that were stopped (never a
        running one). Returns {table: rows deleted}; readings that an uplink had not delivered
        yet are logged as a "retention cap hit" warning."""
        days = self.settings.retention_days
        if not days:
            return {}
        cutoff = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((now or time.time()) - days * 86400))
        names = [u.name for u in self.uplinks]
        live = self.connected    # stations connected to any process of the cluster

        def purge(db):
            lost = {}
            for name in names:
                for (station, last_id) in db.execute("SELECT station, last_id FROM outbox WHERE uplink=?",
                                                     (name,)).fetchall():
                    q = "SELECT COUNT(*) FROM readings WHERE ts < ? AND id > ?"
                    args = [cutoff, last_id]
                    if station != "*":
                        q += " AND station=?"
                        args.append(station)
                    n = db.execute(q, args).fetchone()[0]
                    if n:
                        lost[name] = lost.get(name, 0) + n
            gone = {"readings": db.execute("DELETE FROM readings WHERE ts < ?", (cutoff,)).rowcount,
                    "status_history": db.execute("DELETE FROM status_history WHERE ts < ?", (cutoff,)).rowcount,
                    "transactions": db.execute("DELETE FROM transactions WHERE stop_ts IS NOT NULL AND stop_ts < ?",
                                               (cutoff,)).rowcount}
            stale = [(i,) for i, sid in db.execute(
                "SELECT id, station FROM connections WHERE disconnected_at IS NULL AND connected_at < ?", (cutoff,))
                if sid not in live]
            db.executemany("DELETE FROM connections WHERE id=?", stale)
            gone["connections"] = len(stale) + db.execute(
                "DELETE FROM connections WHERE disconnected_at IS NOT NULL AND disconnected_at < ?",
                (cutoff,)).rowcount
            return gone, lost

        gone, lost = await self.store.run(purge)
        for name, k in lost.items():
            log.warning("retention cap hit: %d readings older than %s days were dropped before the %s "
                        "uplink delivered them", k, days, name)
        if any(gone.values()):
            log.info("retention: deleted what is older than %s days: %s", days,
                     ", ".join("%d %s" % (n, t.replace("_", " ")) for t, n in gone.items()))
        return gone

    # --- credentials for the API -------------------------------------------
    def _setup_tokens(self):
        s = self.settings
        if s.api_auth == "none":
            log.warning("api-auth=none: the API and /metrics are open to anyone who reaches the port, writes "
                        "included (demos and benchmarks only)")
            return
        if not self.tokens.rows() and not s.api_token:
            self.first_token, row = self.tokens.create("admin", "admin (made at first start)")
            log.warning("first start: made the admin API token %s, stored hashed in %s (0600); it is printed "
                        "once by `picocharge gateway`; more with `picocharge gateway token create`",
                        row["id"], self.tokens.path)

    def token_row(self, token):
        """The token row ({id, name, role}) of a token given in clear, or None."""
        s = self.settings
        if s.api_token and hmac.compare_digest(token.encode("utf-8", "surrogatepass"), s.api_token.encode()):
            return {"id": "api-token", "name": "--api-token", "role": "admin"}
        return self.tokens.lookup(token)

    def token_alive(self, token_id):
        """Whether the token a dashboard session was opened with still exists (not revoked)."""
        return token_id == "api-token" or self.tokens.has(token_id)

    def token_role(self, token):
        row = self.token_row(token)
        return row["role"] if row else None

    def openapi_json(self):
        return openapi.document_json()

    # --- connections ---------------------------------------------------------
    def check_station_request(self, sid, subprotocols):
        """None when the handshake may go on to authentication, else (status, message)."""
        why = fields.station_id_error(sid)
        if why:
            return 404, why
        if "ocpp1.6" not in [p.strip() for p in subprotocols.split(",")]:
            return 400, "subprotocol ocpp1.6 required (Sec-WebSocket-Protocol: ocpp1.6)"
        return None

    @staticmethod
    def refusal_text(status):
        return {401: STATION_401, 403: "station is rejected by the operator",
                429: "too many failed attempts: the station backs off and tries again later",
                503: "too many stations are waiting for an operator (--max-pending): try again later"
                }.get(status, "refused")

    async def authenticate_station(self, sid, authz, peer, cert=None, connecting=True):
        """(status, reason to log) when the station may not connect, else (None, None). Failures
        count against the client address and the station id; past --auth-fail-limit a minute
        either is refused with 429 without looking at the password. `cert`: the station's
        verified TLS client certificate (getpeercert() dict), if it presented one.
        `connecting`: False for a station's HTTP request (/fw/, /diag/, otaweb.py), which is
        checked the same way but does not count as a connection's sign-in."""
        keys = (("ocpp", peer), ("ocpp-id", sid))
        if self.throttle.blocked(*keys):
            return 429, "too many failed attempts from %s or for this id" % peer
        if self.cluster is not None and sid not in self.stations:
            await self.station_row_changed(sid)     # registered through another process a moment ago?
        s = self.settings
        if cert or (s.client_ca and s.client_cert == "required"):
            profile = 3
            check = functools.partial(self._authenticate_cert, sid, cert)
        else:
            profile = 0 if s.auth == "none" else 2 if s.tls_cert else 1
            check = functools.partial(self._authenticate, sid, authz)
        try:
            status, why = await check()
        except KeyError as e:
            if e.args != (sid,):
                raise
            # --auth none/pending: a connection of the same new id registered it a moment ago
            # (store.add_station's KeyError): its row read, checked again as the known station
            await self.station_row_changed(sid)
            status, why = await check()
        if why is None:
            self.throttle.succeeded(("ocpp-id", sid))
            if connecting:
                self.metrics.profiles[profile] = self.metrics.profiles.get(profile, 0) + 1
                self.station_profile[sid] = profile     # logged with "connected from" (run_session)
        elif status == 401:
            self.throttle.failed(*keys)
        return status, why

    def note_origin(self, sid, secure, host):
        """Where a station that just connected reaches the gateway (its WebSocket's TLS and Host):
        the scheme and host of the release and diagnostics URLs sent to it (docs/ota.md)."""
        if host and _HOST.match(host):
            self.origins[sid] = ("https" if secure else "http", host)
        else:
            self.origins.pop(sid, None)
            log.warning("station=%s connected with Host %r, which cannot name the gateway in a URL: updates and "
                        "diagnostics are not sent to it until it connects with a host name or address", sid,
                        (host or "")[:80])

    async def _close_sessions(self):
        conns = [sess._connection for sess in self.sessions.values()]
        if conns:
            await asyncio.gather(*(c.close(1001, "gateway shutting down") for c in conns),
                                 return_exceptions=True)

    async def _admit_pending(self, sid, pw, how):
        """--auth pending: an unknown station waits for the operator (up to --max-pending)."""
        pending = self.pending.count()      # not a walk over every station per connection (pending.py)
        if pending >= self.settings.max_pending:
            return 503, "%d stations already wait for an operator (--max-pending)" % pending
        await self.register(sid, pw, state="pending")
        log.warning("station=%s unknown%s: admitted as pending, accept it on the dashboard or "
                    "POST /api/stations/%s/accept", sid, how, sid)
        return None, None

    async def _authenticate_cert(self, sid, cert):
        """Security profile 3: the certificate (already verified against --client-ca) names the
        station in its CN. The station needs no password; the operator's decision (pending,
        rejected) and --auth apply as they do to passwords."""
        if not cert:
            return 401, "no client certificate and --client-cert required"
        cn = auth.certificate_cn(cert)
        if cn != sid:
            return 401, "client certificate CN %r is not the station id in the URL" % (cn,)
        if self.revocations is not None and self.revocations.revoked(cert):
            return 401, "client certificate %s (serial %s) is revoked (--client-crl)" % (cn, cert.get("serialNumber"))
        mode = self.settings.auth
        st = self.stations.get(sid)
        if st is None:
            if mode == "none":
                await self.register(sid, None, state="accepted")
                return None, None
            if mode == "pending":
                return await self._admit_pending(sid, None, " (client certificate)")
            return 401, "unknown station with a client certificate: register it first (picocharge gateway " \
                        "add-station %s)" % sid
        if st["state"] == "rejected":
            return 403, "station is rejected by the operator"
        return None, None

    async def _authenticate(self, sid, authz):
        mode = self.settings.auth
        st = self.stations.get(sid)
        if mode == "none":  # any station, whatever credentials it sends (malformed ones too)
            if st is None:
                await self.register(sid, None, state="accepted")
            return None, None
        user = pw = secret = None
        if authz and authz.startswith("Basic "):
            try:
                # the password is bytes: an AuthorizationKey set by ChangeConfiguration stands for
                # 16..20 bytes, which need not be UTF-8
                raw_user, colon, secret = base64.b64decode(authz[6:]).partition(b":")
                user = raw_user.decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return 401, "malformed Basic credentials"
            if not colon:   # logged as "wrong password" before: none was sent
                return 401, "malformed Basic credentials: no ':' between the user (the station id) and the password"
            try:
                pw = secret.decode("utf-8")     # the password a pending station is registered with
            except UnicodeDecodeError:
                pw = None
        if st is None:
            if mode == "pending":
                # the password it comes with becomes its password: without one, anybody could
                # connect under this id once the operator accepts it
                if not pw or user != sid:
                    return 401, ("HTTP Basic credentials required to be admitted (user = station id, password = "
                            "the station's ocpp.password): configure ocpp.password on the station; the "
                            "password it first connects with becomes its password")
                return await self._admit_pending(sid, pw, "")
            return 401, "unknown station: register it first (picocharge gateway add-station %s)" % sid
        if not st["pw_hash"]:
            return 401, ("station has no password set: give it one (PUT /api/stations/%s/password) and configure "
                    "it on the station as ocpp.password" % sid)
        if secret is None or user != sid:
            return 401, "HTTP Basic credentials required (user = station id, OCPP security profile 1)"
        stored = st["pw_hash"]
        key = (sid, hashlib.sha256(secret).digest())
        seen = self._verified.get(key)
        if seen is not None and seen[0] == stored:
            which = seen[1]
        else:
            which = await asyncio.get_running_loop().run_in_executor(None, auth.check_station_secret, secret,
                                                                     stored)
            if which is None:
                return 401, "wrong password"
            if len(self._verified) > 100000:
                self._verified.clear()
            self._verified[key] = (stored, which)
        if st["state"] == "rejected":    # told only to a station with its right password
            return 403, "station is rejected by the operator"
        if which == 0 and " " in stored:
            # the first connection with the key the gateway gave it: the old one goes
            await self._set_pw_hash(sid, auth.key_in_use(stored))
            self._verified[key] = (st["pw_hash"], 0)
            log.info("station=%s connected with its new AuthorizationKey: the old one is no longer accepted", sid)
        return None, None

    async def _set_pw_hash(self, sid, pw_hash):
        await self.store.run(lambda db: db.execute("UPDATE stations SET pw_hash=? WHERE id=?", (pw_hash, sid))
                             and None)
        self.stations[sid]["pw_hash"] = pw_hash

    async def learn_key(self, sid, key_bytes):
        """The station accepted the AuthorizationKey the gateway sent it (ChangeConfiguration): it
        is the station's password from now on, the old one still accepted until the station
        first connects with the new one."""
        st = self.stations.get(sid)
        if st is None:
            return
        h = await asyncio.get_running_loop().run_in_executor(None, auth.hash_secret, key_bytes)
        await self._set_pw_hash(sid, auth.with_new_key(st["pw_hash"], h))
        log.info("station=%s accepted a new AuthorizationKey: stored (hashed) as its password; the old one "
                 "is accepted until it connects with the new one", sid)

    async def run_session(self, connection):
        sid = connection.station_id
        old = self.sessions.get(sid)
        if old is not None:
            log.warning("station=%s connected again: closing the previous connection", sid)
            await old._connection.close(1000, "replaced by a new connection")
        sess = StationSession(sid, connection, self, response_timeout=self.settings.response_timeout)
        self.sessions[sid] = sess
        if self.gc_tuner is not None:
            self.gc_tuner.connected()
        self.loadbalance.online(sid)     # its TxDefaultProfile, then a plan with it reachable
        if self.cluster is not None:
            try:
                await self.cluster.connected_here(sess)     # another process holding it closes its connection
            except Exception as e:  # noqa: B902 - the database away: the session runs, unknown to the others
                log.warning("station=%s: the other gateway processes are not told of this connection: %s", sid, e)
        ra = connection.remote_address
        peer = ("%s:%s" % ra[:2] if ra[1] else ra[0]) if ra else ""
        try:
            conn_id = await self.store.run(_connected, sid, peer)
        except StoreError as e:     # a full disk: the session still runs; its calls get InternalError
            log.warning("station=%s connected from %s; the connection log is not written: %s", sid, peer, e)
            conn_id = None
        profile = self.station_profile.get(sid)
        log.info("station=%s connected from %s (OCPP security profile %s: %s)", sid, peer, profile,
                 _PROFILES.get(profile, "?"))
        if self.mqtt:
            self.mqtt.publish_status(sid)
        reason = "closed"
        try:
            await sess.start()
        except ConnectionClosed as e:
            if e.rcvd is None and e.sent is not None:   # the gateway closed it: the station broke the protocol
                reason = "closed by the gateway (%d: %s)" % (e.sent.code, e.sent.reason)
            else:
                reason = "closed (%s)" % (e.rcvd.code if e.rcvd else "no close frame")
        finally:
            if self.sessions.get(sid) is sess:
                del self.sessions[sid]
                self.loadbalance.offline(sid)
                if self.mqtt:
                    self.mqtt.publish_status(sid)
            log.info("station=%s disconnected: %s", sid, reason)
            if self.cluster is not None:
                try:
                    await self.cluster.disconnected_here(sess)
                except Exception as e:  # noqa: B902
                    log.warning("station=%s: the other gateway processes are not told of its disconnection: %s",
                                sid, e)
            if conn_id is not None:
                try:
                    await self.store.run(_disconnected, conn_id, reason)
                except StoreError as e:
                    log.warning("station=%s: the connection log is not written: %s", sid, e)

    # --- services for the OCPP handlers and the ingest paths ------------------
    async def register(self, sid, password=None, state="accepted", channel=None, key=None, read_key=None):
        await self.store.add_station(sid, password, state, channel, key, read_key)
        row = (await self.store.run(lambda db: dict(db.execute("SELECT * FROM stations WHERE id=?",
                                                              (sid,)).fetchone())))
        self.stations[sid] = row
        self.write_keys.added(sid)
        self.pending.note(sid)
        if self.thingspeak and channel and key:
            self.thingspeak.add_station(sid)
        return row

    async def set_thingspeak(self, sid, channel, key, read_key=None):
        """New ThingSpeak channel, write key and (for a private channel) read key for a station
        (None, None: stop forwarding). A changed channel keeps the station's place in the
        outbox; a cleared one drops it, so a channel given later starts with what arrives from
        then on."""
        def write(db):
            db.execute("UPDATE stations SET ts_channel=?, ts_key=?, ts_read_key=? WHERE id=?",
                       (channel, key, read_key, sid))
            if not channel:
                db.execute("DELETE FROM outbox WHERE uplink LIKE 'thingspeak%' AND station=?", (sid,))
        if self.thingspeak:
            await self.thingspeak.remove_station(sid)
        await self.store.run(write)
        self.stations[sid].update(ts_channel=channel, ts_key=key, ts_read_key=read_key)
        self.write_keys.changed()
        if self.thingspeak and channel and key:
            self.thingspeak.add_station(sid)

    async def remove(self, sid):
        """Forget a station (a board taken out of service): its connection is closed, its
        password, ThingSpeak channel and outbox places dropped, its retained MQTT status
        cleared. Its readings, transactions and history stay in the database, and show again
        if the id is registered anew."""
        st = self.stations[sid]
        st["state"] = "rejected"        # a reconnect in the meantime is refused
        sess = self.sessions.get(sid)
        if sess is not None:
            await sess._connection.close(1000, "station removed by the operator")
        if self.thingspeak:
            await self.thingspeak.remove_station(sid)
        await self.store.run(Store.remove_station, sid)
        self.stations.pop(sid, None)
        self.write_keys.changed()
        self.pending.note(sid)
        self.last.pop(sid, None)
        if self.mqtt:
            self.mqtt.publish_status(sid)   # an empty retained message: the status topic is gone

    async def set_state(self, sid, state):
        await self.store.run(lambda db: db.execute("UPDATE stations SET state=? WHERE id=?", (state, sid)))
        self.stations[sid]["state"] = state
        self.pending.note(sid)

    async def boot(self, sid, vendor, model, firmware):
        st = self.stations[sid]
        st.update(vendor=vendor, model=model, firmware=firmware, last_seen=utc_now())
        await self.store.run(lambda db: db.execute(
            "UPDATE stations SET vendor=?, model=?, firmware=?, last_seen=? WHERE id=?",
            (vendor, model, firmware, st["last_seen"], sid)))
        self.rollouts.wake(sid)
        return st["state"]

    def resumed(self, sess):
        """A station's first message on a new connection was not a BootNotification: it came back
        (after a network outage, a restart of the gateway) with the state it had, and was
        accepted before. What changed while it was away is sent now."""
        if self.stations.get(sess.id, {}).get("state") == "accepted":
            self.localsync.resumed(sess)

    def booted(self, sess):
        """A station's BootNotification was answered Accepted: the configuration the gateway keeps
        for every station (--clock-aligned-interval) is checked and set where it differs."""
        self.localsync.booted(sess)
        self.loadbalance.online(sess.id)    # a rebooted station may have lost its profiles
        want = self.settings.clock_aligned_interval
        if want is None:
            return
        t = asyncio.get_running_loop().create_task(apply_at_boot(sess, {"ClockAlignedDataInterval": want}))
        self._boot_tasks.add(t)
        t.add_done_callback(self._boot_tasks.discard)

    async def status_changed(self, sid, connector, status, error_code, info):
        st = self.stations[sid]
        ts = utc_now()
        if connector != 0 or not st.get("status"):
            st["status"] = status
            st["error_code"] = error_code
        await self.store.run(lambda db: (
            db.execute("INSERT INTO status_history (station, connector, status, error_code, info, ts) "
                       "VALUES (?,?,?,?,?,?)", (sid, connector, status, error_code, info, ts)),
            db.execute("UPDATE stations SET status=?, error_code=?, last_seen=? WHERE id=?",
                       (st["status"], st["error_code"], ts, sid))) and None)
        if self.mqtt:
            self.mqtt.publish_status(sid)
        self.loadbalance.status(sid, connector, status)

    async def event(self, sid, what):
        ts = utc_now()
        log.info("station=%s %s", sid, what)
        await self.store.run(lambda db: db.execute(
            "INSERT INTO status_history (station, connector, status, error_code, info, ts) "
            "VALUES (?,?,?,?,?,?)", (sid, None, None, None, what, ts)) and None)

    async def ota_status(self, sid, kind, status):
        """A FirmwareStatusNotification (kind "firmware") or DiagnosticsStatusNotification
        ("diagnostics"): kept as the station's last one and in its history; rollouts look again."""
        ts = utc_now()
        seq = await self.store.run(add_ota_status, sid, kind, status, ts)
        self.ota_last[(sid, kind)] = (status, ts, seq)
        await self.event(sid, ("Firmware" if kind == "firmware" else "Diagnostics") + status)
        if kind == "firmware":
            self.rollouts.wake(sid)

    async def id_tag_status(self, tag):
        return self.idtags.info(tag)["status"]     # no id-tag list configured: any tag is Accepted

    async def id_tag_info(self, tag):
        """The idTagInfo of `tag`: status, parentIdTag, expiryDate (idtags.IdTags.info)."""
        return self.idtags.info(tag)

    async def add_id_tag(self, tag, status="Accepted", parent=None, expiry=None):
        await self.idtags.put_many([(tag, status, parent, expiry)])

    async def store_readings(self, sid, rows, source):
        ids = await self.store.add_readings(sid, rows, source)
        last = self.last.setdefault(sid, {})
        for r, i in zip(rows, ids):
            for k, v in r.items():
                if v is not None:
                    last[k] = v
            last["seq"] = i
        self.metrics.readings += len(rows)
        for u in self.uplinks:
            u.wake(sid)
        if self.cluster is not None:
            self.cluster.touched(sid)
        return ids

    # --- commands to stations -------------------------------------------------
    def elsewhere(self, sid):
        """The station is connected to another gateway process, not to this one (cluster)."""
        return self.cluster is not None and sid not in self.sessions and sid in self.cluster.remote

    async def command(self, sid, name, body):
        """The station's answer to an API command, wherever it is connected (cluster.forward)."""
        if self.elsewhere(sid):
            return await self.cluster.forward(sid, name, body, self.settings.response_timeout)
        return await send_command(self.sessions, sid, name, body)

    async def call_station(self, sid, payload):
        """The station's answer to an OCPP call the gateway built (commands.BUILT_CALLS), wherever
        it is connected; CommandError as send_command."""
        if self.elsewhere(sid):
            kwargs = {k: v for k, v in dataclasses.asdict(payload).items() if v is not None}
            return await self.cluster.forward(sid, "call:" + type(payload).__name__, kwargs,
                                              self.settings.response_timeout)
        return await send_call(self.sessions, sid, payload)

    # --- the cluster's news (cluster.py) -----------------------------------------
    async def station_row_changed(self, sid):
        """A station's row changed (any process, or the CLI): read again."""
        row = await self.store.run(lambda db: db.execute("SELECT * FROM stations WHERE id=?", (sid,)).fetchone())
        await self._station_row_read(sid, row)

    async def station_rows_changed(self, sids):
        """Several stations' rows changed (a burst of NOTIFYs: stations registering on another
        process): read again in one query per 500, not one store round trip each (at 10,000
        stations the other process took over a minute to know them all, answering 404 meanwhile)."""
        sids = list(sids)

        def read(db):
            out = {}
            for k in range(0, len(sids), 500):
                part = sids[k:k + 500]
                for r in db.execute("SELECT * FROM stations WHERE id IN (%s)" % ",".join("?" * len(part)),
                                    part).fetchall():
                    out[r["id"]] = r
            return out
        rows = await self.store.run(read)
        for sid in sids:
            await self._station_row_read(sid, rows.get(sid))

    async def _station_row_read(self, sid, row):
        st = self.stations.get(sid)
        ts = self.thingspeak
        if row is None:
            if st is None:
                return
            self.stations.pop(sid, None)
            self.write_keys.changed()
            self.pending.note(sid)
            self.last.pop(sid, None)
            sess = self.sessions.get(sid)
            if sess is not None:
                await sess._connection.close(1000, "station removed by the operator")
            if ts is not None:
                await ts.remove_station(sid)
            return
        row = dict(row)
        if st is not None and st.get("ts_key") != row["ts_key"]:
            # only then: every status a station reports elsewhere brings its row here too
            self.write_keys.changed()
        if st is None:
            self.stations[sid] = st = row
            self.write_keys.added(sid)
            ts_changed = True
        else:
            ts_changed = any(st.get(k) != row[k] for k in ("ts_channel", "ts_key", "ts_read_key"))
            if sid in self.sessions:
                # connected here: what the station tells (its status, boot, last frame) is this
                # process's to write, and may be newer in memory than in the row read (a status
                # being stored now): only the operator's columns are taken
                for k in _OPERATOR_COLUMNS:
                    st[k] = row[k]
            else:
                seen = st.get("last_seen")
                st.update(row)
                if seen and (not row["last_seen"] or seen > row["last_seen"]):
                    st["last_seen"] = seen      # the news of the process it is connected to is newer
        self.pending.note(sid)      # its state may have changed there (accepted by an operator)
        if ts is not None and getattr(ts, "loop", None) is not None and ts_changed:
            await ts.remove_station(sid)
            if st.get("ts_channel") and st.get("ts_key"):
                ts.add_station(sid)

    async def id_tags_changed(self, tags):
        await self.idtags.reload(tags)  # status, parent, expiry: Authorize answers the same on every process

    def remote_changed(self, sid):
        """A station connected to or left another process: nothing kept here beyond cluster.remote."""

    def remote_view(self, sid, seen, last):
        """Another process's news of a station connected to it: its last frame's time and last reading."""
        if sid in self.sessions:
            return
        st = self.stations.get(sid)
        if st is None:
            return
        if seen and (not st.get("last_seen") or seen > st["last_seen"]):
            st["last_seen"] = seen
        if last:
            self.last[sid] = last
        for u in self.uplinks:
            u.wake(sid)     # the process holding its uplink work may be this one

    def leases_gained(self, works):
        from_shards = {w for w in works if w.startswith("thingspeak:")}
        ts = self.thingspeak
        if from_shards and ts is not None and getattr(ts, "loop", None) is not None and not ts.stopping:
            for sid, st in list(self.stations.items()):
                if st.get("ts_channel") and st.get("ts_key") and self.cluster.owns_station(sid):
                    ts.add_station(sid)
        if self.mqtt is not None and "mqtt" in works:
            self.mqtt.wake(None)
        if LB_LEASE in works:
            self.loadbalance.took_over()

    async def leases_lost(self, works):
        ts = self.thingspeak
        if ts is not None:
            for sid in list(ts.workers):
                if self.cluster.work_of(sid) in works:
                    await ts.remove_station(sid)

    # --- views ----------------------------------------------------------------
    def station_view(self, sid):
        st = self.stations[sid]
        return {"id": sid, "state": st["state"], "connected": sid in self.connected,
                "status": st.get("status"), "error_code": st.get("error_code"),
                "vendor": st.get("vendor"), "model": st.get("model"), "firmware": st.get("firmware"),
                "last_seen": st.get("last_seen"),
                "firmware_status": _ota_view(self.ota_last.get((sid, "firmware"))),
                "diagnostics_status": _ota_view(self.ota_last.get((sid, "diagnostics"))),
                "thingspeak_channel": st.get("ts_channel"), "security_profile": self.station_profile.get(sid),
                "local_list": self.localsync.view(sid),
                "last_reading": dict(self.last.get(sid) or {})}


# the columns of a station's row that the operator sets (API, CLI), not the station
_OPERATOR_COLUMNS = ("pw_hash", "state", "ts_channel", "ts_key", "ts_read_key")


def _ota_view(last):
    return {"status": last[0], "ts": last[1]} if last else None


def _last_readings(db):
    from picocharge.firmware.fields import READING_KEYS
    out = {}
    q = ("SELECT r.* FROM readings r JOIN (SELECT station, MAX(id) AS m FROM readings GROUP BY station) x "
         "ON r.id = x.m")
    for row in db.execute(q):
        d = {"seq": row["id"], "ts": row["ts"]}
        for k in READING_KEYS + ("status",):
            if row[k] is not None:
                d[k] = row[k]
        out[row["station"]] = d
    return out


def _connected(db, sid, peer):
    return db.execute("INSERT INTO connections (station, peer, connected_at) VALUES (?,?,?)",
                      (sid, peer, now_iso())).lastrowid


def _disconnected(db, conn_id, reason):
    db.execute("UPDATE connections SET disconnected_at=?, reason=? WHERE id=?", (now_iso(), reason, conn_id))
