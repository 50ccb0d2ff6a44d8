# MQTT uplink with umqtt.simple: JSON telemetry to <prefix>/<station>/telemetry every
# interval_s, the station's state retained at <prefix>/<station>/status, a last will of
# {"state":"offline"}, reconnect with backoff after a broker drop.
#
# umqtt.simple builds the PUBLISH and PINGREQ packets; the socket is an asyncio stream
# opened here. umqtt's own connect() is not used: it blocks on a socket with no timeout (a
# broker that accepts TCP and never answers froze every task, watchdog feeding included)
# and its TLS needs `ussl`, which current MicroPython no longer has (it has `ssl`).
import asyncio

import fields
import log
from compat import ticks_ms, ticks_diff
from reconnect import Backoff

_L = log.get("mqtt")
_TIMEOUT_S = 5    # TCP (and TLS) connect, CONNACK, draining a write: longer means the broker is gone
_POLL_MS = 500    # how often status changes, telemetry and keepalive are looked at
_PINGREQ = b"\xc0\x00"
_PINGRESP = 0xD0


def connect_packet(client_id, keepalive, will=None, user=None, password=None):
    """MQTT 3.1.1 CONNECT with a clean session, the bytes umqtt.simple's connect() sends.
    will: (topic, message, qos, retain). All strings are bytes."""
    flags = 0x02
    parts = [client_id]
    if will:
        flags |= 0x04 | (will[2] & 3) << 3 | (0x20 if will[3] else 0)
        parts.append(will[0])
        parts.append(will[1])
    if user is not None:
        flags |= 0xC0
        parts.append(user)
        parts.append(password or b"")
    n = 10
    for p in parts:
        n += 2 + len(p)
    out = bytearray(b"\x10")
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    out += b"\x00\x04MQTT\x04"
    out.append(flags)
    out.append(keepalive >> 8)
    out.append(keepalive & 0xFF)
    for p in parts:
        out.append(len(p) >> 8)
        out.append(len(p) & 0xFF)
        out += p
    return out


# CONNACK return codes (MQTT 3.1.1, 3.2.2.3) in words, with what to check. A refusal is
# OSError(_REFUSED, code): no exception class of its own (heap).
_REFUSED = "CONNACK"
_WHY = ("unacceptable protocol version (the broker does not speak MQTT 3.1.1)",
        "client id rejected", "server unavailable",
        "bad user name or password: check mqtt.user and mqtt.password",
        # mosquitto (and others) answer 5, not 4, to a bad user name or password over 3.1.1
        "not authorised: a bad user name or password, or a user the broker does not let "
        "connect: check mqtt.user and mqtt.password, and the broker's users and ACL")


class _StreamSock:
    """What umqtt.simple's publish() writes to: the asyncio stream (drained by the caller)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, buf, n=-1):
        self.stream.write(buf if n < 0 else buf[:n])


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
        from umqtt.simple import MQTTClient

        c = self.cfg
        kw = {}
        if c["ssl"]:
            import tlsca  # ssl only for a TLS broker: it costs heap

            kw["ssl"] = tlsca.client("mqtt.ca_cert", c["ca_cert"], _L)
            kw["server_hostname"] = c["host"]  # SNI, and the name the certificate must carry
        r, w = await _within(asyncio.open_connection(c["host"], c["port"], **kw), "TCP connection")
        self.stream = w
        user = c["user"].encode() if c["user"] else None
        try:
            w.write(connect_packet(self.client_id, c["keepalive_s"],
                                   (self.t_status, fields.OFFLINE_PAYLOAD, 1, True),
                                   user, c["password"].encode() if user else None))
            await _within(w.drain(), "CONNECT sent")
        except ValueError as e:
            # a verifying TLS handshake failed before the CONNECT (and its password) went out
            if not (c["ssl"] and c["ca_cert"]):
                raise
            import tlsca
            raise OSError(tlsca.refused("mqtt.ca_cert", e))
        ack = await _within(r.readexactly(4), "CONNACK")
        if ack[0] != 0x20 or ack[1] != 2:
            raise OSError("not an MQTT broker (answered %r)" % ack)
        if ack[3]:
            raise OSError(_REFUSED, ack[3])
        self.client = MQTTClient(self.client_id, c["host"], c["port"])
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

    async def publish_telemetry(self):
        self.client.publish(self.t_telemetry, fields.telemetry_json(self.ctx.state.reading()))
        await self._sent()

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
        st = self.ctx.state
        iv = self.cfg["interval_s"] * 1000
        last_seq = -1
        t_tel = ticks_ms() - iv
        await self.publish_status(force=True)
        while self.ctx.wifi_up.is_set():
            now = ticks_ms()
            if st.readings_seq != last_seq and ticks_diff(now, t_tel) >= iv:
                last_seq = st.readings_seq
                t_tel = now
                await self.publish_telemetry()
                st.counters["mqtt_sent"] += 1
            await self.publish_status()
            self.poll_in()
            await self.keepalive(now)
            await asyncio.sleep_ms(_POLL_MS)


async def run(ctx):
    st = ctx.state
    link = MqttLink(ctx)
    back = Backoff(1, 60)
    st.links["mqtt"] = "down"
    c = link.cfg
    refused = 0  # the CONNACK code of the last refusal, said once per change
    while True:
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
                _L.warn("link down: broker refused the connection (CONNACK %d: %s); reconnect in %.1fs",
                        code, _WHY[code - 1] if code <= 5 else "unknown reason", wait)
            else:  # an OSError made here says its reason as a string; anything else as repr
                _L.warn("link down: %s; reconnect in %.1fs",
                        a[0] if isinstance(e, OSError) and len(a) == 1 and isinstance(a[0], str) else repr(e),
                        wait)
            refused = code
            st.links["mqtt"] = "down"
            link.close()
            await asyncio.sleep(wait)
            continue
        link.close()
        st.links["mqtt"] = "down"
