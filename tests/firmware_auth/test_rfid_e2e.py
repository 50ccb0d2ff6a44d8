"""RFID cards end to end: the real firmware with charger.rfid on the unix board (a card is
tapped by writing its UID to the board's control file) against an `ocpp`-package central
system. A tap with no transaction: Authorize, then StartTransaction with the UID as idTag and
the relay closed; the same card again: StopTransaction Local. A Blocked card: refused, the LED
blinks three times, nothing starts. The Local Auth List: Full, Differential, VersionMismatch,
Failed, NotSupported, GetLocalListVersion; with LocalPreAuthorize a listed card starts without
Authorize and a card of the same group (parentIdTag) stops it. Offline (the central system
stopped, then started again on the same port): a listed card starts and stops a transaction, a
Blocked one and an unknown one are refused while AllowOfflineTxForUnknownId is false, the
unknown one starts once it is true; each time the link returns, the queued StartTransaction,
MeterValues and StopTransaction are replayed in order, with no Authorize. The cache: what
Authorize answered (Accepted, Blocked) decides offline, until ClearCache. The heap: the reader,
the pilot and the list's calls in 192K."""

from ocpp.v16 import call

from support.cards import entry, rfid_config, tap
from support.central import validate_outgoing
from support.heapwatch import watch_heap
from support.net import free_port


async def test_rfid__tap_authorize_start_tap_stop_and_a_blocked_card_refused(station, central):
    cs = await central(heartbeat=60)
    st = station(rfid_config(cs.url)).start()
    await cs.wait_call("StatusNotification", 2, station=st)

    await tap(st, "04A1B2C3")
    auth = await cs.wait_call("Authorize", station=st)
    assert auth[3] == {"idTag": "04A1B2C3"}, auth
    start = await cs.wait_call("StartTransaction", station=st)
    assert start[3]["idTag"] == "04A1B2C3" and start[3]["connectorId"] == 1, start
    await st.aexpect("[board] I: relay closed")

    await tap(st, "04A1B2C3")                      # the same card: stop
    stop = await cs.wait_call("StopTransaction", station=st)
    assert stop[3]["reason"] == "Local" and stop[3]["idTag"] == "04A1B2C3", stop
    assert stop[3]["transactionId"] == 1001, stop
    await st.aexpect("[board] I: relay open")
    assert len(cs.calls("Authorize")) == 1, "the transaction's own card stops it without Authorize"

    cs.auth_status = "Blocked"
    await tap(st, "0A0B0C0D")
    await cs.wait_call("Authorize", 2, station=st)
    refused = await st.aexpect("[ocpp] W: idTag not authorized (Blocked): no transaction for 0A0B0C0D")
    for _ in range(6):
        await st.aexpect("[board] I: led")
    n = st.lines.index(refused)
    leds = [ln for ln in st.lines[n:] if "[board] I: led" in ln]
    assert [ln.split()[-1] for ln in leds[:6]] == ["on", "off"] * 3, st.tail(20)
    assert len(cs.calls("StartTransaction")) == 1, cs.actions()
    assert "relay closed" not in "\n".join(st.lines[n:]), st.tail(20)
    assert validate_outgoing(cs.frames)


