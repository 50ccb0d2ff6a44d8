"""Reservations and the calls of the Local Auth List Management, Reservation and DataTransfer profiles
sent through the API (issue 14), to charge points built on the ocpp package (each call is checked
against the package's schema on the station's side before its handler sees it)."""
import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from ocpp.routing import on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action

from support import stations
from support.gwhttp import http
from support.stations import Connected, boot

pytestmark = pytest.mark.both_stores   # a storage test: on SQLite and on PostgreSQL


def _in(minutes):
    return (datetime.now(timezone.utc) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reserving(stations.TestStation):
    """Takes reservations on connector 1 (Occupied on 2), cancels the ones it holds; answers the
    local-list, cache and DataTransfer calls; records every call (with its ocpp-validated fields)."""

    def __init__(self, sid, ws):
        super().__init__(sid, ws)
        self.held = {}
        self.list_version = 0

    @on(Action.reserve_now)
    def on_reserve_now(self, connector_id, expiry_date, id_tag, reservation_id, parent_id_tag=None):
        self.received.append(("ReserveNow", connector_id, expiry_date, id_tag, reservation_id, parent_id_tag))
        if connector_id != 1:
            return call_result.ReserveNow(status="Occupied")
        self.held[reservation_id] = id_tag
        return call_result.ReserveNow(status="Accepted")

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id):
        self.received.append(("CancelReservation", reservation_id))
        return call_result.CancelReservation(status="Accepted" if self.held.pop(reservation_id, None) else "Rejected")

    @on(Action.send_local_list)
    def on_send_local_list(self, list_version, update_type, local_authorization_list=None):
        self.received.append(("SendLocalList", list_version, update_type, local_authorization_list))
        self.list_version = list_version
        return call_result.SendLocalList(status="Accepted")

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self):
        self.received.append(("GetLocalListVersion",))
        return call_result.GetLocalListVersion(list_version=self.list_version)

    @on(Action.clear_cache)
    def on_clear_cache(self):
        self.received.append(("ClearCache",))
        return call_result.ClearCache(status="Accepted")

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id, message_id=None, data=None):
        self.received.append(("DataTransfer", vendor_id, message_id, data))
        if vendor_id != "PicoCharge":
            return call_result.DataTransfer(status="UnknownVendorId")
        return call_result.DataTransfer(status="Accepted", data=(data or "")[::-1])


