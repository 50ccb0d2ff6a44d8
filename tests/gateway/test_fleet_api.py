"""The API's side of issue 16 through the real port: the paged and filtered station list with its
counts (GET /api/fleet), live updates as Server-Sent Events (GET /api/events), CSV exports, the
reading vocabulary (GET /api/fields), last_seen as the last frame (API and CLI), and error
wording for command bodies and a remote start with a tag the list refuses."""
import asyncio
import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
from hypothesis import given, settings, strategies as hs
import pytest
from ocpp.v16 import call

from support.gwhttp import TEST_TOKEN, http
from support.stations import Connected, boot, meter

from picocharge.firmware import fields
from picocharge.gateway import api, events, export
from picocharge.gateway.commands import COMMANDS
from picocharge.gateway.store import Store
from picocharge.gateway.validate import _Fail, result_payload, validator

AUTH = {"Authorization": "Bearer " + TEST_TOKEN}
ROOT = Path(__file__).resolve().parents[2]


async def _fleet(gw):
    """FLEET-00..FLEET-24 registered (offline); CP-CHG charging, CP-FLT faulted, CP-HOT at 55 degC, connected."""
    for i in range(25):
        s, out = await http(gw, "POST", "/api/stations", {"id": "FLEET-%02d" % i, "password": "fleet-password-0001"})
        assert s == 201, out
    conns = []
    for sid, status, err, temp in (("CP-CHG", "Charging", "NoError", 24.0), ("CP-FLT", "Faulted", "GroundFailure", 22.0),
                                   ("CP-HOT", "Available", "NoError", 55.0)):
        c = Connected(gw.port, sid)
        cp = await c.__aenter__()
        conns.append((c, cp))
        await boot(cp)
        await cp.call(call.StatusNotification(connector_id=1, error_code=err, status=status))
        await cp.call(call.MeterValues(connector_id=1, meter_value=[meter("2026-11-30T10:00:00Z", temp=temp)]))
    return conns


@pytest.mark.both_stores
async def test_fleet__pages_searches_filters_and_counts(gateway):
    gw = await gateway(auth="none")
    conns = await _fleet(gw)
    try:
        s, out = await http(gw, "GET", "/api/fleet?limit=10&page=2")
        assert s == 200, out
        assert (out["total"], out["page"], out["limit"], out["pages"]) == (28, 2, 10, 3), out
        assert [st["id"] for st in out["items"]] == ["FLEET-07"] + ["FLEET-%02d" % i for i in range(8, 17)], out
        c = out["counts"]
        assert (c["total"], c["connected"], c["offline"], c["faulted"], c["hot"], c["pending"]) == (28, 3, 25, 1, 1, 0), c
        assert {k: v for k, v in c["status"].items() if v} == {"Charging": 1, "Faulted": 1, "Available": 1,
                                                                "none": 25}, c
        for query, ids in (("q=fleet-1", ["FLEET-%02d" % i for i in range(10, 20)]),
                           ("connected=true", ["CP-CHG", "CP-FLT", "CP-HOT"]),
                           ("connected=false&q=FLEET-2", ["FLEET-%02d" % i for i in range(20, 25)]),
                           ("faulted=1", ["CP-FLT"]), ("hot=true", ["CP-HOT"]), ("status=Charging", ["CP-CHG"]),
                           ("status=none&limit=2", ["FLEET-00", "FLEET-01"]), ("q=nothing", [])):
            s, out = await http(gw, "GET", "/api/fleet?" + query)
            assert s == 200 and [st["id"] for st in out["items"]] == ids, (query, out)
        # the last reading comes along (the card's values), status and connection too
        s, out = await http(gw, "GET", "/api/fleet?hot=1")
        st = out["items"][0]
        assert (st["connected"], st["status"], st["last_reading"]["temp_c"]) == (True, "Available", 55.0), st
        # wrong parameters say which and what is allowed
        for query, msg in (("limit=0", "limit must be an integer 1..500, not 0"),
                           ("page=x", "page must be an integer 1..1000000, not 'x'"),
                           ("status=Sleeping", "status must be one of Available, Preparing, Charging, SuspendedEV, "
                                               "SuspendedEVSE, Finishing, Reserved, Unavailable, Faulted or none, "
                                               "not 'Sleeping'"),
                           ("connected=maybe", "connected must be true or false (1/0), not 'maybe'"),
                           ("colour=red", "unknown parameter colour: use q, page, limit, status, connected, faulted, "
                                          "hot, state")):
            s, out = await http(gw, "GET", "/api/fleet?" + query)
            assert (s, out) == (400, {"error": msg}), (query, s, out)
    finally:
        for c, _cp in conns:
            await c.__aexit__()


