"""The gateway's storage, behind one small interface, on two back ends: SQLite (WAL, one file,
store_sqlite.py) is the embedded default for one process; PostgreSQL (store_pg.py) is the shared
one, chosen by giving `--db` a postgresql:// URL instead of a path. What differs between them
(placeholders, identity columns, transaction and error semantics, the schema's words) lives in
those two modules and in gateway/migrations/<dialect>/; everything here and every caller's SQL is
the subset both speak: `?` placeholders, `INSERT ... ON CONFLICT`, `cursor.lastrowid`, ISO-8601
UTC timestamps stored as text (they compare and sort as text on both).

The schema is numbered SQL migrations, applied at start (store_schema.py says how to add a table).

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

A caller's own error (a constraint, a bug in its SQL) is handed to that caller and the others in
its batch are stored: SQLite keeps the transaction going; PostgreSQL aborts it, so there the
batch is rolled back and run again with each call in a savepoint of its own (the rare path).

I/O errors (a full disk, a failing one, a lost server connection) never stop the writer thread: a
batch that cannot be stored is rolled back whole and every caller in it gets a StoreError (an
OCPP station gets a CALLERROR and sends the frame again: nothing that was acknowledged is lost),
`store.error` says why in words for /healthz, and the next batch that stores a write clears it
(writing resumes by itself when space, or the server, returns). A database that fails its check
at start (SQLite's `PRAGMA quick_check`, not a database, a newer schema) stops the start with a
StoreError. SQLite's files (the database; SQLite gives its -wal and -shm files the same mode) are
readable by their owner only (0600).
"""
import asyncio
import hashlib
import hmac
import logging
import queue
import secrets
import threading
import time
from datetime import datetime, timezone

from picocharge.firmware.fields import READING_KEYS

from .store_schema import (EXPORT_COLUMNS_READINGS, EXPORT_COLUMNS_TRANSACTIONS, INSERT_READING, READING_COLS,
                           StoreError, is_url, redact)
from .store_sqlite import SqliteBackend

__all__ = ["Store", "StoreError", "EXPORT_COLUMNS_READINGS", "EXPORT_COLUMNS_TRANSACTIONS", "now_iso",
           "hash_password", "check_password", "generate_password", "reading_row", "is_url", "redact"]

log = logging.getLogger(__name__)

_READING_COLS = READING_COLS         # the names benchmarks/hotpath.py times
_INSERT_READING = INSERT_READING

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


def backend_for(db):
    """The back end for `--db`: a postgresql:// URL is PostgreSQL, anything else a SQLite path."""
    if is_url(db):
        # imported here, not at the top: psycopg and its libpq cost ~20 MB of RSS and ~0.1 s to
        # load, which a gateway on SQLite (the default) does not pay (benchmarks: docs/performance.md)
        from .store_pg import PgBackend
        return PgBackend(str(db))
    return SqliteBackend(db)


class _Redo(Exception):
    """PostgreSQL aborted the batch's transaction on a caller's error: run it again, carefully."""


