"""The grouped last_seen writes (csms.write_last_seen_many, Gateway.flush_seen's statement): a few
UPDATEs for many stations, on both back ends, that write each station's own time and never move
a last_seen back."""
import pytest

from support.statements import Statements
from picocharge.gateway import csms
from picocharge.gateway.store import Store

pytestmark = pytest.mark.both_stores   # a storage test: on SQLite and on PostgreSQL


def test_last_seen_many__each_station_its_own_time_in_chunks_and_never_back(gw_db):
    db = Store(gw_db).open()
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
        csms.write_last_seen_many(counted, due)
        db.execute("COMMIT")
        # 151 stations: chunks of 64, 64, 16, 4, 2 and 1
        assert counted.n == 6 and csms.LAST_SEEN_CHUNK == 64, counted.n
        got = dict(db.execute("SELECT id, last_seen FROM stations").fetchall())
        want = {sid: ("2026-12-01T12:00:00Z" if i % 3 == 0 else ts) for i, (sid, ts) in enumerate(due[:-1])}
        assert got == want
        csms.write_last_seen_many(db, [])
    finally:
        db.close()
