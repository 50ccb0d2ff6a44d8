"""A station that goes quiet is pinged, and cut if it does not answer (ocpp_ws.Liveness, one
sweep every quarter of the ping interval instead of aiohttp's timer re-armed per frame); a
station's own pings are answered. Raw sockets, so the test decides what the station answers."""
import asyncio
import struct
import time

from support.rawws import frame, random_mask

S = "CP-LIVE"
INTERVAL = 1.0      # the gateway's ping interval in these tests (60 s by default)


async def _station(gw):
    r, w = await asyncio.open_connection("127.0.0.1", gw.port)
    w.write(b"GET /ocpp/" + S.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n")
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101"), head
    return r, w


async def _frame(r, timeout):
    """(opcode, payload) of the gateway's next frame (unmasked, short), or None at EOF."""
    try:
        b0, b1 = await asyncio.wait_for(r.readexactly(2), timeout)
        return b0 & 0x0F, await r.readexactly(b1 & 0x7F)
    except asyncio.IncompleteReadError:
        return None


async def _reason(gw):
    def q(db):
        return db.execute("SELECT reason FROM connections WHERE station=? ORDER BY id DESC LIMIT 1",
                          (S,)).fetchone()
    for _ in range(200):
        row = await gw.store.run(q)
        if row and row[0]:
            return row[0]
        await asyncio.sleep(0.05)
    return None


async def test_liveness__a_silent_station_is_pinged_then_cut(gateway):
    gw = await gateway(ping_interval=INTERVAL)
    r, w = await _station(gw)
    t0 = time.monotonic()
    try:
        got = await _frame(r, 5)
        pinged = time.monotonic() - t0
        assert got is not None and got[0] == 0x9, got          # a ping, once nothing was heard for 1 s
        assert INTERVAL <= pinged <= INTERVAL * 4, pinged
        got = await _frame(r, 5)                                # no pong: cut half an interval later
        cut = time.monotonic() - t0
        assert got is None, got
        assert pinged + INTERVAL / 2 <= cut <= pinged + INTERVAL * 3, (pinged, cut)
    finally:
        w.close()
    assert await _reason(gw) == "closed by the gateway (1006: no answer to the gateway's ping within 0.5 s)"
    assert S not in gw.sessions and gw.liveness.cut == 1 and not gw.liveness.sockets


async def test_liveness__a_station_that_answers_stays_and_its_own_pings_are_answered(gateway):
    gw = await gateway(ping_interval=INTERVAL)
    r, w = await _station(gw)
    try:
        w.write(frame(0x9, b"are you there", mask=random_mask()))
        assert await _frame(r, 5) == (0xA, b"are you there")
        pings, end = 0, time.monotonic() + INTERVAL * 3.5
        while time.monotonic() < end:       # no OCPP frame at all: only the pongs keep it
            try:
                got = await _frame(r, end - time.monotonic())
            except asyncio.TimeoutError:
                break
            assert got is not None and got[0] == 0x9, got
            pings += 1
            w.write(frame(0xA, got[1], mask=random_mask()))
        assert pings >= 2, pings
        assert S in gw.sessions and gw.liveness.cut == 0
    finally:
        w.write(frame(0x8, struct.pack(">H", 1000), mask=random_mask()))
        w.close()
    assert await _reason(gw) == "closed"


async def test_liveness__a_station_that_talks_is_never_pinged(gateway):
    gw = await gateway(ping_interval=INTERVAL)
    r, w = await _station(gw)
    try:
        end = time.monotonic() + INTERVAL * 3
        n = 0
        while time.monotonic() < end:
            n += 1
            w.write(frame(0x1, b'[2,"h%d","Heartbeat",{}]' % n, mask=random_mask()))
            got = await _frame(r, 5)
            assert got is not None and got[0] == 0x1 and got[1].startswith(b'[3,"h%d"' % n), got
            await asyncio.sleep(INTERVAL / 3)
        assert gw.liveness.pinged == 0 and gw.liveness.cut == 0
    finally:
        w.close()