async def test_local_list__full_differential_mismatch_and_a_group_card_stops(station, central):
    cs = await central(heartbeat=60)
    st = station(rfid_config(cs.url)).start()
    await cs.wait_call("StatusNotification", 2, station=st)

    assert (await cs.call(call.GetLocalListVersion())).list_version == 0   # no list yet
    full = [entry("04C0DE%02d" % i, parent="FLEET") for i in range(9)] + [entry("04BAD001", "Blocked")]
    r = await cs.call(call.SendLocalList(list_version=3, update_type="Full", local_authorization_list=full))
    assert r.status == "Accepted", r
    assert (await cs.call(call.GetLocalListVersion())).list_version == 3
    r = await cs.call(call.SendLocalList(list_version=3, update_type="Differential",
                                         local_authorization_list=[entry("NEW1")]))
    assert r.status == "VersionMismatch", r
    r = await cs.call(call.SendLocalList(list_version=4, update_type="Differential",
                                         local_authorization_list=[entry("X%02d" % i) for i in range(11)]))
    assert r.status == "Failed", r                 # more than SendLocalListMaxLength (10)
    r = await cs.call(call.SendLocalList(list_version=4, update_type="Differential",
                                         local_authorization_list=[{"idTag": "04C0DE00"}, entry("04DDEEFF", parent="FLEET")]))
    assert r.status == "Accepted", r
    assert (await cs.call(call.GetLocalListVersion())).list_version == 4
    conf = await cs.call(call.GetConfiguration(key=["SendLocalListMaxLength", "LocalAuthListMaxLength"]))
    assert {k["key"]: k["value"] for k in conf.configuration_key} == {
        "SendLocalListMaxLength": "10", "LocalAuthListMaxLength": "1000"}, conf

    assert (await cs.call(call.ChangeConfiguration(key="LocalPreAuthorize", value="true"))).status == "Accepted"
    await tap(st, "04DDEEFF")                      # listed (Differential): starts without Authorize
    start = await cs.wait_call("StartTransaction", station=st)
    assert start[3]["idTag"] == "04DDEEFF", start
    await tap(st, "04C0DE07")                        # another card of the FLEET group: stops it
    stop = await cs.wait_call("StopTransaction", station=st)
    assert stop[3]["reason"] == "Local" and stop[3]["idTag"] == "04DDEEFF", stop
    assert cs.calls("Authorize") == [], cs.actions()

    cs.auth_status = "Blocked"                      # 04C0DE00 left the list: Authorize decides
    await tap(st, "04C0DE00")
    await cs.wait_call("Authorize", station=st)
    await st.aexpect("[ocpp] W: idTag not authorized (Blocked): no transaction for 04C0DE00")

    assert (await cs.call(call.ChangeConfiguration(key="LocalAuthListEnabled", value="false"))).status == "Accepted"
    r = await cs.call(call.SendLocalList(list_version=5, update_type="Full", local_authorization_list=[]))
    assert r.status == "NotSupported", r
    assert (await cs.call(call.GetLocalListVersion())).list_version == -1
    assert len(cs.calls("StartTransaction")) == 1, cs.actions()
    assert validate_outgoing(cs.frames)


async def offline(cs, st):
    await cs.stop()
    await st.aexpect("[ocpp] W: link down")


async def replayed(central, port, st, tag, tx_id):
    """Start the central system again; the queued transaction of `tag` arrives whole, in order."""
    cs = await central(port=port, heartbeat=60)
    cs.next_tx = tx_id - 1
    stop = await cs.wait_call("StopTransaction", station=st, timeout=30)
    acts = [a for a in cs.actions() if a not in ("Heartbeat", "BootNotification", "StatusNotification")]
    k = acts.index("StopTransaction")
    assert acts[0] == "StartTransaction" and acts[1:k] == ["MeterValues"] * (k - 1) and k >= 2, acts
    start = cs.calls("StartTransaction")[0]
    assert start[3]["idTag"] == tag, start
    assert stop[3]["transactionId"] == tx_id and stop[3]["reason"] == "Local" and stop[3]["idTag"] == tag, stop
    assert cs.calls("Authorize") == [], cs.actions()
    assert validate_outgoing(cs.frames)
    return cs


async def test_offline__listed_card_starts_unknown_per_allow_offline_tx_for_unknown_id(station, central):
    cs = await central(heartbeat=60)
    st = station(rfid_config(cs.url)).start()
    await cs.wait_call("StatusNotification", 2, station=st)
    r = await cs.call(call.SendLocalList(list_version=1, update_type="Full", local_authorization_list=[
        entry("04A0A0A0"), entry("04B1B1B1", "Blocked")]))
    assert r.status == "Accepted", r
    r = await cs.call(call.GetConfiguration(key=["AllowOfflineTxForUnknownId", "LocalAuthorizeOffline"]))
    assert {k["key"]: k["value"] for k in r.configuration_key} == {
        "AllowOfflineTxForUnknownId": "false", "LocalAuthorizeOffline": "true"}, r
    port = cs.port

    await offline(cs, st)
    await tap(st, "04CCCCCC")                 # unknown: refused
    await st.aexpect("[ocpp] W: idTag not authorized (Invalid): no transaction for 04CCCCCC")
    await tap(st, "04B1B1B1")                 # Blocked in the list: refused
    await st.aexpect("[ocpp] W: idTag not authorized (Blocked): no transaction for 04B1B1B1")
    await tap(st, "04A0A0A0")                 # listed: starts offline
    await st.aexpect("[board] I: relay closed")
    await st.aexpect("[ocpp] I: transaction (local #1) started for 04A0A0A0")
    await tap(st, "04A0A0A0")
    await st.aexpect("[ocpp] I: transaction (local #1) stopped: Local")
    cs2 = await replayed(central, port, st, "04A0A0A0", 501)
    assert len(cs2.calls("StartTransaction")) == 1, cs2.actions()

    r = await cs2.call(call.ChangeConfiguration(key="AllowOfflineTxForUnknownId", value="true"))
    assert r.status == "Accepted", r
    await offline(cs2, st)
    await tap(st, "04CCCCCC")                 # unknown, now allowed
    await st.aexpect("[ocpp] I: transaction (local #2) started for 04CCCCCC")
    await tap(st, "04CCCCCC")
    await st.aexpect("[ocpp] I: transaction (local #2) stopped: Local")
    await tap(st, "04B1B1B1")                 # Blocked stays refused
    await st.aexpect("[ocpp] W: idTag not authorized (Blocked): no transaction for 04B1B1B1")
    await replayed(central, port, st, "04CCCCCC", 777)


