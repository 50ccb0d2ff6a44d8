"""GET /metrics' outbox depth per uplink (uplinks.outbox_depth), counted in one statement for the
per-station cursors (ThingSpeak) instead of a query per station: the same figure as the query per
station, on both back ends, whatever the cursors say, in statements that do not grow with the
stations."""
import random

import pytest

from support.statements import Statements
from picocharge.gateway.store import INSERT_READING, READING_COLS, Store
from picocharge.gateway.uplinks import by_xid, get_cursor, outbox_depth, set_cursor

pytestmark = pytest.mark.both_stores   # a storage test: on SQLite and on PostgreSQL


def _depth_by_station(db, uplink):
    """The count before session 12: one query per outbox row, from Python."""
    n = 0
    if by_xid(db):
        for station, last_xid, last_id in db.execute("SELECT station, last_xid, last_id FROM outbox WHERE uplink=?",
                                                     (uplink,)).fetchall():
            q = "SELECT COUNT(*) FROM readings WHERE (xid, id) > (?, ?)"
            args = (last_xid, last_id)
            if station != "*":
                q, args = q + " AND station=?", args + (station,)
            n += db.execute(q, args).fetchone()[0]
        return n
    for station, last_id in db.execute("SELECT station, last_id FROM outbox WHERE uplink=?", (uplink,)).fetchall():
        if station == "*":
            n += db.execute("SELECT COUNT(*) FROM readings WHERE id > ?", (last_id,)).fetchone()[0]
        else:
            n += db.execute("SELECT COUNT(*) FROM readings WHERE station=? AND id > ?",
                            (station, last_id)).fetchone()[0]
    return n


def test_outbox_depth__one_statement_counts_what_a_query_per_station_counted(gw_db):
    rnd = random.Random(12)
    db = Store(gw_db).open()
    try:
        stations = ["CP-%d" % i for i in range(12)]
        keys = {}
        for batch in range(3):      # three transactions: PostgreSQL cursors are (xid, id) pairs
            db.execute("BEGIN")
            for _ in range(40):
                sid = rnd.choice(stations)
                db.execute(INSERT_READING, (sid, "2026-01-01T00:00:00Z") + (None,) * (len(READING_COLS) - 1) +
                           ("Charging", "ocpp"))
            for sid in stations:
                # a cursor made now, at the station's end: the station's readings so far are delivered
                if rnd.random() < 0.5 and (sid, "ts") not in keys:
                    keys[(sid, "ts")] = get_cursor(db, "thingspeak", sid)
            if batch == 1:
                keys[("*", "mqtt")] = get_cursor(db, "mqtt", "*")
            db.execute("COMMIT")
        for uplink in ("thingspeak", "mqtt", "nothing"):
            assert outbox_depth(db, uplink) == _depth_by_station(db, uplink), uplink
        assert outbox_depth(db, "thingspeak") > 0 and outbox_depth(db, "mqtt") > 0
        # cursors moved on: some stations all delivered, some part-way
        db.execute("BEGIN")
        rows = db.execute("SELECT station, %s FROM readings ORDER BY id" % (
            "xid, id" if by_xid(db) else "id")).fetchall()
        for (sid, up), _k in sorted(keys.items()):
            if sid != "*" and rnd.random() < 0.7:
                mine = [r for r in rows if r[0] == sid]
                if mine:
                    r = rnd.choice(mine)
                    set_cursor(db, "thingspeak", sid, (r[1], r[2]) if by_xid(db) else r[1])
        db.execute("COMMIT")
        for uplink in ("thingspeak", "mqtt"):
            assert outbox_depth(db, uplink) == _depth_by_station(db, uplink), uplink
        counted = Statements(db)
        outbox_depth(counted, "thingspeak")
        assert counted.n <= 2, "%d statements for %d stations' cursors" % (counted.n, len(keys) - 1)
    finally:
        db.close()
