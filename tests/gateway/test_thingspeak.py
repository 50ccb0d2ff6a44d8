"""ThingSpeak uplink against a server that follows ThingSpeak's published API (tests/fake_thingspeak.py):
single writes with created_at, bulk writes for a backlog within the entry limit, the channel interval,
outages, and restarts of the gateway without duplicates."""
import asyncio
import json

import pytest
from ocpp.v16 import call

from support.gwhttp import http
from support.fake_thingspeak import FakeThingSpeak
from support.stations import Connected, boot, meter
from support.tsreadings import _clean, _entries, _send, _ts, _until
from picocharge.gateway.store import Store

pytestmark = pytest.mark.both_stores   # a storage test: on SQLite and on PostgreSQL


async def _register(gw, ch, read_key=None):
    body = {"id": "CP-1", "password": "password-123-4567", "thingspeak_channel": ch.id, "thingspeak_key": ch.write_key}
    if read_key:
        body["thingspeak_read_key"] = read_key
    s, out = await http(gw, "POST", "/api/stations", body)
    assert s == 201 and "thingspeak_key" not in out and out["thingspeak_channel"] == ch.id, out
    assert ch.write_key not in json.dumps(out) and (not read_key or read_key not in json.dumps(out)), out


async def _charging(cp):
    """Boot, then report Charging (the status that field8 carries)."""
    await boot(cp)
    await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))


async def test_thingspeak__single_and_bulk_writes_obey_interval_and_limit(gateway):
    fake = FakeThingSpeak(min_interval=0.5, bulk_limit=4).start()
    try:
        ch = fake.add_channel("WKEY0000000001")
        gw = await gateway(thingspeak_url=fake.url, thingspeak_interval=0.5, thingspeak_bulk_limit=4)
        await _register(gw, ch)
        async with Connected(gw.port, "CP-1") as cp:
            await _charging(cp)
            await _send(cp, 1, 1)
            assert await _until(lambda: len(fake.entries(ch.id)) == 1)
            await _send(cp, 2, 10)      # a backlog: bulk writes of at most 4, one per interval
            assert await _until(lambda: len(fake.entries(ch.id)) == 11)
        assert _clean(fake.entries(ch.id)) == _entries(1, 11), fake.entries(ch.id)
        writes = [(m, p, len(b["updates"]) if "updates" in b else 1) for m, p, b in fake.requests]
        assert writes[0] == ("POST", "/update", 1), writes
        bulk = ("POST", "/channels/%d/bulk_update.json" % ch.id)
        assert writes[1:] == [bulk + (4,), bulk + (4,), bulk + (2,)], writes
        assert fake.refused == 0, "the gateway wrote faster than the channel interval: %r" % writes
        assert all(b.get("write_api_key") == ch.write_key for _m, p, b in fake.requests if "updates" in b)
        s, m = await http(gw, "GET", "/metrics")
        assert 'picocharge_uplink_delivered_total{uplink="thingspeak"} 11' in m and \
            'picocharge_outbox_depth{uplink="thingspeak"} 0' in m, m
    finally:
        fake.stop()


async def test_thingspeak__outage_and_refusals_lose_nothing(gateway):
    fake = FakeThingSpeak(min_interval=0.2).start()
    port = fake.server.server_address[1]
    try:
        ch = fake.add_channel("WKEY0000000002")
        gw = await gateway(thingspeak_url=fake.url, thingspeak_interval=0.2)
        await _register(gw, ch)
        async with Connected(gw.port, "CP-1") as cp:
            await _charging(cp)
            await _send(cp, 1, 2)
            assert await _until(lambda: len(fake.entries(ch.id)) == 2)
            fake.fail_with = 500             # the server answers errors ...
            await _send(cp, 3, 2)
            assert await _until(lambda: gw.thingspeak.errors >= 1)
            fake.stop()                      # ... then is gone altogether
            await _send(cp, 5, 3)
            await asyncio.sleep(0.5)
            fake.fail_with = None
            fake.start(port=port)
            await _send(cp, 8, 2)
            assert await _until(lambda: len(fake.entries(ch.id)) == 9, timeout=30), fake.entries(ch.id)
        assert _clean(fake.entries(ch.id)) == _entries(1, 9), fake.entries(ch.id)
    finally:
        fake.stop()


