"""MQTT exactly once across a takeover (issue 15): the process forwarding the MQTT stream is
killed with SIGKILL while its batch is in flight, with some of that batch at the broker and some
not; the process that takes the stream over sends only what the broker did not take (it reads
the broker's retained telemetry, gateway/uplinks.py "Exactly once across a takeover"). Two real
`picocharge gateway` processes on one PostgreSQL database, a real mosquitto, and between the
first process and the broker a TCP relay of the test's that can hold the broker's answers
(PUBACKs) and cut the publishes from a given topic on: the batch in flight is made, not waited for."""
import asyncio
import collections
import json
import os
import re
import signal

from ocpp.v16 import call

from support.broker import Subscriber
from support.gwcluster import kill, log_lines, port_of, start_gateway, until
from support.gwhttp import http
from support.net import free_port
from support.stations import Connected, boot, meter

_PUBLISH = 3


class MqttRelay:
    """127.0.0.1:<port> -> the broker. `hold_answers`: what the broker sends is kept back (the
    client never gets its PUBACKs); `cut_from`: from the first PUBLISH on one of these topics on,
    what the client sends is kept back too (never reaches the broker). Held bytes are dropped
    when the client's connection ends, as a dead process's unsent data is."""

    def __init__(self, broker_port):
        self.broker_port = broker_port
        self.port = free_port()
        self.hold_answers = False
        self.cut_from = set()
        self.cut = False        # a PUBLISH on a cut_from topic came: nothing more goes up
        self._server = None

    async def start(self):
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def stop(self):
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, cr, cw):
        br, bw = await asyncio.open_connection("127.0.0.1", self.broker_port)
        up = asyncio.ensure_future(self._up(cr, bw))
        down = asyncio.ensure_future(self._down(br, cw))
        await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        for t in (up, down):
            t.cancel()
        for w in (bw, cw):
            w.close()

    async def _up(self, r, w):
        buf = bytearray()
        while True:
            data = await r.read(65536)
            if not data:
                return
            buf += data
            while not self.cut:
                n = _packet_length(buf)
                if n is None or len(buf) < n:
                    break
                if buf[0] >> 4 == _PUBLISH and _publish_topic(buf) in self.cut_from:
                    self.cut = True
                    break
                w.write(bytes(buf[:n]))
                del buf[:n]
            await w.drain()

    async def _down(self, r, w):
        while True:
            data = await r.read(65536)
            if not data:
                return
            if not self.hold_answers:
                w.write(data)
                await w.drain()


def _packet_length(buf):
    """The whole length of the MQTT packet at the start of buf (fixed header + remaining length), or None."""
    mult, n = 1, 0
    for i in range(1, min(len(buf), 5)):
        n += (buf[i] & 0x7F) * mult
        if not buf[i] & 0x80:
            return 1 + i + n
        mult *= 128
    return None


def _publish_topic(buf):
    i = 1
    while buf[i] & 0x80:
        i += 1
    i += 1
    size = buf[i] << 8 | buf[i + 1]
    return bytes(buf[i + 2:i + 2 + size]).decode()


def _signal(gw, sig):
    os.killpg(gw.proc.pid, sig)


