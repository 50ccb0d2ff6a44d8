"""A station that reboots replays the transaction messages it did not see answered; some charge points
(a widely used open-source simulator) send StopTransaction twice on every soft reset (SoftReset, then
Local). The gateway treats a replayed StartTransaction as the same transaction and lets the first
StopTransaction of a transaction stand: answered as the spec requires, logged, counted, nothing
changed. Stations are ocpp-package charge points that reconnect between the two messages."""
import logging

import pytest
from ocpp.v16 import call

from support.gwhttp import http
from support.stations import Connected, boot, meter

pytestmark = pytest.mark.both_stores   # a storage test: on SQLite and on PostgreSQL

_START = dict(connector_id=1, id_tag="TAG1", meter_start=1000, timestamp="2026-01-01T10:00:00.250Z")


def _transactions(db):
    return [tuple(r) for r in db.execute("SELECT id, station, connector, id_tag, meter_start, start_ts, meter_stop, "
                                         "stop_ts, reason FROM transactions ORDER BY id")]


def _reading_count(db):
    return db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]


async def test_replays__a_replayed_start_transaction_is_the_same_transaction(gateway, caplog):
    caplog.set_level(logging.INFO, logger="picocharge.gateway.csms")
    gw = await gateway()
    async with Connected(gw.port, "CP-1") as cp:
        await boot(cp)
        first = await cp.call(call.StartTransaction(**_START))
    async with Connected(gw.port, "CP-1") as cp:       # rebooted: the start was not seen answered
        await boot(cp)
        again = await cp.call(call.StartTransaction(**_START))
        other = await cp.call(call.StartTransaction(**dict(_START, connector_id=2)))
        later = await cp.call(call.StartTransaction(**dict(_START, meter_start=1500,
                                                           timestamp="2026-01-01T11:00:00Z")))
    assert (first.transaction_id, again.transaction_id, other.transaction_id, later.transaction_id) == (1, 1, 2, 3), \
        (first, again, other, later)
    assert again.id_tag_info == {"status": "Accepted"}, again
    tx = await gw.store.run(_transactions)
    assert tx == [(1, "CP-1", 1, "TAG1", 1000, "2026-01-01T10:00:00Z", None, None, None),
                  (2, "CP-1", 2, "TAG1", 1000, "2026-01-01T10:00:00Z", None, None, None),
                  (3, "CP-1", 1, "TAG1", 1500, "2026-01-01T11:00:00Z", None, None, None)], tx
    assert gw.metrics.replayed == {"StartTransaction": 1, "StopTransaction": 0}, gw.metrics.replayed
    status, text = await http(gw, "GET", "/metrics")
    assert status == 200 and 'picocharge_ocpp_replayed_total{action="StartTransaction"} 1.0' in text, text
    assert 'picocharge_ocpp_replayed_total{action="StopTransaction"} 0.0' in text, text
    lines = [r.getMessage() for r in caplog.records if "replayed" in r.getMessage()]
    assert lines == ["station=CP-1 StartTransaction replayed: connector 1 meterStart 1000 at 2026-01-01T10:00:00Z: "
                     "answered transactionId 1 again, no new transaction"], lines


async def test_replays__the_first_stop_stands_soft_reset_then_local(gateway, caplog):
    """The simulator's soft reset: StopTransaction reason SoftReset, then after the reboot a second one
    with reason Local, a later meterStop and transactionData. Both are answered (idTagInfo for the
    idTag); the transaction keeps SoftReset and the first meterStop; the second's transactionData is
    not stored."""
    caplog.set_level(logging.INFO, logger="picocharge.gateway.csms")
    gw = await gateway()
    async with Connected(gw.port, "CP-1") as cp:
        await boot(cp)
        tid = (await cp.call(call.StartTransaction(**_START))).transaction_id
        stop1 = await cp.call(call.StopTransaction(meter_stop=1300, timestamp="2026-01-01T10:30:00Z",
                                                   transaction_id=tid, reason="SoftReset", id_tag="TAG1",
                                                   transaction_data=[meter("2026-01-01T10:30:00Z", energy=1300)]))
    readings = await gw.store.run(_reading_count)
    async with Connected(gw.port, "CP-1") as cp:
        await boot(cp)
        stop2 = await cp.call(call.StopTransaction(meter_stop=1310, timestamp="2026-01-01T10:30:05Z",
                                                   transaction_id=tid, reason="Local", id_tag="TAG1",
                                                   transaction_data=[meter("2026-01-01T10:30:05Z", energy=1310)]))
        plain = await cp.call(call.StopTransaction(meter_stop=1320, timestamp="2026-01-01T10:30:09Z",
                                                   transaction_id=tid))
    assert stop1.id_tag_info == stop2.id_tag_info == {"status": "Accepted"}, (stop1, stop2)
    assert plain.id_tag_info is None, plain
    tx = await gw.store.run(_transactions)
    assert tx == [(tid, "CP-1", 1, "TAG1", 1000, "2026-01-01T10:00:00Z", 1300, "2026-01-01T10:30:00Z",
                   "SoftReset")], tx
    assert readings == 1 and await gw.store.run(_reading_count) == 1, readings
    assert gw.metrics.replayed == {"StartTransaction": 0, "StopTransaction": 2}, gw.metrics.replayed
    lines = [r.getMessage() for r in caplog.records if "replayed" in r.getMessage()]
    assert lines == ["station=CP-1 StopTransaction replayed: transactionId %d (meterStop 1310, reason Local): "
                     "stopped before; the first stop stands" % tid,
                     "station=CP-1 StopTransaction replayed: transactionId %d (meterStop 1320, reason -): "
                     "stopped before; the first stop stands" % tid], lines


async def test_replays__a_stop_of_another_station_s_transaction_changes_nothing(gateway):
    gw = await gateway()
    async with Connected(gw.port, "CP-1") as cp:
        await boot(cp)
        tid = (await cp.call(call.StartTransaction(**_START))).transaction_id
    async with Connected(gw.port, "CP-2") as cp:
        await boot(cp)
        out = await cp.call(call.StopTransaction(meter_stop=5, timestamp="2026-01-01T10:30:00Z", transaction_id=tid))
    assert out.id_tag_info is None, out
    tx = await gw.store.run(_transactions)
    assert tx == [(tid, "CP-1", 1, "TAG1", 1000, "2026-01-01T10:00:00Z", None, None, None)], tx
