"""The real `picocharge gateway` process killed with SIGKILL and started again on the same
database, with the broker and the ThingSpeak server down and brought back around it: every
reading a station had answered reaches mosquitto and ThingSpeak once, in order."""
import asyncio
import os
import signal

import pytest
from ocpp.v16 import call

from support.gwhttp import http
from support.fake_thingspeak import FakeThingSpeak
from support.net import free_port
from support.broker import PersistentBroker, Subscriber
from support.stations import Connected, boot
from support.tsreadings import _clean, _entries, _send, _ts, _until

pytestmark = pytest.mark.both_stores   # a storage test: on SQLite and on PostgreSQL


def _telemetry(first, n):
    return [{"temp_c": 20.5, "current_a": float(i), "status": "Charging", "ts": _ts(i), "seq": i, "src": "gateway"}
            for i in range(first, first + n)]


def _start(db, port, broker, ts_url):
    from picocharge.cmd_demo import GatewayProcess
    return GatewayProcess(db, port=port, extra=(
        "--auth", "none", "--mqtt", "mqtt://127.0.0.1:%d/pc" % broker.port, "--thingspeak-url", ts_url,
        "--thingspeak-interval", "0.2")).start()


def _kill(gw):
    os.killpg(gw.proc.pid, signal.SIGKILL)
    gw.proc.wait(10)


async def _metric(port, text):
    async def has():
        s, m = await http(port, "GET", "/metrics")
        return text in m
    for _ in range(400):
        if await has():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_kill__sigkill_with_uplinks_down_loses_and_repeats_nothing(tmp_path, gw_db):
    broker = PersistentBroker(tmp_path).start()
    sub = Subscriber(broker.port, "pc/+/telemetry", client_id="keeper", clean=False)
    fake = FakeThingSpeak(min_interval=0.2).start()
    ch = fake.add_channel("WKEY0000000009")
    db, port, ts_url = gw_db, free_port(), fake.url
    gw = await asyncio.to_thread(_start, db, port, broker, ts_url)
    try:
        s, out = await http(port, "POST", "/api/stations", {
            "id": "CP-1", "password": "password-123-4567", "thingspeak_channel": ch.id, "thingspeak_key": ch.write_key})
        assert s == 201, out
        async with Connected(port, "CP-1") as cp:
            await boot(cp)
            await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
            await _send(cp, 1, 4)                                   # everything up: delivered at once
            assert await _until(lambda: len(fake.entries(ch.id)) == 4)
            assert len(await asyncio.to_thread(sub.wait, "pc/CP-1/telemetry", 4)) == 4
            # delivered and recorded as delivered (the cursors stored), before the uplinks go: an
            # answer cut off by the stop would leave the 4th reading pending, not lost
            assert await _metric(port, 'picocharge_outbox_depth{uplink="mqtt"} 0')
            assert await _metric(port, 'picocharge_outbox_depth{uplink="thingspeak"} 0')
            broker.stop()
            fake.stop()
            await _send(cp, 5, 6)                                   # answered, so stored; not uploaded
            assert await _metric(port, 'picocharge_outbox_depth{uplink="mqtt"} 6')
            assert await _metric(port, 'picocharge_outbox_depth{uplink="thingspeak"} 6')
            await asyncio.to_thread(_kill, gw)
        gw = await asyncio.to_thread(_start, db, port, broker, ts_url)
        async with Connected(port, "CP-1") as cp:                   # the station reconnects and goes on
            await boot(cp)
            await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
            await _send(cp, 11, 5)
            assert await _metric(port, 'picocharge_outbox_depth{uplink="mqtt"} 11')
            broker.start()
            fake.start(int(ts_url.rsplit(":", 1)[1]))
            got = await asyncio.to_thread(sub.wait, "pc/CP-1/telemetry", 15, timeout=40)
            assert await _until(lambda: len(fake.entries(ch.id)) >= 15, timeout=40)
            await asyncio.sleep(1.0)                                # a duplicate would arrive by now
        got = sub.on("pc/CP-1/telemetry")
        assert [p for p, _r in got] == _telemetry(1, 15), [p.get("seq") for p, _r in got]
        want = [dict(e, field1="20.5") for e in _entries(1, 15)]
        assert _clean(fake.entries(ch.id)) == want, fake.entries(ch.id)
        assert await _metric(port, 'picocharge_outbox_depth{uplink="thingspeak"} 0')
        s, rows = await http(port, "GET", "/api/stations/CP-1/readings")
        assert [r["seq"] for r in rows] == list(range(1, 16)), rows
    finally:
        gw.stop()
        sub.close()
        broker.stop()
        fake.stop()
    assert not any("Traceback" in line for line in gw.log), "\n".join(gw.log[-40:])
