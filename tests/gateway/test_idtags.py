"""The id-tag list (issue 14): managed through the API (paged list, get, add/change, block, delete,
CSV import and export), kept in the store on both back ends, and what a charge point built on the
ocpp package is answered at Authorize, StartTransaction and StopTransaction (status, parentIdTag,
expiryDate; an expired date answers Expired)."""
import pytest
from ocpp.v16 import call

from support.gwhttp import http
from support.stations import Connected, boot

pytestmark = pytest.mark.both_stores   # a storage test: on SQLite and on PostgreSQL

FUTURE = "2099-12-31T23:59:59Z"
PAST = "2020-01-01T00:00:00Z"


async def _tags(gw, *bodies):
    for b in bodies:
        s, out = await http(gw, "POST", "/api/id-tags", b)
        assert s == 201, (b, s, out)


async def test_idtags__station_answers_come_from_the_table_with_parent_and_expiry(gateway):
    gw = await gateway()
    await _tags(gw, {"id_tag": "CARD-1", "parent_id_tag": "FLEET-A", "expiry_date": "2099-12-31T23:59:59+00:00"},
                {"id_tag": "CARD-2", "status": "Blocked", "parent_id_tag": "FLEET-A"},
                {"id_tag": "CARD-3", "expiry_date": PAST},
                {"id_tag": "CARD-4"})
    async with Connected(gw.port, "CP-1") as cp:
        assert (await boot(cp)).status == "Accepted"
        got = {}
        for tag in ("CARD-1", "CARD-2", "CARD-3", "CARD-4", "NOBODY"):
            got[tag] = (await cp.call(call.Authorize(id_tag=tag))).id_tag_info
        # (the ocpp package checked each answer against its schema, then gave it in snake_case)
        assert got == {
            "CARD-1": {"status": "Accepted", "parent_id_tag": "FLEET-A", "expiry_date": FUTURE},
            "CARD-2": {"status": "Blocked", "parent_id_tag": "FLEET-A"},
            "CARD-3": {"status": "Expired", "expiry_date": PAST},
            "CARD-4": {"status": "Accepted"},
            "NOBODY": {"status": "Invalid"},
        }, got
        st = await cp.call(call.StartTransaction(connector_id=1, id_tag="CARD-1", meter_start=0,
                                                 timestamp="2026-01-01T10:00:00Z"))
        assert st.id_tag_info == {"status": "Accepted", "parent_id_tag": "FLEET-A", "expiry_date": FUTURE}, st
        bad = await cp.call(call.StartTransaction(connector_id=1, id_tag="CARD-3", meter_start=5,
                                                  timestamp="2026-01-01T10:01:00Z"))
        assert bad.id_tag_info == {"status": "Expired", "expiry_date": PAST}, bad
        stop = await cp.call(call.StopTransaction(transaction_id=st.transaction_id, meter_stop=100, id_tag="CARD-2",
                                                  timestamp="2026-01-01T11:00:00Z"))
        assert stop.id_tag_info == {"status": "Blocked", "parent_id_tag": "FLEET-A"}, stop
    s, tx = await http(gw, "GET", "/api/stations/CP-1/transactions")
    assert [(t["id_tag"], t["reason"]) for t in tx] == [("CARD-3", "IdTagExpired"), ("CARD-1", "Local")], tx
    # a remote start with the expired tag is refused before the station is called, saying why
    async with Connected(gw.port, "CP-1") as cp:
        await boot(cp)
        s, out = await http(gw, "POST", "/api/stations/CP-1/remote-start", {"id_tag": "CARD-3"})
        assert (s, out) == (409, {"error": (
            "id tag CARD-3 expired at 2020-01-01T00:00:00Z, so the station would be told DeAuthorized when it "
            "starts and stop at once: give it a later expiry date with PUT /api/id-tags/CARD-3 {\"expiry_date\": "
            "...} (or null for none; role operate), or start with a tag of the list (GET /api/id-tags)"),
            "id_tag_status": "Expired"}), out
        assert cp.received == [], cp.received


