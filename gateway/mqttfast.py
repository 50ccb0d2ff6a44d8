"""The MQTT uplink's telemetry path: a batch of QoS 1 messages with less work per message than
paho-mqtt's publish() and PUBACK handling, on a paho Client (issue 17, "CPU per message").

What paho does per message, and what BatchClient does instead (paho still does the rest: the
connection, CONNACK, keepalive, subscriptions and ingest, the status publishes, the will):

- publish(): an MQTTMessage and an MQTTMessageInfo (with its threading.Condition), the
  out-message lock, one entry in its out-packet queue and one wake-up byte to its socket pair
  per message, then one send() per packet. `publish_batch` builds each message's PUBLISH
  packet itself (its own topic, QoS 1, its own packet id from paho's generator, the same bytes
  as publish() writes: tests/gateway/test_mqttfast.py compares them) and queues the whole
  batch as ONE entry of paho's out-packet queue: paho's own writer (loop_write) sends it, in
  one send() when the socket takes it, with its partial-write handling.
- a PUBACK: three recv() calls (command byte, length, body), then decoded into a ReasonCode and
  a Properties object, a lock, the on_publish callback and the message's bookkeeping. Here a
  PUBACK of a batch's packet id is taken off `batch_unacked` from its bytes (paho's decoding
  runs for every other one), and the socket is read in blocks of RECV_SIZE, its packets then
  served to paho's reader from that block (loop_read goes on while any is left: a selector
  does not know about them).

Each message is still its own PUBLISH on its own topic at QoS 1, acknowledged one by one by the
broker; what the uplink does with the acknowledgements (the cursor over the acknowledged
prefix) is unchanged. A PUBACK with a failure reason (MQTT 5: 0x80 and above, e.g. not
authorized) is reported to `on_refused` with its packet id and reason; the uplink counts it and
logs it once.

Bought (docs/performance.md, "CPU per message (issue 17)", second round): the uplink on its own
(benchmarks/mqtt_drain.py, 50,000 readings) 47-57 -> 17.5-23 us of gateway CPU per reading,
9,600-10,700 -> 11,900-13,700 readings/s; its share of the gateway's profile 16.6 -> 8.9 %
paced, 12.9 -> 5.9 % in closed loop; end to end, gateway CPU per message (median of alternating
runs) paced 5,000 stations 354 -> 330 us, closed loop 2,000 stations 126 -> 114 us.

The private parts of paho-mqtt used here (tests/gateway/test_mqttfast.py fails if any of them
changes): Client._mid_generate(), Client._packet_queue(command, packet, mid, qos, info),
Client._handle_pubackcomp(cmd) with the packet's body in Client._in_packet["packet"],
Client._sock_recv(bufsize), Client._sock and Client._protocol.
"""
import struct

import paho.mqtt.client as mqtt

PUBLISH = 0x30
QOS1 = 0x02
RETAIN = 0x01
RECV_SIZE = 65536
_MID = struct.Struct("!H")
_OK = mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
_NO_CONN = mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN


_MAX_REMAINING = 268435455     # four bytes of 7 bits


def _remaining_length(n):
    """MQTT's variable-length integer (1 to 4 bytes; MQTT 3.1.1 section 2.2.3). Written here
    rather than calling paho's `Client._pack_remaining_length`: eight lines of the standard
    against one more private paho method for test_mqttfast to guard."""
    if not 0 <= n <= _MAX_REMAINING:
        raise ValueError("an MQTT packet of %d bytes (at most %d)" % (n, _MAX_REMAINING))
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


class BatchClient(mqtt.Client):
    """A paho Client with `publish_batch` and a cheaper PUBACK path for the batch's messages."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.batch_unacked = set()     # packet ids of publish_batch's messages not acknowledged yet
        self.on_batch_done = None      # called (no argument) when batch_unacked becomes empty
        self.on_refused = None         # called (mid, reason) for a PUBACK with a failure reason
        self._rbuf = b""
        self._rpos = 0
        self._rsock = None             # the socket _rbuf was read from

    def publish_batch(self, messages, retain=False):
        """Queue [(topic str, payload bytes), ...] as QoS 1 PUBLISH packets, one write for all.
        Their packet ids (in order), each added to batch_unacked; None when not connected."""
        if self._sock is None:
            return None
        v5 = self._protocol == mqtt.MQTTv5
        head = PUBLISH | QOS1 | (RETAIN if retain else 0)
        gen = self._mid_generate
        pack = _MID.pack
        mids = []
        parts = []
        for topic, payload in messages:
            t = topic.encode("utf-8")
            mid = gen()
            # topic length, topic, packet id, (MQTT 5: empty properties), payload
            n = 2 + len(t) + 2 + v5 + len(payload)
            parts.append(bytes((head,)) + _remaining_length(n) + pack(len(t)) + t + pack(mid)
                         + (b"\x00" if v5 else b"") + payload)
            mids.append(mid)
        if not mids:
            return mids
        self.batch_unacked.update(mids)
        # one out-packet for the batch: paho writes it as it writes any packet; command PUBLISH
        # with QoS 1 asks nothing of paho once written (its on_publish is for QoS 0 there)
        self._packet_queue(PUBLISH | QOS1, b"".join(parts), mids[-1], 1, None)
        return mids

    def _handle_pubackcomp(self, cmd):
        if cmd == "PUBACK":
            p = self._in_packet["packet"]
            if len(p) >= 2:
                mid = (p[0] << 8) | p[1]
                u = self.batch_unacked
                if mid in u:
                    u.discard(mid)
                    # MQTT 5: a reason code after the id (absent: success); 3.1.1 has none
                    if len(p) > 2 and p[2] >= 0x80 and self._protocol == mqtt.MQTTv5 \
                            and self.on_refused is not None:
                        self.on_refused(mid, p[2])
                    if not u and self.on_batch_done is not None:
                        self.on_batch_done()
                    return _OK
        return super()._handle_pubackcomp(cmd)

    def _sock_recv(self, bufsize):
        # paho reads a packet's command byte, its length byte by byte and its body: three or
        # more recv() per PUBACK. One recv() of up to RECV_SIZE, served from here.
        if self._rsock is self._sock:
            buf, pos = self._rbuf, self._rpos
            if pos < len(buf):
                end = pos + bufsize
                self._rpos = end
                return buf[pos:end]
        else:
            self._rsock = self._sock
        self._rbuf, self._rpos = b"", 0
        data = super()._sock_recv(RECV_SIZE)
        if len(data) <= bufsize:
            return data
        self._rbuf, self._rpos = data, bufsize
        return data[:bufsize]

    def loop_read(self, max_packets=1):
        # what was read ahead into _rbuf does not wake a selector: it is handled now (paho's
        # loop_read reads one packet per message it has in flight, and the batch's are not
        # counted there)
        rc = super().loop_read(max_packets)
        while rc == _OK and self.buffered():
            rc = super().loop_read(max_packets)
        return rc

    def buffered(self):
        """Bytes read from the socket that paho has not taken yet (the selector will not say so)."""
        return self._rsock is self._sock and self._sock is not None and self._rpos < len(self._rbuf)
