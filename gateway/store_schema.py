"""What both storage back ends share (store_sqlite, store_pg): the error type, the readings
table's columns, the numbered migrations, and a database name fit to print.

Migrations are numbered SQL files, one folder per dialect: gateway/migrations/sqlite/0001_*.sql
and gateway/migrations/postgresql/0001_*.sql. Each back end applies, at start, in one
transaction each, the files whose number is not yet in its `schema_migrations` table, and
refuses a database whose table holds a number it does not know (made by a newer gateway).
Plain files rather than Alembic: the gateway has no ORM and no models to autogenerate from, the
schema is a dozen tables, and two hand-written dialect files say exactly what runs on each
back end; the runner is the 40 lines below and in each back end.

To add a table (or a column, an index): write the next number in BOTH folders, e.g.
`0002_releases.sql`, in each dialect's words (see the header of the 0001 files: identity vs
AUTOINCREMENT, BIGINT, DOUBLE PRECISION, COLLATE "C"). Never edit a file that has shipped:
databases out there already ran it. The one column set not written in a migration is the
readings table's value columns: one per reading key of fields.READINGS (a line that is just
`{reading_columns},` in 0001), and a key added to the vocabulary later gets its column when the database is opened.
"""
import os
import re
from urllib.parse import urlsplit, urlunsplit

from picocharge.firmware.fields import READING_KEYS

MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")

READING_COLS = READING_KEYS + ("status",)
EXPORT_COLUMNS_READINGS = ("id", "station", "ts") + READING_COLS + ("source",)
EXPORT_COLUMNS_TRANSACTIONS = ("id", "station", "connector", "id_tag", "start_ts", "stop_ts", "meter_start",
                               "meter_stop", "reason")
# the readings insert, in the placeholders both back ends take (store_pg turns ? into %s)
INSERT_READING = "INSERT INTO readings (station, ts, %s, source) VALUES (?, ?, %s, ?)" % (
    ", ".join(READING_COLS), ", ".join("?" * len(READING_COLS)))

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class StoreError(Exception):
    pass


def pow2_chunks(n, most):
    """(start, size) pieces of n rows for multi-row statements: sizes are powers of two, at most
    `most`, so that few statement shapes exist and each stays in sqlite3's statement cache."""
    start = 0
    while start < n:
        k = min(most, 1 << ((n - start).bit_length() - 1))
        yield start, k
        start += k


def migrations(dialect, value_type):
    """[(number, file name, SQL)] of gateway/migrations/<dialect>, in order; {reading_columns}
    becomes one `value_type` column per reading key."""
    folder = os.path.join(MIGRATIONS, dialect)
    out = []
    for name in sorted(os.listdir(folder)):
        m = _NAME.match(name)
        if m is None:
            continue
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            sql = f.read()
        cols = ",\n    ".join("%s %s" % (k, value_type) for k in READING_KEYS)
        out.append((int(m.group(1)), name, re.sub(r"(?m)^(\s*)\{reading_columns\}", lambda m: m.group(1) + cols, sql)))
    # numbers are reserved per branch of work (0003 by one, 0004 by another): a gap is allowed
    # until both are merged; each database records the numbers it ran, so a migration that
    # arrives later with a lower number is still applied
    numbers = [n for n, _name, _sql in out]
    if len(set(numbers)) != len(numbers) or not numbers or numbers[0] != 1:
        raise StoreError("the migrations in %s are not numbered 0001, 0002, ... each number once: %s"
                         % (folder, ", ".join(name for _n, name, _sql in out)))
    return out


def too_new(have, known, name):
    """StoreError when the database ran migrations this gateway does not have (`known`: the
    migrations of migrations(), or their count when numbered without a gap)."""
    known = set(range(1, known + 1)) if isinstance(known, int) else {m[0] for m in known}
    newer = sorted(set(have) - known)
    if newer:
        raise StoreError("the database %s was migrated by a newer gateway (schema versions %s; this one knows "
                         "%s): upgrade picocharge, or restore a backup made before the upgrade"
                         % (name, ", ".join(map(str, newer)), _numbers(known)))


def _numbers(known):
    """1..4, or 1, 2, 4 while a number is missing."""
    top = max(known, default=0)
    return "1..%d" % top if known == set(range(1, top + 1)) else ", ".join(map(str, sorted(known)))


def is_url(db):
    """True for a PostgreSQL URL (postgresql:// or postgres://); anything else is a SQLite path."""
    return str(db).startswith(("postgresql://", "postgres://"))


def redact(db):
    """`db` fit for a log line or a message: a URL's password becomes ***."""
    db = str(db)
    if not is_url(db):
        return db
    u = urlsplit(db)
    if u.password is None and "password=" not in u.query:
        return db
    netloc = u.netloc
    if u.password is not None:
        netloc = "%s:***@%s" % (u.username or "", netloc.rpartition("@")[2])
    query = re.sub(r"(^|&)password=[^&]*", r"\1password=***", u.query)
    return urlunsplit((u.scheme, netloc, u.path, query, u.fragment))
