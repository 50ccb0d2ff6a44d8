# The MQTT connect, loaded by mqtt_uplink only to connect (and to word a refusal), then
# dropped: heap a connected board does not need. The CONNECT packet is built here with the
# bytes umqtt.simple's connect() sends (tests/firmware compares them): umqtt's connect()
# blocks on a socket with no timeout and its TLS needs `ussl`, which MicroPython no longer has.
import asyncio

import fields
from mqtt_uplink import _L, _REFUSED


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


# CONNACK return codes (MQTT 3.1.1, 3.2.2.3) in words, with what to check.
_WHY = ("unacceptable protocol version (the broker does not speak MQTT 3.1.1)",
        "client id rejected", "server unavailable",
        "bad user name or password: check mqtt.user and mqtt.password",
        # mosquitto (and others) answer 5, not 4, to a bad user name or password over 3.1.1
        "not authorised: a bad user name or password, or a user the broker does not let "
        "connect: check mqtt.user and mqtt.password, and the broker's users and ACL")


def why(code):
    """A CONNACK refusal code in words, with what to check."""
    return _WHY[code - 1] if 1 <= code <= 5 else "unknown reason"


async def connect(link, within):
    """(reader, writer) of a stream that has sent CONNECT and had it accepted; OSError (with
    (_REFUSED, code) for a refusal), ValueError or a timeout when not."""
    c = link.cfg
    kw = {}
    if c["ssl"]:
        import tlsca  # ssl only for a TLS broker: it costs heap

        kw["ssl"] = tlsca.client("mqtt.ca_cert", c["ca_cert"], _L)
        kw["server_hostname"] = c["host"]  # SNI, and the name the certificate must carry
    r, w = await within(asyncio.open_connection(c["host"], c["port"], **kw), "TCP connection")
    link.stream = w
    user = c["user"].encode() if c["user"] else None
    try:
        w.write(connect_packet(link.client_id, c["keepalive_s"],
                               (link.t_status, fields.OFFLINE_PAYLOAD, 1, True),
                               user, c["password"].encode() if user else None))
        await within(w.drain(), "CONNECT sent")
    except ValueError as e:
        # a verifying TLS handshake failed before the CONNECT (and its password) went out
        if not (c["ssl"] and c["ca_cert"]):
            raise
        import tlsca
        raise OSError(tlsca.refused("mqtt.ca_cert", e))
    ack = await within(r.readexactly(4), "CONNACK")
    if ack[0] != 0x20 or ack[1] != 2:
        raise OSError("not an MQTT broker (answered %r)" % ack)
    if ack[3]:
        raise OSError(_REFUSED, ack[3])
    return r, w
