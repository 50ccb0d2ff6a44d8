"""The PostgreSQL back end of the store (store.py): the shared one, for a gateway whose database
must outlive its host or be shared by several processes. `--db postgresql://user@host:5432/name`
(a password in the URL, in PGPASSWORD or in ~/.pgpass; it is never printed: store_schema.redact).

psycopg 3 rather than asyncpg: the store's design is one writer thread that runs every call queued
during the last commit in one transaction, with a synchronous `fn(db)` per call; psycopg 3 is a
synchronous driver that fits that thread as it is (asyncpg is async-only: it would need the
batching rewritten around the event loop, and every `fn(db)` made a coroutine), and its
executemany() pipelines a run of readings into one round trip. psycopg[binary] brings its own libpq.

What differs from SQLite is kept here, so that callers write their SQL once:
- placeholders: callers write `?`; `PgConnection.execute` turns them into `%s` (and a literal
  `%` into `%%`) once per statement text, cached;
- identity columns: an INSERT into a table with an identity `id` gets `RETURNING id`, read as
  `cursor.lastrowid` (the tables are found in the catalog at connect, so a new table needs
  nothing here);
- rows: index and name access and dict(row), as sqlite3.Row;
- transactions: an error in a statement aborts PostgreSQL's transaction (SQLite's goes on):
  `aborted()` tells the writer, which redoes the batch with a savepoint per call;
- errors: a lost connection or a server that refuses writes is an I/O error (the batch is
  refused, the connection made again); anything else is the caller's.
The schema is in gateway/migrations/postgresql (see store_schema). Timestamps stay ISO-8601 text,
as on SQLite, and text compares byte by byte (COLLATE "C"), so the same queries sort the same.
"""
import logging
import re
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg.pq import TransactionStatus

from .store_schema import INSERT_READING, READING_COLS, StoreError, migrations, redact, too_new

log = logging.getLogger(__name__)

# the advisory lock key of migrations: processes starting at once apply them one at a time
_MIGRATE_LOCK = 0x70696367     # 'picg'
_CONNECT_TIMEOUT_S = 10
_LITERAL = re.compile(r"('(?:[^']|'')*')")
_INSERT_INTO = re.compile(r"\s*INSERT\s+INTO\s+(\w+)", re.I)
_NOT_PORTABLE = re.compile(r"\s*(INSERT\s+OR\s|REPLACE\s+INTO|PRAGMA\s)", re.I)
_MAX_STATEMENTS = 512      # distinct statement texts kept translated (callers have a few dozen)


class Row(tuple):
    """A result row: row[0], row["name"], dict(row), as sqlite3.Row."""
    __slots__ = ()
    _index = {}

    def __getitem__(self, k):
        if k.__class__ is str:
            try:
                k = self._index[k]
            except KeyError:
                raise IndexError("no column %r in this row (columns: %s)" % (k, ", ".join(self._index)))
        return tuple.__getitem__(self, k)

    def keys(self):
        return list(self._index)


_row_classes = {}


def _row_factory(cursor):
    desc = cursor.description
    if desc is None:
        return tuple
    names = tuple(d.name for d in desc)
    cls = _row_classes.get(names)
    if cls is None:
        if len(_row_classes) > _MAX_STATEMENTS:
            _row_classes.clear()
        cls = _row_classes[names] = type("Row", (Row,), {"__slots__": (),
                                                         "_index": {n: i for i, n in enumerate(names)}})
    return cls


class PgCursor(psycopg.Cursor):
    __slots__ = ("lastrowid",)