async def _restart_after_inflight_write(gateway, db, fake, ch, read_key):
    """Readings 1..3 uploaded, 4..6 not; then the gateway restarts as if it had crashed between
    ThingSpeak's answer for 1..3 and the cursor's commit. Returns the restarted gateway once
    ThingSpeak has at least six entries."""
    gw = await gateway(db=db, thingspeak_url=fake.url, thingspeak_interval=0.2)
    await _register(gw, ch, read_key)
    async with Connected(gw.port, "CP-1") as cp:
        await _charging(cp)
        await _send(cp, 1, 3)
        assert await _until(lambda: len(fake.entries(ch.id)) == 3)
        fake.fail_with = 500
        await _send(cp, 4, 3)            # acknowledged to the station, not yet uploaded
    await gw.stop()
    fake.fail_with = None

    # the last upload (readings 1..3) is marked in flight and the cursor is back before it;
    # created_at recognises the replay, if the channel can be read back
    # (the outbox's keys: ids on SQLite, (xid, id) on PostgreSQL: uplinks.row_key)
    from picocharge.gateway.uplinks import row_key, set_cursor
    con = Store(db).open()     # SQLite or PostgreSQL: each statement commits at once
    third = con.execute("SELECT * FROM readings WHERE id=3").fetchone()
    set_cursor(con, "thingspeak", "CP-1", (0, 0) if isinstance(row_key(con, third), tuple) else 0)
    set_cursor(con, "thingspeak-inflight", "CP-1", row_key(con, third))
    con.close()

    gw2 = await gateway(db=db, thingspeak_url=fake.url, thingspeak_interval=0.2)
    assert await _until(lambda: len(fake.entries(ch.id)) >= 6)
    await asyncio.sleep(0.6)
    return gw2


def _feeds_reads(fake, ch):
    return [b for m, p, b in fake.requests if p == "/channels/%d/feeds.json" % ch.id]


async def test_thingspeak__restart_resumes_without_duplicates(gateway, gw_db, caplog):
    """A private channel (ThingSpeak's default) is read back with the station's read key."""
    fake = FakeThingSpeak(min_interval=0.2).start()
    try:
        ch = fake.add_channel("WKEY0000000003", read_key="RKEY0000000003")
        gw2 = await _restart_after_inflight_write(gateway, gw_db, fake, ch, "RKEY0000000003")
        assert _clean(fake.entries(ch.id)) == _entries(1, 6), fake.entries(ch.id)
        assert gw2.thingspeak.delivered == 3, gw2.thingspeak.delivered
        reads = _feeds_reads(fake, ch)
        assert len(reads) == 1 and reads[0]["api_key"] == "RKEY0000000003", fake.requests
        assert "RKEY0000000003" not in caplog.text and "WKEY0000000003" not in caplog.text, caplog.text
    finally:
        fake.stop()


async def test_thingspeak__restart_without_read_key_warns_and_resends(gateway, gw_db, caplog):
    """Without its read key a private channel cannot be read back (ThingSpeak: HTTP 400, -1): the
    gateway says so, and what to do, and sends 1..3 again (at-least-once). The channel keeps one
    entry per second and drops the three it already holds; the gateway cannot tell (a bulk write
    is answered 202 whatever ThingSpeak later keeps), so it counts them delivered."""
    fake = FakeThingSpeak(min_interval=0.2).start()
    try:
        ch = fake.add_channel("WKEY0000000005")
        gw2 = await _restart_after_inflight_write(gateway, gw_db, fake, ch, None)
        assert _clean(fake.entries(ch.id)) == _entries(1, 6), fake.entries(ch.id)
        assert [e for _c, e in fake.dropped] == _entries(1, 3), fake.dropped
        assert gw2.thingspeak.delivered == 6, gw2.thingspeak.delivered
        assert [r.get("api_key") for r in _feeds_reads(fake, ch)] == [None], fake.requests
        warn = [r.getMessage() for r in caplog.records if "cannot read the channel back" in r.getMessage()]
        assert warn == ["thingspeak: station=CP-1 channel=%d: cannot read the channel back (HTTP 400 -1; a "
                        "private channel is read with its Read API key: give the station thingspeak_read_key "
                        "(PUT /api/stations/<id>/thingspeak) or make the channel public); re-sending readings "
                        "1..3 (may duplicate)" % ch.id], warn
    finally:
        fake.stop()