class Store:
    """The gateway's database. `await store.run(fn)` runs fn(db) in the writer thread."""

    # the batching writer waits this long after a batch's first call for more (paced load:
    # readings that arrive a few ms apart share one commit); 0 commits at once
    LINGER = 0.005

    def __init__(self, path, linger=LINGER):
        self.backend = backend_for(path)
        self.path = str(path)
        self.name = self.backend.name     # for messages: a URL's password masked
        self.linger = linger
        self._q = queue.SimpleQueue()
        self._thread = None
        self._loop = None
        self.commits = 0
        self.batched = 0
        self.failed_batches = 0
        self.error = None   # None, or why writes fail now (for /healthz), in words

    # the SQLite back end's run of readings in a few multi-row INSERTs (tests/bench and
    # benchmarks/hotpath.py call it on a connection of their own)
    _insert_run = staticmethod(SqliteBackend.insert_run)

    @property
    def dialect(self):
        return self.backend.dialect

    # --- life cycle ---------------------------------------------------------
    def open(self):
        """A connection with the schema up to date (synchronously, for CLI use and before
        start()). The caller closes it."""
        return self.backend.open()

    def check(self, db):
        """StoreError unless the database is sound (run at start)."""
        self.backend.check(db)

    def reader(self):
        """A read-only connection for long reads (CSV exports), beside the writer thread's.
        The caller closes it."""
        return self.backend.reader()

    async def start(self):
        self._loop = asyncio.get_running_loop()
        db = await self._loop.run_in_executor(None, self._open_checked)
        self._thread = threading.Thread(target=self._worker, args=(db,), name="store", daemon=True)
        self._thread.start()

    def _open_checked(self):
        db = self.backend.connect()
        try:
            self.backend.check(db)
        finally:
            db.close()
        db = self.backend.open()
        try:
            self.backend.claim(db)
        except BaseException:
            db.close()
            raise
        return db

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
                    db = self.backend.connect()
                    self.backend.claim(db)
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

    def _batch(self, db, batch, careful=False):
        """Run a batch in one transaction; [(future, ok, result)]. An I/O error raises (the
        whole batch is then refused); a caller's own error is handed to that caller. `careful`:
        each call in a savepoint of its own (after PostgreSQL aborted the transaction on one)."""
        be = self.backend
        done = []
        changes = be.changes(db)
        db.execute("BEGIN")
        i, n = 0, len(batch)
        try:
            while i < n:
                fn = batch[i][0]
                if fn is _READINGS:
                    # a run of readings from many stations: a few multi-row statements, not one
                    # execute per row (the Python cost of the writer is per call)
                    j = i + 1
                    while j < n and batch[j][0] is _READINGS:
                        j += 1
                    out = be.insert_run(db, batch[i:j])
                    for _f, ok, res in out:
                        if not ok and be.io_error(res):
                            raise res
                    done.extend(out)
                    i = j
                    continue
                _fn, args, fut = batch[i]
                if careful:
                    db.execute("SAVEPOINT call")
                try:
                    done.append((fut, True, fn(db, *args)))
                except Exception as e:  # handed to the caller that asked
                    if be.io_error(e):
                        raise
                    if careful:
                        db.execute("ROLLBACK TO call")
                    elif be.aborted(db):
                        raise _Redo() from e
                    done.append((fut, False, e))
                if careful:
                    db.execute("RELEASE call")
                i += 1
                if not db.in_transaction:
                    # the database rolled the transaction back on its own (SQLite may on a full
                    # disk): what the earlier callers wrote is gone, so none of them may be told
                    # it is stored
                    raise StoreError(be.GONE)
        except _Redo:
            db.execute("ROLLBACK")
            return self._batch(db, batch, careful=True)
        db.execute("COMMIT")
        if self.error is not None and be.changes(db) > changes:
            log.warning("store: writing again (%s was the last error)", self.error)
            self.error = None
        return done

    def _failed(self, db, batch, e):
        """The batch is refused: rolled back, each caller gets a StoreError, store.error says
        why. The connection is replaced if it cannot even roll back."""
        self.failed_batches += 1
        why = self.backend.describe(e)
        if why != self.error:
            log.error("store: %s", why)
        self.error = why
        if db is not None:
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
            except Exception as e2:    # noqa: B902 - the connection is unusable, whatever it says
                log.warning("store: ROLLBACK failed too (%s): opening the database again", e2)
                try:
                    db.close()
                except Exception:   # noqa: B902
                    pass
                db = None
        err = StoreError("not stored: %s" % why)
        return [(fut, False, err) for _fn, _a, fut in batch], db

    # --- sync use (the CLI) -----------------------------------------------------
    def _sync(self, fn, *args):
        db = self.open()
        try:
            db.execute("BEGIN")
            out = fn(db, *args)
            db.execute("COMMIT")
            return out
        finally:
            db.close()

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
        self._sync(self._add_station, sid, password, state, channel, key, read_key)

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
        return self._sync(self.remove_station, sid)

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

    # --- exports (read-only queries, run on a connection of their own) ---------
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
        return (" AND ".join(sql) or "1=1"), args

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


_READINGS = SqliteBackend.insert_readings    # the mark of a readings call (run together)


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


# --- over-the-air updates (issue 12, docs/ota.md): releases, firmware and diagnostics status,
# staged rollouts (tables: migrations 0002_ota.sql). Plain SQL both back ends run: no
# AUTOINCREMENT (ids and sequence numbers are given by the one writer), no INSERT OR REPLACE.

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


def _rollout_stations(db, rid, states=None, limit=None):
    """A rollout's station dicts in wave order: all, or those in `states` (the first `limit`)."""
    q, args = "SELECT %s FROM rollout_stations WHERE rollout=?" % ", ".join(_ROLLOUT_STATION_COLS), [rid]
    if states is not None:
        q += " AND state IN (%s)" % ", ".join("?" * len(states))
        args += states
    q += " ORDER BY position"
    if limit is not None:
        q, args = q + " LIMIT ?", args + [limit]
    return [dict(zip(_ROLLOUT_STATION_COLS, r)) for r in db.execute(q, args)]


def rollout_rows(db, rid=None, state=None, station_states=None):
    """[rollout dict with "stations": [station dicts in wave order; those in `station_states`
    when given]], newest first."""
    q, args = "SELECT %s FROM rollouts" % ", ".join(_ROLLOUT_COLS), []
    if rid is not None:
        q, args = q + " WHERE id=?", [rid]
    elif state is not None:
        q, args = q + " WHERE state=?", [state]
    out = [dict(zip(_ROLLOUT_COLS, r)) for r in db.execute(q + " ORDER BY id DESC LIMIT 200", args)]
    for ro in out:
        ro["stations"] = _rollout_stations(db, ro["id"], station_states)
    return out


def rollout_judged(db, rid):
    """rollout_rows(db, rid) with only the stations a step of the rollout judges, in wave order:
    those updating and those failed (at most max_failures while it runs), not the whole fleet's
    waiting and done ones; [] when there is no such rollout."""
    return rollout_rows(db, rid, station_states=["updating", "failed"])


def rollout_waiting(db, rid, limit=None):
    """The rollout's stations still waiting for their wave, in wave order (the first `limit`)."""
    return _rollout_stations(db, rid, ["waiting"], limit)


def rollout_station_ids(db, rid):
    return [r[0] for r in db.execute("SELECT station FROM rollout_stations WHERE rollout=? ORDER BY position", (rid,))]


def set_rollout(db, rid, state, reason, finished):
    db.execute("UPDATE rollouts SET state=?, reason=?, finished=? WHERE id=?", (state, reason, finished, rid))


def set_rollout_station(db, rid, station, state, detail, since_seq, started, finished):
    db.execute("UPDATE rollout_stations SET state=?, detail=?, since_seq=?, started=?, finished=? "
               "WHERE rollout=? AND station=?", (state, detail, since_seq, started, finished, rid, station))
