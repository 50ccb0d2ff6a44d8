"""The grouped last_seen writes (csms.write_last_seen_many, Gateway.flush_seen's statement): a few
UPDATEs for many stations, on both back ends, that write each station's own time and never move
a last_seen back."""
import sqlite3

import pytest

from support.statements import Statements
from picocharge.gateway import csms
from picocharge.gateway.store import Store

pytestmark = pytest.mark.both_stores   # a storage test: on SQLite and on PostgreSQL


class _Sqlite332(sqlite3.Connection):
    """A connection of an SQLite without UPDATE ... FROM (before 3.33): refuses it as that one does."""

    def execute(self, sql, *a):
        if sql.startswith("UPDATE") and " FROM " in sql:
            raise sqlite3.OperationalError('near "FROM": syntax error')
        return super().execute(sql, *a)


@pytest.mark.parametrize("update_from", [True, False], ids=["update-from", "sqlite-before-3.33"])
def test_last_seen_many__each_station_its_own_time_in_chunks_and_never_back(gw_db, store_kind, update_from,
                                                                           monkeypatch):
    monkeypatch.setattr(csms, "_UPDATE_FROM", update_from)     # False: what an SQLite without UPDATE ... FROM runs
    db = Store(gw_db).open()
    sqlite = store_kind == "sqlite"
    try:
        ids = ["CP-%03d" % i for i in range(150)]
        db.execute("BEGIN")
        for i, sid in enumerate(ids):
            # every third one already seen later than what comes (a write from its disconnect)
            seen = "2026-12-01T12:00:00Z" if i % 3 == 0 else ("2026-12-01T08:00:00Z" if i % 3 == 1 else None)
            db.execute("INSERT INTO stations (id, state, last_seen, created_at) VALUES (?, 'accepted', ?, ?)",
                       (sid, seen, "2026-12-01T00:00:00Z"))
        db.execute("COMMIT")
        due = [(sid, "2026-12-01T10:%02d:%02dZ" % (i // 60, i % 60)) for i, sid in enumerate(ids)]
        due.append(("CP-UNKNOWN", "2026-12-01T10:00:00Z"))     # removed meanwhile: nothing to write
        counted = Statements(db)
        db.execute("BEGIN")
        if update_from or not sqlite:
            csms.write_last_seen_many(counted, due)
        else:
            old = sqlite3.connect(gw_db, factory=_Sqlite332, isolation_level=None)
            csms.write_last_seen_many(old, due)
            old.close()
        db.execute("COMMIT")
        if update_from or not sqlite:
            # 151 stations: chunks of 64, 64, 16, 4, 2 and 1
            assert counted.n == 6 and csms.LAST_SEEN_CHUNK == 64, counted.n
        got = dict(db.execute("SELECT id, last_seen FROM stations").fetchall())
        want = {sid: ("2026-12-01T12:00:00Z" if i % 3 == 0 else ts) for i, (sid, ts) in enumerate(due[:-1])}
        assert got == want
        csms.write_last_seen_many(db, [])
    finally:
        db.close()
