"""The SQLite back end of the store (store.py): one file in WAL mode, the embedded default.

The connection handed to `fn(db)` is sqlite3's own (rows are sqlite3.Row): the hot path, a run of
readings in a few multi-row INSERTs (insert_run), has no layer of ours around it.
"""
import logging
import os
import sqlite3
import time

from picocharge.firmware.fields import READING_KEYS

from .store_schema import INSERT_READING, READING_COLS, StoreError, migrations, pow2_chunks, too_new

log = logging.getLogger(__name__)

# columns added before migrations existed: (table, column, declaration); a database made by an
# older gateway gets them with ALTER TABLE when it is opened. Every reading key has its column:
# a reading added to the table later gets one in an existing database too.
_ADDED_COLUMNS = (("stations", "ts_read_key", "TEXT"),) + tuple(("readings", k, "REAL") for k in READING_KEYS)

# SQLite's words for errors of the disk or the file, not of the statement
_IO_WORDS = ("disk is full", "disk i/o error", "database disk image is malformed", "readonly database",
             "unable to open database file", "file is not a database", "out of memory",
             "no transaction is active", "rolled back by sqlite")



# insert_run's multi-row INSERTs: at most RUN_CHUNK rows each (64 rows of 11 parameters stay under
# the 999 of an SQLite older than 3.32), in chunks of a power of two: seven statement shapes in all
RUN_CHUNK = 64
_WIDTH = len(READING_COLS) + 3      # station, ts, the reading columns, source
_ROWS_SQL = {}


def _rows_sql(n):
    sql = _ROWS_SQL.get(n)
    if sql is None:
        head, _, one = INSERT_READING.partition(" VALUES ")
        sql = _ROWS_SQL[n] = head + " VALUES " + ", ".join([one] * n)
    return sql


def _wal(db, timeout=5.0):
    """Switch the database to WAL. Switching a new database takes its lock, and SQLite answers
    "database is locked" at once (no busy handler) when another process opens it at that moment:
    tried again for up to `timeout` s (two gateway processes starting together on a new file)."""
    end = time.monotonic() + timeout
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > end:
                raise
            time.sleep(0.01)

