"""Reservations end to end: the real firmware on the unix board (RFID taps from its control
file) against an `ocpp`-package central system, every frame the station sends validated by the
package's schemas. ReserveNow makes connector 1 Reserved (StatusNotification); only the
reservation's idTag, or a tag whose parentIdTag is the reservation's, starts on it, and its
StartTransaction carries reservationId; another tag is refused, tapped (the LED blinks, no
Authorize) or by RemoteStartTransaction (Rejected); a ReserveNow with the same reservationId
replaces it, another one finds the connector Occupied; CancelReservation (Accepted, Rejected
for an unknown id); connector 0 Rejected (ReserveConnectorZeroSupported false); at expiryDate
the connector is Available again; the reservation is kept on flash across a reboot, and one
that expired while the board was off is dropped at boot. The cache: a StartTransaction's
idTagInfo goes into it as an Authorize answer's (then decides offline), and its parentIdTag
lets a card of the same group stop the transaction."""
import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest
from ocpp.routing import on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action

from support.cards import rfid_config, tap
from support.central import CentralCP, validate_outgoing
from support.gwhttp import TEST_TOKEN, http


def after(seconds):
    """The ISO 8601 date-time `seconds` from now (UTC, whole seconds, as our gateway sends it)."""
    t = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ"), t.timestamp()


def statuses(cs, connector=1):
    return [m[3]["status"] for m in cs.calls("StatusNotification") if m[3]["connectorId"] == connector]


async def status(cs, st, s, since):
    """Wait for a StatusNotification of connector 1 with status `s` among the frames from index
    `since` on (len(cs.frames) before what should bring it)."""
    def ok(d, m):
        return (d == "cp" and m[0] == 2 and m[2] == "StatusNotification" and m[3]["connectorId"] == 1
                and m[3]["status"] == s and cs.frames.index((d, m)) >= since)
    return await cs.wait_for(ok, station=st, what="StatusNotification %s" % s)


async def reserve(cs, rid, tag, seconds=3600, connector=1, parent=None):
    exp, _ = after(seconds)
    r = await cs.call(call.ReserveNow(connector_id=connector, expiry_date=exp, id_tag=tag, reservation_id=rid,
                                      parent_id_tag=parent))
    return r.status


async def test_reserve__honoured_for_its_tag_refused_for_others_replaced_cancelled_connector_zero(station, central):
    cs = await central(heartbeat=60)
    st = station(rfid_config(cs.url)).start()
    await cs.wait_call("StatusNotification", 2, station=st)

    conf = await cs.call(call.GetConfiguration(key=["ReserveConnectorZeroSupported", "SupportedFeatureProfiles"]))
    got = {k["key"]: (k["value"], k["readonly"]) for k in conf.configuration_key}
    assert got["ReserveConnectorZeroSupported"] == ("false", True), got
    assert "Reservation" in got["SupportedFeatureProfiles"][0].split(","), got
    assert await reserve(cs, 6, "04AAAA01", connector=0) == "Rejected"
    assert await reserve(cs, 6, "04AAAA01", connector=2) == "Rejected"
    assert await reserve(cs, 6, "04AAAA01", seconds=-60) == "Rejected"      # already expired
    assert "Reserved" not in statuses(cs), cs.actions()

    assert await reserve(cs, 7, "04AAAA01") == "Accepted"
    await status(cs, st, "Reserved", 0)
    assert (st.flash / "reserve.json").exists()
    assert await reserve(cs, 8, "04CCCC03") == "Occupied"                   # reserved by 7
    r = await cs.call(call.RemoteStartTransaction(id_tag="04BBBB02"))
    assert r.status == "Rejected", r
    await tap(st, "04BBBB02")                       # another card: refused at once, no Authorize
    await st.aexpect("[ocpp] W: connector reserved for 04AAAA01 (reservation 7): 04BBBB02 may not use it")
    await st.aexpect("[ocpp] W: idTag not authorized (Reserved): no transaction for 04BBBB02")
    for _ in range(6):
        await st.aexpect("[board] I: led")

    assert await reserve(cs, 7, "04AAAA05") == "Accepted"                   # the same id: replaced
    await tap(st, "04AAAA01")                       # the replaced reservation's card: refused now
    await st.aexpect("[ocpp] W: connector reserved for 04AAAA05 (reservation 7): 04AAAA01 may not use it")
    await st.aexpect("[ocpp] W: idTag not authorized (Reserved): no transaction for 04AAAA01")
    assert cs.calls("Authorize") == [] and cs.calls("StartTransaction") == [], cs.actions()

    await tap(st, "04AAAA05")                       # its card: Authorize, then the start
    auth = await cs.wait_call("Authorize", station=st)
    assert auth[3] == {"idTag": "04AAAA05"}, auth
    start = await cs.wait_call("StartTransaction", station=st)
    assert start[3]["idTag"] == "04AAAA05" and start[3]["reservationId"] == 7, start
    await st.aexpect("[ocpp] I: reservation 7 used")
    await st.aexpect("[board] I: relay closed")
    assert not (st.flash / "reserve.json").exists()
    assert await reserve(cs, 9, "04DDDD04") == "Occupied"                   # charging
    mark = len(cs.frames)
    await tap(st, "04AAAA05")
    stop = await cs.wait_call("StopTransaction", station=st)
    assert stop[3]["reason"] == "Local", stop
    await status(cs, st, "Available", mark)

    mark = len(cs.frames)
    assert await reserve(cs, 9, "04DDDD04") == "Accepted"
    await status(cs, st, "Reserved", mark)
    assert (await cs.call(call.CancelReservation(reservation_id=10))).status == "Rejected"
    mark = len(cs.frames)
    assert (await cs.call(call.CancelReservation(reservation_id=9))).status == "Accepted"
    await status(cs, st, "Available", mark)
    await st.aexpect("[ocpp] I: reservation 9 cancelled")
    assert (await cs.call(call.CancelReservation(reservation_id=9))).status == "Rejected"
    assert not (st.flash / "reserve.json").exists()
    mark = len(cs.frames)
    r = await cs.call(call.RemoteStartTransaction(id_tag="04BBBB02"))   # not reserved any more
    assert r.status == "Accepted", r
    start = await cs.wait_call("StartTransaction", 2, station=st)
    assert "reservationId" not in start[3], start
    await status(cs, st, "Charging", mark)
    # Preparing while a tap is decided (the two refused, then the reservation's card)
    assert statuses(cs) == ["Available", "Reserved", "Preparing", "Reserved", "Preparing", "Reserved",
                            "Preparing", "Charging", "Finishing", "Available",
                            "Reserved", "Available", "Preparing", "Charging"], statuses(cs)
    assert validate_outgoing(cs.frames)


