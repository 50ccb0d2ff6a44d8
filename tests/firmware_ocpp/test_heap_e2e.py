"""The whole firmware at once in a Pico-sized heap: OCPP with a transaction and clock-aligned
samples, MQTT to a real mosquitto, ThingSpeak to the local API server and the status page
polled, all in `-X heapsize=192K` (64-bit objects are about twice the RP2040's), for a
minute and a half, with nothing failing for want of memory."""
from ocpp.v16 import call

from support.central import station_config
from support.fake_thingspeak import FakeThingSpeak
from support.heapwatch import watch_heap
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
        free = await watch_heap(st, web, 90)
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


async def test_heap__a_station_behind_the_gateway_with_the_pilot_and_a_profile_in_192k(station, central):
    """The station as it runs behind our gateway (which forwards to ThingSpeak and MQTT itself):
    OCPP with clock-aligned samples, the control pilot with an EV charging, a TxProfile set
    once it runs (its calls' modules loaded for the call), the status page polled."""
    web = free_port()
    cs = await central(heartbeat=5)
    cfg = station_config(cs.url)
    cfg["web"] = {"enabled": True, "port": web}
    cfg["charger"] = {"max_current_a": 16, "pilot": True}
    st = station(cfg, scenario={"dht": {"temp_c": 24.0, "humidity": 45.0, "error_rate": 0.1},
                                "ev": {"state": "C", "diode": True, "max_a": 32.0}}, heap="192K").start()
    await cs.wait_call("StatusNotification", 2, station=st, timeout=30)
    assert (await cs.call(call.ChangeConfiguration(key="ClockAlignedDataInterval", value="2"))).status == "Accepted"
    assert (await cs.call(call.RemoteStartTransaction(id_tag="HEAP-TAG"))).status == "Accepted"
    await cs.wait_call("StartTransaction", station=st)
    await st.aexpect("[board] I: relay closed")
    profiled = []

    async def profile_once(free):
        if not profiled and len(free) >= 10:   # a TxProfile of 10 A once it runs steadily
            profiled.append(len(free))
            r = await cs.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles={
                "chargingProfileId": 7, "stackLevel": 1, "chargingProfilePurpose": "TxProfile",
                "chargingProfileKind": "Relative", "chargingSchedule": {
                    "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}]}}))
            assert r is not None and r.status == "Accepted", (r, st.tail(20))

    free = await watch_heap(st, web, 60, profile_once)
    assert profiled, "the TxProfile was never sent (too few status reads)"
    out = "\n".join(st.lines)
    assert "MemoryError" not in out and "link down" not in out, st.tail(40)
    periodic = [m for m in cs.calls("MeterValues") if m[3].get("transactionId") == 1001]
    assert len(periodic) >= 50, len(periodic)
    # the EV draws what the pilot offers: 16 A (charger.max_current_a), then the profile's 10 A
    amps = [float(v["value"]) for m in periodic for v in m[3]["meterValue"][0]["sampledValue"]
            if v.get("measurand") == "Current.Import"]
    assert 15.0 <= amps[0] <= 17.0 and all(9.0 <= a <= 11.0 for a in amps[-10:]), amps
    assert "relay open" not in out, st.tail(40)
    assert len(free) >= 40 and min(free) > 8000, free
    print("lowest free heap over %d s: %d bytes" % (len(free), min(free)))
