"""The whole firmware at once in a Pico-sized heap: OCPP with a transaction and clock-aligned
samples, MQTT to a real mosquitto, ThingSpeak to the local API server and the status page
polled, all in `-X heapsize=192K` (64-bit objects are about twice the RP2040's), for a
minute and a half, with nothing failing for want of memory."""
import asyncio
import json
import urllib.request

from ocpp.v16 import call

from support.central import station_config
from support.fake_thingspeak import FakeThingSpeak
from support.net import free_port


async def test_heap__every_task_with_ocpp_in_192k_without_memory_error(station, central, mqtt_broker):
    ts = FakeThingSpeak(min_interval=1).start()
    ch = ts.add_channel("K")
    web = free_port()
    try:
        cs = await central(heartbeat=5)
        cfg = station_config(cs.url)
        cfg["web"] = {"enabled": True, "port": web}
        cfg["mqtt"] = {"enabled": True, "host": "127.0.0.1", "port": mqtt_broker.port, "interval_s": 1}
        cfg["thingspeak"] = {"enabled": True, "url": ts.url, "write_key": "K", "min_interval_s": 1}
        st = station(cfg, scenario={"dht": {"temp_c": 24.0, "humidity": 45.0, "error_rate": 0.1}},
                     heap="192K").start()
        await cs.wait_call("StatusNotification", 2, station=st, timeout=30)
        assert (await cs.call(call.ChangeConfiguration(key="ClockAlignedDataInterval", value="2"))).status == "Accepted"
        assert (await cs.call(call.RemoteStartTransaction(id_tag="HEAP-TAG"))).status == "Accepted"
        await cs.wait_call("StartTransaction", station=st)
        free = []
        loop = asyncio.get_running_loop()
        end = loop.time() + 90
        while loop.time() < end:
            await st.aexpect("[meter] I:")   # a status read per sample, for 90 s
            try:
                s = await loop.run_in_executor(None, lambda: json.loads(urllib.request.urlopen(
                    "http://127.0.0.1:%d/api/status" % web, timeout=3).read()))
                free.append(s["mem_free"])
            except OSError:
                pass
            assert st.proc.poll() is None, st.tail()
        out = "\n".join(st.lines)
        assert "MemoryError" not in out and "link down" not in out, st.tail(40)
        periodic = [m for m in cs.calls("MeterValues") if m[3].get("transactionId") == 1001]
        climate = cs.calls("DataTransfer")
        assert len(periodic) >= 80 and len(climate) >= 35, (len(periodic), len(climate))
        assert len(ts.entries(ch.id)) >= 40 and "[mqtt] I: connected" in out, st.tail(40)
        assert len(free) >= 60 and min(free) > 8000, free
        print("lowest free heap over %d s: %d bytes" % (len(free), min(free)))
    finally:
        ts.stop()