async def _events(session, resp, n=1, timeout=20):
    """The next `n` SSE events of a stream: [(event name, data dict)]; comment lines as ("#", text)."""
    out, name, data = [], None, []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            line = (await resp.content.readline()).decode()
            assert line, "the stream ended"
            line = line.rstrip("\n")
            if line.startswith(":"):
                out.append(("#", line[1:].strip()))
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and name:
                out.append((name, json.loads("\n".join(data))))
                name, data = None, []
    return out


async def test_events__push_changed_stations_and_counts_bounded_and_authorised(gateway, monkeypatch):
    monkeypatch.setattr(events, "HEARTBEAT_S", 0.5)
    monkeypatch.setattr(events, "TICK_S", 0.1)
    monkeypatch.setattr(events, "MAX_SUBSCRIBERS", 2)
    gw = await gateway(auth="none")
    s, out = await http(gw, "POST", "/api/stations", {"id": "CP-OTHER", "password": "other-password-0001"})
    assert s == 201, out
    base = "http://127.0.0.1:%d" % gw.port
    live = dict(AUTH, Accept="text/event-stream")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=90)) as session:
        # no credentials: 401 like every API call
        async with session.get(base + "/api/events", headers={"Accept": "text/event-stream"}) as r:
            assert r.status == 401, await r.text()
        # without Accept: text/event-stream, the hello event alone (a snapshot), then the end
        async with session.get(base + "/api/events", headers=AUTH) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream", r.headers
            text = await r.text()
            assert text.startswith("event: hello\ndata: {\"counts\":{\"total\":1,\"connected\":0"), text
        async with session.get(base + "/api/events", headers=live) as everyone, \
                session.get(base + "/api/events?ids=", headers=live) as other:
            assert everyone.status == 200 and other.status == 200
            hello = await _events(session, everyone)
            assert hello[0][0] == "hello" and hello[0][1]["counts"]["total"] == 1, hello
            assert (await _events(session, other))[0][0] == "hello"
            # a third stream is over MAX_SUBSCRIBERS: 503, saying why and what to do
            async with session.get(base + "/api/events", headers=live) as third:
                assert third.status == 503 and third.headers["Retry-After"] == "30", third.status
                assert (await third.json()) == {"error": "2 live streams are open, the most this gateway serves: "
                                                         "close a dashboard tab, or try again later"}
            s, out = await http(gw, "GET", "/healthz")
            assert out["live_streams"] == {"open": 2, "dropped": 0, "refused": 1}, out
            # a station connects and reports: the stream that follows everyone gets it, counts included
            async with Connected(gw.port, "CP-NEW") as cp:
                await boot(cp)
                await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
                await cp.call(call.MeterValues(connector_id=1, meter_value=[
                    meter("2026-11-30T10:00:00Z", current=16.0, power=3680.0)]))
                seen = {}
                while not (seen.get("CP-NEW") or {}).get("last_reading", {}).get("power_w"):
                    for name, ev in await _events(session, everyone):
                        if name == "update":
                            for st in ev["stations"]:
                                seen[st["id"]] = st
                            if "counts" in ev:
                                counts = ev["counts"]
                st = seen["CP-NEW"]
                assert (st["connected"], st["status"], st["last_reading"]["current_a"]) == (True, "Charging", 16.0), st
                assert (counts["total"], counts["connected"], counts["status"]["Charging"]) == (2, 1, 1), counts
            # the stream that follows no station only got counts (and heartbeats), never CP-NEW; a
            # heartbeat comes once the counts stop changing (how many count updates come first
            # depends on timing: CI once saw three, so read up to the first heartbeat)
            got = []
            async with asyncio.timeout(20):
                while ("#", "heartbeat") not in got:
                    got += await _events(session, other)
            for name, ev in got:
                assert name == "#" or ev["stations"] == [], got
    # the streams closed: the hub forgot them
    for _ in range(100):
        if not gw.front.app[events.HUB].subscribers:
            break
        await asyncio.sleep(0.05)
    assert not gw.front.app[events.HUB].subscribers


