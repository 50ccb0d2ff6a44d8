# MQTT uplink with umqtt.simple: JSON telemetry to <prefix>/<station>/telemetry every
# interval_s, the station's state retained at <prefix>/<station>/status, a last will of
# {"state":"offline"}, reconnect with backoff after a broker drop.
#
# Telemetry: the latest reading every interval_s with its time ("ts"), QoS 0, while the broker
# is there. When it is not (no Wi-Fi, no connection, a publish that fails) the readings wait in
# a backlog on flash (flashq, opened by sampler.backlog): the sample task takes one into it
# every interval_s, and this task publishes them from there once it can (mqtt_backlog.py,
# loaded meanwhile), oldest first, QoS 1, each with its own time and backlog number ("seq"),
# one in flight: a reading leaves flash only once the broker has acknowledged it (PUBACK).
# After a power cut between the PUBACK and that, the one reading in flight is sent again
# (same seq). Once all are sent, the backlog is closed and the latest reading goes out again.
#
# umqtt.simple builds the PUBLISH packets (telemetry QoS 1 with its packet ids, status QoS 0
# retained); the socket is an asyncio stream opened here, which umqtt writes to through
# _StreamSock. umqtt's own connect() is not used: it blocks on a socket with no timeout (a
# broker that accepts TCP and never answers froze every task, watchdog feeding included) and
# its TLS needs `ussl`, which current MicroPython no longer has (it has `ssl`). Its QoS 1
# publish() would block reading the PUBACK: _StreamSock.read() stops it there (_Sent) once the
# packet is written, and the PUBACK is awaited here without blocking the other tasks.
import asyncio
import sys

import fields
import log
import sampler
from compat import ticks_ms, ticks_diff, time_ns
from reconnect import Backoff

_L = log.get("mqtt")
_TIMEOUT_S = 5    # TCP (and TLS) connect, CONNACK, draining a write: longer means the broker is gone
_POLL_MS = 500    # how often status changes, telemetry and keepalive are looked at
_PINGREQ = b"\xc0\x00"
_PINGRESP = 0xD0
_PUBACK = 0x40
_BURST = 20       # backlog readings published in a row before status and keepalive are looked at


# A refusal is OSError(_REFUSED, code): no exception class of its own (heap).
_REFUSED = "CONNACK"


class _Sent(Exception):
    """umqtt's QoS 1 publish() has written its packet and would now block on the PUBACK."""