async def test_idtags__tags_are_case_insensitive_as_ocpp_s_cistring(gateway):
    # found reviewing: "CARD-1" Accepted and "card-1" Blocked could both be listed, and a station
    # (which compares id tags case-insensitively, OCPP 1.6 CiString20) holds them as one
    gw = await gateway()
    await _tags(gw, {"id_tag": "04A1B2C3", "parent_id_tag": "FLEET-C"})
    s, out = await http(gw, "POST", "/api/id-tags", {"id_tag": "04a1b2c3", "status": "Blocked"})
    assert s == 400 and "differs only by case from '04A1B2C3'" in out["error"], (s, out)
    s, out = await http(gw, "POST", "/api/id-tags/import", raw=b"id_tag,status\nAB-1,Accepted\nab-1,Blocked\n",
                        headers={"Content-Type": "text/csv"})
    assert s == 400 and "differs only by case" in out["error"], (s, out)
    assert (await http(gw, "GET", "/api/id-tags/AB-1"))[0] == 404     # all or nothing
    async with Connected(gw.port, "CP-1") as cp:
        await boot(cp)
        r = await cp.call(call.Authorize(id_tag="04a1b2c3"))   # the reader's lower-case hex
        assert r.id_tag_info == {"status": "Accepted", "parent_id_tag": "FLEET-C"}, r
        r = await cp.call(call.Authorize(id_tag="04A1B2C4"))
        assert r.id_tag_info == {"status": "Invalid"}, r


async def test_idtags__an_empty_list_accepts_any_tag(gateway):
    gw = await gateway()
    async with Connected(gw.port, "CP-1") as cp:
        await boot(cp)
        got = (await cp.call(call.Authorize(id_tag="ANY-CARD"))).id_tag_info
        assert got == {"status": "Accepted"}, got
        await _tags(gw, {"id_tag": "ONLY-ONE"})
        got = (await cp.call(call.Authorize(id_tag="ANY-CARD"))).id_tag_info
        assert got == {"status": "Invalid"}, got


async def test_idtags__api_adds_pages_gets_blocks_and_deletes_and_the_list_survives_a_restart(gateway, gw_db):
    gw = await gateway()
    await _tags(gw, *({"id_tag": "T%03d" % i} for i in range(1, 26)))
    s, out = await http(gw, "POST", "/api/id-tags", {"id_tag": "T007", "parent_id_tag": "G1", "expiry_date": FUTURE})
    assert (s, out) == (201, {"id_tag": "T007", "status": "Accepted", "parent_id_tag": "G1",
                              "expiry_date": FUTURE}), out
    s, page = await http(gw, "GET", "/api/id-tags?page=2&limit=10")
    assert s == 200 and (page["total"], page["pages"], page["page"], page["version"]) == (25, 3, 2, 26), page
    assert [t["id_tag"] for t in page["items"]] == ["T%03d" % i for i in range(11, 21)], page
    s, page = await http(gw, "GET", "/api/id-tags?q=t00&limit=3")
    assert [t["id_tag"] for t in page["items"]] == ["T001", "T002", "T003"] and page["total"] == 9, page
    s, out = await http(gw, "PUT", "/api/id-tags/T007", {"status": "Blocked"})
    assert (s, out) == (200, {"id_tag": "T007", "status": "Blocked", "parent_id_tag": "G1",
                              "expiry_date": FUTURE}), out
    s, out = await http(gw, "PUT", "/api/id-tags/T007", {"expiry_date": None, "parent_id_tag": ""})
    assert (s, out) == (200, {"id_tag": "T007", "status": "Blocked"}), out
    s, out = await http(gw, "GET", "/api/id-tags?status=Blocked")
    assert [t["id_tag"] for t in out["items"]] == ["T007"], out
    s, out = await http(gw, "DELETE", "/api/id-tags/T025")
    assert (s, out) == (200, {"id_tag": "T025", "removed": True}), out
    s, out = await http(gw, "GET", "/api/id-tags/T025")
    assert (s, out) == (404, {"error": "unknown id tag 'T025'"}), out
    s, out = await http(gw, "DELETE", "/api/id-tags/T025")
    assert s == 404, out
    await gw.stop()
    gw2 = await gateway(db=gw_db)
    s, out = await http(gw2, "GET", "/api/id-tags/T007")
    assert (s, out) == (200, {"id_tag": "T007", "status": "Blocked"}), out
    s, page = await http(gw2, "GET", "/api/id-tags?limit=1000")
    assert page["total"] == 24 and page["version"] == 29, page