class PgConnection(psycopg.Connection):
    """A psycopg connection that takes the SQL the callers write for both back ends."""

    dialect = "postgresql"      # what a caller given only `db` may ask (uplinks: the outbox's order)

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.total_changes = 0      # rows changed, as sqlite3's (the writer tells a write from none)
        self.serial = frozenset()   # tables with an identity id (INSERT ... RETURNING id)
        self._sql = {}

    @property
    def in_transaction(self):
        return self.info.transaction_status != TransactionStatus.IDLE

    def _translate(self, sql):
        got = self._sql.get(sql)
        if got is not None:
            return got
        if _NOT_PORTABLE.match(sql):
            raise StoreError("not portable SQL for the store (%s): write INSERT ... ON CONFLICT instead of INSERT OR "
                             "/ REPLACE, and no PRAGMA outside store_sqlite.py" % sql[:80])
        parts = _LITERAL.split(sql)
        q = "".join(p.replace("%", "%%") if i % 2 else p.replace("%", "%%").replace("?", "%s")
                    for i, p in enumerate(parts))
        m = _INSERT_INTO.match(q)
        returning = bool(m) and m.group(1).lower() in self.serial and " RETURNING " not in q.upper()
        if returning:
            q += " RETURNING id"
        write = q.lstrip()[:6].upper() != "SELECT"
        if len(self._sql) > _MAX_STATEMENTS:
            self._sql.clear()
        got = self._sql[sql] = (q, returning, write)
        return got

    def execute(self, query, params=(), *, prepare=None, binary=False):
        q, returning, write = self._translate(query)
        cur = self.cursor()
        cur.execute(q, params if params is not None else (), prepare=prepare)
        cur.lastrowid = None
        if returning:   # as sqlite3: the id of the last row inserted (none: ON CONFLICT DO NOTHING)
            rows = cur.fetchall()
            cur.lastrowid = rows[-1][0] if rows else None
        if write and cur.rowcount > 0:
            self.total_changes += cur.rowcount
        return cur

    def executemany(self, query, params_seq):
        q, _returning, write = self._translate(query)
        cur = self.cursor()
        cur.executemany(q, params_seq)
        cur.lastrowid = None
        if write and cur.rowcount > 0:
            self.total_changes += cur.rowcount
        return cur

    def script(self, sql):
        """Run statements as written (no placeholders: a migration file)."""
        psycopg.Connection.execute(self, sql)


