# MQTT's backlog on flash sent (mqtt_uplink.py imports this while it has a backlog to send,
# and drops it once the backlog is empty): the oldest readings, QoS 1, each with its own time
# ("ts") and backlog number ("seq"), one in flight, removed from flash once acknowledged.
import fields
import flashq
from mqtt_uplink import _L, _Sent


async def _publish(link, m):
    """Telemetry JSON m, QoS 1, until its PUBACK."""
    c = link.client
    if c.pid >= 65535:
        c.pid = 0  # umqtt counts on past 65535; packet ids are 1..65535
    try:
        c.publish(link.t_telemetry, m, qos=1)
    except _Sent:
        pass
    await link._sent()
    await link.puback(c.pid)


async def send(link, q, n):
    """Up to n readings of backlog q, oldest first, while the Wi-Fi is up."""
    up = link.ctx.wifi_up
    st = link.ctx.state
    for _ in range(n):
        if not len(q) or not up.is_set():
            break
        rs = q.read(q.acked, 1)
        if not rs:
            q.count = 0
            break
        seq, t, p = rs[0]
        del rs
        try:
            r = flashq.unpack_reading(p)
        except ValueError as e:
            _L.error("skipping backlog record #%d: %s", seq, e)
            q.ack(seq)
            continue
        del p
        r["ts"] = flashq.iso_s(t)
        r["seq"] = seq
        m = fields.telemetry_json(r)
        del r   # nothing of the reading but its JSON is held while the PUBACK is awaited
        await _publish(link, m)
        del m
        q.ack(seq)
        st.counters["mqtt_sent"] += 1
    st.counters["mqtt_thinned"] = q.thinned
    st.counters["mqtt_dropped"] = q.dropped
    st.counters["mqtt_waiting"] = len(q)