async def test_events__a_stream_ends_when_its_session_is_signed_out(gateway, monkeypatch):
    monkeypatch.setattr(events, "HEARTBEAT_S", 0.3)
    gw = await gateway(auth="none")
    base = "http://127.0.0.1:%d" % gw.port
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        async with session.post(base + "/api/session", json={"token": TEST_TOKEN}) as r:
            assert r.status == 200, await r.text()
            csrf = (await r.json())["csrf"]
        async with session.get(base + "/api/events", headers={"Accept": "text/event-stream"}) as stream:
            assert stream.status == 200
            assert (await _events(session, stream, n=2)) == [
                ("hello", {"counts": (await http(gw, "GET", "/api/fleet"))[1]["counts"]}), ("#", "heartbeat")]
            async with session.delete(base + "/api/session", headers={"X-CSRF-Token": csrf}) as r:
                assert r.status == 200
            async with asyncio.timeout(10):     # the next heartbeat finds the session gone: the stream ends
                rest = await stream.content.read()
            assert not rest.replace(b": heartbeat", b"").strip(b"\n"), rest     # nothing but heartbeats, then the end


async def test_events__a_revoked_token_ends_its_stream_while_updates_keep_coming(gateway, monkeypatch):
    # found attacking the gateway: credentials were asked again only when the stream sat idle
    # for a heartbeat, so a station's frames every half second kept a revoked token's stream
    monkeypatch.setattr(events, "HEARTBEAT_S", 2.0)
    gw = await gateway(auth="none")
    tok, row = gw.tokens.create("read", "watcher")
    base = "http://127.0.0.1:%d" % gw.port
    async with Connected(gw.port, "CP-BUSY") as cp, aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=60)) as session:
        await boot(cp)

        async def busy():       # a reading every 0.3 s: the station changes at every pass of the hub
            for i in range(1000):
                await cp.call(call.MeterValues(connector_id=1, meter_value=[
                    meter("2026-11-30T10:%02d:%02dZ" % divmod(i, 60), current=1.0 + i)]))
                await asyncio.sleep(0.3)
        beats = asyncio.ensure_future(busy())
        try:
            async with session.get(base + "/api/events", headers={"Accept": "text/event-stream",
                                                                 "Authorization": "Bearer " + tok}) as stream:
                assert stream.status == 200
                got = await _events(session, stream, n=3)
                assert [name for name, _ in got] == ["hello", "update", "update"], got
                gw.tokens.revoke(row["id"])
                async with asyncio.timeout(3 * events.HEARTBEAT_S):    # ends at the next check
                    await stream.content.read()
        finally:
            beats.cancel()


async def test_events__one_token_cannot_take_every_stream(gateway, monkeypatch):
    # found attacking the gateway: one read token could open all MAX_SUBSCRIBERS streams and
    # leave the operators' dashboards with 503s
    monkeypatch.setattr(events, "MAX_PER_OWNER", 2)
    gw = await gateway(auth="none")
    greedy, greedy_row = gw.tokens.create("read", "greedy")
    other, _ = gw.tokens.create("read", "operator")
    base = "http://127.0.0.1:%d" % gw.port

    def live(tok):
        return {"Accept": "text/event-stream", "Authorization": "Bearer " + tok}

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session, \
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                  timeout=aiohttp.ClientTimeout(total=60)) as dash:
        first = await session.get(base + "/api/events", headers=live(greedy))
        second = await session.get(base + "/api/events", headers=live(greedy))
        assert (first.status, second.status) == (200, 200)
        async with session.get(base + "/api/events", headers=live(greedy)) as third:
            assert third.status == 429 and third.headers["Retry-After"] == "30", third.status
            assert (await third.json()) == {"error": "this token already has 2 live streams open, the most one token "
                                                     "may hold: close a dashboard tab, or use another token"}
        # a dashboard session opened with the same token counts with it
        async with dash.post(base + "/api/session", json={"token": greedy}) as r:
            assert r.status == 200, await r.text()
        async with dash.get(base + "/api/events", headers={"Accept": "text/event-stream"}) as r:
            assert r.status == 429, r.status
        # another token still gets its streams
        async with session.get(base + "/api/events", headers=live(other)) as mine:
            assert mine.status == 200 and (await _events(session, mine))[0][0] == "hello"
        s, out = await http(gw, "GET", "/healthz")
        assert out["live_streams"]["refused"] == 2, out
        async with session.get(base + "/metrics", headers={"Authorization": "Bearer " + other}) as r:
            prom = await r.text()
        assert "picocharge_live_streams 3.0" in prom and "picocharge_live_streams_refused_total 2.0" in prom, prom
        assert "picocharge_live_stream_events_dropped_total 0.0" in prom, prom
        # a stream of the greedy token ends: it may open one again
        first.close()
        hub = gw.front.app[events.HUB]
        for _ in range(100):
            if len(hub.subscribers) == 1:
                break
            await asyncio.sleep(0.05)
        async with session.get(base + "/api/events", headers=live(greedy)) as again:
            assert again.status == 200
        second.close()
    for _ in range(100):
        if not hub.subscribers:
            break
        await asyncio.sleep(0.05)
    assert not hub.subscribers and not hub.owners, (hub.subscribers, hub.owners)


