"""A query run per request or per event reads the rows it answers with by an index, not every
row of the table: its cost follows the station (or the fleet's open transactions), not the
fleet's history (session 12: GET .../status-history scanned the whole status_history table, ~40 ms
in the store's writer thread at 10,000 stations; the load balancer's read of the open
transactions, before each plan in a cluster, scanned every transaction stored)."""
import sqlite3

from ocpp.v16 import call

from support.gwhttp import http
from support.stations import Connected, boot
from picocharge.gateway.api import STATUS_HISTORY_SQL
from picocharge.gateway.loadbalance import _open_transactions
from picocharge.gateway.store import Store


def _plan(db, sql, args):
    return [r[-1] for r in db.execute("EXPLAIN QUERY PLAN " + sql, args).fetchall()]


def test_station_queries__status_history_is_searched_by_station_not_scanned(tmp_path):
    db = Store(str(tmp_path / "gw.db")).open()
    try:
        plan = _plan(db, STATUS_HISTORY_SQL, ("CP-1",))
    finally:
        db.close()
    assert plan == ["SEARCH status_history USING INDEX status_history_station (station=?)"], plan


def test_station_queries__the_open_transactions_are_read_by_their_index_and_only_they(tmp_path):
    db = Store(str(tmp_path / "gw.db")).open()
    try:
        db.execute("BEGIN")
        db.executemany("INSERT INTO transactions (station, connector, id_tag, meter_start, start_ts, stop_ts) VALUES "
                       "(?,?,?,?,?,?)", [("CP-%d" % (i % 7), i % 3, "T", i, "2026-01-01T00:00:00Z",
                                          None if i % 5 == 0 else "2026-01-01T01:00:00Z") for i in range(100)])
        db.execute("COMMIT")
        seen = []
        db.set_trace_callback(seen.append)
        got = _open_transactions(db)
        db.set_trace_callback(None)
        plan = _plan(db, seen[-1], ())
    finally:
        db.close()
    assert got == [(i + 1, "CP-%d" % (i % 7), i % 3) for i in range(0, 100, 5)], got
    assert plan == ["SCAN transactions USING INDEX transactions_open"], plan


async def test_station_queries__status_history_answers_the_stations_own_newest_200(gateway, gw_db):
    """What the index must not change: one station's rows only, newest first, 200 at most."""
    gw = await gateway()
    with sqlite3.connect(gw_db) as db:
        db.executemany("INSERT INTO status_history (station, connector, status, error_code, info, ts) VALUES "
                       "(?,?,?,?,?,?)", [("CP-1" if i % 3 else "CP-2", 1, "Charging", "NoError", "n%d" % i,
                                          "2026-01-01T00:%02d:%02dZ" % (i // 60, i % 60)) for i in range(450)])
    async with Connected(gw.port, "CP-1") as cp:
        await boot(cp)
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Faulted"))
    s, rows = await http(gw, "GET", "/api/stations/CP-1/status-history")
    assert s == 200, rows
    assert len(rows) == 200 and rows[0]["status"] == "Faulted", rows[:2]
    mine = ["n%d" % i for i in range(449, -1, -1) if i % 3]
    assert [r["info"] for r in rows[1:]] == mine[:199], [r["info"] for r in rows[1:5]]


def test_station_queries__a_rollout_step_reads_its_wave_by_state_not_every_station(tmp_path):
    from picocharge.gateway import store as st
    db = Store(str(tmp_path / "gw.db")).open()
    try:
        db.execute("BEGIN")
        rid = st.add_rollout(db, "0.2.0", 2, 2, 60, ["CP-%d" % i for i in range(50)], "2026-01-01T00:00:00Z")
        st.set_rollout_station(db, rid, "CP-7", "updating", "sent", 1, "2026-01-01T00:00:00Z", None)
        st.set_rollout_station(db, rid, "CP-3", "failed", "DownloadFailed", 1, "2026-01-01T00:00:00Z", None)
        db.execute("COMMIT")
        seen = []
        db.set_trace_callback(seen.append)
        judged = st.rollout_judged(db, rid)[0]["stations"]
        waiting = st.rollout_waiting(db, rid, 2)
        db.set_trace_callback(None)
        plans = [_plan(db, q, ()) for q in seen if "rollout_stations" in q]
    finally:
        db.close()
    assert [(s["station"], s["state"]) for s in judged] == [("CP-3", "failed"), ("CP-7", "updating")], judged
    assert [s["station"] for s in waiting] == ["CP-0", "CP-1"], waiting
    assert len(plans) == 2 and all(p[0].startswith("SEARCH rollout_stations USING INDEX rollout_stations_state")
                                   for p in plans), plans