async def test_heap__rfid_and_the_local_list_behind_the_gateway_with_the_pilot_in_192k(station, central):
    """The RFID reader and the Local Auth List in a Pico-sized heap: the station as it runs behind our
gateway (OCPP with clock-aligned samples, the control pilot with an EV charging, the status
page polled) with charger.rfid on, in `-X heapsize=192K`: a list of 10 (SendLocalListMaxLength) sent Full, a card tapped
(Authorize, StartTransaction), a Differential and GetLocalListVersion while it charges, the card
again (StopTransaction), nothing failing for want of memory."""
    web = free_port()
    cs = await central(heartbeat=5)
    cfg = rfid_config(cs.url)
    cfg["web"] = {"enabled": True, "port": web}
    cfg["charger"]["pilot"] = True
    st = station(cfg, scenario={"dht": {"temp_c": 24.0, "humidity": 45.0, "error_rate": 0.1},
                                "ev": {"state": "C", "diode": True, "max_a": 32.0}}, heap="192K").start()
    await cs.wait_call("StatusNotification", 2, station=st, timeout=30)
    assert (await cs.call(call.ChangeConfiguration(key="ClockAlignedDataInterval", value="2"))).status == "Accepted"
    r = await cs.call(call.SendLocalList(list_version=1, update_type="Full", local_authorization_list=[
        entry("04F00F%02d" % i, parent="FLEET-00000000000001") for i in range(10)]))
    assert r.status == "Accepted", r
    await tap(st, "04A1B2C3")
    await cs.wait_call("StartTransaction", station=st)
    await st.aexpect("[board] I: relay closed")
    sent = []

    async def differential_once(free):   # while it charges, after the first ten reads
        if not sent and len(free) >= 10:
            sent.append(True)
            r = await cs.call(call.SendLocalList(list_version=2, update_type="Differential", local_authorization_list=[
                entry("04E00E%02d" % i, "Blocked", parent="FLEET-00000000000002") for i in range(10)]))
            assert r is not None and r.status == "Accepted", (r, st.tail(20))
            assert (await cs.call(call.GetLocalListVersion())).list_version == 2
    free = await watch_heap(st, web, 45, differential_once)
    assert sent, free
    await tap(st, "04A1B2C3")
    stop = await cs.wait_call("StopTransaction", station=st)
    assert stop[3]["reason"] == "Local", stop
    out = "\n".join(st.lines)
    assert "MemoryError" not in out and "link down" not in out, st.tail(40)
    assert len(free) >= 30 and min(free) > 8000, free
    print("lowest free heap over %d s with the reader on: %d bytes" % (len(free), min(free)))


async def test_cache__authorize_answers_decide_offline_until_clear_cache(station, central):
    cs = await central(heartbeat=60)
    st = station(rfid_config(cs.url)).start()
    await cs.wait_call("StatusNotification", 2, station=st)
    port = cs.port
    await tap(st, "04CAFE01")                  # Authorize: Accepted, cached
    await cs.wait_call("StartTransaction", station=st)
    await tap(st, "04CAFE01")
    await cs.wait_call("StopTransaction", station=st)
    cs.auth_status = "Blocked"
    await tap(st, "04BEEF01")                  # Authorize: Blocked, cached too
    await st.aexpect("[ocpp] W: idTag not authorized (Blocked): no transaction for 04BEEF01")
    assert [m[3]["idTag"] for m in cs.calls("Authorize")] == ["04CAFE01", "04BEEF01"], cs.actions()

    await offline(cs, st)
    await tap(st, "04BEEF01")                  # the cache says Blocked (unknown would be Invalid)
    await st.aexpect("[ocpp] W: idTag not authorized (Blocked): no transaction for 04BEEF01")
    await tap(st, "04CAFE01")                  # the cache says Accepted: starts offline
    await st.aexpect("[ocpp] I: transaction (local #2) started for 04CAFE01")
    await tap(st, "04CAFE01")
    await st.aexpect("[ocpp] I: transaction (local #2) stopped: Local")
    cs2 = await replayed(central, port, st, "04CAFE01", 900)

    assert (await cs2.call(call.ClearCache())).status == "Accepted"
    await offline(cs2, st)
    await tap(st, "04CAFE01")                  # the cache is gone: unknown, refused
    await st.aexpect("[ocpp] W: idTag not authorized (Invalid): no transaction for 04CAFE01")