def test_events__a_slow_reader_loses_the_oldest_events_counted():
    sub = events.Subscriber(None)
    for i in range(events.QUEUE_LEN + 5):
        sub.put({"n": i})
    assert sub.dropped == 5 and [e["n"] for e in sub.queue] == list(range(5, events.QUEUE_LEN + 5)), sub.dropped


async def test_events__too_many_ids_and_unknown_parameters_are_refused(gateway):
    gw = await gateway(auth="none")
    s, out = await http(gw, "GET", "/api/events?ids=" + ",".join("S%d" % i for i in range(201)))
    assert (s, out) == (400, {"error": "ids: 200 stations at most per stream (a page of the overview), not 201"})
    s, out = await http(gw, "GET", "/api/events?station=x")
    assert (s, out) == (400, {"error": "unknown parameter station: /api/events takes ids (a comma-separated list "
                                       "of station ids)"})


def _csv(text):
    return list(csv.reader(io.StringIO(text)))


@pytest.mark.both_stores
async def test_export__csv_of_readings_and_transactions_streamed_quoted_defused_and_bounded(gateway, monkeypatch):
    gw = await gateway(auth="none")
    async with Connected(gw.port, "CP-1") as cp:
        await boot(cp)
        await cp.call(call.MeterValues(connector_id=1, meter_value=[
            meter("2026-11-30T10:00:00Z", current=10.5, energy=100, temp=21.5),
            meter("2026-11-30T11:00:00Z", current=-0.5, energy=200),
            meter("2026-11-30T12:00:00Z", current=0.0, energy=300)]))
        t1 = await cp.call(call.StartTransaction(connector_id=1, id_tag="=HYPERLINK(1)", meter_start=100,
                                                 timestamp="2026-11-30T10:00:00Z"))
        await cp.call(call.StopTransaction(meter_stop=350, timestamp="2026-11-30T11:00:00Z",
                                           transaction_id=t1.transaction_id, reason="Local"))
        await cp.call(call.StartTransaction(connector_id=1, id_tag='A,"B"', meter_start=350,
                                            timestamp="2026-11-30T12:00:00Z"))
    s, h, body = await _get(gw, "/api/stations/CP-1/readings.csv?from=2026-11-30T10:30:00Z")
    assert s == 200 and h["Content-Type"] == "text/csv; charset=utf-8", (s, h)
    assert h["Content-Disposition"] == 'attachment; filename="CP-1-readings-from-2026-11-30.csv"', h
    assert h.get("Transfer-Encoding") == "chunked", h     # streamed, not built whole
    assert body.split("\r\n")[0] == "seq,station,ts,temp_c,humidity,current_a,voltage_v,power_w,energy_wh," \
                                    "chip_temp_c,status,source", body
    # -0.5 is a number and stays one; only text cells are defused
    assert _csv(body)[1:] == [["2", "CP-1", "2026-11-30T11:00:00Z", "", "", "-0.5", "", "", "200.0", "", "", "ocpp"],
                              ["3", "CP-1", "2026-11-30T12:00:00Z", "", "", "0.0", "", "", "300.0", "", "", "ocpp"]], body
    s, h, body = await _get(gw, "/api/transactions.csv?to=2026-12-01T00:00:00Z")
    assert s == 200, body
    assert body == ("id,station,connector,id_tag,start_ts,stop_ts,meter_start_wh,meter_stop_wh,energy_wh,reason\r\n"
                    "1,CP-1,1,'=HYPERLINK(1),2026-11-30T10:00:00Z,2026-11-30T11:00:00Z,100,350,250,Local\r\n"
                    '2,CP-1,1,"A,""B""",2026-11-30T12:00:00Z,,350,,,\r\n'), body
    s, h, body = await _get(gw, "/api/readings.csv")
    assert s == 200 and len(_csv(body)) == 4, body
    # more rows than an export may hold: refused before anything is sent, with the count
    monkeypatch.setattr(export, "MAX_ROWS", 2)
    s, out = await http(gw, "GET", "/api/stations/CP-1/readings.csv")
    assert (s, out) == (400, {"error": "this export holds 3 readings, more than the 2 an export may hold: give a "
                                       "shorter period with from= and to="}), out
    for query, msg in (("from=yesterday", "from 'yesterday' is not ISO 8601 (e.g. 2026-01-31T12:00:00Z)"),
                       ("from=2026-12-01T00:00:00Z&to=2026-11-01T00:00:00Z",
                        "from 2026-12-01T00:00:00Z is not before to 2026-11-01T00:00:00Z"),
                       ("since=2026-01-01", "unknown parameter since: an export takes from= and to= (ISO 8601)"),
                       ("from=2026-01-01&from=2026-06-01", "from is given 2 times: give it once")):
        s, out = await http(gw, "GET", "/api/transactions.csv?" + query)
        assert (s, out) == (400, {"error": msg}), (query, out)
    s, out = await http(gw, "GET", "/api/stations/NOPE/readings.csv")
    assert (s, out) == (404, {"error": "unknown station 'NOPE'"}), out


