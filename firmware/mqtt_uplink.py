# MQTT uplink with umqtt.simple: JSON telemetry to <prefix>/<station>/telemetry every
# interval_s, the station's state retained at <prefix>/<station>/status, a last will of
# {"state":"offline"}, reconnect with backoff after a broker drop.
import asyncio

import fields
import log
from reconnect import Backoff

_L = log.get("mqtt")


class MqttLink:
    def __init__(self, ctx, client_factory=None):
        self.ctx = ctx
        c = ctx.cfg["mqtt"]
        self.cfg = c
        sid = ctx.cfg["station_id"]
        self.t_telemetry = fields.telemetry_topic(c["prefix"], sid).encode()
        self.t_status = fields.status_topic(c["prefix"], sid).encode()
        self.client_id = ("picocharge-" + sid).encode()
        self._factory = client_factory
        self.client = None
        self.last_status = None

    def _new_client(self):
        if self._factory:
            return self._factory()
        from umqtt.simple import MQTTClient

        c = self.cfg
        return MQTTClient(self.client_id, c["host"], port=c["port"], user=c["user"] or None,
                          password=c["password"] or None, keepalive=c["keepalive_s"], ssl=c["ssl"])

    def connect(self):
        cl = self._new_client()
        cl.set_last_will(self.t_status, fields.OFFLINE_PAYLOAD, retain=True, qos=1)
        cl.connect()
        self.client = cl
        self.last_status = None

    def close(self):
        if self.client:
            try:
                self.client.sock.close()
            except Exception:
                pass
        self.client = None

    def status_payload(self):
        st = self.ctx.state
        return fields.status_json("online", st.status, st.fault, st.relay)

    def publish_status(self, force=False):
        p = self.status_payload()
        if force or p != self.last_status:
            self.client.publish(self.t_status, p, retain=True, qos=0)
            self.last_status = p

    def publish_telemetry(self):
        self.client.publish(self.t_telemetry, fields.telemetry_json(self.ctx.state.reading()))


async def run(ctx):
    st = ctx.state
    link = MqttLink(ctx)
    back = Backoff(1, 60)
    interval = link.cfg["interval_s"]
    st.links["mqtt"] = "down"
    while True:
        await ctx.wifi_up.wait()
        try:
            link.connect()
            _L.info("connected to %s:%d", link.cfg["host"], link.cfg["port"])
            st.links["mqtt"] = "up"
            back.reset()
            link.publish_status(force=True)
            last_seq = -1
            tick = 0
            while ctx.wifi_up.is_set():
                if st.readings_seq != last_seq:
                    last_seq = st.readings_seq
                    link.publish_telemetry()
                    st.counters["mqtt_sent"] += 1
                link.publish_status()
                # wake often enough to notice status changes, publish telemetry each interval
                for _ in range(interval * 2):
                    await asyncio.sleep_ms(500)
                    if link.status_payload() != link.last_status:
                        link.publish_status()
                tick += 1
                if link.cfg["keepalive_s"] and tick % 3 == 0:
                    link.client.ping()
                    link.client.sock.setblocking(False)
                    try:
                        link.client.check_msg()  # consumes PINGRESP; raises on a dead socket
                    finally:
                        link.client.sock.setblocking(True)
        except Exception as e:  # OSError from the socket, MQTTException from umqtt
            st.counters["mqtt_fail"] += 1
            wait = back.next()
            _L.warn("link down: %r; reconnect in %ds", e, wait)
            st.links["mqtt"] = "down"
            link.close()
            await asyncio.sleep(wait)
            continue
        link.close()
        st.links["mqtt"] = "down"
