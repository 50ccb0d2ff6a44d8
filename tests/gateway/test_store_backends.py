"""The store's two back ends (issue 15): the same interface on SQLite and PostgreSQL, the schema
by numbered migrations, a database of the gateway before migrations opening unchanged, the
dialect kept out of the callers' SQL, a lost PostgreSQL connection survived, and the real
`picocharge gateway` process on PostgreSQL storing and forwarding to mosquitto without ever
printing the database password."""
import asyncio
import json
import re
import sqlite3
import subprocess
import sys
import threading
from urllib.parse import urlsplit

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings, strategies as hs
from ocpp.v16 import call

from support.broker import Subscriber
from support.gwhttp import http
from support.stations import Connected, boot, meter
from picocharge.firmware.fields import READING_KEYS
from picocharge.gateway.store import Store, StoreError
from picocharge.gateway.store_schema import migrations

pytestmark = pytest.mark.both_stores   # a storage test: on SQLite and on PostgreSQL

ROW = {"ts": "2026-11-25T09:41:07Z", "current_a": 1.5}

# the schema as the gateway wrote it before migrations (gateway/store.py at e2142fa), verbatim
_SCHEMA_BEFORE_MIGRATIONS = """
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
""" % ", ".join("%s REAL" % k for k in READING_KEYS)

_TABLES = ("stations", "readings", "status_history", "connections", "transactions", "id_tags", "outbox")
_KNOWN = [(n, name) for n, name, _sql in migrations("sqlite", "REAL")]     # every migration, each once


# the indexes that migrations after 0001 add to its tables
_LATER_INDEXES = tuple(name for n, _f, sql in migrations("sqlite", "REAL") if n > 1
                       for name in re.findall(r"CREATE INDEX (\w+) ON", sql))


def _dump(path, without=()):
    """Every table's definition and rows, and the indexes (but those named in `without`), of a SQLite file."""
    with sqlite3.connect(path) as db:
        schema = [r for r in db.execute("SELECT type, name, sql FROM sqlite_master WHERE tbl_name IN (%s) ORDER BY "
                                        "name" % ", ".join("?" * len(_TABLES)), _TABLES).fetchall()
                  if r[1] not in without]
        rows = {t: db.execute("SELECT * FROM %s ORDER BY rowid" % t).fetchall() for t in _TABLES}
    return schema, rows


@pytest.mark.parametrize("store_kind", ["sqlite"])
async def test_store__a_database_of_the_gateway_before_migrations_opens_unchanged(gw_db):
    with sqlite3.connect(gw_db) as db:
        db.executescript(_SCHEMA_BEFORE_MIGRATIONS)
        db.execute("INSERT INTO stations (id, pw_hash, ts_channel, ts_key, created_at) VALUES "
                   "('CP-1', 'pbkdf2_sha256$1$s$h', 42, 'WKEY', '2026-01-01T00:00:00Z')")
        db.executemany("INSERT INTO readings (station, ts, current_a, status, source) VALUES (?,?,?,?,?)",
                       [("CP-1", "2026-01-01T00:00:0%dZ" % i, i / 3, "Charging", "ocpp") for i in range(5)])
        db.execute("DELETE FROM readings WHERE id = 5")     # AUTOINCREMENT: id 5 is never given again
        db.execute("INSERT INTO transactions (station, connector, id_tag, meter_start, start_ts) VALUES "
                   "('CP-1', 1, 'TAG', 0, '2026-01-01T00:00:00Z')")
        db.execute("INSERT INTO id_tags (tag, status) VALUES ('TAG', 'Accepted')")
        db.execute("INSERT INTO outbox (uplink, station, last_id) VALUES ('mqtt', '*', 3)")
        db.execute("INSERT INTO status_history (station, connector, status, ts) VALUES "
                   "('CP-1', 1, 'Charging', '2026-01-01T00:00:00Z')")
        db.execute("INSERT INTO connections (station, peer, connected_at) VALUES ('CP-1', 'x', '2026-01-01T00:00:00Z')")
    before = _dump(gw_db)

    store = Store(gw_db)
    await store.start()
    try:
        # every table, index and row as it was (later migrations add tables, and indexes: left out here)
        assert _dump(gw_db, without=_LATER_INDEXES) == before
        assert await store.run(lambda db: [tuple(r) for r in db.execute(
            "SELECT version, name FROM schema_migrations ORDER BY version")]) == _KNOWN
        assert await store.add_readings("CP-1", [ROW], "ocpp") == [6]
        assert await store.run(Store.start_transaction, "CP-1", 1, "TAG", 0, "2026-01-01T00:00:00Z") == (1, True)
    finally:
        await store.stop()
    Store(gw_db).open().close()     # opened again: nothing more to apply
    with sqlite3.connect(gw_db) as db:
        assert db.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == len(_KNOWN)


