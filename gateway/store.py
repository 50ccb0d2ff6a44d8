"""SQLite (WAL) storage for the gateway, behind one small interface.

One thread owns the database connection. Callers submit small functions
(`fn(db) -> result`) and await their result; the thread runs every function
that queued up while the previous commit was in progress inside ONE
transaction, commits, and then releases all the waiting callers at once. So a
reading is on disk before the station gets its answer, and 10,000 stations cost
a few commits per second instead of 10,000.

Paced stations send alone: a reading that found the writer idle would get a commit (and a
wake-up of the writer and of the event loop) of its own. So the writer lingers: once it has
taken the first call of a batch, unless a hundred were already waiting (saturation), it
waits `linger` seconds (5 ms by default) and takes whatever came meanwhile into the same
transaction. No call waits longer than the linger plus the commits before its own; every
caller is still answered only after its commit.

Uplinks use cursor-based outboxes: `outbox(uplink, station, last_id)` holds the
last reading id each uplink delivered per station (station '*' for uplinks that
deliver every station in one stream). Undelivered = readings with a larger id.
Storing a reading therefore costs one INSERT, whatever the number of uplinks.

I/O errors (a full disk, a failing one) never stop the writer thread: a batch that cannot be
stored is rolled back whole and every caller in it gets a StoreError (an OCPP station gets a
CALLERROR and sends the frame again: nothing that was acknowledged is lost), `store.error`
says why in words for /healthz, and the next batch that stores a write clears it (writing
resumes by itself when space returns). A database that fails `PRAGMA quick_check`, or is
not a database, stops the start with a StoreError. The files the gateway creates (the
database; SQLite gives its -wal and -shm files the same mode) are readable by their owner
only (0600).
"""
import asyncio
import hashlib
import hmac
import logging
import os
import queue
import secrets
import sqlite3
import threading
import time
from datetime import datetime, timezone

from picocharge.firmware.fields import READING_KEYS

log = logging.getLogger(__name__)

# the readings table's value columns: one REAL per reading key of the table (fields.READINGS)
_VALUE_COLUMNS = ", ".join("%s REAL" % k for k in READING_KEYS)

SCHEMA = """
CREATE TABLE IF NOT EXISTS stations (
    id TEXT PRIMARY KEY,
    pw_hash TEXT,
    state TEXT NOT NULL DEFAULT 'accepted',     -- accepted | pending | rejected
    ts_channel INTEGER,
    ts_key TEXT,
    ts_read_key TEXT,                           -- a private channel's Read API key (optional)
    vendor TEXT, model TEXT, firmware TEXT,
    status TEXT, error_code TEXT,
    last_seen TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    station TEXT NOT NULL,
    ts TEXT NOT NULL,
    %s,
    status TEXT,
    source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_station ON readings(station, id);
CREATE TABLE IF NOT EXISTS status_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    station TEXT NOT NULL, connector INTEGER, status TEXT, error_code TEXT, info TEXT, ts TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS connections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    station TEXT NOT NULL, peer TEXT, connected_at TEXT NOT NULL, disconnected_at TEXT, reason TEXT
);
CREATE TABLE IF NOT EXISTS transactions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    station TEXT NOT NULL, connector INTEGER, id_tag TEXT,
    meter_start INTEGER, start_ts TEXT, meter_stop INTEGER, stop_ts TEXT, reason TEXT
);
CREATE INDEX IF NOT EXISTS transactions_station ON transactions(station, connector);
CREATE TABLE IF NOT EXISTS id_tags (
    tag TEXT PRIMARY KEY, status TEXT NOT NULL DEFAULT 'Accepted', expiry TEXT
);
CREATE TABLE IF NOT EXISTS outbox (
    uplink TEXT NOT NULL, station TEXT NOT NULL, last_id INTEGER NOT NULL,
    PRIMARY KEY (uplink, station)
);
""" % _VALUE_COLUMNS

