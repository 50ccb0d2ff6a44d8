"""The store survives I/O errors (issue 10): a full disk refuses what it cannot store (the
station gets a CALLERROR and sends it again: nothing acknowledged is lost), store.error says
why, and writing resumes by itself when space returns; a damaged database stops the start
with a message and an exit code; the files the gateway creates are its owner's only."""
import asyncio
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time

import pytest
import websockets

from support.gwhttp import http
from picocharge.gateway.logonce import reset_all


@pytest.fixture(autouse=True)
def _fresh_log_once():
    reset_all()     # what an earlier test logged does not hold back this test's lines


def _now_iso():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _meter_values(n, current):
    return {"connectorId": 1, "meterValue": [
        {"timestamp": _now_iso(),
         "sampledValue": [{"value": "%s" % (current + i / 1000), "measurand": "Current.Import"}]}
        for i in range(n)]}


async def _call(ws, uid, action, payload):
    await ws.send(json.dumps([2, uid, action, payload]))
    return json.loads(await asyncio.wait_for(ws.recv(), 20))


async def test_store__a_full_disk_gets_internalerror_and_the_retried_frame_is_stored_when_space_returns(gateway):
    gw = await gateway()
    async with websockets.connect("ws://127.0.0.1:%d/ocpp/CP-1" % gw.port, subprotocols=["ocpp1.6"]) as ws:
        assert (await _call(ws, "b", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}))[0] == 3
        # the disk is full: the database may not grow by one page
        await gw.store.run(lambda db: db.execute("PRAGMA max_page_count=%d" % db.execute(
            "PRAGMA page_count").fetchone()[0]).fetchone())
        acked = 0
        for i in range(200):
            got = await _call(ws, "mv%d" % i, "MeterValues", _meter_values(40, i))
            if got[0] == 4:
                refused = ("mv%d" % i, _meter_values(40, i))
                break
            acked += 40
        else:
            raise AssertionError("the database never filled up")
        assert got[:3] == [4, refused[0], "InternalError"] and "send it again later" in got[3], got
        assert gw.store.error and "full" in gw.store.error and "writes resume by themselves" in gw.store.error, \
            gw.store.error
        # the station's other calls are still answered, and its retry is refused while the disk is full
        assert (await _call(ws, "hb", "Heartbeat", {}))[:2] == [3, "hb"]
        got = await _call(ws, refused[0], "MeterValues", refused[1])
        assert got[:3] == [4, refused[0], "InternalError"], got
        n = await gw.store.run(lambda db: db.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
        assert n == acked, (n, acked)   # every acknowledged reading, none of the refused ones
        # space returns: the retried frame is stored, and the error is gone
        await gw.store.run(lambda db: db.execute("PRAGMA max_page_count=1073741823").fetchone())
        got = await _call(ws, refused[0], "MeterValues", refused[1])
        assert got == [3, refused[0], {}], got
        assert gw.store.error is None, gw.store.error
        n = await gw.store.run(lambda db: db.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
        assert n == acked + 40, (n, acked)
    assert gw.store._thread.is_alive()
    s, rows = await http(gw, "GET", "/api/stations/CP-1/readings?limit=1")
    assert s == 200 and len(rows) == 1, rows


async def test_store__a_batch_is_refused_whole_when_one_of_its_writes_meets_a_full_disk(tmp_path):
    """Callers in the same transaction as the write that failed are refused too: told 'stored',
    their rows would be rolled back with the rest."""
    from picocharge.gateway.store import Store, StoreError
    store = Store(tmp_path / "gw.db")
    await store.start()
    try:
        def fill(db):
            db.execute("PRAGMA max_page_count=%d" % db.execute("PRAGMA page_count").fetchone()[0]).fetchone()
            db.execute("INSERT INTO id_tags (tag) VALUES (?)", ("x" * 100000,))
        row = {"ts": "2026-11-25T09:41:07Z", "current_a": 1.0}
        res = await _one_batch(store, lambda: store.add_readings("A", [row], "ocpp"), lambda: store.run(fill),
                               lambda: store.add_readings("B", [row], "ocpp"))
        assert all(isinstance(r, StoreError) for r in res), res
        assert "database or disk is full" in str(res[0]) and store.error, (res, store.error)
        n = await store.run(lambda db: db.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
        assert n == 0 and store.error, n
        await store.run(lambda db: db.execute("PRAGMA max_page_count=1073741823").fetchone())
        assert await store.add_readings("C", [row], "ocpp") == [1]
        assert store.error is None
    finally:
        await store.stop()


async def _one_batch(store, *submit):
    """Results of calls that the writer takes in one batch: it is held busy while they queue."""
    gate = threading.Event()
    held = store.run(lambda db: gate.wait(10))
    futs = [f() for f in submit]
    gate.set()
    await asyncio.gather(held, return_exceptions=True)     # refused too, if it was in their batch
    return await asyncio.gather(*futs, return_exceptions=True)


async def test_store__a_transaction_that_sqlite_ended_on_its_own_refuses_the_batch_and_the_writer_lives_on(tmp_path):
    """After some I/O errors SQLite rolls the transaction back by itself: COMMIT then failed, the
    ROLLBACK after it raised, and the writer thread died (every later call hung)."""
    from picocharge.gateway.store import Store, StoreError
    store = Store(tmp_path / "gw.db")
    await store.start()
    try:
        row = {"ts": "2026-11-25T09:41:07Z", "current_a": 1.0}
        res = await _one_batch(store, lambda: store.add_readings("A", [row], "ocpp"),
                               lambda: store.run(lambda db: db.execute("ROLLBACK")),
                               lambda: store.add_readings("B", [row], "ocpp"))
        assert all(isinstance(r, StoreError) for r in res) and "rolled back" in str(res[0]), res
        assert await store.add_readings("C", [row], "ocpp") == [1]
        assert await store.run(lambda db: [tuple(r) for r in db.execute("SELECT station FROM readings")]) == [("C",)]
        assert store._thread.is_alive() and store.error is None
    finally:
        await store.stop()


def _gateway(db, timeout=30):
    return subprocess.run([sys.executable, "-m", "picocharge.cli", "gateway", "--port", "0", "--db", str(db)],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _make_db(path):
    from picocharge.gateway.store import Store
    db = Store(path).open()
    db.execute("BEGIN")
    db.executemany("INSERT INTO readings (station, ts, current_a, source) VALUES (?,?,?,?)",
                   [("CP-%d" % (i % 10), "2026-11-25T09:41:07Z", i / 7, "ocpp") for i in range(5000)])
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def test_store__a_database_with_corrupted_pages_stops_the_start_with_a_message(tmp_path):
    _make_db(tmp_path / "good.db")
    bad = tmp_path / "bad.db"
    shutil.copy(tmp_path / "good.db", bad)
    size = bad.stat().st_size
    page = 4096
    with sqlite3.connect(bad) as db:    # the schema's pages: page 1, and more once the tables outgrow it
        schema = {r[0] for r in db.execute("SELECT pageno FROM dbstat WHERE name = 'sqlite_schema'")}
    with open(bad, "r+b") as f:     # the header and schema intact, garbage in the pages after them
        for off in range(2 * page, size, 3 * page):
            if off // page + 1 in schema:
                continue
            f.seek(off)
            f.write(os.urandom(page // 2))
    t0 = time.monotonic()
    out = _gateway(bad)
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert "is damaged (PRAGMA quick_check" in out.stderr and "restore it from a backup" in out.stderr, out.stderr
    assert time.monotonic() - t0 < 25


def test_store__a_file_that_is_not_a_database_stops_the_start_with_a_message(tmp_path):
    bad = tmp_path / "notes.db"
    bad.write_bytes(os.urandom(3 * 4096))
    out = _gateway(bad)
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert "is it a PicoCharge gateway database?" in out.stderr, out.stderr


async def test_store__the_database_and_its_wal_files_are_created_0600(tmp_path):
    from picocharge.gateway.store import Store
    old = os.umask(0o022)
    try:
        store = Store(tmp_path / "gw.db")
        await store.start()
        try:
            await store.add_readings("A", [{"ts": "2026-11-25T09:41:07Z", "current_a": 1.0}], "ocpp")
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
        finally:
            await store.stop()
    finally:
        os.umask(old)
    assert modes.get("gw.db") == 0o600 and modes.get("gw.db-wal") == 0o600 and modes.get("gw.db-shm") == 0o600, \
        {k: oct(v) for k, v in modes.items()}


def test_store__an_existing_world_readable_database_is_made_private(tmp_path):
    from picocharge.gateway.store import Store
    p = tmp_path / "gw.db"
    sqlite3.connect(p).close()
    os.chmod(p, 0o644)
    Store(p).open().close()
    assert stat.S_IMODE(p.stat().st_mode) == 0o600, oct(p.stat().st_mode)


async def test_store__the_thingspeak_uplink_waits_out_a_failing_store_and_then_delivers(gateway, monkeypatch):
    """A cursor that cannot be written (a full disk) used to end the station's uplink task for good."""
    from support.fake_thingspeak import FakeThingSpeak
    from support.stations import Connected, boot, meter
    from ocpp.v16 import call
    from picocharge.gateway import uplinks
    from picocharge.gateway.store import StoreError

    monkeypatch.setattr(uplinks, "STORE_RETRY_S", 0.05)
    fake = FakeThingSpeak(min_interval=0.05).start()
    try:
        ch = fake.add_channel("WKEY0000000021")
        gw = await gateway(thingspeak_url=fake.url, thingspeak_interval=0.05)
        s, out = await http(gw, "POST", "/api/stations", {"id": "CP-1", "thingspeak_channel": ch.id,
                                                          "thingspeak_key": ch.write_key})
        assert s == 201, out
        real, fails = gw.store.run, [4]

        def run(fn, *args):
            if fn is uplinks.set_cursor and fails[0]:
                fails[0] -= 1
                fut = asyncio.get_running_loop().create_future()
                fut.set_exception(StoreError("not stored: database or disk is full"))
                return fut
            return real(fn, *args)
        monkeypatch.setattr(gw.store, "run", run)
        async with Connected(gw.port, "CP-1") as cp:
            await boot(cp)
            for i in range(1, 4):
                await cp.call(call.MeterValues(connector_id=1, meter_value=[
                    meter("2026-01-01T10:00:%02dZ" % i, current=float(i))]))
                await asyncio.sleep(0.1)
            for _ in range(200):
                if len(fake.entries(ch.id)) >= 3:
                    break
                await asyncio.sleep(0.05)
        assert fails == [0] and [e["field3"] for e in fake.entries(ch.id)] == ["1.0", "2.0", "3.0"], \
            (fails, fake.entries(ch.id))
        assert "CP-1" in gw.thingspeak.workers and not gw.thingspeak.workers["CP-1"].done()
    finally:
        fake.stop()