async def test_cluster__sigkill_of_the_mqtt_owner_with_a_batch_half_at_the_broker_repeats_nothing(
        pg_url, mqtt_broker):
    sub = Subscriber(mqtt_broker.port, "pc/+/telemetry")
    relay = await MqttRelay(mqtt_broker.port).start()
    a = b = None
    try:
        a = await asyncio.to_thread(start_gateway, pg_url, "--auth", "none", "--thingspeak-url", "",
                                    "--mqtt", "mqtt://127.0.0.1:%d/pc" % relay.port)
        assert await until(lambda: _true(_holds_mqtt(a))), [ln for ln in a.log if "cluster" in ln]
        b = await asyncio.to_thread(start_gateway, pg_url, "--auth", "none", "--thingspeak-url", "",
                                    "--mqtt", "mqtt://127.0.0.1:%d/pc" % mqtt_broker.port)
        pb = port_of(b)

        def telemetry():
            with sub.lock:
                return [(t.split("/")[1], json.loads(p), r) for t, p, r in sub.messages]

        async def seen(n):
            return await until(lambda: _true(len(telemetry()) >= n), 30)

        # every station is on B (which lives): A only forwards the stream, through the relay
        async with Connected(pb, "CP-S") as s, Connected(pb, "CP-T") as t, Connected(pb, "CP-U") as u:
            for cp in (s, t, u):
                await boot(cp)

            async def send(cp, i):
                await cp.call(call.MeterValues(connector_id=1, meter_value=[
                    meter("2026-11-30T10:00:%02dZ" % i, current=float(i), temp=20.5)]))

            await send(u, 1)                    # U's reading before: at the broker, acknowledged
            assert await seen(1), telemetry()
            relay.hold_answers = True           # no PUBACK reaches A from now on
            relay.cut_from = {"pc/CP-T/telemetry"}   # and from T's first publish on, nothing reaches the broker
            # A sleeps while the batch is stored, so that it reads the batch whole: S1-S3 T1 T2 U2 S4
            _signal(a, signal.SIGSTOP)
            try:
                for cp, i in ((s, 1), (s, 2), (s, 3), (t, 1), (t, 2), (u, 2), (s, 4)):
                    await send(cp, i)
            finally:
                _signal(a, signal.SIGCONT)
            assert await seen(4), telemetry()   # S1-S3 at the broker: A waits for their PUBACKs
            assert await until(lambda: _true(relay.cut)), "A did not publish T1"
            await asyncio.sleep(0.3)            # (nothing else may arrive: checked below)
            assert [(sid, p["current_a"]) for sid, p, _r in telemetry()] == [
                ("CP-U", 1.0), ("CP-S", 1.0), ("CP-S", 2.0), ("CP-S", 3.0)], telemetry()
            await asyncio.to_thread(kill, a)

            doubt = await until(lambda: _true(log_lines(b, "taking the stream up with a batch in flight")), 30)
            assert doubt, b.log[-20:]
            await send(s, 5)                    # and the stream goes on
            assert await seen(9), telemetry()
            await asyncio.sleep(0.5)            # a repeat would come within this

        got = telemetry()
        seqs = collections.Counter((sid, p["seq"]) for sid, p, _r in got)
        assert [k for k, n in seqs.items() if n > 1] == [], got
        assert [(sid, p["current_a"]) for sid, p, _r in got] == [
            ("CP-U", 1.0), ("CP-S", 1.0), ("CP-S", 2.0), ("CP-S", 3.0),
            ("CP-T", 1.0), ("CP-T", 2.0), ("CP-U", 2.0), ("CP-S", 4.0), ("CP-S", 5.0)], got
        assert "7 readings" in doubt[0] and "shows 3 of them arrived, the other 4 are sent now" in doubt[0], doubt
        assert not any(r for _sid, _p, r in got), got      # subscribed first: live messages, none a retained copy
        s_, m = await http(pb, "GET", "/metrics")
        assert "picocharge_mqtt_resent_total 4.0" in m, m

        # a subscriber that comes now gets each station's last reading at once, flagged retained
        late = Subscriber(mqtt_broker.port, "pc/+/telemetry", client_id="late")
        try:
            assert await until(lambda: _true(len(late.messages) >= 3), 10), late.messages
            with late.lock:
                last = sorted((t, json.loads(p)["current_a"], r) for t, p, r in late.messages)
            assert last == [("pc/CP-S/telemetry", 5.0, True), ("pc/CP-T/telemetry", 2.0, True),
                            ("pc/CP-U/telemetry", 2.0, True)], last
        finally:
            late.close()
    finally:
        sub.close()
        await relay.stop()
        for gw in (a, b):
            if gw is not None and gw.proc.poll() is None:
                try:
                    _signal(gw, signal.SIGCONT)
                except OSError:
                    pass
                await asyncio.to_thread(gw.stop)


def _holds_mqtt(gw):
    return any(re.search(r"cluster: \S+ holds .*\bmqtt\b", ln) for ln in gw.log)


async def _true(v):
    return v