@pytest.mark.parametrize("store_kind", ["sqlite"])
async def test_idtags__every_field_is_checked_at_the_door(gateway):
    gw = await gateway()
    cases = [
        ({"id_tag": "OK-1", "status": "Invalid", "parent_id_tag": "P", "expiry_date": "2030-01-01T00:00:00Z"},
         201, None),
        ({"id_tag": "A" * 21}, 400, "id_tag must be a string of 1..20 characters"),
        ({"id_tag": 5}, 400, "id_tag must be a string of 1..20 characters"),
        ({"id_tag": "TAB\tBED"}, 400, "id_tag 'TAB\\tBED' must be printable text without leading or trailing "
                                      "spaces"),
        ({"id_tag": "T", "status": "Maybe"}, 400, "status must be Accepted, Blocked, Expired or Invalid"),
        ({"id_tag": "T", "parent_id_tag": "P" * 21}, 400, "parent_id_tag must be a string of 1..20 characters"),
        ({"id_tag": "T", "parent_id_tag": "T"}, 400, "parent_id_tag T is the tag itself: leave it out, or name "
                                                    "the group's tag"),
        ({"id_tag": "T", "expiry_date": "tomorrow"}, 400, "expiry_date 'tomorrow' is not an ISO 8601 date-time "
                                                          "(e.g. 2027-01-31T23:59:59Z)"),
        ({"id_tag": "T", "expiry_date": 5}, 400, "expiry_date must be an ISO 8601 date-time such as "
                                                 "2027-01-31T23:59:59Z"),
        ({"id_tag": "T", "colour": "red"}, 400, "colour is not a field of an id tag (id_tag, status, "
                                                "parent_id_tag, expiry_date)"),
    ]
    for body, status, error in cases:
        s, out = await http(gw, "POST", "/api/id-tags", body)
        assert s == status and (error is None or out == {"error": error}), (body, s, out)
    assert sorted(gw.id_tags) == ["OK-1"], gw.id_tags
    s, out = await http(gw, "PUT", "/api/id-tags/NOPE", {"status": "Blocked"})
    assert (s, out) == (404, {"error": "unknown id tag 'NOPE': add it with POST /api/id-tags"}), out
    s, out = await http(gw, "GET", "/api/id-tags?limit=0")
    assert (s, out) == (400, {"error": "limit must be an integer 1..1000"}), out
    # writes need a token of role operate
    read, _ = gw.tokens.create("read", "viewer")
    s, out = await http(gw, "POST", "/api/id-tags/import", {"csv": "id_tag,status\r\nX,Accepted\r\n"},
                        headers={"Authorization": "Bearer " + read})
    assert s == 403 and "needs operate" in out["error"], out
    s, out = await http(gw, "DELETE", "/api/id-tags/OK-1", headers={"Authorization": "Bearer " + read})
    assert s == 403 and "OK-1" in gw.id_tags, out


