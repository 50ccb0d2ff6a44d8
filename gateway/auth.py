"""Who may do what: API tokens with a role, dashboard sessions, failed-auth slow-down.

Tokens: `secrets.token_urlsafe(32)` (256 random bits) shown once and kept only as their
SHA-256 in a JSON file beside the database (`<db>.tokens`, mode 0600). A fast hash is
enough for a random 256-bit secret (a slow one protects guessable passwords); the file is
separate from the database so that `picocharge gateway token ...` works while the
gateway runs and the database (owned by the store) keeps no credential of the operator's.
The gateway re-reads the file when it changes, so a revoked token stops working at once.

Roles, each including the one before: read (GET), operate (accept/reject, id tags,
commands to stations), admin (register, remove, re-key stations, ThingSpeak channels).

Sessions: the dashboard trades a token for a random session id in an HttpOnly,
SameSite=Strict cookie (Secure under TLS) and a CSRF token that every write made with the
cookie must send back in `X-CSRF-Token`; a cross-origin page can neither read that token
nor set the header on a no-cors request or a form post.

Station passwords (OCPP security profiles 1 and 2: HTTP Basic, password = the station's
AuthorizationKey): kept as PBKDF2 hashes in the stations table. The OCPP 1.6 security
whitepaper's configuration key table gives AuthorizationKey a "minimal length: 16 bytes",
"hexadecimal represented (20 bytes maximum, represented as a string of up to 40 hexadecimal
digits)": a key the gateway sends with ChangeConfiguration is 32..40 hex digits (16..20
bytes) and the station's Basic password is the bytes they stand for. A password given in
clear (the API, `add-station`) has the same 16-byte minimum and the 40-character maximum of
the key's value: 16..40 printable ASCII characters. A station whose key the gateway changed
has two hashes until it connects with the new key (`<new> <old>`): either is let in, and
the first connection with the new one drops the old.

Station certificates (OCPP security profile 3): the TLS layer (server.tls_context) has checked
that a station's certificate chains to the operator's CA; `certificate_cn` reads the
subject's common name from it, which must be the station id of the URL (app.Gateway).

Throttle: failed attempts per key (client address, station id) in a sliding window; past
the limit the key is refused (429 / a refused handshake) until the window slides on.
"""
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from urllib.parse import urlsplit

from .store_schema import is_url

log = logging.getLogger(__name__)

ROLES = ("read", "operate", "admin")
SESSION_COOKIE = "picocharge_session"
CSRF_HEADER = "X-CSRF-Token"


# the station password / AuthorizationKey rules (see above)
PASSWORD_MIN, PASSWORD_MAX = 16, 40     # characters of a password given in clear
KEY_MIN, KEY_MAX = 16, 20               # bytes of an AuthorizationKey (32..40 hex digits)
PASSWORD_RULE = "a string of 16..40 printable ASCII characters without spaces"
KEY_RULE = ("16..20 bytes written as 32..40 hexadecimal digits (OCPP 1.6 security whitepaper), "
            "e.g. from `openssl rand -hex 20`")
_ROUNDS = 60000


def password_problem(pw):
    """Why `pw` cannot be a station password given in clear (None: it can)."""
    if not isinstance(pw, str) or not PASSWORD_MIN <= len(pw) <= PASSWORD_MAX or \
            not all("!" <= c <= "~" for c in pw):
        return "password must be " + PASSWORD_RULE
    return None


def authorization_key_bytes(value):
    """The Basic password an AuthorizationKey value stands for; ValueError says what is wrong."""
    if not isinstance(value, str) or len(value) % 2 or not KEY_MIN * 2 <= len(value) <= KEY_MAX * 2:
        raise ValueError("AuthorizationKey must be " + KEY_RULE)
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ValueError("AuthorizationKey must be " + KEY_RULE + ": it has a character that is not a "
                         "hexadecimal digit")