async def test_reserve__a_tag_of_its_group_starts_and_remote_start_of_another_is_rejected(station, central):
    cs = await central(heartbeat=60)
    st = station(rfid_config(cs.url)).start()
    await cs.wait_call("StatusNotification", 2, station=st)
    entries = [{"idTag": t, "idTagInfo": {"status": "Accepted", "parentIdTag": "FLEET"}} for t in ("04F1F1F1", "04F2F2F2")]
    r = await cs.call(call.SendLocalList(list_version=1, update_type="Full", local_authorization_list=entries + [
        {"idTag": "04A9A9A9", "idTagInfo": {"status": "Accepted", "parentIdTag": "OTHER"}}]))
    assert r.status == "Accepted", r
    # the list decides (this central system's Authorize answers carry no parentIdTag)
    assert (await cs.call(call.ChangeConfiguration(key="LocalPreAuthorize", value="true"))).status == "Accepted"

    assert await reserve(cs, 31, "04F1F1F1", parent="FLEET") == "Accepted"
    await status(cs, st, "Reserved", 0)
    r = await cs.call(call.RemoteStartTransaction(id_tag="04A9A9A9"))     # listed, of another group
    assert r.status == "Rejected", r
    r = await cs.call(call.RemoteStartTransaction(id_tag="04EEEEEE"))     # unknown: its group unknown
    assert r.status == "Rejected", r
    await tap(st, "04A9A9A9")                               # the list: OTHER, not FLEET
    await st.aexpect("[ocpp] W: connector reserved for 04F1F1F1 (reservation 31): 04A9A9A9 may not use it")
    await st.aexpect("[ocpp] W: idTag not authorized (Reserved): no transaction for 04A9A9A9")
    r = await cs.call(call.RemoteStartTransaction(id_tag="04F2F2F2"))     # FLEET in the list
    assert r.status == "Accepted", r
    start = await cs.wait_call("StartTransaction", station=st)
    assert start[3]["idTag"] == "04F2F2F2" and start[3]["reservationId"] == 31, start
    await st.aexpect("[ocpp] I: reservation 31 used")
    assert len(cs.calls("StartTransaction")) == 1, cs.actions()
    assert validate_outgoing(cs.frames)