async def test_idtags__csv_import_names_each_wrong_line_and_imports_nothing_then_all(gateway):
    gw = await gateway()
    bad = ("id_tag,status,parent_id_tag,expiry_date\r\n"
           "C-1,Accepted,G,2030-01-01T00:00:00Z\r\n"
           "C-2,Sometimes,,\r\n"
           "\r\n"
           "C-3,Accepted,,not-a-date\r\n"
           "C-1,Blocked,,\r\n"
           "C-4,Accepted\r\n"
           "%s,Accepted,,\r\n" % ("X" * 21))
    s, out = await http(gw, "POST", "/api/id-tags/import", raw=bad.encode(), headers={"Content-Type": "text/csv"})
    assert (s, out) == (400, {"error": (
        "nothing imported: 5 wrong lines: line 3: status must be Accepted, Blocked, Expired or Invalid; "
        "line 5: expiry_date 'not-a-date' is not an ISO 8601 date-time (e.g. 2027-01-31T23:59:59Z); "
        "line 6: id tag C-1 again (first on line 2); line 7: 2 fields, the header has 4; "
        "line 8: id_tag must be a string of 1..20 characters")}), out
    assert gw.id_tags == {}, gw.id_tags
    s, out = await http(gw, "POST", "/api/id-tags/import", raw=b"tag;status\r\nA;B\r\n",
                        headers={"Content-Type": "text/csv"})
    assert (s, out) == (400, {"error": "line 1: the header must be id_tag,status[,parent_id_tag][,expiry_date], "
                                       "not tag;status"}), out
    s, out = await http(gw, "POST", "/api/id-tags/import", raw=b"\xff\xfe", headers={"Content-Type": "text/csv"})
    assert (s, out) == (400, {"error": "the CSV is not UTF-8 (byte 0)"}), out
    good = "id_tag,status,parent_id_tag,expiry_date\n" + "".join(
        "CARD-%04d,%s,%s,%s\n" % (i, "Blocked" if i % 7 == 0 else "Accepted", "FLEET" if i % 2 else "",
                                  "2030-06-01T00:00:00Z" if i % 5 == 0 else "") for i in range(1000))
    s, out = await http(gw, "POST", "/api/id-tags/import", raw=good.encode(), headers={"Content-Type": "text/csv"})
    assert (s, out) == (200, {"imported": 1000, "version": 1000}), out
    # the JSON form of the same import: changes one, adds one
    s, out = await http(gw, "POST", "/api/id-tags/import",
                        {"csv": "id_tag,status\nCARD-0001,Blocked\nCARD-NEW,Accepted\n"})
    assert (s, out) == (200, {"imported": 2, "version": 1002}), out
    s, text = await http(gw, "GET", "/api/id-tags.csv")
    lines = text.split("\r\n")
    assert lines[:4] == ["id_tag,status,parent_id_tag,expiry_date", "CARD-0000,Blocked,,2030-06-01T00:00:00Z",
                         "CARD-0001,Blocked,,", "CARD-0002,Accepted,,"], lines[:4]
    assert len(lines) == 1 + 1001 + 1 and lines[-1] == "", len(lines)
    # the export imports back as it is
    s, out = await http(gw, "POST", "/api/id-tags/import", raw=text.encode(), headers={"Content-Type": "text/csv"})
    assert (s, out) == (200, {"imported": 1001, "version": 2003}), out
    s, again = await http(gw, "GET", "/api/id-tags.csv")
    assert again == text
    # a tag a spreadsheet would run as a formula is exported defused, and imported back as it was
    s, out = await http(gw, "POST", "/api/id-tags/import", {"csv": "id_tag,status,parent_id_tag\n=1+2,Accepted,@G\n"})
    assert (s, out) == (200, {"imported": 1, "version": 2004}), out
    s, text = await http(gw, "GET", "/api/id-tags.csv")
    assert text.split("\r\n")[1] == "'=1+2,Accepted,'@G,", text[:200]
    s, out = await http(gw, "POST", "/api/id-tags/import", raw=text.encode(), headers={"Content-Type": "text/csv"})
    assert s == 200 and gw.idtags.view("=1+2") == {"id_tag": "=1+2", "status": "Accepted", "parent_id_tag": "@G"}, out


# --- the CSV parser, attacked (hypothesis) ------------------------------------------------
from hypothesis import example, given, settings, strategies as hs  # noqa: E402

from picocharge.gateway import idtags  # noqa: E402

_TAG = hs.text(hs.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")), min_size=1, max_size=20).filter(
    lambda t: t == t.strip() and t.isprintable())
_ENTRY = hs.tuples(_TAG, hs.sampled_from(idtags.STATUSES), hs.none() | _TAG,
                   hs.none() | hs.datetimes(timezones=hs.just(__import__("datetime").timezone.utc)).map(
                       lambda d: "%04d-%s" % (d.year, d.strftime("%m-%dT%H:%M:%SZ"))))


@settings(max_examples=200, deadline=None)
@given(hs.lists(_ENTRY, max_size=30, unique_by=lambda e: e[0]))
@example([("'=X", "Accepted", "''", None), ("-1", "Blocked", "'", None), ("'", "Invalid", "@", None)])
def test_idtags__csv_export_imports_back_as_it_was(entries):
    entries = [(t, s, p if p != t else None, x) for t, s, p, x in entries]
    assert idtags.parse_csv(idtags.to_csv(entries).encode()) == entries


@settings(max_examples=300, deadline=None)
@given(hs.binary(max_size=400) | hs.text(max_size=400).map(lambda t: ("id_tag,status\n" + t).encode()))
def test_idtags__any_bytes_are_imported_or_refused_in_words(raw):
    try:
        out = idtags.parse_csv(raw)
    except ValueError as e:
        assert str(e), raw
        return
    for tag, status, parent, expiry in out:
        assert idtags.check_tag(tag) and status in idtags.STATUSES, out