@pytest.mark.both_stores
async def test_export__rows_deleted_while_it_runs_are_still_all_in_it(gateway, monkeypatch):
    # an export counts its rows, then reads them in chunks: a station removed (or retention)
    # in between once ended the file early, silently, below the X-Rows it announced
    gw = await gateway(auth="none")
    async with Connected(gw.port, "CP-1") as cp:
        await boot(cp)
        await cp.call(call.MeterValues(connector_id=1, meter_value=[
            meter("2026-11-30T10:%02d:00Z" % i, current=float(i)) for i in range(7)]))
    monkeypatch.setattr(export, "CHUNK", 2)
    count = Store.export_count

    def count_then_delete(db, *args):
        n = count(db, *args)
        w = gw.store.backend.connect()      # another writer, as the gateway's own would
        try:
            w.execute("DELETE FROM readings WHERE station = ?", ["CP-1"])
            w.commit()
        finally:
            w.close()
        return n
    monkeypatch.setattr(Store, "export_count", staticmethod(count_then_delete))
    s, h, body = await _get(gw, "/api/stations/CP-1/readings.csv")
    assert s == 200 and h["X-Rows"] == "7", (s, dict(h))
    assert [r[5] for r in _csv(body)[1:]] == ["%.1f" % i for i in range(7)], body
    monkeypatch.setattr(Store, "export_count", staticmethod(count))
    s, h, body = await _get(gw, "/api/stations/CP-1/readings.csv")     # the next one sees them gone
    assert h["X-Rows"] == "0" and len(_csv(body)) == 1, body


async def _get(gw, path):
    async with aiohttp.ClientSession() as session:
        async with session.get("http://127.0.0.1:%d%s" % (gw.port, path), headers=AUTH) as r:
            return r.status, r.headers, await r.text()


async def test_fields__the_vocabulary_comes_from_firmware_fields(gateway):
    gw = await gateway(auth="none")
    s, out = await http(gw, "GET", "/api/fields")
    assert s == 200, out
    assert [(f["key"], f["label"], f["unit"]) for f in out] == [
        (r[fields.KEY], r[fields.LABEL], r[fields.UNIT]) for r in fields.READINGS], out
    assert {f["key"]: f["symbol"] for f in out}["temp_c"] == "\u00b0C", out