async def test_reservations__made_answered_listed_linked_to_a_transaction_and_cancelled(gateway):
    gw = await gateway()
    for b in ({"id_tag": "CARD-1", "parent_id_tag": "FLEET"}, {"id_tag": "CARD-2"},
              {"id_tag": "CARD-X", "status": "Blocked"}):
        assert (await http(gw, "POST", "/api/id-tags", b))[0] == 201
    until = _in(30)
    async with Connected(gw.port, "CP-1", cls=Reserving) as cp:
        await boot(cp)
        s, r1 = await http(gw, "POST", "/api/stations/CP-1/reservations",
                           {"connector_id": 1, "id_tag": "CARD-1", "expiry_date": until})
        assert (s, r1) == (201, {"id": 1, "connector_id": 1, "id_tag": "CARD-1", "parent_id_tag": "FLEET",
                                 "expiry_date": until, "status": "Accepted", "state": "active",
                                 "created": r1["created"], "cancelled": None, "cancel_status": None,
                                 "transaction_id": None}), r1
        # the command form answers with the station's answer; the id is in X-Reservation-Id
        s, ans = await http(gw, "POST", "/api/stations/CP-1/reserve-now",
                            {"connector_id": 2, "id_tag": "CARD-2", "expiry_date": until})
        assert (s, ans) == (200, {"status": "Occupied"}), ans
        s, r3 = await http(gw, "POST", "/api/stations/CP-1/reservations",
                           {"connector_id": 1, "id_tag": "CARD-2", "expiry_date": until})
        assert (s, r3["id"], r3["status"]) == (201, 3, "Accepted"), r3
        assert cp.received == [("ReserveNow", 1, until, "CARD-1", 1, "FLEET"),
                               ("ReserveNow", 2, until, "CARD-2", 2, None),
                               ("ReserveNow", 1, until, "CARD-2", 3, None)], cp.received
        # a tag that could not start, a date past or too far, a connector that is not one: refused at the door
        for body, status, error in [
            ({"connector_id": 1, "id_tag": "CARD-X", "expiry_date": until}, 409,
             "id tag CARD-X is Blocked in this gateway's id-tag list: a reservation for it could not be used; give "
             "a tag of the list that is Accepted (GET /api/id-tags)"),
            ({"connector_id": 1, "id_tag": "CARD-1", "expiry_date": "2020-01-01T00:00:00Z"}, 400,
             "expiry_date 2020-01-01T00:00:00Z is not in the future"),
            ({"connector_id": 1, "id_tag": "CARD-1", "expiry_date": _in(60 * 24 * 31)}, 400, None),
            ({"connector_id": -1, "id_tag": "CARD-1", "expiry_date": until}, 400, None),
            ({"connector_id": 1, "id_tag": "CARD-1"}, 400, None),
        ]:
            s, out = await http(gw, "POST", "/api/stations/CP-1/reservations", body)
            assert s == status and (error is None or out["error"] == error), (body, s, out)
        assert len(cp.received) == 3, cp.received
        # CARD-1 starts against its reservation: the transaction carries its id
        st = await cp.call(call.StartTransaction(connector_id=1, id_tag="CARD-1", meter_start=0, reservation_id=1,
                                                 timestamp="2026-01-01T10:00:00Z"))
        s, ans = await http(gw, "POST", "/api/stations/CP-1/reservations/3/cancel")
        assert (s, ans["state"], ans["cancel_status"]) == (200, "cancelled", "Accepted"), ans
        s, ans = await http(gw, "POST", "/api/stations/CP-1/cancel-reservation", {"reservation_id": 3})
        assert (s, ans) == (200, {"status": "Rejected"}), ans
        s, ans = await http(gw, "POST", "/api/stations/CP-1/reservations/99/cancel")
        assert (s, ans) == (404, {"error": "station CP-1 has no reservation 99 (GET /api/stations/CP-1/reservations)"})
    s, rows = await http(gw, "GET", "/api/stations/CP-1/reservations")
    assert [(r["id"], r["status"], r["state"], r["transaction_id"], r["cancel_status"]) for r in rows] == [
        (3, "Accepted", "cancelled", None, "Rejected"), (2, "Occupied", "refused", None, None),
        (1, "Accepted", "used", st.transaction_id, None)], rows
    s, tx = await http(gw, "GET", "/api/stations/CP-1/transactions")
    assert [(t["id"], t["reservation_id"]) for t in tx] == [(st.transaction_id, 1)], tx
    # not connected: nothing stored, 409
    s, out = await http(gw, "POST", "/api/stations/CP-1/reservations",
                        {"connector_id": 1, "id_tag": "CARD-1", "expiry_date": until})
    assert (s, out) == (409, {"error": "station CP-1 is not connected"}), out


