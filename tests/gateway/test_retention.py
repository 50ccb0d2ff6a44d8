"""Retention (--retention-days): what is older goes, from every table that grows with time;
a running transaction and a live connection stay; readings an uplink had not delivered yet are
named in the "retention cap hit" warning."""
import logging
import time

import pytest
from ocpp.v16 import call

from support.gwhttp import http
from support.net import free_port
from support.stations import Connected, boot, meter

pytestmark = pytest.mark.both_stores   # a storage test: on SQLite and on PostgreSQL

OLD = "2026-10-01T10:00:%02dZ"          # 60 days before the gateway's clock at the test's `now`


def _now_iso(now):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


async def _rows(gw, sql, args=()):
    return await gw.store.run(lambda db: [tuple(r) for r in db.execute(sql, args)])


async def test_retention__prunes_old_rows_of_every_table_and_counts_the_undelivered(gateway, caplog):
    now = time.time()
    recent = _now_iso(now - 3600)
    # ThingSpeak is down (nothing listens there): CP-1's readings are not forwarded
    gw = await gateway(thingspeak_url="http://127.0.0.1:%d" % free_port(), thingspeak_interval=0.05,
                       retention_days=30)
    s, out = await http(gw, "POST", "/api/stations", {"id": "CP-1", "thingspeak_channel": 5,
                                                      "thingspeak_key": "WKEY0000000011"})
    assert s == 201, out
    async with Connected(gw.port, "CP-2") as cp2:
        await boot(cp2)
        await cp2.call(call.MeterValues(connector_id=1, meter_value=[meter(OLD % 1, current=1.0),
                                                                      meter(OLD % 2, current=2.0)]))
    async with Connected(gw.port, "CP-1") as cp:
        await boot(cp)
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
        await cp.call(call.MeterValues(connector_id=1, meter_value=[
            meter(OLD % i, current=float(i)) for i in (1, 2, 3)] + [meter(recent, current=9.0)]))
        t_old = (await cp.call(call.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=0,
                                                     timestamp=OLD % 10))).transaction_id
        await cp.call(call.StopTransaction(meter_stop=100, timestamp=OLD % 20, transaction_id=t_old))
        t_running = (await cp.call(call.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=100,
                                                         timestamp=OLD % 30))).transaction_id
        t_recent = (await cp.call(call.StartTransaction(connector_id=2, id_tag="TAG2", meter_start=0,
                                                        timestamp=recent))).transaction_id
        await cp.call(call.StopTransaction(meter_stop=5, timestamp=recent, transaction_id=t_recent))

        # history older than the gateway's own clock can make: an old status event, connections
        # that ended long ago, one a stopped gateway left open, and the open one of CP-1's
        # session (kept: CP-1 is connected)
        def history(db):
            db.execute("INSERT INTO status_history (station, connector, status, ts) VALUES "
                       "('CP-1', 1, 'Charging', ?), ('CP-2', 1, 'Available', ?)", (OLD % 1, OLD % 2))
            db.execute("INSERT INTO connections (station, peer, connected_at, disconnected_at, reason) VALUES "
                       "('CP-2', 'x', ?, ?, 'closed'), ('CP-2', 'x', ?, NULL, NULL), ('CP-1', 'x', ?, NULL, NULL)",
                       (OLD % 1, OLD % 2, OLD % 3, OLD % 4))
        await gw.store.run(history)
        before = {t: (await _rows(gw, "SELECT COUNT(*) FROM " + t))[0][0]
                  for t in ("readings", "status_history", "connections", "transactions")}

        with caplog.at_level(logging.INFO, logger="picocharge.gateway.app"):
            gone = await gw.apply_retention(now=now)

        assert gone == {"readings": 5, "status_history": 2, "transactions": 1, "connections": 2}, gone
        after = {t: (await _rows(gw, "SELECT COUNT(*) FROM " + t))[0][0] for t in before}
        assert after == {t: before[t] - gone[t] for t in before}, (before, after)
        assert await _rows(gw, "SELECT station, current_a FROM readings ORDER BY id") == [("CP-1", 9.0)]
        assert await _rows(gw, "SELECT id FROM transactions ORDER BY id") == [(t_running,), (t_recent,)]
        assert await _rows(gw, "SELECT station, connected_at FROM connections WHERE connected_at < ?",
                           (recent,)) == [("CP-1", OLD % 4)]
        assert await _rows(gw, "SELECT COUNT(*) FROM status_history WHERE ts < ?", (recent,)) == [(0,)]
        assert (await _rows(gw, "SELECT COUNT(*) FROM status_history"))[0][0] > 0   # today's stay

    warn = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "retention" in r.getMessage()]
    assert warn == ["retention cap hit: 3 readings older than 30 days were dropped before the thingspeak "
                    "uplink delivered them"], warn
    info = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retention: deleted")]
    assert info == ["retention: deleted what is older than 30 days: 5 readings, 2 status history, "
                    "1 transactions, 2 connections"], info
    s, out = await http(gw, "GET", "/api/stations/CP-1/transactions")
    assert [t["id"] for t in out] == [t_recent, t_running], out