class PgBackend:
    dialect = "postgresql"
    Error = psycopg.Error
    GONE = "the transaction was ended by PostgreSQL"

    def __init__(self, url):
        self.path = url
        self.name = redact(url)
        self._secrets = _secrets(url)

    def _why(self, e):
        """The first line of a driver error, with any piece of the URL's password masked: libpq
        quotes the URL's parts in its complaints (an invalid %-escape, a host after a stray @)."""
        text = _first_line(e)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # --- connections ------------------------------------------------------------
    def connect(self, read_only=False):
        try:
            db = PgConnection.connect(self.path, autocommit=True, row_factory=_row_factory,
                                      cursor_factory=PgCursor, connect_timeout=_CONNECT_TIMEOUT_S,
                                      application_name="picocharge-gateway")
        except psycopg.Error as e:
            raise StoreError("cannot connect to the database %s (%s): check the URL, that PostgreSQL runs "
                             "and takes connections from this host, and the password (PGPASSWORD or ~/.pgpass)"
                             % (self.name, self._why(e)))
        try:
            if read_only:
                db.script("SET default_transaction_read_only = on")
            db.serial = _serial_tables(db)
        except psycopg.Error as e:
            db.close()
            raise StoreError("cannot use the database %s (%s)" % (self.name, self._why(e)))
        return db

    def open(self):
        """A connection to a database whose schema is up to date (migrations applied)."""
        db = self.connect()
        try:
            self.migrate(db)
            db.serial = _serial_tables(db)
        except psycopg.Error as e:
            db.close()
            raise StoreError("cannot bring the database %s up to this gateway's schema (%s): the user needs CREATE "
                             "on its schema; restore a backup if an earlier migration was interrupted"
                             % (self.name, self._why(e)))
        except StoreError:
            db.close()
            raise
        return db

    def reader(self):
        """A read-only connection for long reads (CSV exports): beside the writer's. The caller
        closes it. One REPEATABLE READ transaction for all it reads: an export's count and its
        chunks see the same rows, whatever the writers delete meanwhile."""
        db = self.connect(read_only=True)
        try:
            db.script("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        except psycopg.Error as e:
            db.close()
            raise StoreError("cannot read the database %s (%s)" % (self.name, self._why(e)))
        return db

    def check(self, db):
        """StoreError unless the server answers (PostgreSQL checks its own pages)."""
        try:
            db.cursor().execute("SELECT 1")
        except psycopg.Error as e:
            raise StoreError("the database %s does not answer (%s)" % (self.name, self._why(e)))

    # --- schema -------------------------------------------------------------------
    def migrate(self, db):
        """Apply the migrations this database has not run, in one transaction that holds an
        advisory lock: a second process starting at the same time waits, then finds them done."""
        todo = migrations("postgresql", "DOUBLE PRECISION")
        cur = db.cursor()
        with db.transaction():
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                        "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            have = {r[0] for r in cur.execute("SELECT version FROM schema_migrations")}
            too_new(have, todo, self.name)
            for number, name, sql in todo:
                if number in have:
                    continue
                db.script(sql)
                cur.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (number, name))
                log.info("store: migration %s applied to %s", name, self.name)
            cols = {r[0] for r in cur.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = 'readings'")}
            for k in READING_COLS[:-1]:
                if k not in cols:
                    db.script("ALTER TABLE readings ADD COLUMN %s DOUBLE PRECISION" % k)
                    log.info("store: added readings.%s to the database", k)

    # --- the batching writer's hooks -------------------------------------------------
    def claim(self, db):
        """Nothing to hold: several gateway processes share a database (cluster.py: what must have
        one owner, the uplinks' work, is leased there). The server notices a writer whose host
        vanished (no FIN) within ~25 s, not hours."""
        try:
            db.script("SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3")
        except psycopg.Error as e:
            raise StoreError("cannot use the database %s (%s)" % (self.name, self._why(e)))

    @staticmethod
    def changes(db):
        return db.total_changes

    @staticmethod
    def aborted(db):
        return db.info.transaction_status == TransactionStatus.INERROR

    @staticmethod
    def insert_readings(db, station, rows, source):
        return [db.execute(INSERT_READING, (station, r["ts"]) + tuple(map(r.get, READING_COLS)) + (source,)).lastrowid
                for r in rows]

    @staticmethod
    def insert_run(db, items):
        """Readings of several add_readings() calls in one pipelined executemany, RETURNING
        their ids in order. If a row fails, the run is undone and redone call by call (each
        in a savepoint), so each caller gets its own result or error."""
        params = []
        for _fn, (station, rows, source), _fut in items:
            for r in rows:
                params.append((station, r["ts"]) + tuple(map(r.get, READING_COLS)) + (source,))
        if not params:
            return [(fut, True, []) for _fn, _a, fut in items]
        q = db._translate(INSERT_READING)[0]
        cur = db.cursor()
        db.execute("SAVEPOINT readings")
        try:
            cur.executemany(q, params, returning=True)
            ids = []
            while True:
                ids.append(cur.fetchone()[0])
                if not cur.nextset():
                    break
        except Exception as e:
            if io_error(e):
                raise
            db.execute("ROLLBACK TO readings")
            out = []
            for _fn, args, fut in items:
                db.execute("SAVEPOINT one")
                try:
                    out.append((fut, True, PgBackend.insert_readings(db, *args)))
                except Exception as e:
                    if io_error(e):
                        raise
                    db.execute("ROLLBACK TO one")
                    out.append((fut, False, e))
                db.execute("RELEASE one")
            db.execute("RELEASE readings")
            return out
        db.execute("RELEASE readings")
        db.total_changes += len(ids)
        out, i = [], 0
        for _fn, (_station, rows, _source), fut in items:
            out.append((fut, True, ids[i:i + len(rows)]))
            i += len(rows)
        return out

    @staticmethod
    def io_error(e):
        return io_error(e)

    def describe(self, e):
        """A store error in words for the operator (/healthz, the log)."""
        msg = self._why(e)
        if isinstance(e, psycopg.errors.DiskFull):
            return "%s: free space on the PostgreSQL server (database %s); writes resume by themselves" % (
                msg, self.name)
        if io_error(e):
            return ("%s (database %s): check the PostgreSQL server and the network to it; writes resume by "
                    "themselves when it answers again" % (msg, self.name))
        return "%s: %s (database %s)" % (type(e).__name__, msg, self.name)


def io_error(e):
    """A lost or refused connection, a server out of space or read-only: not the statement's fault."""
    if isinstance(e, StoreError):
        return "ended by postgresql" in str(e) or "cannot connect" in str(e)
    return isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError,
                          psycopg.errors.ReadOnlySqlTransaction))


def _serial_tables(db):
    """Tables whose id is an identity column: an INSERT into them returns it (lastrowid)."""
    return frozenset(r[0] for r in db.cursor().execute(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND column_name = 'id' AND is_identity = 'YES'"))


def _secrets(url):
    """What of a URL's password could appear in a message: the password as written and decoded,
    and its pieces around an unescaped @ or : (which libpq splits on), longest first."""
    from_netloc = urlsplit(url).netloc.rpartition("@")[0].partition(":")[2]
    from_query = re.findall(r"(?:^|&)password=([^&]*)", urlsplit(url).query)
    out = set()
    for raw in [from_netloc] + from_query:
        for v in (raw, unquote(raw)):
            out.add(v)
            out.update(re.split(r"[@:/]", v))
    return sorted((v for v in out if len(v) >= 3), key=len, reverse=True)


def _first_line(e):
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