def hash_secret(secret, salt=None):
    """'pbkdf2_sha256$rounds$salt$hash' of a station password (str, as UTF-8) or key (bytes); the
    format store.hash_password writes."""
    if isinstance(secret, str):
        secret = secret.encode()
    salt = salt or secrets.token_hex(8)
    return "pbkdf2_sha256$%d$%s$%s" % (_ROUNDS, salt, hashlib.pbkdf2_hmac("sha256", secret, salt.encode(),
                                                                          _ROUNDS).hex())


def _matches(secret, one):
    try:
        algo, rounds, salt, digest = one.split("$")
        dk = hashlib.pbkdf2_hmac("sha256", secret, salt.encode(), int(rounds))
    except (ValueError, AttributeError):
        return False
    return algo == "pbkdf2_sha256" and hmac.compare_digest(dk.hex(), digest)


def check_station_secret(secret, stored):
    """Which of a station's stored hashes `secret` (bytes) matches: 0 the current one (a new key
    not yet used to connect, when there are two), 1 the old one kept until then; None: neither."""
    for i, one in enumerate((stored or "").split()[:2]):
        if _matches(secret, one):
            return i
    return None


def with_new_key(stored, new_hash):
    """A station's stored hashes after it accepted a new key: the new one, and the one it last
    connected with (kept until it connects with the new one)."""
    old = (stored or "").split()
    return "%s %s" % (new_hash, old[-1]) if old else new_hash


def key_in_use(stored):
    """The stored hashes once the station connected with its new key: the old one dropped."""
    return (stored or "").split()[0] if stored else stored


def role_at_least(role, need):
    return role in ROLES and ROLES.index(role) >= ROLES.index(need)