_READING_COLS = READING_KEYS + ("status",)
_INSERT_READING = "INSERT INTO readings (station, ts, %s, source) VALUES (?, ?, %s, ?)" % (
    ", ".join(_READING_COLS), ", ".join("?" * len(_READING_COLS)))

EXPORT_COLUMNS_READINGS = ("id", "station", "ts") + _READING_COLS + ("source",)
EXPORT_COLUMNS_TRANSACTIONS = ("id", "station", "connector", "id_tag", "start_ts", "stop_ts", "meter_start",
                               "meter_stop", "reason")

_PBKDF2_ROUNDS = 60000
_MAX_BATCH = 5000   # calls in one transaction at most
_LINGER_BELOW = 100     # a batch this large already shares its commit: no linger (closed loop)


def now_iso():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def hash_password(password, salt=None):
    """'pbkdf2_sha256$rounds$salt$hash' for a station password (never stored in clear)."""
    salt = salt or secrets.token_hex(8)
    dk = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), _PBKDF2_ROUNDS)
    return "pbkdf2_sha256$%d$%s$%s" % (_PBKDF2_ROUNDS, salt, dk.hex())


def check_password(password, stored):
    try:
        algo, rounds, salt, digest = stored.split("$")
        dk = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(rounds))
    except (ValueError, AttributeError):
        return False
    return algo == "pbkdf2_sha256" and hmac.compare_digest(dk.hex(), digest)


def generate_password():
    return secrets.token_urlsafe(15)


class StoreError(Exception):
    pass


# columns added after the first release: (table, column, declaration); a database made by an
# older gateway gets them with ALTER TABLE when it is opened. Every reading key has its column:
# a reading added to the table later gets one in an existing database too.
_ADDED_COLUMNS = (("stations", "ts_read_key", "TEXT"),) + tuple(("readings", k, "REAL") for k in READING_KEYS)


def _migrate(db):
    for table, column, decl in _ADDED_COLUMNS:
        have = {r[1] for r in db.execute("PRAGMA table_info(%s)" % table)}
        if column not in have:
            db.execute("ALTER TABLE %s ADD COLUMN %s %s" % (table, column, decl))
            log.info("store: added %s.%s to the database", table, column)