async def test_reserve__expires_kept_across_a_reboot_and_dropped_at_boot_once_expired(station, central):
    cs = await central(heartbeat=60)
    st = station(rfid_config(cs.url)).start()
    await cs.wait_call("StatusNotification", 2, station=st)

    mark = len(cs.frames)
    assert await reserve(cs, 41, "04E1E1E1", seconds=4) == "Accepted"
    await status(cs, st, "Reserved", mark)
    await st.aexpect("[ocpp] I: reservation 41 expired", timeout=15)
    await status(cs, st, "Available", mark)
    assert not (st.flash / "reserve.json").exists()

    mark = len(cs.frames)
    assert await reserve(cs, 42, "04E2E2E2") == "Accepted"
    await status(cs, st, "Reserved", mark)
    st.kill()                                           # power cut
    n = len(cs.calls("BootNotification"))
    mark = len(cs.frames)
    st.start()                                          # same flash
    await st.aexpect("[ocpp] I: reservation 42 for 04E2E2E2 kept across the reboot")
    await cs.wait_call("BootNotification", n + 1, station=st)
    await status(cs, st, "Reserved", mark)              # told again after the boot
    cs2 = cs
    r = await cs2.call(call.RemoteStartTransaction(id_tag="04BBBB02"))
    assert r.status == "Rejected", r
    await tap(st, "04E2E2E2")
    start = await cs2.wait_call("StartTransaction", station=st)
    assert start[3]["idTag"] == "04E2E2E2" and start[3]["reservationId"] == 42, start
    mark = len(cs.frames)
    await tap(st, "04E2E2E2")
    await cs2.wait_call("StopTransaction", station=st)
    await status(cs, st, "Available", mark)             # Finishing would be Occupied

    exp, t_exp = after(3)
    r = await cs2.call(call.ReserveNow(connector_id=1, expiry_date=exp, id_tag="04E3E3E3", reservation_id=43))
    assert r.status == "Accepted", (r, " ".join(statuses(cs)))
    st.kill()                                           # off until after its expiry
    while time.time() < t_exp + 0.5:
        await asyncio.sleep(0.1)
    st.start()
    await st.aexpect("[ocpp] I: reservation 43 expired while the station was off")
    assert not (st.flash / "reserve.json").exists()
    await st.aexpect("[ocpp] I: boot accepted")
    r = await cs2.call(call.RemoteStartTransaction(id_tag="04BBBB02"))   # not reserved
    assert r.status == "Accepted", r
    start = await cs2.wait_call("StartTransaction", 2, station=st)
    assert "reservationId" not in start[3], start
    assert validate_outgoing(cs2.frames)


class GroupCP(CentralCP):
    """Every tag Accepted with parentIdTag FLEET, in Authorize and StartTransaction answers."""

    @on(Action.authorize)
    def on_authorize(self, id_tag):
        return call_result.Authorize(id_tag_info={"status": "Accepted", "parentIdTag": "FLEET"})

    @on(Action.start_transaction)
    def on_start(self, connector_id, id_tag, meter_start, timestamp, **kw):
        self.cs.next_tx += 1
        return call_result.StartTransaction(transaction_id=self.cs.next_tx,
                                            id_tag_info={"status": self.cs.auth_status, "parentIdTag": "FLEET"})


async def test_cache__start_transaction_answers_fill_it_and_their_parent_lets_a_group_card_stop(station, central):
    cs = await central(heartbeat=60)
    cs.cls = type("CP", (GroupCP,), {"cs": cs})
    st = station(rfid_config(cs.url)).start()
    await cs.wait_call("StatusNotification", 2, station=st)
    port = cs.port

    r = await cs.call(call.RemoteStartTransaction(id_tag="04CA0001"))   # no Authorize (AuthorizeRemoteTxRequests false)
    assert r.status == "Accepted", r
    await cs.wait_call("StartTransaction", station=st)
    await st.aexpect("[ocpp] I: transaction (local #1) has id 1001 (idTag Accepted)")
    await tap(st, "04CA0002")                   # Authorize: FLEET, the StartTransaction's parent
    stop = await cs.wait_call("StopTransaction", station=st)
    assert stop[3]["reason"] == "Local" and stop[3]["idTag"] == "04CA0001", stop

    cs.auth_status = "Blocked"                  # a StartTransaction answered Blocked is cached too
    r = await cs.call(call.RemoteStartTransaction(id_tag="04CB0001"))
    assert r.status == "Accepted", r
    stop = await cs.wait_call("StopTransaction", 2, station=st)
    assert stop[3]["reason"] == "DeAuthorized" and stop[3]["idTag"] == "04CB0001", stop
    assert [m[3]["idTag"] for m in cs.calls("Authorize")] == ["04CA0002"], cs.actions()

    await cs.stop()
    await st.aexpect("[ocpp] W: link down")
    await tap(st, "04CB0001")                   # the cache: Blocked (unknown would be Invalid)
    await st.aexpect("[ocpp] W: idTag not authorized (Blocked): no transaction for 04CB0001")
    await tap(st, "04CA0001")                   # the cache: Accepted, from the StartTransaction answer
    await st.aexpect("[ocpp] I: transaction (local #3) started for 04CA0001")
    await tap(st, "04CA0001")
    await st.aexpect("[ocpp] I: transaction (local #3) stopped: Local")
    cs2 = await central(port=port, heartbeat=60)
    cs2.next_tx = 2000
    stop = await cs2.wait_call("StopTransaction", station=st, timeout=30, pred=lambda m: m[3]["idTag"] == "04CA0001")
    start = cs2.calls("StartTransaction")[-1]
    assert start[3]["idTag"] == "04CA0001" and stop[3]["transactionId"] == 2001, (start, stop)
    assert cs2.calls("Authorize") == [], cs2.actions()
    assert validate_outgoing(cs.frames) and validate_outgoing(cs2.frames)