class _StreamSock:
    """What umqtt.simple's publish() writes to: the asyncio stream (drained by the caller).
    A read is umqtt waiting for the PUBACK: that is done asynchronously by MqttLink.puback()."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, buf, n=-1):
        self.stream.write(buf if n < 0 else buf[:n])

    def read(self, n):
        raise _Sent


async def _within(aw, what):
    try:
        return await asyncio.wait_for(aw, _TIMEOUT_S)
    except asyncio.TimeoutError:
        raise OSError("timeout: no %s within %ds" % (what, _TIMEOUT_S))


class MqttLink:
    def __init__(self, ctx):
        self.ctx = ctx
        c = ctx.cfg["mqtt"]
        self.cfg = c
        sid = ctx.cfg["station_id"]
        self.t_telemetry = fields.telemetry_topic(c["prefix"], sid).encode()
        self.t_status = fields.status_topic(c["prefix"], sid).encode()
        self.client_id = ("picocharge-" + sid).encode()
        self.client = None
        self.stream = None
        self.last_status = None
        self.tx_ms = 0       # when the last packet went out (keepalive counts from it)
        self.ping_ms = None  # when the unanswered PINGREQ went out

    async def connect(self):
        """Open the stream and say CONNECT (mqtt_connect.py: loaded for it, then dropped)."""
        import mqtt_connect

        try:
            r, w = await mqtt_connect.connect(self, _within)
        finally:
            del mqtt_connect
            sys.modules.pop("mqtt_connect", None)
        from umqtt.simple import MQTTClient

        self.client = MQTTClient(self.client_id, self.cfg["host"], self.cfg["port"])
        self.client.sock = _StreamSock(w)
        self.tx_ms = ticks_ms()
        self.ping_ms = None
        self.last_status = None

    def close(self):
        if self.stream:
            try:
                self.stream.close()
            except Exception:
                pass
        self.stream = None
        self.client = None

    async def _sent(self):
        w = self.stream
        # MicroPython's stream.write() sends at once what the socket takes and keeps the rest
        # in out_buf: only then is there something to wait for (wait_for makes a task each time)
        if getattr(w, "out_buf", True):
            await _within(w.drain(), "room to send")
        self.tx_ms = ticks_ms()

    def status_payload(self):
        st = self.ctx.state
        return fields.status_json("online", st.status, st.fault, st.relay)

    async def publish_status(self, force=False):
        p = self.status_payload()
        if force or p != self.last_status:
            self.client.publish(self.t_status, p, retain=True, qos=0)
            await self._sent()
            self.last_status = p

    async def publish_latest(self):
        """The latest reading with its time, QoS 0 (nothing held or awaited but the write); if
        it cannot be written, it opens the backlog on flash, where the next ones wait too."""
        r = self.ctx.state.reading()
        t = time_ns() // 1000000000
        r["ts"] = sampler.iso_s(t)
        m = fields.telemetry_json(r)
        del r
        try:
            self.client.publish(self.t_telemetry, m)
            await self._sent()
        except BaseException:
            import json
            sampler.backlog(self.ctx, "mqtt", t, json.loads(m))
            raise
        self.ctx.state.counters["mqtt_sent"] += 1

    async def puback(self, pid):
        """Wait for the PUBACK of pid (a PINGRESP on the way is taken too), polling the
        non-blocking socket: no task made per message, as wait_for would."""
        t0 = ticks_ms()
        s = self.stream.s
        buf = b""
        while True:
            got = s.read(4 - len(buf))
            if got == b"":
                raise OSError("connection closed by the broker")
            if got:
                buf += got
                if buf[:2] == b"\xd0\x00":  # a PINGRESP first
                    self.ping_ms = None
                    buf = buf[2:]
                if len(buf) == 4:
                    if buf[0] != _PUBACK or buf[1] != 2:
                        raise OSError("broker sent %r where a PUBACK was due" % buf)
                    if buf[2] << 8 | buf[3] == pid:
                        return
                    buf = b""  # an older one: a duplicate acknowledgement
                continue
            if ticks_diff(ticks_ms(), t0) > _TIMEOUT_S * 1000:
                raise OSError("timeout: no PUBACK within %ds" % _TIMEOUT_S)
            await asyncio.sleep_ms(5)

    def poll_in(self):
        """Take what the broker sent (to a publisher, only PINGRESP) without waiting."""
        data = self.stream.s.read(2)  # the stream's socket is non-blocking: None when empty
        if data is None:
            return
        if not data:
            raise OSError("connection closed by the broker")
        if data[0] == _PINGRESP:
            self.ping_ms = None

    async def keepalive(self, now):
        """PINGREQ once half the keepalive has passed since the last packet, whatever the
        telemetry interval; a PINGRESP missing for as long means the broker is gone."""
        half = self.cfg["keepalive_s"] * 500
        if not half:
            return
        if self.ping_ms is not None:
            if ticks_diff(now, self.ping_ms) > max(half, 1000):
                raise OSError("no PINGRESP within %.1fs" % (max(half, 1000) / 1000))
        elif ticks_diff(now, self.tx_ms) >= half:
            self.stream.write(_PINGREQ)
            await self._sent()
            self.ping_ms = now

    async def serve(self):
        """Publish until the Wi-Fi drops; raises when the broker link fails."""
        ctx = self.ctx
        await self.publish_status(force=True)
        iv = self.cfg["interval_s"] * 1000
        last = None   # when the latest reading was last published (ticks)
        said = False
        while ctx.wifi_up.is_set():
            q = ctx.backlogs.get("mqtt")
            if q is not None:
                if not said:
                    _L.info("sending %d readings kept while the broker was away", len(q))
                    said = True
                import mqtt_backlog   # held while a backlog is sent (dropped below)

                await mqtt_backlog.send(self, q, _BURST)
                del mqtt_backlog
                if not len(q):   # all sent: the latest reading from now on
                    _L.info("backlog sent (%d readings thinned, %d dropped since boot)", q.thinned, q.dropped)
                    q.close(ctx, "mqtt")
                    sys.modules.pop("mqtt_backlog", None)
                    last = ticks_ms()
                    q = None
            elif last is None or ticks_diff(ticks_ms(), last) >= iv:
                last = ticks_ms()
                await self.publish_latest()
            now = ticks_ms()
            await self.publish_status()
            self.poll_in()
            await self.keepalive(now)
            await asyncio.sleep_ms(0 if q is not None else _POLL_MS)


async def run(ctx):
    st = ctx.state
    link = MqttLink(ctx)
    back = Backoff(1, 60)
    st.links["mqtt"] = "down"
    c = link.cfg
    refused = 0  # the CONNACK code of the last refusal, said once per change
    await sampler.first_link(ctx)
    while True:
        if not ctx.wifi_up.is_set():
            sampler.backlog(ctx, "mqtt")   # no link: the readings wait on flash
        await ctx.wifi_up.wait()
        try:
            await link.connect()
            _L.info("connected to %s:%d%s", c["host"], c["port"], " (TLS)" if c["ssl"] else "")
            refused = 0
            st.links["mqtt"] = "up"
            back.reset()
            await link.serve()
        except Exception as e:  # OSError from the socket, a timeout, TLS, or the broker's refusal
            st.counters["mqtt_fail"] += 1
            wait = back.next()
            a = e.args
            code = a[1] if len(a) == 2 and a[0] == _REFUSED else 0
            if code and code == refused:
                _L.warn("link down: refused again (CONNACK %d); reconnect in %.1fs", code, wait)
            elif code:
                import mqtt_connect

                _L.warn("link down: broker refused the connection (CONNACK %d: %s); reconnect in %.1fs",
                        code, mqtt_connect.why(code), wait)
                del mqtt_connect
                sys.modules.pop("mqtt_connect", None)
            else:  # an OSError made here says its reason as a string; anything else as repr
                _L.warn("link down: %s; reconnect in %.1fs",
                        a[0] if isinstance(e, OSError) and len(a) == 1 and isinstance(a[0], str) else repr(e),
                        wait)
            refused = code
            st.links["mqtt"] = "down"
            link.close()
            try:   # the broker is away: the readings wait on flash
                sampler.backlog(ctx, "mqtt")
            except Exception as e:
                _L.error("backlog: %r", e)
            await asyncio.sleep(wait)
            continue
        link.close()
        st.links["mqtt"] = "down"