class Store:
    """The gateway's database. `await store.run(fn)` runs fn(db) in the writer thread."""

    # the batching writer waits this long after a batch's first call for more (paced load:
    # readings that arrive a few ms apart share one commit); 0 commits at once
    LINGER = 0.005

    def __init__(self, path, linger=LINGER):
        self.path = str(path)
        self.linger = linger
        self._q = queue.SimpleQueue()
        self._thread = None
        self._loop = None
        self.commits = 0
        self.batched = 0
        self.failed_batches = 0
        self.error = None   # None, or why writes fail now (for /healthz), in words

    # --- life cycle ---------------------------------------------------------
    def open(self):
        """Create the schema (synchronously, for CLI use and before start())."""
        db = self._connect()
        try:
            db.executescript(SCHEMA)
            _migrate(db)
            db.commit()
        except sqlite3.DatabaseError as e:
            db.close()
            raise StoreError("cannot use the database %s (%s): is it a PicoCharge gateway database? Restore it "
                             "from a backup, or move it away to start with an empty one" % (self.path, e))
        return db

    def _connect(self):
        d = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(d):
            raise StoreError("the database folder %s does not exist: create it or give another --db" % d)
        _private(self.path)
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
        except sqlite3.DatabaseError as e:
            raise StoreError("cannot open the database %s (%s): is it a PicoCharge gateway database?"
                             % (self.path, e))
        db.row_factory = sqlite3.Row
        return db

    def check(self, db):
        """StoreError unless `PRAGMA quick_check` finds the database sound (run at start)."""
        try:
            bad = [r[0] for r in db.execute("PRAGMA quick_check(5)")]
        except sqlite3.DatabaseError as e:
            bad = [str(e)]
        if bad != ["ok"]:
            raise StoreError("the database %s is damaged (PRAGMA quick_check: %s): restore it from a backup, "
                             "or move it away to start with an empty one" % (self.path, "; ".join(bad)[:300]))

    async def start(self):
        self._loop = asyncio.get_running_loop()
        db = self._connect()
        try:
            self.check(db)
        finally:
            db.close()
        db = self.open()
        self._thread = threading.Thread(target=self._worker, args=(db,), name="store", daemon=True)
        self._thread.start()

    async def stop(self):
        if self._thread:
            self._q.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
            self._thread = None

    # --- the batching writer --------------------------------------------------
    def run(self, fn, *args):
        """Future of fn(db, *args), run inside the next batched transaction."""
        fut = self._loop.create_future()
        self._q.put((fn, args, fut))
        return fut

    def _worker(self, db):
        q = self._q
        stop = False
        while not stop:
            item = q.get()
            if item is None:
                break
            batch = [item]
            stop = self._take(q, batch)
            if not stop and len(batch) < _LINGER_BELOW and self.linger > 0:
                # a sleep, not a get(timeout=): a put() with no waiter does not wake this thread
                time.sleep(self.linger)
                stop = self._take(q, batch)
            try:
                if db is None:
                    db = self._connect()
                done = self._batch(db, batch)
            except BaseException as e:  # noqa: B902 - whatever it was, no caller is left waiting
                done, db = self._failed(db, batch, e)
            self.commits += 1
            self.batched += len(batch)
            try:
                self._loop.call_soon_threadsafe(_release, done)
            except RuntimeError:    # the loop is closed: nobody is waiting any more
                break
        if db is not None:
            db.close()

    @staticmethod
    def _take(q, batch):
        """Move what is queued into batch (up to _MAX_BATCH); True when the stop mark came."""
        while len(batch) < _MAX_BATCH:
            try:
                item = q.get_nowait()
            except queue.Empty:
                return False
            if item is None:
                return True
            batch.append(item)
        return False

    def _batch(self, db, batch):
        """Run a batch in one transaction; [(future, ok, result)]. An I/O error raises (the
        whole batch is then refused); a caller's own error is handed to that caller."""
        done = []
        changes = db.total_changes
        db.execute("BEGIN")
        i, n = 0, len(batch)
        while i < n:
            fn = batch[i][0]
            if fn is _READINGS:
                # a run of readings from many stations: one executemany, not one
                # execute per row (the Python cost of the writer is per call)
                j = i + 1
                while j < n and batch[j][0] is _READINGS:
                    j += 1
                out = self._insert_run(db, batch[i:j])
                for _f, ok, res in out:
                    if not ok and _io_error(res):
                        raise res
                done.extend(out)
                i = j
                continue
            _fn, args, fut = batch[i]
            try:
                done.append((fut, True, fn(db, *args)))
            except Exception as e:  # handed to the caller that asked
                if _io_error(e):
                    raise
                done.append((fut, False, e))
            i += 1
            if not db.in_transaction:
                # SQLite rolled the transaction back on its own (it may on a full disk): what
                # the earlier callers wrote is gone, so none of them may be told it is stored
                raise StoreError("the transaction was rolled back by SQLite")
        db.execute("COMMIT")
        if self.error is not None and db.total_changes > changes:
            log.warning("store: writing again (%s was the last error)", self.error)
            self.error = None
        return done

    def _failed(self, db, batch, e):
        """The batch is refused: rolled back, each caller gets a StoreError, store.error says
        why. The connection is replaced if it cannot even roll back."""
        self.failed_batches += 1
        why = _describe(e, self.path)
        if why != self.error:
            log.error("store: %s", why)
        self.error = why
        if db is not None:
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
            except sqlite3.Error as e2:
                log.warning("store: ROLLBACK failed too (%s): opening the database again", e2)
                try:
                    db.close()
                except sqlite3.Error:
                    pass
                db = None
        err = StoreError("not stored: %s" % why)
        return [(fut, False, err) for _fn, _a, fut in batch], db

    # --- stations -------------------------------------------------------------
    @staticmethod
    def _add_station(db, sid, password, state, channel, key, read_key=None):
        if db.execute("SELECT 1 FROM stations WHERE id=?", (sid,)).fetchone():
            raise KeyError(sid)
        db.execute("INSERT INTO stations (id, pw_hash, state, ts_channel, ts_key, ts_read_key, created_at) "
                   "VALUES (?,?,?,?,?,?,?)",
                   (sid, hash_password(password) if password else None, state, channel, key, read_key,
                    now_iso()))

    def add_station_sync(self, sid, password=None, state="accepted", channel=None, key=None, read_key=None):
        db = self.open()
        try:
            db.execute("BEGIN")
            self._add_station(db, sid, password, state, channel, key, read_key)
            db.execute("COMMIT")
        finally:
            db.close()

    def add_station(self, sid, password=None, state="accepted", channel=None, key=None, read_key=None):
        return self.run(self._add_station, sid, password, state, channel, key, read_key)

    @staticmethod
    def remove_station(db, sid):
        """Drop a station and its outbox places; True if it was there. Its readings,
        transactions and history stay."""
        gone = db.execute("DELETE FROM stations WHERE id=?", (sid,)).rowcount > 0
        db.execute("DELETE FROM outbox WHERE station=?", (sid,))
        return gone

    def remove_station_sync(self, sid):
        db = self.open()
        try:
            db.execute("BEGIN")
            gone = self.remove_station(db, sid)
            db.execute("COMMIT")
            return gone
        finally:
            db.close()

    @staticmethod
    def station_rows(db):
        return [dict(r) for r in db.execute("SELECT * FROM stations ORDER BY id")]

    def stations_sync(self):
        db = self.open()
        try:
            return self.station_rows(db)
        finally:
            db.close()

    # --- transactions ---------------------------------------------------------
    # A station that reboots replays what it sent and did not see answered: a StartTransaction
    # or StopTransaction may arrive twice. Both are idempotent here: the same start (station,
    # connector, idTag, meterStart, timestamp) is the same transaction, and the first stop of a
    # transaction stands.
    @staticmethod
    def start_transaction(db, station, connector, id_tag, meter_start, ts, reason=None):
        """(transaction id, replayed?): the id of the same start if there is one, else a new one."""
        row = db.execute("SELECT id FROM transactions WHERE station=? AND connector=? AND id_tag=? AND "
                         "meter_start=? AND start_ts=? ORDER BY id DESC LIMIT 1",
                         (station, connector, id_tag, meter_start, ts)).fetchone()
        if row is not None:
            return row[0], True
        return db.execute("INSERT INTO transactions (station, connector, id_tag, meter_start, start_ts, reason) "
                          "VALUES (?,?,?,?,?,?)", (station, connector, id_tag, meter_start, ts, reason)).lastrowid, \
            False

    @staticmethod
    def stop_transaction(db, station, tid, meter_stop, ts, reason):
        """'stopped', 'replayed' (stopped before: nothing changes) or 'unknown' (no such
        transaction of this station)."""
        row = db.execute("SELECT stop_ts FROM transactions WHERE id=? AND station=?", (tid, station)).fetchone()
        if row is None:
            return "unknown"
        if row[0] is not None:
            return "replayed"
        db.execute("UPDATE transactions SET meter_stop=?, stop_ts=?, reason=COALESCE(?, reason, 'Local') "
                   "WHERE id=? AND station=?", (meter_stop, ts, reason, tid, station))
        return "stopped"

    # --- readings -------------------------------------------------------------
    @staticmethod
    def _insert_readings(db, station, rows, source):
        ids = []
        for r in rows:
            cur = db.execute(_INSERT_READING, (station, r["ts"]) + tuple(map(r.get, _READING_COLS))
                             + (source,))
            ids.append(cur.lastrowid)
        return ids

    @staticmethod
    def _insert_run(db, items):
        """Readings of several add_readings() calls in one executemany. The ids are
        consecutive: this connection is the only writer and holds the write lock for the
        whole transaction. If a row fails, the run is undone and redone call by call, so
        each caller gets its own result or error as before."""
        params = []
        for _fn, (station, rows, source), _fut in items:
            for r in rows:
                params.append((station, r["ts"]) + tuple(map(r.get, _READING_COLS)) + (source,))
        if not params:
            return [(fut, True, []) for _fn, _a, fut in items]
        db.execute("SAVEPOINT readings")
        try:
            db.executemany(_INSERT_READING, params)
            last = db.execute("SELECT last_insert_rowid()").fetchone()[0]
        except Exception as e:
            if _io_error(e) or not db.in_transaction:
                raise   # the disk, not a row: the batch is refused (SQLite may have rolled it back)
            db.execute("ROLLBACK TO readings")
            db.execute("RELEASE readings")
            out = []
            for _fn, args, fut in items:
                try:
                    out.append((fut, True, Store._insert_readings(db, *args)))
                except Exception as e:
                    out.append((fut, False, e))
            return out
        db.execute("RELEASE readings")
        first = last - len(params) + 1
        out = []
        for _fn, (_station, rows, _source), fut in items:
            out.append((fut, True, list(range(first, first + len(rows)))))
            first += len(rows)
        return out

    # --- exports (read-only queries, run on a connection of their own) ---------
    def reader(self):
        """A read-only connection for long reads (CSV exports): with WAL they run beside the
        writer thread instead of holding up its batches. The caller closes it."""
        db = sqlite3.connect("file:%s?mode=ro" % self.path, uri=True, check_same_thread=False)
        db.execute("PRAGMA busy_timeout=5000")
        return db

    @staticmethod
    def _export_where(kind, station, frm, to):
        col = "ts" if kind == "readings" else "start_ts"
        sql, args = [], []
        if station is not None:
            sql.append("station=?")
            args.append(station)
        if frm is not None:
            sql.append("%s >= ?" % col)
            args.append(frm)
        if to is not None:
            sql.append("%s < ?" % col)
            args.append(to)
        return (" AND ".join(sql) or "1"), args

    @staticmethod
    def export_count(db, kind, station=None, frm=None, to=None):
        """Rows of `kind` (readings, transactions) of a station (None: all) in [frm, to)."""
        where, args = Store._export_where(kind, station, frm, to)
        return db.execute("SELECT COUNT(*) FROM %s WHERE %s" % (kind, where), args).fetchone()[0]

    @staticmethod
    def export_chunk(db, kind, station=None, frm=None, to=None, after=0, n=1000):
        """The next `n` rows of `kind` after row id `after`, oldest first, as tuples: readings
        (id, station, ts, reading keys..., status, source); transactions (id, station,
        connector, id_tag, start_ts, stop_ts, meter_start, meter_stop, reason)."""
        where, args = Store._export_where(kind, station, frm, to)
        cols = (EXPORT_COLUMNS_READINGS if kind == "readings" else EXPORT_COLUMNS_TRANSACTIONS)
        return db.execute("SELECT %s FROM %s WHERE id > ? AND %s ORDER BY id LIMIT ?" % (
            ", ".join(cols), kind, where), [after] + args + [n]).fetchall()

    def add_readings(self, station, rows, source):
        """Store reading dicts ({"ts", reading keys, "status"}); resolves to their row ids."""
        return self.run(_READINGS, station, rows, source)