def test_store__a_database_migrated_by_a_newer_gateway_is_refused_in_words(gw_db):
    db = Store(gw_db).open()
    db.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, '0099_future.sql', "
               "'2027-01-01T00:00:00Z')")
    db.close()
    with pytest.raises(StoreError) as e:
        Store(gw_db).open()
    msg = str(e.value)
    assert "migrated by a newer gateway (schema versions 99; this one knows 1..%d)" % len(
        migrations("sqlite", "REAL")) in msg and "upgrade picocharge" in msg, msg
    assert "pw-" not in msg, msg     # a URL's password is masked


def test_store__the_migrations_run_once_when_two_processes_open_a_new_database_at_once(gw_db):
    errors, barrier = [], threading.Barrier(8)

    def open_it():
        barrier.wait()
        try:
            Store(gw_db).open().close()
        except Exception as e:  # noqa: B902 - reported below
            errors.append(e)
    threads = [threading.Thread(target=open_it) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [], errors
    db = Store(gw_db).open()
    try:
        assert [tuple(r) for r in db.execute("SELECT version, name FROM schema_migrations ORDER BY version")] == _KNOWN
    finally:
        db.close()


def test_store__a_reading_key_without_its_column_gets_it_when_the_database_is_opened(gw_db):
    """The readings table's value columns follow fields.READINGS: a key added to the vocabulary
    gets its column in an existing database, on both back ends, its rows kept."""
    key = READING_KEYS[-1]
    db = Store(gw_db).open()
    db.execute("INSERT INTO readings (station, ts, current_a, source) VALUES ('CP-1', '2026-01-01T00:00:00Z', 2.5, "
               "'ocpp')")
    db.execute("ALTER TABLE readings DROP COLUMN %s" % key)
    db.close()
    db = Store(gw_db).open()
    try:
        assert [tuple(r) for r in db.execute("SELECT station, current_a, %s FROM readings" % key)] == [
            ("CP-1", 2.5, None)]
    finally:
        db.close()


def test_migrations__numbered_without_a_gap_and_the_same_tables_on_both_back_ends():
    sqlite_m, pg_m = migrations("sqlite", "REAL"), migrations("postgresql", "DOUBLE PRECISION")
    assert [(n, name) for n, name, _s in sqlite_m] == [(n, name) for n, name, _s in pg_m], (sqlite_m, pg_m)
    for (_n, _name, a), (_m, _name2, b) in zip(sqlite_m, pg_m):
        assert _tables(a) == _tables(b), (a, b)


def _tables(sql):
    return sorted(re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", sql))


async def _one_batch(store, *submit):
    """Results of calls that the writer takes in one batch: it is held busy while they queue."""
    gate = threading.Event()
    held = store.run(lambda db: gate.wait(10))
    futs = [f() for f in submit]
    gate.set()
    await held
    return await asyncio.gather(*futs, return_exceptions=True)


async def test_store__a_callers_sql_error_is_its_own_and_the_rest_of_its_batch_is_stored(gw_db):
    """PostgreSQL aborts the transaction at a statement's error (SQLite does not): the writer
    then runs the batch again with a savepoint per call, so the others are stored all the same."""
    store = Store(gw_db)
    await store.start()
    try:
        def tag(db):
            db.execute("INSERT INTO id_tags (tag, status) VALUES (?, ?) ON CONFLICT (tag) DO UPDATE SET "
                       "status=excluded.status", ("TAG-1", "Blocked"))
        res = await _one_batch(store, lambda: store.add_readings("A", [ROW, ROW], "ocpp"),
                               lambda: store.run(lambda db: db.execute("SELECT no_such_column FROM readings")),
                               lambda: store.run(tag),
                               lambda: store.add_readings("B", [ROW], "ocpp"))
        assert isinstance(res[1], Exception) and "no_such_column" in str(res[1]), res
        # ids grow in the order of the calls (PostgreSQL's redo takes new ones: a sequence is not rolled back)
        assert res[2] is None and len(res[0]) == 2 and len(res[3]) == 1 and res[0][0] < res[0][1] < res[3][0], res
        assert await store.run(lambda db: [tuple(r) for r in db.execute(
            "SELECT station, current_a FROM readings ORDER BY id")]) == [("A", 1.5), ("A", 1.5), ("B", 1.5)]
        assert await store.run(lambda db: db.execute("SELECT status FROM id_tags").fetchone()[0]) == "Blocked"
        assert store.error is None and store.failed_batches == 0
    finally:
        await store.stop()


async def test_store__literals_placeholders_and_row_ids_mean_the_same_on_both(gw_db):
    store = Store(gw_db)
    await store.start()
    try:
        got = await store.run(lambda db: tuple(db.execute("SELECT '?', 'a%b', 'it''s', ?, ? || '%'",
                                                          (5, "x")).fetchone()))
        assert got == ("?", "a%b", "it's", 5, "x%"), got
        ids = [await store.run(lambda db: db.execute(
            "INSERT INTO status_history (station, connector, status, ts) VALUES (?,?,?,?)",
            ("CP-1", 1, "Available", "2026-01-01T00:00:00Z")).lastrowid) for _ in range(3)]
        assert ids == [1, 2, 3], ids
        last = await store.run(lambda db: db.execute(
            "INSERT INTO status_history (station, connector, status, ts) VALUES (?,?,?,?), (?,?,?,?)",
            ("CP-1", 1, "Charging", "t", "CP-1", 1, "Finishing", "t")).lastrowid)
        assert last == 5, last      # the last row's, as sqlite3 says
        await store.run(lambda db: db.executemany("INSERT INTO outbox (uplink, station, last_id) VALUES (?,?,?)",
                                                  [("thingspeak", "CP-1", 1), ("thingspeak-inflight", "CP-1", 2),
                                                   ("mqtt", "CP-1", 3)]))
        gone = await store.run(lambda db: db.execute(
            "DELETE FROM outbox WHERE uplink LIKE 'thingspeak%' AND station=?", ("CP-1",)).rowcount)
        assert gone == 2, gone
        # text sorts byte by byte on both (PostgreSQL's default collation would put 'a' before 'B')
        for sid in ("b-2", "B-1", "a-3", "_x"):
            await store.add_station(sid)
        assert [r["id"] for r in await store.run(Store.station_rows)] == ["B-1", "_x", "a-3", "b-2"]
        row = (await store.run(Store.station_rows))[0]
        assert dict(row)["state"] == "accepted" and row["created_at"].endswith("Z"), row
    finally:
        await store.stop()


_TEXT = hs.text(hs.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=30)


def test_store__any_text_in_a_literal_or_a_parameter_comes_back_as_it_went(gw_db):
    """The PostgreSQL connection rewrites the callers' SQL (? -> %s, % -> %%) outside and
    inside quotes: whatever a literal holds (quotes, ?, %, %s, newlines), it means the same as
    on SQLite. (NUL is not text on PostgreSQL: the gateway's door refuses it.)"""
    db = Store(gw_db).open()
    try:
        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(lit=_TEXT, param=_TEXT)
        def check(lit, param):
            quoted = "'%s'" % lit.replace("'", "''")
            got = tuple(db.execute("SELECT %s, ?, %s || ?" % (quoted, quoted), (param, param)).fetchone())
            assert got == (lit, param, lit + param), (lit, param, got)
        check()
    finally:
        db.close()


@pytest.mark.parametrize("store_kind", ["postgresql"])
async def test_store__sqlite_only_sql_is_refused_on_postgresql_with_what_to_write(gw_db):
    store = Store(gw_db)
    await store.start()
    try:
        with pytest.raises(StoreError) as e:
            await store.run(lambda db: db.execute("INSERT OR REPLACE INTO id_tags (tag) VALUES (?)", ("T",)))
        assert "write INSERT ... ON CONFLICT" in str(e.value), e.value
    finally:
        await store.stop()


@pytest.mark.parametrize("store_kind", ["postgresql"])
async def test_store__a_lost_postgresql_connection_refuses_the_batch_and_the_writer_connects_again(gw_db):
    store = Store(gw_db)
    await store.start()
    try:
        assert await store.add_readings("A", [ROW], "ocpp") == [1]
        pid = await store.run(lambda db: db.info.backend_pid)
        with psycopg.connect(gw_db, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0] is True
        with pytest.raises(StoreError) as e:
            await store.add_readings("B", [ROW], "ocpp")
        assert "not stored" in str(e.value) and "check the PostgreSQL server" in store.error, (e.value, store.error)
        assert "pw-" not in store.error, store.error      # the URL's password is masked
        assert len(await store.add_readings("C", [ROW], "ocpp")) == 1
        assert store.error is None, store.error
        assert await store.run(lambda db: [r[0] for r in db.execute("SELECT station FROM readings ORDER BY id")]) \
            == ["A", "C"]
        assert store._thread.is_alive()
    finally:
        await store.stop()


@pytest.mark.parametrize("store_kind", ["postgresql"])
async def test_store__two_gateway_processes_share_one_postgresql_database(gw_db):
    """Issue 15 dropped the one-process lock: both stores start and write (their ids from one sequence)."""
    first, second = Store(gw_db), Store(gw_db)
    await first.start()
    await second.start()
    try:
        assert await first.add_readings("A", [ROW], "ocpp") == [1]
        assert await second.add_readings("B", [ROW], "ocpp") == [2]
    finally:
        await first.stop()
        await second.stop()


@pytest.mark.parametrize("url", [
    "postgresql://gw:p%zzSECRET-1@127.0.0.1:1/gw",          # an invalid %-escape: libpq quotes the password
    "postgresql://gw:SECRET-1@SECRET-2@127.0.0.1:1/gw",     # an unescaped @: libpq takes a piece for the host
    "postgresql://gw@127.0.0.1:1/gw?password=p%zzSECRET-1",
    "postgresql://gw:SECRET-1@127.0.0.1:notaport/gw"])
def test_store__a_url_that_cannot_connect_is_said_so_with_its_password_masked(url):
    with pytest.raises(StoreError) as e:
        Store(url).open()
    msg = str(e.value)
    assert msg.startswith("cannot connect to the database postgresql://gw") and "check the URL" in msg, msg
    assert "SECRET" not in msg and "***" in msg, msg


# --- the gateway process on PostgreSQL ---------------------------------------------------------

def _cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "picocharge.cli", "gateway", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("store_kind", ["postgresql"])
async def test_gateway__on_postgresql_stores_and_forwards_to_mosquitto_and_never_prints_the_password(
        gw_db, mqtt_broker):
    from picocharge.cmd_demo import GatewayProcess
    password = urlsplit(gw_db).password
    assert password
    sub = Subscriber(mqtt_broker.port, "pc/+/telemetry")
    gw = await asyncio.to_thread(lambda: GatewayProcess(gw_db, extra=(
        "--auth", "none", "--mqtt", "mqtt://127.0.0.1:%d/pc" % mqtt_broker.port, "--log-level", "debug")).start())
    try:
        port = int(gw.url.rsplit(":", 1)[1])
        async with Connected(port, "CP-1") as cp:
            await boot(cp)
            for i in range(1, 6):
                await cp.call(call.MeterValues(connector_id=1, meter_value=[
                    meter("2026-11-30T10:00:%02dZ" % i, current=float(i))]))
        got = await asyncio.to_thread(sub.wait, "pc/CP-1/telemetry", 5)
        assert [(p["seq"], p["current_a"]) for p, _r in got] == [(i, float(i)) for i in range(1, 6)], got
        s, rows = await http(port, "GET", "/api/stations/CP-1/readings")
        assert (s, [(r["seq"], r["current_a"]) for r in rows]) == (200, [(i, float(i)) for i in range(1, 6)]), rows
    finally:
        await asyncio.to_thread(gw.stop)
        sub.close()
    db = Store(gw_db).open()
    try:
        assert [tuple(r) for r in db.execute("SELECT id, station, current_a FROM readings ORDER BY id")] == [
            (i, "CP-1", float(i)) for i in range(1, 6)]
        assert [tuple(r) for r in db.execute("SELECT uplink, station, last_id FROM outbox")] == [("mqtt", "*", 5)]
    finally:
        db.close()
    log = "\n".join(gw.log)
    assert " DEBUG " in log and password not in log, log[-3000:]

    # the CLI's commands on the same URL, and a wrong password said in words, masked
    out = _cli("stations", "--db", gw_db, "--json")
    assert out.returncode == 0 and [r["id"] for r in json.loads(out.stdout)] == ["CP-1"], out
    wrong = gw_db.replace(password, "not-the-password-1")
    out = _cli("--db", wrong, "--port", "0")
    assert out.returncode == 1, out
    assert "cannot connect to the database postgresql://postgres:***@" in out.stderr and \
        "not-the-password-1" not in out.stdout + out.stderr, out.stderr


def test_gateway__help_names_the_url_form_and_the_environment_variable():
    out = _cli("--help")
    assert out.returncode == 0, out
    text = " ".join(out.stdout.split())
    assert "--db PATH|URL" in text and "postgresql://USER@HOST:PORT/NAME" in text and \
        "env var: PICOCHARGE_GATEWAY_DB" in text, out.stdout


def test_store__a_gateway_on_sqlite_does_not_load_the_postgresql_driver():
    """psycopg and libpq are ~20 MB of RSS: only a postgresql:// URL loads them."""
    code = ("import sys; from picocharge.gateway import app, cli; from picocharge.gateway.store import Store; "
            "Store('x.db'); print(sorted(m for m in sys.modules if m.startswith(('psycopg', "
            "'picocharge.gateway.store_pg'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout) == (0, "[]\n"), out