async def test_commands__bodies_that_are_wrong_name_the_field_never_a_python_exception(gateway):
    gw = await gateway(auth="none")
    async with Connected(gw.port, "CP-1") as cp:
        await boot(cp)
        cases = {
            ("remote-start", "{}"): 'bad body for remote-start: id_tag is missing; e.g. {"id_tag": "TAG1"}',
            ("remote-start", '{"id_tag": 7}'): 'bad body for remote-start: id_tag: input should be a valid string; '
                                               'e.g. {"id_tag": "TAG1"}',
            ("remote-stop", "{}"): 'bad body for remote-stop: transaction_id is missing; e.g. {"transaction_id": 1}',
            ("remote-stop", '{"transaction_id": "x"}'):
                'bad body for remote-stop: transaction_id: input should be a valid integer, unable to parse string '
                'as an integer; e.g. {"transaction_id": 1}',
            ("reset", '{"type": "Warm"}'): "bad body for reset: 'Warm' is not one of ['Hard', 'Soft'] (type)",
            ("change-availability", "{}"): 'bad body for change-availability: type is missing; '
                                           'e.g. {"connector_id": 1, "type": "Operative"}',
            ("change-configuration", '{"key": "K"}'): 'bad body for change-configuration: value is missing; '
                                                      'e.g. {"key": "MeterValueSampleInterval", "value": "60"}',
            ("trigger-message", "{}"): 'bad body for trigger-message: requested_message is missing; '
                                       'e.g. {"requested_message": "StatusNotification", "connector_id": 1}',
            ("unlock-connector", '{"connector": 1}'):
                "bad body for unlock-connector: connector is not a field of unlock-connector (its fields: "
                'connector_id); e.g. {"connector_id": 1}',
            ("get-configuration", '{"key": "x"}'): 'bad body for get-configuration: key: input should be a valid '
                                                   'list; e.g. {"key": ["MeterValueSampleInterval"]}',
        }
        for (name, body), msg in cases.items():
            s, out = await http(gw, "POST", "/api/stations/CP-1/" + name, raw=body.encode())
            assert (s, out) == (400, {"error": msg}), (name, body, out)
            assert not re.search(r"\b(Key|Type|Value|Attribute)Error\b", out["error"]), out
        # the docs' number for change-configuration's value still goes (as OCPP's string)
        s, out = await http(gw, "POST", "/api/stations/CP-1/change-configuration",
                            {"key": "MeterValueSampleInterval", "value": 10})
        assert (s, out) == (200, {"status": "Accepted"}), out
        assert cp.received == [("ChangeConfiguration", "MeterValueSampleInterval", "10")], cp.received


async def test_remote_start__a_tag_the_list_refuses_is_said_so_with_what_to_do(gateway):
    gw = await gateway(auth="none")
    s, out = await http(gw, "POST", "/api/id-tags", {"id_tag": "DEMO-TAG"})
    assert s == 201, out
    s, out = await http(gw, "POST", "/api/id-tags", {"id_tag": "OLD-CARD", "status": "Blocked"})
    assert s == 201, out
    async with Connected(gw.port, "CP-1") as cp:
        await boot(cp)
        s, out = await http(gw, "POST", "/api/stations/CP-1/remote-start", {"id_tag": "RFID-0001"})
        assert (s, out) == (409, {
            "error": "id tag RFID-0001 is not in this gateway's id-tag list, so the station would be told "
                     "DeAuthorized when it starts and stop at once: add it with POST /api/id-tags "
                     '{"id_tag": "RFID-0001"} (role operate), or start with a tag of the list (GET /api/id-tags)',
            "id_tag_status": "Invalid"}), out
        s, out = await http(gw, "POST", "/api/stations/CP-1/remote-start", {"id_tag": "OLD-CARD"})
        assert s == 409 and out["error"].startswith("id tag OLD-CARD is Blocked in this gateway's id-tag list") and \
            '{"id_tag": "OLD-CARD", "status": "Accepted"}' in out["error"], out
        assert cp.received == [], "nothing was sent to the station: %s" % cp.received
        s, out = await http(gw, "POST", "/api/stations/CP-1/remote-start", {"id_tag": "DEMO-TAG"})
        assert (s, out) == (200, {"status": "Accepted"}), out
        assert cp.received == [("RemoteStartTransaction", "DEMO-TAG")], cp.received


def test_docs__the_remote_start_example_uses_a_tag_of_the_demo():
    from picocharge.cmd_demo import DEMO_TAG
    text = (ROOT / "docs" / "gateway.md").read_text()
    pairs = re.findall(r"/api/stations/DEMO-001/remote-start -d '\{\"id_tag\":\"([^\"]+)\"\}'\n(.*)", text)
    # the example answered by the station uses the demo's tag; the one that is not in the list shows why
    assert [t for t, answer in pairs if answer.startswith('{"status"')] == [DEMO_TAG], pairs
    assert [t for t, answer in pairs if "is not in this gateway's id-tag list" in answer] == ["RFID-0001"], pairs