_READINGS = Store._insert_readings


def _release(done):
    for fut, ok, res in done:
        if fut.cancelled():
            continue
        if ok:
            fut.set_result(res)
        else:
            fut.set_exception(res)


def reading_row(row):
    """A readings row as an API/uplink dict (only the keys that are set, plus id/ts/status)."""
    d = {"seq": row["id"], "ts": row["ts"]}
    for k in READING_KEYS:
        v = row[k]
        if v is not None:
            d[k] = v
    if row["status"] is not None:
        d["status"] = row["status"]
    return d


# SQLite's words for errors of the disk or the file, not of the statement
_IO_WORDS = ("disk is full", "disk i/o error", "database disk image is malformed", "readonly database",
             "unable to open database file", "file is not a database", "out of memory",
             "no transaction is active", "rolled back by sqlite")


def _io_error(e):
    return isinstance(e, (sqlite3.Error, StoreError)) and any(w in str(e).lower() for w in _IO_WORDS)


def _describe(e, path):
    """A store error in words for the operator (/healthz, the log)."""
    msg = str(e) or type(e).__name__
    if "disk is full" in msg.lower():
        return ("%s: free space on %s (the database is %s); writes resume by themselves"
                % (msg, os.path.dirname(os.path.abspath(path)), path))
    if _io_error(e):
        return "%s (database %s): check the disk; writes resume by themselves when it works again" % (msg, path)
    return "%s: %s (database %s)" % (type(e).__name__, msg, path)


