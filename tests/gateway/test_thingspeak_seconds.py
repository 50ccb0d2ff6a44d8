"""Readings that share a second on a ThingSpeak channel. ThingSpeak keeps one entry per created_at
second in a channel (tests/fake_thingspeak.py enforces it as the real service does): the uplink
sends one entry per second holding each field's latest value in that second, counts what it merged,
and never counts delivered what the channel would drop."""
import json

import pytest
from ocpp.v16 import call

from support.gwhttp import http
from picocharge.gateway.logonce import reset_all
from support.fake_thingspeak import FakeThingSpeak
from support.stations import Connected, boot, meter
from support.tsreadings import _clean, _until
from picocharge.gateway.store import Store

pytestmark = pytest.mark.both_stores   # a storage test: on SQLite and on PostgreSQL


async def _station(gw, ch):
    s, out = await http(gw, "POST", "/api/stations", {"id": "CP-1", "thingspeak_channel": ch.id,
                                                      "thingspeak_key": ch.write_key})
    assert s == 201, out


async def _charging(cp):
    await boot(cp)
    await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))


def _burst_ts(i):
    """Reading i of a burst 0.3 s apart from 10:01:00.000 (a board replaying its journal)."""
    ms = 60000 + 300 * i
    return "2026-01-01T10:%02d:%02d.%03dZ" % (ms // 60000, ms // 1000 % 60, ms % 1000)


def _burst_entries(n):
    """What the channel must hold for a burst of n: one entry per second, field3 the latest current."""
    latest = {}
    for i in range(n):
        latest[_burst_ts(i)[:19] + "Z"] = i
    return [{"created_at": ts, "field1": "20.5", "field3": "%.1f" % i, "field8": "2"}
            for ts, i in latest.items()]


async def _refused_up_to(fake, ch, created_at):
    """True once the gateway tried (and the failing fake refused) a write that reaches created_at:
    from then on every fetch of the outbox holds all the readings sent before."""
    def seen():
        return any(isinstance(b, dict) and any(u.get("created_at") == created_at for u in b.get("updates", ()))
                   for _m, p, b in list(fake.requests) if p.endswith("bulk_update.json"))
    return await _until(seen, timeout=30)


async def test_thingspeak_seconds__meter_values_and_climate_in_one_second_make_one_entry(gateway, monkeypatch):
    """A MeterValues sample and a Climate DataTransfer (stamped with the gateway's clock) in the same
    second: one entry with the meter's and the climate's fields, one reading counted merged."""
    from picocharge.gateway import csms
    monkeypatch.setattr(csms, "utc_now", lambda: "2026-01-01T10:00:00Z")
    fake = FakeThingSpeak(min_interval=0.2).start()
    try:
        ch = fake.add_channel("WKEY0000000101")
        gw = await gateway(thingspeak_url=fake.url, thingspeak_interval=0.2)
        gw.thingspeak.settle = 2.0      # the second's readings are ms apart here: a wide margin on a busy machine
        await _station(gw, ch)
        async with Connected(gw.port, "CP-1") as cp:
            await _charging(cp)
            await cp.call(call.MeterValues(connector_id=1, meter_value=[
                meter("2026-01-01T10:00:00.100Z", current=6.25, temp=20.5)]))
            r = await cp.call(call.DataTransfer(vendor_id="PicoCharge", message_id="Climate",
                                                data=json.dumps({"humidity": 45, "board_temp_c": 31.5})))
            assert r.status == "Accepted", r
            assert await _until(lambda: fake.entries(ch.id)), fake.requests
            assert await _until(lambda: gw.thingspeak.delivered == 2), gw.thingspeak.delivered
        assert _clean(fake.entries(ch.id)) == [{"created_at": "2026-01-01T10:00:00Z", "field1": "20.5",
                                               "field2": "45.0", "field3": "6.25", "field7": "31.5",
                                               "field8": "2"}], fake.entries(ch.id)
        up = gw.thingspeak
        assert (up.delivered, up.merged, up.superseded, up.late) == (2, 1, 0, 0), vars(up)
        assert fake.dropped == [] and fake.refusals == [], (fake.dropped, fake.refusals)
    finally:
        fake.stop()


async def test_thingspeak_seconds__a_replayed_burst_keeps_every_second_and_counts_the_merged(gateway, caplog):
    """110 readings 0.3 s apart replayed after an outage (the issue's run lost 74 of them): 33 seconds,
    33 entries, each with the latest current of its second; 77 readings counted merged and their 77
    overwritten currents superseded. Then a reading for a second the channel already holds: not sent,
    counted late and logged, not delivered."""
    reset_all()     # what an earlier test logged does not hold back this test's lines
    n = 110
    fake = FakeThingSpeak(min_interval=0.2).start()
    try:
        ch = fake.add_channel("WKEY0000000102")
        gw = await gateway(thingspeak_url=fake.url, thingspeak_interval=0.2)
        await _station(gw, ch)
        fake.fail_with = 500                # ThingSpeak unreachable while the board replays
        async with Connected(gw.port, "CP-1") as cp:
            await _charging(cp)
            for first in range(0, n, 11):   # the journal's replay: 10 MeterValues of 11 samples
                await cp.call(call.MeterValues(connector_id=1, meter_value=[
                    meter(_burst_ts(i), current=float(i), temp=20.5) for i in range(first, first + 11)]))
            want = _burst_entries(n)
            assert await _refused_up_to(fake, ch, want[-1]["created_at"]), fake.requests
            fake.fail_with = None
            assert await _until(lambda: gw.thingspeak.delivered == n), gw.thingspeak.delivered
            assert _clean(fake.entries(ch.id)) == want, fake.entries(ch.id)
            up = gw.thingspeak
            seconds = len(want)
            assert (seconds, up.delivered, up.merged, up.superseded, up.late) == (33, n, n - 33, n - 33, 0), vars(up)
            assert fake.dropped == [], fake.dropped

            # a late reading: its second (10:01:05) is in the channel already
            await cp.call(call.MeterValues(connector_id=1, meter_value=[
                meter("2026-01-01T10:01:05.950Z", current=99.0, temp=20.5)]))
            assert await _until(lambda: up.late == 1), vars(up)
        assert up.delivered == n and len(fake.entries(ch.id)) == seconds, vars(up)
        assert fake.dropped == [], fake.dropped      # never sent: nothing for the channel to drop
        late = [r.getMessage() for r in caplog.records if "already holds an entry" in r.getMessage()]
        assert late == ["thingspeak: station=CP-1 channel=%d: 1 readings not sent: the channel already holds an "
                        "entry at their second (created_at 2026-01-01T10:01:05Z...)" % ch.id], late
        s, m = await http(gw, "GET", "/metrics")
        assert 'picocharge_outbox_depth{uplink="thingspeak"} 0' in m, m
    finally:
        fake.stop()


async def test_thingspeak_seconds__one_reading_resent_after_a_restart_goes_by_bulk_write(gateway, gw_db):
    """The gateway stopped between ThingSpeak storing a single write and the cursor's commit, and the
    channel cannot be read back (private, no read key): the reading is sent again by bulk write, which
    ThingSpeak answers 202 and drops as a duplicate. A single write of it would be answered 0 (not
    stored) at every retry, and the station's uplink would never move on."""
    fake = FakeThingSpeak(min_interval=0.2).start()
    try:
        ch = fake.add_channel("WKEY0000000103")
        db = gw_db
        gw = await gateway(db=db, thingspeak_url=fake.url, thingspeak_interval=0.2)
        await _station(gw, ch)
        async with Connected(gw.port, "CP-1") as cp:
            await _charging(cp)
            await cp.call(call.MeterValues(connector_id=1, meter_value=[
                meter("2026-01-01T10:00:01Z", current=1.0, temp=20.5)]))
            assert await _until(lambda: gw.thingspeak.delivered == 1), fake.requests
        await gw.stop()
        con = Store(db).open()     # SQLite or PostgreSQL: the statement commits at once
        con.execute("UPDATE outbox SET last_id=0 WHERE uplink='thingspeak' AND station='CP-1'")
        con.close()
        gw2 = await gateway(db=db, thingspeak_url=fake.url, thingspeak_interval=0.2)
        assert await _until(lambda: gw2.thingspeak.delivered == 1), (fake.requests, fake.refusals)
        assert fake.requests[-1][1] == "/channels/%d/bulk_update.json" % ch.id, fake.requests
        assert [e for _c, e in fake.dropped] == [{"created_at": "2026-01-01T10:00:01Z", "field1": "20.5",
                                                  "field3": "1.0", "field8": "2"}], fake.dropped
        assert len(fake.entries(ch.id)) == 1 and fake.refusals == [] and gw2.thingspeak.errors == 0, fake.refusals
    finally:
        fake.stop()
