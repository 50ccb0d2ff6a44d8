"""The MQTT uplink speaks MQTT 5 (its ingest subscription uses noLocal, so the broker does not send
the gateway's own telemetry back); a broker that only speaks 3.1.1 and closes the connection on an
MQTT 5 CONNECT gets a 3.1.1 one next."""
import asyncio

from support.tsreadings import _until


class _V311Broker:
    """Just enough of a 3.1.1-only broker: closes on a CONNECT of protocol level 5, answers
    CONNACK to one of level 4, then reads and ignores whatever comes."""

    def __init__(self):
        self.levels = []

    async def start(self):
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _client(self, r, w):
        try:
            head = await r.readexactly(2)       # fixed header (remaining length < 128 here)
            body = await r.readexactly(head[1])
            level = body[6]                     # 00 04 'MQTT' <level>
            self.levels.append(level)
            if level != 4:
                w.close()
                return
            w.write(b"\x20\x02\x00\x00")
            await w.drain()
            while await r.read(4096):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            w.close()


async def test_mqtt_v311__a_broker_that_refuses_mqtt5_gets_3_1_1(gateway, caplog):
    broker = _V311Broker()
    port = await broker.start()
    try:
        gw = await gateway(mqtt_url="mqtt://127.0.0.1:%d/pc" % port)
        assert await _until(lambda: gw.mqtt.connected, timeout=20), broker.levels
        assert broker.levels[:2] == [5, 4] and gw.mqtt.v5 is False, broker.levels
        assert "closed the connection on an MQTT 5 CONNECT: trying 3.1.1" in caplog.text, caplog.text
    finally:
        broker.server.close()