def _private(path):
    """Create the database file 0600 when it does not exist yet (SQLite gives its -wal and -shm
    files the database's mode); an existing one readable by others is made private."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        for p in (path, path + "-wal", path + "-shm"):
            try:
                mode = os.stat(p).st_mode
                if mode & 0o077:
                    os.chmod(p, mode & 0o700)
                    log.warning("store: %s was readable by others; made it private (0600)", p)
            except OSError:
                pass
    except OSError:
        pass    # cannot create it (a read-only folder...): sqlite3.connect says why
    else:
        os.close(fd)


# --- over-the-air updates (issue 12, docs/ota.md): releases, firmware and diagnostics status,
# staged rollouts. Plain SQL that PostgreSQL runs as it is: no AUTOINCREMENT (ids and
# sequence numbers are given by the one writer), no INSERT OR REPLACE.
OTA_SCHEMA = """
CREATE TABLE IF NOT EXISTS releases (
    version TEXT PRIMARY KEY, board TEXT, mpy INTEGER, key_id TEXT, created TEXT,
    files INTEGER NOT NULL, size INTEGER NOT NULL, manifest_sha256 TEXT NOT NULL, added_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ota_status (
    seq INTEGER PRIMARY KEY, station TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL, ts TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ota_status_station ON ota_status(station, kind, seq);
CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY, version TEXT NOT NULL, wave INTEGER NOT NULL, max_failures INTEGER NOT NULL,
    timeout INTEGER NOT NULL, state TEXT NOT NULL, reason TEXT, created TEXT NOT NULL, finished TEXT
);
CREATE TABLE IF NOT EXISTS rollout_stations (
    rollout INTEGER NOT NULL, station TEXT NOT NULL, position INTEGER NOT NULL, state TEXT NOT NULL,
    detail TEXT, since_seq INTEGER, started TEXT, finished TEXT,
    PRIMARY KEY (rollout, station)
);
"""
SCHEMA = SCHEMA + OTA_SCHEMA

_RELEASE_COLS = ("version", "board", "mpy", "key_id", "created", "files", "size", "manifest_sha256", "added_at")


def add_release(db, row):
    """Index a stored release (a dict of _RELEASE_COLS); KeyError when the version is there."""
    if db.execute("SELECT 1 FROM releases WHERE version=?", (row["version"],)).fetchone():
        raise KeyError(row["version"])
    db.execute("INSERT INTO releases (%s) VALUES (%s)" % (", ".join(_RELEASE_COLS),
                                                          ", ".join("?" * len(_RELEASE_COLS))),
               tuple(row[c] for c in _RELEASE_COLS))


def release_rows(db, version=None):
    q = "SELECT %s FROM releases" % ", ".join(_RELEASE_COLS)
    if version is not None:
        return [dict(zip(_RELEASE_COLS, r)) for r in db.execute(q + " WHERE version=?", (version,))]
    return [dict(zip(_RELEASE_COLS, r)) for r in db.execute(q + " ORDER BY added_at DESC, version DESC")]


def remove_release(db, version):
    return db.execute("DELETE FROM releases WHERE version=?", (version,)).rowcount > 0


def rollouts_using(db, version):
    """Ids of the rollouts of `version` still running (its release must stay)."""
    return [r[0] for r in db.execute("SELECT id FROM rollouts WHERE version=? AND state=? ORDER BY id",
                                     (version, "running"))]


def add_ota_status(db, station, kind, status, ts):
    """A FirmwareStatusNotification (kind 'firmware') or DiagnosticsStatusNotification
    ('diagnostics'); its sequence number (orders statuses that share a second)."""
    seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM ota_status").fetchone()[0]
    db.execute("INSERT INTO ota_status (seq, station, kind, status, ts) VALUES (?,?,?,?,?)",
               (seq, station, kind, status, ts))
    return seq


def last_ota_status(db):
    """{(station, kind): (status, ts, seq)} of the newest status of each station and kind."""
    return {(r[0], r[1]): (r[2], r[3], r[4]) for r in db.execute(
        "SELECT station, kind, status, ts, seq FROM ota_status WHERE seq IN "
        "(SELECT MAX(seq) FROM ota_status GROUP BY station, kind)")}


def ota_history(db, station, limit=200):
    return [{"kind": r[0], "status": r[1], "ts": r[2]} for r in db.execute(
        "SELECT kind, status, ts FROM ota_status WHERE station=? ORDER BY seq DESC LIMIT ?", (station, limit))]


def ota_seq(db):
    return db.execute("SELECT COALESCE(MAX(seq), 0) FROM ota_status").fetchone()[0]


_ROLLOUT_COLS = ("id", "version", "wave", "max_failures", "timeout", "state", "reason", "created", "finished")
_ROLLOUT_STATION_COLS = ("station", "position", "state", "detail", "since_seq", "started", "finished")


def add_rollout(db, version, wave, max_failures, timeout, stations, created):
    rid = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM rollouts").fetchone()[0]
    db.execute("INSERT INTO rollouts (id, version, wave, max_failures, timeout, state, created) "
               "VALUES (?,?,?,?,?,?,?)", (rid, version, wave, max_failures, timeout, "running", created))
    db.executemany("INSERT INTO rollout_stations (rollout, station, position, state) VALUES (?,?,?,?)",
                   [(rid, sid, i, "waiting") for i, sid in enumerate(stations)])
    return rid


def rollout_rows(db, rid=None, state=None):
    """[rollout dict with "stations": [station dicts in wave order]], newest first."""
    q, args = "SELECT %s FROM rollouts" % ", ".join(_ROLLOUT_COLS), []
    if rid is not None:
        q, args = q + " WHERE id=?", [rid]
    elif state is not None:
        q, args = q + " WHERE state=?", [state]
    out = [dict(zip(_ROLLOUT_COLS, r)) for r in db.execute(q + " ORDER BY id DESC LIMIT 200", args)]
    for ro in out:
        ro["stations"] = [dict(zip(_ROLLOUT_STATION_COLS, r)) for r in db.execute(
            "SELECT %s FROM rollout_stations WHERE rollout=? ORDER BY position" % ", ".join(_ROLLOUT_STATION_COLS),
            (ro["id"],))]
    return out


def set_rollout(db, rid, state, reason, finished):
    db.execute("UPDATE rollouts SET state=?, reason=?, finished=? WHERE id=?", (state, reason, finished, rid))


def set_rollout_station(db, rid, station, state, detail, since_seq, started, finished):
    db.execute("UPDATE rollout_stations SET state=?, detail=?, since_seq=?, started=?, finished=? "
               "WHERE rollout=? AND station=?", (state, detail, since_seq, started, finished, rid, station))