async def test_thingspeak__restart_with_an_answer_that_is_not_a_feed_resends(gateway, gw_db, caplog):
    """A feeds read answered 200 with -1 (not a JSON object) is a read that failed, not a dead worker."""
    fake = FakeThingSpeak(min_interval=0.2).start()
    try:
        ch = fake.add_channel("WKEY0000000006")
        fake.feeds_answer = (200, "-1")
        gw2 = await _restart_after_inflight_write(gateway, gw_db, fake, ch, "RKEY-WRONG")
        assert _clean(fake.entries(ch.id)) == _entries(1, 6), fake.entries(ch.id)
        assert [e for _c, e in fake.dropped] == _entries(1, 3), fake.dropped
        assert gw2.thingspeak.delivered == 6, gw2.thingspeak.delivered
        warn = [r.getMessage() for r in caplog.records if "cannot read the channel back" in r.getMessage()]
        assert len(warn) == 1 and "ThingSpeak answered -1, not the channel's feed; check the read key" in warn[0], warn
        assert "RKEY-WRONG" not in caplog.text, caplog.text
    finally:
        fake.stop()


async def test_thingspeak__http_ingest_is_stored_and_reuploaded(gateway):
    fake = FakeThingSpeak(min_interval=0.2).start()
    try:
        ch = fake.add_channel("WKEY0000000004")
        gw = await gateway(thingspeak_url=fake.url, thingspeak_interval=0.2)
        await _register(gw, ch)
        # the original prototype's ThingSpeak write, pointed at the gateway
        s, out = await http(gw, "POST", "/update", raw=b"api_key=WKEY0000000004&field1=22.5&field2=48&field3=6.25"
                            b"&field4=229.5&field8=2&created_at=2026-01-01T09:00:00Z",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert (s, out) == (200, "1"), out
        s, out = await http(gw, "GET", "/update?api_key=WKEY0000000004&field7=35.5")
        assert (s, out) == (200, "2"), out
        assert await _until(lambda: len(fake.entries(ch.id)) == 2)
        got = _clean(fake.entries(ch.id))
        assert got[0] == {"field1": "22.5", "field2": "48.0", "field3": "6.25", "field4": "229.5", "field8": "2",
                          "created_at": "2026-01-01T09:00:00Z"}, got
        assert sorted(got[1]) == ["created_at", "field7"] and got[1]["field7"] == "35.5", got
        s, rows = await http(gw, "GET", "/api/stations/CP-1/readings?limit=1")
        assert [{k: v for k, v in r.items() if k != "ts"} for r in rows] == [{"seq": 2, "chip_temp_c": 35.5}], rows
        for raw, ctype, status, msg in [
            (b"field1=1", "application/x-www-form-urlencoded", 400, "api_key missing"),
            (b"api_key=NOPE&field1=1", "application/x-www-form-urlencoded", 401, "unknown api_key"),
            (b"api_key=WKEY0000000004&field1=warm", "application/x-www-form-urlencoded", 400,
             "field1 must be a number, not 'warm'"),
            (b"api_key=WKEY0000000004", "application/x-www-form-urlencoded", 400, "no fields"),
            (b"api_key=WKEY0000000004&field1=1&created_at=yesterday", "application/x-www-form-urlencoded", 400,
             "created_at/ts 'yesterday' is not ISO 8601"),
            (b"{not json", "application/json", 400, "the body is not JSON"),
            (b"\xff\xfe", "application/x-www-form-urlencoded", 400, "the body is not a form"),
        ]:
            s, out = await http(gw, "POST", "/update", raw=raw, headers={"Content-Type": ctype})
            assert s == status and msg in out, (raw, s, out)
        s, out = await http(gw, "POST", "/update", {"api_key": "WKEY0000000004", "field5": 1200})
        assert (s, out) == (200, "3"), out
    finally:
        fake.stop()


async def test_thingspeak__channel_changed_through_the_api_and_healthz_says_what_fails(gateway):
    """PUT /api/stations/<id>/thingspeak: a wrong write key makes /healthz say 'failing' and
    why, with the reading kept; the right channel gets the waiting reading and what follows;
    clearing stops forwarding; a write key another station has is refused."""
    fake = FakeThingSpeak(min_interval=0.1).start()
    try:
        a, b = fake.add_channel("WKEYAAAA00000001"), fake.add_channel("WKEYBBBB00000002")
        gw = await gateway(thingspeak_url=fake.url, thingspeak_interval=0.1)
        await _register(gw, a)
        put = "/api/stations/CP-1/thingspeak"
        async with Connected(gw.port, "CP-1") as cp:
            await _charging(cp)
            await _send(cp, 1, 1)
            assert await _until(lambda: len(fake.entries(a.id)) == 1)
            s, out = await http(gw, "GET", "/healthz")
            assert out["uplinks"] == {"thingspeak": "connected"} and "thingspeak_failing" not in out, out

            s, out = await http(gw, "PUT", put, {"thingspeak_channel": a.id, "thingspeak_key": "WRONGKEY"})
            assert (s, out["thingspeak_channel"]) == (200, a.id) and "WRONGKEY" not in str(out), out
            await _send(cp, 2, 1)
            assert await _until(lambda: gw.thingspeak.refused >= 1)
            s, out = await http(gw, "GET", "/healthz")
            assert out["uplinks"] == {"thingspeak": "failing"}, out
            assert list(out["thingspeak_failing"]) == ["CP-1"] and "answered 0" in out["thingspeak_failing"]["CP-1"]
            assert "WRONGKEY" not in json.dumps(out), out

            s, out = await http(gw, "PUT", put, {"thingspeak_channel": b.id, "thingspeak_key": b.write_key,
                                                 "thingspeak_read_key": b.read_key})
            assert (s, out["thingspeak_channel"]) == (200, b.id) and b.read_key not in json.dumps(out), out
            assert gw.stations["CP-1"]["ts_read_key"] == b.read_key, gw.stations["CP-1"]
            await _send(cp, 3, 1)
            assert await _until(lambda: len(fake.entries(b.id)) == 2), fake.entries(b.id)
            assert _clean(fake.entries(b.id)) == _entries(2, 2) and len(fake.entries(a.id)) == 1
            s, out = await http(gw, "GET", "/healthz")
            assert out["uplinks"] == {"thingspeak": "connected"} and "thingspeak_failing" not in out, out

            s, out = await http(gw, "POST", "/api/stations", {"id": "CP-2", "thingspeak_channel": a.id,
                                                              "thingspeak_key": a.write_key})
            assert s == 201, out
            s, out = await http(gw, "PUT", put, {"thingspeak_channel": a.id, "thingspeak_key": a.write_key})
            assert s == 400 and "already station CP-2's" in out["error"], out
            for body, why in (({"thingspeak_channel": b.id}, "give thingspeak_channel and thingspeak_key"),
                              ({"thingspeak_channel": 0, "thingspeak_key": "K"}, "positive integer"),
                              ({"thingspeak_channel": 5, "thingspeak_key": "has space"}, "no spaces"),
                              ({"thingspeak_channel": None, "thingspeak_key": None, "thingspeak_read_key": "R1"},
                               "thingspeak_read_key goes with thingspeak_channel"),
                              ({"thingspeak_channel": 5, "thingspeak_key": "K", "thingspeak_read_key": "a b"},
                               "thingspeak_read_key must be the channel's Read API key")):
                s, out = await http(gw, "PUT", put, body)
                assert s == 400 and why in out["error"], (body, out)
            s, out = await http(gw, "PUT", "/api/stations/NOPE/thingspeak",
                                {"thingspeak_channel": b.id, "thingspeak_key": b.write_key})
            assert s == 404, out

            s, out = await http(gw, "PUT", put, {"thingspeak_channel": None, "thingspeak_key": None})
            assert (s, out["thingspeak_channel"]) == (200, None), out
            await _send(cp, 4, 2)
            await asyncio.sleep(0.5)
            assert len(fake.entries(b.id)) == 2, fake.entries(b.id)
            s, m = await http(gw, "GET", "/metrics")
            assert 'picocharge_outbox_depth{uplink="thingspeak"} 0' in m, m
            s, out = await http(gw, "GET", "/api/stations/CP-1")
            assert out["thingspeak_channel"] is None, out
    finally:
        fake.stop()


async def test_thingspeak__rate_limited_writes_are_sent_again_once_in_order(gateway):
    """The gateway's interval (0.2 s) is shorter than the channel's (1 s): ThingSpeak answers 0
    to a single write and 429 to a bulk one; every reading still arrives once, in order, and each
    refusal is counted in picocharge_uplink_errors_total."""
    fake = FakeThingSpeak(min_interval=1.0).start()
    try:
        ch = fake.add_channel("WKEY0000000007")
        gw = await gateway(thingspeak_url=fake.url, thingspeak_interval=0.2)
        await _register(gw, ch)
        async with Connected(gw.port, "CP-1") as cp:
            await _charging(cp)
            await _send(cp, 1, 1)
            assert await _until(lambda: len(fake.entries(ch.id)) == 1)
            await _send(cp, 2, 1)       # a single write 0.2 s later: answered 0
            assert await _until(lambda: fake.refusals), fake.requests
            await _send(cp, 3, 3)       # the retries are bulk writes, answered 429 within the second
            assert await _until(lambda: len(fake.entries(ch.id)) >= 5), fake.refusals
            await asyncio.sleep(0.5)
        assert _clean(fake.entries(ch.id)) == _entries(1, 5), fake.entries(ch.id)
        bulk = "/channels/%d/bulk_update.json" % ch.id
        # how many readings a retry holds depends on when it is made (the newest second waits while
        # readings arrive): the first refusal is the single write's 0, later ones 0 or a bulk 429
        assert fake.refusals[0] == ("/update", 200, "0") and len(fake.refusals) >= 2, fake.refusals
        assert all((p, st) in (("/update", 200), (bulk, 429)) for p, st, _n in fake.refusals), fake.refusals
        s, m = await http(gw, "GET", "/metrics")
        assert 'picocharge_uplink_errors_total{uplink="thingspeak"} %d.0\n' % fake.refused in m, (fake.refused, m)
        assert 'picocharge_uplink_delivered_total{uplink="thingspeak"} 5.0\n' in m, m
    finally:
        fake.stop()


async def test_thingspeak__a_backlog_over_the_bulk_limit_goes_in_writes_within_it(gateway):
    """1000 readings wait while ThingSpeak fails; then they go as 960 + 40 (the free licence's
    limit, which the fake enforces with a 400), never more in one write."""
    fake = FakeThingSpeak(min_interval=0.05, bulk_limit=960).start()
    try:
        ch = fake.add_channel("WKEY0000000008")
        gw = await gateway(thingspeak_url=fake.url, thingspeak_interval=0.05)
        await _register(gw, ch)
        fake.fail_with = 500
        async with Connected(gw.port, "CP-1") as cp:
            await _charging(cp)
            for first in range(1, 1001, 200):     # 200 meter values per MeterValues: 200 readings
                await cp.call(call.MeterValues(connector_id=1, meter_value=[
                    meter(_ts(i), current=float(i), temp=20.5) for i in range(first, first + 200)]))
            s, m = await http(gw, "GET", "/metrics")
            assert 'picocharge_outbox_depth{uplink="thingspeak"} 1000' in m, m
            # the failing channel lets go only once the gateway has tried a write of the full 960:
            # a write built from an earlier fetch (fewer readings stored yet) may be answered after
            # this point on a busy machine, and would be stored in other sizes
            assert await _until(lambda: any(len(b["updates"]) == 960 for _m, p, b in list(fake.requests)
                                             if "updates" in b), timeout=30), fake.requests
            fake.fail_with = None
            assert await _until(lambda: len(fake.entries(ch.id)) >= 1000, timeout=30), len(fake.entries(ch.id))
        assert _clean(fake.entries(ch.id)) == _entries(1, 1000), len(fake.entries(ch.id))
        sizes = [len(b["updates"]) for _m, p, b in fake.requests if "updates" in b]
        assert max(sizes) == 960 and sizes[-2:] == [960, 40], sizes
        assert not [r for r in fake.refusals if r[1] == 400], fake.refusals
    finally:
        fake.stop()


async def test_thingspeak__a_restart_within_the_interval_waits_before_writing(gateway, gw_db):
    """The channel took a write just before the gateway stopped: the restarted gateway's first
    write waits one interval, so ThingSpeak does not refuse it."""
    fake = FakeThingSpeak(min_interval=1.0).start()
    try:
        ch = fake.add_channel("WKEY0000000010")
        db = gw_db
        gw = await gateway(db=db, thingspeak_url=fake.url, thingspeak_interval=1.0)
        await _register(gw, ch)
        async with Connected(gw.port, "CP-1") as cp:
            await _charging(cp)
            await _send(cp, 1, 1)
            assert await _until(lambda: len(fake.entries(ch.id)) == 1)
        await gw.stop()
        gw2 = await gateway(db=db, thingspeak_url=fake.url, thingspeak_interval=1.0)
        async with Connected(gw2.port, "CP-1") as cp:
            await _charging(cp)
            await _send(cp, 2, 1)
            assert await _until(lambda: len(fake.entries(ch.id)) == 2, timeout=10), fake.refusals
        assert _clean(fake.entries(ch.id)) == _entries(1, 2), fake.entries(ch.id)
        assert fake.refusals == [] and gw2.thingspeak.errors == 0, fake.refusals
    finally:
        fake.stop()