STATION_PW = "station-password-0014"     # 16..40 printable ASCII, as the gateway takes them


@pytest.fixture
async def gateway(tmp_path):
    from picocharge.gateway.app import Gateway, Settings

    gw = Gateway(Settings(db=str(tmp_path / "gw.db"), port=0, auth="password", thingspeak_url=None,
                          gc_freeze=False, api_token=TEST_TOKEN))
    await gw.start()
    yield gw
    await gw.stop()


async def station_status(gw):
    s, view = await http(gw, "GET", "/api/stations/CP-1")
    assert s == 200, view
    return view["status"]


async def test_gateway__a_reservation_from_the_api_shows_reserved_and_a_card_of_its_group_starts(station, gateway):
    """Our gateway and the real firmware: POST /api/stations/CP-1/reservations sends ReserveNow
    (with the tag's parentIdTag from the gateway's id-tag list); the station's page shows it
    Reserved; a card of another group is refused, a card of the same group starts, and the
    transaction is linked to the reservation on both sides."""
    gw = gateway
    await gw.register("CP-1", STATION_PW)
    for tag, parent in (("04AB0001", "FLEET"), ("04AB0002", "FLEET"), ("04CD0003", None)):
        s, out = await http(gw, "POST", "/api/id-tags", dict({"id_tag": tag}, **({"parent_id_tag": parent} if parent else {})))
        assert s == 201, out
    cfg = rfid_config("ws://127.0.0.1:%d/ocpp" % gw.port)
    cfg["ocpp"]["password"] = STATION_PW
    st = station(cfg).start()
    await st.aexpect("[ocpp] I: boot accepted")
    s = {}

    async def poll():
        s["status"] = await station_status(gw)
        return s["status"]
    end = time.monotonic() + 30
    while await poll() != "Available":
        assert time.monotonic() < end, (s, st.tail())
        await asyncio.sleep(0.2)

    exp, _ = after(3600)
    s_, r = await http(gw, "POST", "/api/stations/CP-1/reservations",
                       {"connector_id": 1, "id_tag": "04AB0001", "expiry_date": exp})
    assert s_ == 201 and r["status"] == "Accepted" and r["parent_id_tag"] == "FLEET", r
    rid = r["id"]
    await st.aexpect("[ocpp] I: reservation %d for 04AB0001 until %s" % (rid, exp))
    end = time.monotonic() + 20
    while await poll() != "Reserved":
        assert time.monotonic() < end, (s, st.tail())
        await asyncio.sleep(0.2)

    await tap(st, "04CD0003")                        # no parent in the gateway's list: refused
    await st.aexpect("[ocpp] W: connector reserved for 04AB0001 (reservation %d): 04CD0003 may not use it" % rid)
    await tap(st, "04AB0002")                        # FLEET, as the reservation's tag
    await st.aexpect("[ocpp] I: reservation %d used" % rid)
    await st.aexpect("[board] I: relay closed")

    async def linked():
        s_, rows = await http(gw, "GET", "/api/stations/CP-1/reservations")
        return [x for x in rows if x["id"] == rid][0]
    end = time.monotonic() + 20
    while (await linked())["transaction_id"] is None:
        assert time.monotonic() < end, st.tail()
        await asyncio.sleep(0.2)
    row = await linked()
    assert row["state"] == "used", row
    s_, txs = await http(gw, "GET", "/api/stations/CP-1/transactions")
    assert s_ == 200 and txs[0]["id"] == row["transaction_id"] and txs[0]["reservation_id"] == rid, txs
    assert txs[0]["id_tag"] == "04AB0002", txs[0]
    end = time.monotonic() + 20
    while await poll() != "Charging":
        assert time.monotonic() < end, (s, st.tail())
        await asyncio.sleep(0.2)