async def test_reservations__an_expired_one_is_shown_expired(gateway):
    gw = await gateway()
    async with Connected(gw.port, "CP-1", cls=Reserving) as cp:
        await boot(cp)
        soon = (datetime.now(timezone.utc) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        s, r = await http(gw, "POST", "/api/stations/CP-1/reservations",
                          {"connector_id": 1, "id_tag": "ANY", "expiry_date": soon})
        assert (s, r["state"]) == (201, "active"), r
    rows = await gw.reservations.list("CP-1")
    from picocharge.gateway import reservations
    later = (datetime.now(timezone.utc) + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert reservations.view(dict(zip(reservations._COLS, (
        rows[0]["id"], "CP-1", 1, "ANY", None, soon, "Accepted", rows[0]["created"], None, None, None))),
        now=later)["state"] == "expired"


@pytest.mark.parametrize("store_kind", ["sqlite"])
async def test_reservations__every_new_command_reaches_the_station_and_its_answer_comes_back(gateway):
    gw = await gateway()
    async with Connected(gw.port, "CP-1", cls=Reserving) as cp:
        await boot(cp)
        cases = [
            ("send-local-list", {"list_version": 7, "update_type": "Full", "local_authorization_list": [
                {"id_tag": "A", "id_tag_info": {"status": "Accepted", "parent_id_tag": "G",
                                                "expiry_date": "2030-01-01T00:00:00Z"}},
                {"id_tag": "B", "id_tag_info": {"status": "Blocked"}}]},
             {"status": "Accepted"},
             ("SendLocalList", 7, "Full", [
                 {"id_tag": "A", "id_tag_info": {"status": "Accepted", "parent_id_tag": "G",
                                                 "expiry_date": "2030-01-01T00:00:00Z"}},
                 {"id_tag": "B", "id_tag_info": {"status": "Blocked"}}])),
            ("get-local-list-version", {}, {"listVersion": 7}, ("GetLocalListVersion",)),
            ("clear-cache", {}, {"status": "Accepted"}, ("ClearCache",)),
            ("data-transfer", {"vendor_id": "PicoCharge", "message_id": "Echo", "data": "hello"},
             {"status": "Accepted", "data": "olleh"}, ("DataTransfer", "PicoCharge", "Echo", "hello")),
            ("data-transfer", {"vendor_id": "Other"}, {"status": "UnknownVendorId"},
             ("DataTransfer", "Other", None, None)),
            ("reserve-now", {"connector_id": 1, "id_tag": "T1", "expiry_date": _in(5)}, {"status": "Accepted"}, None),
            ("cancel-reservation", {"reservation_id": 1}, {"status": "Accepted"}, ("CancelReservation", 1)),
        ]
        for name, body, answer, received in cases:
            cp.received.clear()
            s, out = await http(gw, "POST", "/api/stations/CP-1/" + name, body)
            assert (s, out) == (200, answer), (name, s, out)
            if received is not None:
                assert cp.received == [received], (name, cp.received)
        # the list sent by hand is not the gateway's: its own sync sends the whole list next time
        s, ll = await http(gw, "GET", "/api/stations/CP-1/local-list")
        assert (ll["state"], ll["list_version"]) == ("Replaced", None), ll
        # bounded and checked before anything is sent
        cp.received.clear()
        for name, body in [("data-transfer", {"vendor_id": "V", "data": "x" * 10001}),
                           ("data-transfer", {"vendor_id": "V" * 256}),
                           ("data-transfer", {"message_id": "M"}),
                           ("send-local-list", {"list_version": 1, "update_type": "Sometimes"}),
                           ("send-local-list", {"list_version": 1, "update_type": "Full", "local_authorization_list": [
                               {"id_tag": "T", "id_tag_info": {"status": "Maybe"}}]}),
                           ("send-local-list", {"list_version": 1, "update_type": "Full",
                                                "local_authorization_list": [{"id_tag": "T"}] * 1001}),
                           ("cancel-reservation", {"reservation_id": 0}),
                           ("clear-cache", {"all": True})]:
            s, out = await http(gw, "POST", "/api/stations/CP-1/" + name, body)
            assert s == 400 and out["error"].startswith("bad body for " + name), (name, s, out)
        assert cp.received == [], cp.received


class DropsOnReserve(Reserving):
    """Receives ReserveNow, then closes its connection without answering."""

    @on(Action.reserve_now)
    async def on_reserve_now(self, connector_id, expiry_date, id_tag, reservation_id, parent_id_tag=None):
        self.received.append(("ReserveNow", reservation_id))
        await self._connection.close()
        raise asyncio.CancelledError    # no answer: the link is gone


async def test_reservations__no_answer_is_stored_as_such_and_the_next_gets_a_new_id(gateway):
    gw = await gateway()
    until = _in(30)
    async with Connected(gw.port, "CP-1", cls=DropsOnReserve) as cp:
        await boot(cp)
        s, out = await http(gw, "POST", "/api/stations/CP-1/reservations",
                            {"connector_id": 1, "id_tag": "T1", "expiry_date": until})
        assert (s, out) == (502, {"error": "station CP-1 disconnected after receiving ReserveNow, before answering it",
                                  "disconnected": True}), out
        assert cp.received == [("ReserveNow", 1)], cp.received
    async with Connected(gw.port, "CP-1", cls=Reserving) as cp:
        await boot(cp)
        s, out = await http(gw, "POST", "/api/stations/CP-1/reservations",
                            {"connector_id": 1, "id_tag": "T1", "expiry_date": until})
        assert (s, out["id"], out["state"]) == (201, 2, "active"), out
    s, rows = await http(gw, "GET", "/api/stations/CP-1/reservations")
    assert [(r["id"], r["status"], r["state"]) for r in rows] == [(2, "Accepted", "active"),
                                                                  (1, "NoAnswer", "no answer")], rows


async def test_reservations__a_transaction_links_only_to_a_reservation_it_may_use(gateway, caplog):
    # found reviewing: any StartTransaction naming a reservation id of the station was linked to
    # it, whatever its tag, connector or state (OCPP 1.6 5.13: the tag, or one with its parent)
    gw = await gateway()
    for b in ({"id_tag": "CARD-1", "parent_id_tag": "FLEET"}, {"id_tag": "CARD-2", "parent_id_tag": "FLEET"},
              {"id_tag": "OTHER"}):
        assert (await http(gw, "POST", "/api/id-tags", b))[0] == 201
    async with Connected(gw.port, "CP-1", cls=Reserving) as cp:
        await boot(cp)
        s, r = await http(gw, "POST", "/api/stations/CP-1/reservations",
                          {"connector_id": 1, "id_tag": "CARD-1", "expiry_date": _in(30)})
        assert (s, r["id"]) == (201, 1), r
        n = 0

        async def start(tag, connector, rid=1):
            nonlocal n
            n += 1
            return (await cp.call(call.StartTransaction(connector_id=connector, id_tag=tag, meter_start=n,
                                                        reservation_id=rid,
                                                        timestamp="2026-01-01T10:00:%02dZ" % n))).transaction_id
        await start("OTHER", 1)         # another tag, no common parent
        await start("CARD-1", 2)        # its tag, another connector
        await start("CARD-1", 1, rid=77)    # a reservation the gateway never made
        s, rows = await http(gw, "GET", "/api/stations/CP-1/reservations")
        assert [(x["id"], x["transaction_id"]) for x in rows] == [(1, None)], rows
        tid = await start("CARD-2", 1)  # the same parent: it may
        s, rows = await http(gw, "GET", "/api/stations/CP-1/reservations")
        assert [(x["id"], x["transaction_id"], x["state"]) for x in rows] == [(1, tid, "used")], rows
        await start("CARD-1", 1)        # used: not linked again
        s, rows = await http(gw, "GET", "/api/stations/CP-1/reservations")
        assert rows[0]["transaction_id"] == tid, rows
        # a reservation id past what the store holds: 400, not a 500
        s, out = await http(gw, "POST", "/api/stations/CP-1/reservations/99999999999999999999/cancel")
        assert s == 400 and "between 1 and 2147483647" in out["error"], (s, out)
        # what the API sends a station in SendLocalList is held to the id-tag list's checks
        for entry, why in (({"id_tag": "X\u0001Y", "id_tag_info": {"status": "Accepted"}}, "printable"),
                           ({"id_tag": "CARD-9", "id_tag_info": {"status": "Accepted", "expiry_date": "garbage"}},
                            "ISO 8601")):
            s, out = await http(gw, "POST", "/api/stations/CP-1/send-local-list", {
                "list_version": 5, "update_type": "Differential", "local_authorization_list": [entry]})
            assert s == 400 and why in out["error"], (s, out)
    for why in ("not linked, it is for id tag CARD-1 (parent FLEET), not OTHER",
                "not linked, it is for connector 1, not 2",
                "not linked, the gateway did not make it for this station",
                "not linked, it is used by transaction %d" % tid):
        assert why in caplog.text, (why, caplog.text[-2000:])