@pytest.mark.both_stores
async def test_last_seen__is_the_last_frame_in_the_api_and_the_cli(gateway, gw_db):
    gw = await gateway(auth="none", db=gw_db)
    async with Connected(gw.port, "CP-1") as cp:
        await boot(cp)
        booted = gw.stations["CP-1"]["last_seen"]
        while gw.stations["CP-1"]["last_seen"] == booted:    # a heartbeat in a later second
            await asyncio.sleep(0.2)
            await cp.call(call.Heartbeat())
        beat = gw.stations["CP-1"]["last_seen"]
        s, out = await http(gw, "GET", "/api/stations/CP-1")
        assert out["last_seen"] == beat > booted, (out["last_seen"], beat, booted)
    for _ in range(100):        # the connection's end writes it to the database
        if "CP-1" not in gw.sessions:
            break
        await asyncio.sleep(0.05)
    await gw.store.run(lambda db: None)
    out = subprocess.run([sys.executable, "-m", "picocharge.cli", "gateway", "stations", "--db",
                          gw_db, "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert [(r["id"], r["last_seen"]) for r in json.loads(out.stdout)] == [("CP-1", beat)], out.stdout


@pytest.mark.both_stores
async def test_last_seen__written_while_connected_for_every_station_together(gateway, gw_db, monkeypatch):
    """A connected station's last_seen reaches the database every LAST_SEEN_WRITE_S (0 here):
    the gateway writes every station's due in one statement a second (Gateway.flush_seen), not a
    store call per station."""
    from picocharge.gateway import app, csms

    monkeypatch.setattr(csms, "LAST_SEEN_WRITE_S", 0.0)
    gw = await gateway(auth="none", db=gw_db)
    calls = []
    real = csms.write_last_seen_many
    monkeypatch.setattr(app, "write_last_seen_many", lambda db, items: (calls.append(sorted(items)), real(db, items)))

    def in_db(db):
        return dict(db.execute("SELECT id, last_seen FROM stations ORDER BY id").fetchall())
    async with Connected(gw.port, "CP-1") as a, Connected(gw.port, "CP-2") as b:
        await boot(a)
        await boot(b)
        await asyncio.sleep(1.1)            # a later second: a new last_seen
        await a.call(call.Heartbeat())
        await b.call(call.Heartbeat())
        want = {k: gw.stations[k]["last_seen"] for k in ("CP-1", "CP-2")}
        for _ in range(100):                # still connected: the flush of the next second writes them
            if await gw.store.run(in_db) == want:
                break
            await asyncio.sleep(0.05)
        assert await gw.store.run(in_db) == want
        assert sorted(want.items()) in calls, calls     # both in one statement
        assert not gw.seen_due


_JSON = hs.recursive(hs.none() | hs.booleans() | hs.integers(-2 ** 70, 2 ** 70) | hs.floats(allow_nan=False) |
                     hs.text(max_size=30), lambda c: hs.lists(c, max_size=3) | hs.dictionaries(hs.text(max_size=8), c,
                                                                                             max_size=3), max_leaves=8)
_KEYS = hs.sampled_from(["id_tag", "connector_id", "transaction_id", "type", "key", "value", "requested_message", "x"])


@settings(max_examples=300, deadline=None)
@given(name=hs.sampled_from(sorted(COMMANDS)), body=hs.dictionaries(_KEYS, _JSON, max_size=4))
def test_commands__any_body_is_refused_in_words_or_builds_its_call(name, body):
    """Whatever the body: either a 400 message that names fields (never a Python exception's
    name), or the OCPP call builds (what send_command does next) without an exception."""
    try:
        api.check_command_body(name, body)
    except ValueError as e:
        msg = str(e)
        assert msg.startswith("bad body for %s: " % name) and not re.search(r"\b[A-Z]\w*(Error|Exception)\b", msg), msg
        return
    cls, build = COMMANDS[name]
    payload = cls(**{k: v for k, v in build(body).items() if v is not None})
    try:        # then the OCPP schema check (commands.send_command): its words too
        validator(cls.__name__)(result_payload(payload))
    except _Fail as e:
        assert not re.search(r"\b[A-Z]\w*(Error|Exception)\b", e.message), e.message