def _digest(token):
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def beside_db(db, suffix):
    """The file or folder that goes with database `db` (`suffix` e.g. ".tokens", ".releases"):
    beside a SQLite file; for a PostgreSQL URL, <data home>/picocharge/<database name><suffix>,
    the data home being $XDG_DATA_HOME or ~/.local/share (not the working folder, which a service
    manager may set anywhere; every gateway process of the user on the host shares it). That
    folder is made 0700. Never a name holding the URL."""
    db = str(db)
    if not is_url(db):
        return db + suffix
    base = os.path.join(os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share"),
                        "picocharge")
    os.makedirs(base, mode=0o700, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", urlsplit(db).path.strip("/")) or "gateway"
    return os.path.join(base, name + suffix)


def tokens_path(db):
    """The token file that goes with database `db` (beside_db)."""
    return beside_db(db, ".tokens")


def write_private(path, data):
    """Write `data` (str) to `path` readable and writable by its owner only (0600), atomically."""
    tmp = "%s.tmp%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class TokenStore:
    """The token file: [{id, name, role, sha256, created}]."""

    def __init__(self, path):
        self.path = path
        self._rows = []
        self._by_hash = {}
        self._stamp = None

    def _load(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._rows, self._by_hash, self._stamp = [], {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            with open(self.path) as f:
                rows = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError("the token file %s cannot be read (%s): fix or remove it (a new admin token is "
                             "then made at the next start)" % (self.path, e))
        if not isinstance(rows, list):
            raise ValueError("the token file %s is not a list of tokens" % self.path)
        self._rows = rows
        self._by_hash = {r["sha256"]: r for r in rows}
        self._stamp = stamp

    def rows(self):
        self._load()
        return [dict(r) for r in self._rows]

    def _save(self):
        write_private(self.path, json.dumps(self._rows, indent=1) + "\n")
        self._stamp = None

    def create(self, role, name=None):
        """(the token in clear: shown once, row)."""
        if role not in ROLES:
            raise ValueError("role %r: one of %s" % (role, ", ".join(ROLES)))
        self._load()
        token = "pct_" + secrets.token_urlsafe(32)
        used = {r["id"] for r in self._rows}
        n = len(self._rows) + 1
        while "t%d" % n in used:
            n += 1
        row = {"id": "t%d" % n, "name": name or "%s token" % role, "role": role, "sha256": _digest(token),
               "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._rows.append(row)
        self._save()
        return token, dict(row)

    def revoke(self, token_id):
        self._load()
        keep = [r for r in self._rows if r["id"] != token_id and r.get("name") != token_id]
        if len(keep) == len(self._rows):
            return False
        self._rows = keep
        self._save()
        return True

    def has(self, token_id):
        self._load()
        return any(r["id"] == token_id for r in self._rows)

    def lookup(self, token):
        """The row of a token given in clear, or None."""
        self._load()
        d = _digest(token)
        row = self._by_hash.get(d)
        if row is not None and hmac.compare_digest(row["sha256"], d):
            return row
        return None


CERT_REQUIRED_401 = ("a client certificate from the operator's CA is required (OCPP security profile 3): "
                     "configure ocpp.client_cert and ocpp.client_key on the station (picocharge provision "
                     "--client-cert)")


def certificate_cn(peercert):
    """The subject's common name of a verified peer certificate (ssl's getpeercert() dict),
    or None when there is no certificate or no single CN (then it names no station)."""
    if not peercert:
        return None
    cns = [v for rdn in peercert.get("subject", ()) for k, v in rdn if k == "commonName"]
    return cns[0] if len(cns) == 1 else None


def peer_certificate(transport):
    """The verified client certificate of a connection (a dict; None without TLS or certificate)."""
    return transport.get_extra_info("peercert") if transport is not None else None


class Sessions:
    """Dashboard sessions in memory (a restart signs everybody out): id -> (role, csrf, expiry)."""

    def __init__(self, max_age=12 * 3600, max_sessions=1000):
        self.max_age = max_age
        self.max_sessions = max_sessions
        self._s = {}

    def open(self, role, token_id):
        now = time.monotonic()
        if len(self._s) >= self.max_sessions:
            for k in [k for k, v in self._s.items() if v[2] < now] or sorted(self._s, key=lambda k: self._s[k][2])[:1]:
                del self._s[k]
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._s[sid] = (role, csrf, now + self.max_age, token_id)
        return sid, csrf

    def get(self, sid):
        """(role, csrf, token id) of a live session, else None."""
        v = self._s.get(sid) if sid else None
        if v is None:
            return None
        if v[2] < time.monotonic():
            del self._s[sid]
            return None
        return v[0], v[1], v[3]

    def close(self, sid):
        self._s.pop(sid, None)

    def drop_token(self, token_id):
        for k in [k for k, v in self._s.items() if v[3] == token_id]:
            del self._s[k]


class Throttle:
    """At most `limit` failures per key in `window` seconds; `blocked(key)` says when to refuse.
    Keys are client addresses and station ids; at most `max_keys` are tracked (the oldest go)."""

    # stations behind one NAT share an address: one misconfigured station must not lock out its
    # neighbours, so an address may fail this many times the limit (its station id is held to 1x)
    KIND_FACTOR = {"ocpp": 10}

    def __init__(self, limit=10, window=60.0, max_keys=100000, clock=time.monotonic):
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._fails = {}
        self.refused = 0

    def _recent(self, key, now):
        ts = self._fails.get(key)
        if not ts:
            return None
        while ts and now - ts[0] > self.window:
            ts.pop(0)
        if not ts:
            del self._fails[key]
            return None
        return ts

    def blocked(self, *keys):
        """Seconds to wait before trying again (0: go ahead)."""
        if not self.limit:
            return 0
        now = self.clock()
        wait = 0
        for k in keys:
            ts = self._recent(k, now)
            if ts and len(ts) >= self._limit(k):
                wait = max(wait, ts[0] + self.window - now)
        if wait:
            self.refused += 1
        return wait

    def failed(self, *keys):
        now = self.clock()
        for k in keys:
            ts = self._fails.get(k)
            if ts is None:
                if len(self._fails) >= self.max_keys:
                    self._fails.pop(next(iter(self._fails)))
                ts = self._fails[k] = []
            ts.append(now)
            n = self._limit(k)
            if len(ts) > n:
                del ts[:len(ts) - n]

    def _limit(self, key):
        return self.limit * self.KIND_FACTOR.get(key[0], 1) if isinstance(key, tuple) else self.limit

    def succeeded(self, *keys):
        for k in keys:
            self._fails.pop(k, None)
