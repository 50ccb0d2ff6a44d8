"""Paced readings grouped (issue 17, "an uplink that falls behind"): readings from many stations
that arrive a few ms apart share one store commit (the writer's linger) and one MQTT batch (the
uplink's linger), every CALL is answered only once its reading is committed, and a gateway
that stops while the uplink lingers keeps the acknowledged batch's cursor."""
import asyncio
import json
import time

import pytest
import websockets

from support.broker import Subscriber
from picocharge.gateway.store import Store
from picocharge.gateway.uplinks import MqttUplink, key_id

pytestmark = pytest.mark.both_stores   # a storage test: on SQLite and on PostgreSQL

N = 24          # stations, one reading each
SPACING = 0.001  # s between two stations' readings: the paced fleet, compressed


def _meter_values(i):
    return {"connectorId": 1, "meterValue": [{"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                              "sampledValue": [{"value": "%d" % (1000 + i),
                                                                "measurand": "Energy.Active.Import.Register",
                                                                "unit": "Wh"}]}]}


async def _stations(gw, n):
    socks = []
    for i in range(n):
        ws = await websockets.connect("ws://127.0.0.1:%d/ocpp/CP-%02d" % (gw.port, i), subprotocols=["ocpp1.6"])
        await ws.send(json.dumps([2, "b", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]))
        assert json.loads(await asyncio.wait_for(ws.recv(), 20))[0] == 3
        socks.append(ws)
    return socks


async def _paced_readings(gw, socks):
    """Each station sends one MeterValues, SPACING apart; returns (spread of the sends in s,
    [for each answer: (its frame, the station's readings committed when it arrived)])."""
    db = Store(gw.settings.db).open()    # a second connection sees only what is committed

    async def one(i, ws):
        await asyncio.sleep(i * SPACING)
        sent = time.monotonic()
        await ws.send(json.dumps([2, "mv%d" % i, "MeterValues", _meter_values(i)]))
        got = json.loads(await asyncio.wait_for(ws.recv(), 20))
        committed = db.execute("SELECT COUNT(*) FROM readings WHERE station=?", ("CP-%02d" % i,)).fetchone()[0]
        return sent, got, committed

    try:
        out = await asyncio.gather(*(one(i, ws) for i, ws in enumerate(socks)))
    finally:
        db.close()
    sent = [s for s, _g, _c in out]
    return max(sent) - min(sent), [(g, c) for _s, g, c in out]


async def test_store__readings_a_few_ms_apart_share_a_commit_and_are_answered_after_it(gateway):
    gw = await gateway()
    assert gw.store.linger == Store.LINGER > 0
    socks = await _stations(gw, N)
    try:
        c0 = gw.store.commits
        spread, answers = await _paced_readings(gw, socks)
        commits = gw.store.commits - c0
    finally:
        for ws in socks:
            await ws.close()
    for i, (got, committed) in enumerate(answers):
        assert got == [3, "mv%d" % i, {}], got
        assert committed == 1, (i, committed)    # answered only once the reading was committed
    # without the linger each reading that finds the writer idle gets its own commit; with it,
    # one commit per linger at most (plus the one running when the first reading came)
    assert commits <= int(spread / gw.store.linger) + 2, (commits, spread)
    if spread < N * gw.store.linger / 2:
        assert commits < N / 2, (commits, spread)


async def test_store__no_linger_commits_at_once(gateway):
    gw = await gateway()
    gw.store.linger = 0
    socks = await _stations(gw, 1)
    try:
        t = time.monotonic()
        _spread, answers = await _paced_readings(gw, socks)
        took = time.monotonic() - t
    finally:
        await socks[0].close()
    assert answers == [([3, "mv0", {}], 1)], answers
    assert took < 5, took


async def test_mqtt__paced_readings_go_out_in_few_batches_and_a_stop_keeps_the_cursor(gateway, mqtt_broker):
    sub = Subscriber(mqtt_broker.port, "pc/+/telemetry")
    try:
        gw = await gateway(mqtt_url="mqtt://127.0.0.1:%d/pc" % mqtt_broker.port, mqtt_ingest=False)
        up = gw.mqtt
        assert up.linger == MqttUplink.LINGER > 0
        up.linger = 0.5     # longer than the default: the stop below comes inside it for sure
        end = time.monotonic() + 20
        while not up.connected and time.monotonic() < end:
            await asyncio.sleep(0.05)
        assert up.connected
        reads = []
        advance = up._advance

        def counted(db, cursor, moved, limit):
            rows = advance(db, cursor, moved, limit)
            if rows:
                reads.append(len(rows))
            return rows

        up._advance = counted
        socks = await _stations(gw, N)
        try:
            spread, answers = await _paced_readings(gw, socks)
        finally:
            for ws in socks:
                await ws.close()
        assert all(got[0] == 3 for got, _c in answers), answers
        end = time.monotonic() + 20
        while up.delivered < N and time.monotonic() < end:
            await asyncio.sleep(0.005)
        assert up.delivered == N and sum(reads) == N, (up.delivered, reads)
        # one outbox read (and one burst of publishes) per linger, not one per reading
        assert len(reads) <= int(spread / up.linger) + 2, (reads, spread)
        # the gateway stops while the uplink lingers after the last acknowledged batch (its
        # cursor not stored yet): stop() stores it, so nothing acknowledged is sent again
        last = await gw.store.run(lambda db: db.execute("SELECT MAX(id) FROM readings").fetchone()[0])
        assert key_id(up._unsaved) == last, (up._unsaved, last)     # an id, or (xid, id) on PostgreSQL
        await gw.stop()
        db = Store(gw.settings.db).open()
        try:
            cursor = db.execute("SELECT last_id FROM outbox WHERE uplink='mqtt' AND station='*'").fetchone()[0]
        finally:
            db.close()
        assert cursor == last, (cursor, last)
        end = time.monotonic() + 20
        while len(sub.messages) < N and time.monotonic() < end:
            await asyncio.sleep(0.05)
        assert sorted(t for t, _p, _r in sub.messages) == ["pc/CP-%02d/telemetry" % i for i in range(N)], \
            sub.messages
    finally:
        sub.close()
