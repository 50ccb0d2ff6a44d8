"""ThingSpeak exactly once across a takeover (issue 15): the process writing a station's channel
is killed with SIGKILL while a write is in flight, stored by ThingSpeak but not answered; the
process that takes the station's shard over reads the channel back and writes only what is
missing (docs/scale-out.md, "When something fails"). Two real `picocharge gateway` processes on
one PostgreSQL database, the ThingSpeak fake (which drops, as ThingSpeak does, an entry whose
second the channel holds, and records it in `dropped`) made to hold the answer of one write."""
import asyncio
import threading
import zlib

from ocpp.v16 import call

from support.fake_thingspeak import FakeThingSpeak
from support.gwcluster import kill, log_lines, port_of, start_gateway, until
from support.gwhttp import http
from support.stations import Connected, boot, meter

SHARDS = 16     # gateway/cluster.py


class HoldingThingSpeak(FakeThingSpeak):
    """`hold(cid)`: the next write that adds an entry to channel cid is stored, and its answer
    kept back until `release` is set."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self._hold = None
        self.held = threading.Event()
        self.release = threading.Event()

    def hold(self, cid):
        self._hold = cid

    def handle(self, method, path, params, body):
        cid = self._hold
        with self.lock:
            before = len(self.channels[cid].entries) if cid is not None else 0
        out = super().handle(method, path, params, body)
        with self.lock:
            grew = cid is not None and len(self.channels[cid].entries) > before
        if grew:
            self._hold = None
            self.held.set()
            self.release.wait(60)
        return out


def _ts(i):
    return "2026-11-30T11:00:%02dZ" % i


async def test_cluster__sigkill_of_a_thingspeak_writer_with_a_write_stored_but_unanswered_writes_no_duplicate(
        pg_url):
    fake = HoldingThingSpeak(min_interval=0.2).start()
    extra = ("--auth", "none", "--thingspeak-url", fake.url, "--thingspeak-interval", "0.2")
    a = b = None
    try:
        a = await asyncio.to_thread(start_gateway, pg_url, *extra)
        pa = port_of(a)
        b = await asyncio.to_thread(start_gateway, pg_url, *extra)
        pb = port_of(b)

        async def balanced():
            return log_lines(b, "holds thingspeak") and log_lines(a, "given back to balance")
        assert await until(balanced), (a.log[-10:], b.log[-10:])
        s, health = await http(pa, "GET", "/healthz")
        held_by_a = {int(w.split(":")[1]) for w in health["cluster"]["leases"] if w.startswith("thingspeak:")}
        assert held_by_a, health
        # a station whose channel A writes
        sid = next("CP-%d" % i for i in range(1, 1000) if zlib.crc32(b"CP-%d" % i) % SHARDS in held_by_a)
        ch = fake.add_channel("WKEY-" + sid)
        s, out = await http(pa, "POST", "/api/stations", {
            "id": sid, "thingspeak_channel": ch.id, "thingspeak_key": ch.write_key,
            "thingspeak_read_key": ch.read_key})
        assert s == 201, out

        async with Connected(pb, sid) as cp:     # on B, which lives
            await boot(cp)

            async def send(i):
                await cp.call(call.MeterValues(connector_id=1, meter_value=[meter(_ts(i), current=float(i))]))

            async def entries(n):
                return await until(lambda: _true(len(fake.entries(ch.id)) >= n), 30)

            for i in (1, 2):
                await send(i)
            assert await entries(2), fake.entries(ch.id)
            fake.hold(ch.id)
            for i in (3, 4):
                await send(i)
            assert await asyncio.to_thread(fake.held.wait, 30), fake.entries(ch.id)
            stored = len(fake.entries(ch.id))       # 3, or 4 if both went in one bulk write
            await asyncio.to_thread(kill, a)        # its write stored, the answer never reaches it
            fake.release.set()
            assert await until(lambda: _true(log_lines(b, "took over thingspeak:")), 30), b.log[-20:]
            for i in (5, 6):
                await send(i)
            assert await entries(6), (stored, fake.entries(ch.id))
            await asyncio.sleep(1.0)                # a repeat would come within this (interval 0.2 s)

        assert sorted(e["created_at"] for e in fake.entries(ch.id)) == [_ts(i) for i in range(1, 7)], \
            fake.entries(ch.id)
        assert fake.dropped == [], fake.dropped     # nothing sent twice: ThingSpeak would have dropped it
        print("\nThingSpeak: A killed with %d of 4 entries stored, the last write unanswered; B wrote the rest, "
              "no entry twice" % stored)
    finally:
        fake.release.set()
        for gw in (a, b):
            if gw is not None and gw.proc.poll() is None:
                await asyncio.to_thread(gw.stop)
        fake.stop()


async def _true(v):
    return v