class SqliteBackend:
    dialect = "sqlite"
    Error = sqlite3.Error
    GONE = "the transaction was rolled back by SQLite"

    def __init__(self, path):
        self.path = str(path)
        self.name = self.path

    # --- connections ------------------------------------------------------------
    def connect(self):
        d = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(d):
            raise StoreError("the database folder %s does not exist: create it or give another --db" % d)
        _private(self.path)
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA busy_timeout=5000")
            _wal(db)
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as e:
            raise StoreError("cannot open the database %s (%s): is it a PicoCharge gateway database?"
                             % (self.path, e))
        db.row_factory = sqlite3.Row
        return db

    def open(self):
        """A connection to a database whose schema is up to date (migrations applied)."""
        db = self.connect()
        try:
            self.migrate(db)
        except sqlite3.DatabaseError as e:
            db.close()
            raise StoreError("cannot use the database %s (%s): is it a PicoCharge gateway database? Restore it "
                             "from a backup, or move it away to start with an empty one" % (self.path, e))
        except StoreError:
            db.close()
            raise
        return db

    def reader(self):
        """A read-only connection for long reads (CSV exports): with WAL they run beside the
        writer thread instead of holding up its batches. The caller closes it."""
        db = sqlite3.connect("file:%s?mode=ro" % self.path, uri=True, check_same_thread=False,
                             isolation_level=None)
        db.execute("PRAGMA busy_timeout=5000")
        # one read transaction for all it reads: an export's count and its chunks see the same
        # rows, whatever the writer deletes (retention, a removed station) meanwhile
        db.execute("BEGIN")
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

    # --- schema -------------------------------------------------------------------
    def migrate(self, db):
        """Apply the migrations this database has not run, each in one transaction (BEGIN
        IMMEDIATE: a second process opening it at the same time waits, then finds them done)."""
        todo = migrations("sqlite", "REAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                       "name TEXT NOT NULL, applied_at TEXT NOT NULL)")
            have = {r[0] for r in db.execute("SELECT version FROM schema_migrations")}
            too_new(have, todo, self.path)
            for number, name, sql in todo:
                if number in have:
                    continue
                for stmt in _statements(sql):
                    db.execute(stmt)
                db.execute("INSERT INTO schema_migrations (version, name, applied_at) "
                           "VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))", (number, name))
                log.info("store: migration %s applied to %s", name, self.path)
            for table, column, decl in _ADDED_COLUMNS:
                have_cols = {r[1] for r in db.execute("PRAGMA table_info(%s)" % table)}
                if column not in have_cols:
                    db.execute("ALTER TABLE %s ADD COLUMN %s %s" % (table, column, decl))
                    log.info("store: added %s.%s to the database", table, column)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    # --- the batching writer's hooks -------------------------------------------------
    @staticmethod
    def claim(db):
        """The writer's connection is this process's (nothing to take: SQLite's write lock is per
        transaction)."""

    @staticmethod
    def changes(db):
        return db.total_changes

    @staticmethod
    def aborted(db):
        return False    # a statement's error leaves SQLite's transaction as it was

    @staticmethod
    def insert_readings(db, station, rows, source):
        ids = []
        for r in rows:
            cur = db.execute(INSERT_READING, (station, r["ts"]) + tuple(map(r.get, READING_COLS)) + (source,))
            ids.append(cur.lastrowid)
        return ids

    @staticmethod
    def insert_run(db, items):
        """Readings of several add_readings() calls in a few multi-row INSERTs (chunks of a power
        of two rows, at most RUN_CHUNK: each shape is one statement in sqlite3's cache). The ids
        are consecutive: this connection is the only writer and holds the write lock for the
        whole transaction. If a row fails, the run is undone and redone call by call, so each
        caller gets its own result or error as before.

        Why not executemany: it steps the statement once per row, and sqlite3 lets go of the GIL
        around every step. With the event loop's thread busy, each step then waits for the GIL
        and hands it back (a futex and a task switch on both threads): the writer thread's CPU
        per reading was ~100 us at 10,000 paced stations. Measured alone (benchmarks/
        writer_gil.py), 8 rows a commit: 321-338 -> 176 us per row beside a busy thread; with
        the other thread idle no gain (75-94 against 79-86)."""
        flat = []
        n = 0
        for _fn, (station, rows, source), _fut in items:
            for r in rows:
                flat.append(station)
                flat.append(r["ts"])
                flat.extend(map(r.get, READING_COLS))
                flat.append(source)
                n += 1
        if not n:
            return [(fut, True, []) for _fn, _a, fut in items]
        first = None
        try:
            for start, k in pow2_chunks(n, RUN_CHUNK):
                cur = db.execute(_rows_sql(k), flat[start * _WIDTH:(start + k) * _WIDTH])
                if first is None:
                    first = cur.lastrowid - k + 1
        except Exception as e:
            if io_error(e) or not db.in_transaction:
                raise   # the disk, not a row: the batch is refused (SQLite may have rolled it back)
            # a refused statement is undone by SQLite; the chunks before it are undone here (ids
            # from `first` on are this run's alone: the transaction holds the write lock)
            if first is not None:
                db.execute("DELETE FROM readings WHERE id >= ?", (first,))
            out = []
            for _fn, args, fut in items:
                try:
                    out.append((fut, True, SqliteBackend.insert_readings(db, *args)))
                except Exception as e:
                    out.append((fut, False, e))
            return out
        out = []
        for _fn, (_station, rows, _source), fut in items:
            out.append((fut, True, list(range(first, first + len(rows)))))
            first += len(rows)
        return out

    @staticmethod
    def io_error(e):
        return io_error(e)

    def describe(self, e):
        """A store error in words for the operator (/healthz, the log)."""
        msg = str(e) or type(e).__name__
        if "disk is full" in msg.lower():
            return ("%s: free space on %s (the database is %s); writes resume by themselves"
                    % (msg, os.path.dirname(os.path.abspath(self.path)), self.path))
        if io_error(e):
            return "%s (database %s): check the disk; writes resume by themselves when it works again" % (msg,
                                                                                                          self.path)
        return "%s: %s (database %s)" % (type(e).__name__, msg, self.path)


def io_error(e):
    return isinstance(e, (sqlite3.Error, StoreError)) and any(w in str(e).lower() for w in _IO_WORDS)


def _statements(sql):
    """The statements of a migration file, one by one (executescript would COMMIT first)."""
    buf = ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            yield buf
            buf = ""
    if buf.strip() and not all(ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()):
        raise StoreError("a migration ends in an unfinished statement: %r" % buf[:200])


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
