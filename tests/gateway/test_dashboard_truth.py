"""The dashboard must not show stale data as current (issue 16), in headless Chromium against the real
gateway with charge points built on the ocpp package: an offline station and old readings marked as
such, charts with gaps, a not-found page, a remote start with a tag the list refuses, and the
overview's pages, search, filters, counts and live updates (Server-Sent Events)."""
import asyncio
import json
from datetime import datetime, timedelta, timezone

from ocpp.v16 import call

from support.gwhttp import http
from support.stations import Connected, boot, meter
from support.chromium import DevTools, TEMP_ORANGE, canvas_pixels, chromium, click_and_wait, pixels_near, settled


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


NOW = "document.getElementById('st-now')"


async def kv(page, box, key):
    """(data-value, data-stale, title) of one reading of a card or the station page."""
    return await page.js("(function () { var k = %s.querySelector('.kv[data-key=%s]');"
                         "return [k.getAttribute('data-value'), k.getAttribute('data-stale'), k.title]; })()"
                         % (box, key))


async def test_dashboard__an_offline_station_and_old_readings_are_not_shown_as_current(gateway, tmp_path):
    chromium()
    gw = await gateway(auth="none")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    # CP-OFF charged, then went away in the middle of its transaction
    async with Connected(gw.port, "CP-OFF") as cp:
        await boot(cp)
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
        await cp.call(call.StartTransaction(connector_id=1, id_tag="TAG-1", meter_start=0,
                                            timestamp=iso(now - timedelta(seconds=120))))
        await cp.call(call.MeterValues(connector_id=1, meter_value=[
            meter(iso(now - timedelta(seconds=60)), current=16.0, power=3680.0, energy=500, temp=25.0)]))
    while "CP-OFF" in gw.sessions:
        await asyncio.sleep(0.05)
    # CP-IDLE is connected and Available: its current and power are the last charge's; CP-OLD's reading is an hour old
    idle = Connected(gw.port, "CP-IDLE")
    old = Connected(gw.port, "CP-OLD")
    cp_idle, cp_old = await idle.__aenter__(), await old.__aenter__()
    try:
        for cp, ts in ((cp_idle, now - timedelta(seconds=30)), (cp_old, now - timedelta(hours=1))):
            await boot(cp)
            await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available"))
            await cp.call(call.MeterValues(connector_id=1, meter_value=[
                meter(iso(ts), current=2.0, power=458.0, voltage=229.0, temp=21.0)]))
        base = "http://127.0.0.1:%d" % gw.port
        async with DevTools(tmp_path, "1280,1400") as page:
            await settled(page, base + "/station/CP-OFF")
            off = await page.js("document.getElementById('st-offline').hidden ? null : "
                                "document.getElementById('st-offline').textContent")
            assert off and off.startswith("CP-OFF is offline since ") and "last known state (last status Charging)" \
                in off, off
            assert await page.js("[document.getElementById('st-status').textContent, "
                                 "document.getElementById('st-status').className]") == ["last: Charging", "pill last"]
            assert await page.js("document.getElementById('st-link').textContent") == "offline"
            # the open transaction is not shown as running
            row = await page.js("Array.from(document.querySelectorAll('#tx tbody tr td')).map(function (t) "
                                "{ return t.textContent; })")
            assert row[4] == "open when last seen" and "running" not in row, row
            # every command button is disabled, with the reason
            for b in ("btn-start", "btn-stop", "btn-soft", "btn-hard"):
                dis, title = await page.js("[document.getElementById('%s').disabled, "
                                           "document.getElementById('%s').title]" % (b, b))
                assert dis and title.startswith("CP-OFF is offline since ") and \
                    title.endswith(": commands need it connected"), (b, dis, title)
            why = await page.js("document.getElementById('st-why').textContent")
            assert why.startswith("CP-OFF is offline since "), why
            value, stale, title = await kv(page, NOW, "current_a")
            assert (value, stale) == ("16", "offline") and title.startswith("last known value: CP-OFF is offline since"), \
                (value, stale, title)

            await settled(page, base + "/station/CP-IDLE")
            assert await page.js("document.getElementById('st-status').textContent") == "Available"
            for key in ("current_a", "power_w"):
                value, stale, title = await kv(page, NOW, key)
                assert stale == "not charging" and title == "from the last charge: CP-IDLE is Available now", \
                    (key, value, stale, title)
            assert (await kv(page, NOW, "temp_c"))[1] is None      # the enclosure's reading is current
            assert await page.js("document.getElementById('btn-soft').disabled") is False

            await settled(page, base + "/station/CP-OLD")
            for key in ("temp_c", "voltage_v", "ts"):
                value, stale, title = await kv(page, NOW, key)
                assert stale == "old" and title.startswith("old: read 1 h ago"), (key, value, stale, title)

            # the overview: the offline card says since when and does not show a green Charging
            await settled(page, base + "/")
            card = "document.querySelector('article[data-station=\"CP-OFF\"]')"
            sub, pill, cls = await page.js("[%s.querySelector('.card-sub').textContent, %s.querySelector('.pill')"
                                           ".textContent, %s.querySelector('.pill').className]" % (card, card, card))
            assert sub.startswith("offline since ") and pill == "last: Charging" and cls == "pill last", (sub, pill, cls)
            assert (await kv(page, card, "temp_c"))[1] == "offline"
            old_card = "document.querySelector('article[data-station=\"CP-OLD\"]')"
            assert (await kv(page, old_card, "temp_c"))[1] == "old"
    finally:
        await idle.__aexit__()
        await old.__aexit__()


async def test_dashboard__charts_leave_a_gap_where_no_readings_came(gateway, tmp_path):
    chromium()
    gw = await gateway(auth="none")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    times = [now - timedelta(seconds=3600 + 50 - 10 * i) for i in range(5)] + \
            [now - timedelta(seconds=50 - 10 * i) for i in range(5)]
    async with Connected(gw.port, "CP-GAP") as cp:
        await boot(cp)
        await cp.call(call.MeterValues(connector_id=1, meter_value=[meter(iso(t), temp=20 + i % 3)
                                                                    for i, t in enumerate(times)]))
        async with DevTools(tmp_path, "1280,1300") as page:
            await settled(page, "http://127.0.0.1:%d/station/CP-GAP" % gw.port)
            drawn = await page.js("[document.getElementById('c-temp_c').getAttribute('data-points'), "
                                  "document.getElementById('c-temp_c').getAttribute('data-gaps')]")
            assert drawn == ["10", "1"], drawn
            rgb = canvas_pixels(await page.js("document.getElementById('c-temp_c').toDataURL()"))
            h, w = rgb.shape[:2]
            # the two runs sit at the two ends of the hour; nothing of the line in the middle of it
            assert pixels_near(rgb[:, int(w * 0.3):int(w * 0.7)], TEMP_ORANGE, tol=40) == 0
            assert pixels_near(rgb[:, :int(w * 0.2)], TEMP_ORANGE) > 0 and pixels_near(rgb[:, int(w * 0.8):],
                                                                                         TEMP_ORANGE) > 0


async def test_dashboard__an_unknown_station_gets_a_not_found_page(gateway, tmp_path):
    chromium()
    gw = await gateway(auth="none")
    async with DevTools(tmp_path) as page:
        await settled(page, "http://127.0.0.1:%d/station/NOPE" % gw.port)
        assert await page.until("document.body.getAttribute('data-loaded') === 'notfound'")
        got = await page.js("[document.getElementById('st-notfound').hidden, document.getElementById('st-body').hidden,"
                            " document.getElementById('nf-id').textContent, document.getElementById('nf-add').textContent,"
                            " document.title]")
        assert got == [False, True, "NOPE", "picocharge gateway add-station NOPE", "No station NOPE \u00b7 PicoCharge"], got
        # no controls and no charts on screen
        visible = await page.js("Array.from(document.querySelectorAll('button, canvas')).filter(function (e) "
                                "{ return e.offsetParent !== null; }).map(function (e) { return e.id || e.tagName; })")
        assert visible == ["btn-token"], visible


async def test_dashboard__remote_start_with_a_tag_not_in_the_list_says_so_and_how_to_add_it(gateway, tmp_path):
    chromium()
    gw = await gateway(auth="none")
    s, out = await http(gw, "POST", "/api/id-tags", {"id_tag": "DEMO-TAG"})
    assert s == 201, out
    async with Connected(gw.port, "CP-1") as cp:
        await boot(cp)
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available"))
        async with DevTools(tmp_path) as page:
            await settled(page, "http://127.0.0.1:%d/station/CP-1" % gw.port)
            cls, text = await click_and_wait(page, "btn-start", "document.getElementById('idtag').value = 'RFID-0001';")
            assert cls == "result bad", (cls, text)
            assert text == ("Remote start failed (409): id tag RFID-0001 is not in this gateway's id-tag list, so the "
                            "station would be told DeAuthorized when it starts and stop at once: add it with POST "
                            '/api/id-tags {"id_tag": "RFID-0001"} (role operate), or start with a tag of the list '
                            "(GET /api/id-tags)"), text
            assert cp.received == [], cp.received
            assert await click_and_wait(page, "btn-start", "document.getElementById('idtag').value = 'DEMO-TAG';") == [
                "result ok", "Remote start: CP-1 answered Accepted"]


CARDS = "Array.from(document.querySelectorAll('article.card')).map(function (c) { return c.getAttribute('data-station'); })"


async def test_dashboard__overview_pages_searches_filters_counts_and_updates_live(gateway, tmp_path):
    chromium()
    gw = await gateway(auth="none")
    for i in range(120):
        await gw.register("FLEET-%03d" % i)
    live = Connected(gw.port, "FLEET-007")
    cp = await live.__aenter__()
    try:
        await boot(cp)
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
        async with DevTools(tmp_path, "1280,900") as page:
            await settled(page, "http://127.0.0.1:%d/" % gw.port)
            assert await page.js(CARDS) == ["FLEET-%03d" % i for i in range(50)]
            assert await page.js("document.getElementById('page-info').textContent") == \
                "1\u201350 of 120 \u00b7 page 1 of 3"
            counts = json.loads(await page.js("document.body.getAttribute('data-counts')"))
            assert (counts["total"], counts["connected"], counts["offline"], counts["status"]["Charging"]) == \
                (120, 1, 119, 1), counts
            chips = await page.js("Array.from(document.querySelectorAll('#counts .count')).map(function (c) "
                                  "{ return c.textContent; })")
            assert chips[:4] == ["1 connected", "119 offline", "0 faulted", "0 hot"] and "1 Charging" in chips, chips
            assert (await page.js("document.getElementById('summary').textContent")).startswith(
                "120 stations \u00b7 1 connected")
            # the next page
            await page.js("document.getElementById('next').click(); true")
            assert await page.until("document.querySelector('article.card') && "
                                    "document.querySelector('article.card').getAttribute('data-station') === 'FLEET-050'")
            assert await page.js(CARDS) == ["FLEET-%03d" % i for i in range(50, 100)]
            # search (back to page 1)
            await page.js("var q = document.getElementById('f-q'); q.value = '-11'; "
                          "q.dispatchEvent(new Event('input')); true")
            want = ["FLEET-%03d" % i for i in range(110, 120)]
            assert await page.until("JSON.stringify(%s) === %s" % (CARDS, json.dumps(json.dumps(want, separators=(",", ":"))))), \
                await page.js(CARDS)
            assert await page.js("document.getElementById('page-info').textContent") == \
                "1\u201310 of 10 matching \u00b7 page 1 of 1"
            # a filter: the connected chip
            await page.js("var q = document.getElementById('f-q'); q.value = ''; q.dispatchEvent(new Event('input'));"
                          "true")
            assert await page.until("document.getElementById('page-info').textContent.indexOf('of 120') > 0")
            await page.js("document.querySelector('#counts .count[data-count=connected]').click(); true")
            assert await page.until("JSON.stringify(%s) === '[\"FLEET-007\"]'" % CARDS), await page.js(CARDS)
            assert await page.js("document.getElementById('f-connected').value") == "true"

            # live: a new reading reaches the card through the event stream, without the page polling
            updates = int(await page.js("document.body.getAttribute('data-updates') || '0'"))
            fleet_calls = gw.metrics.http_requests
            await cp.call(call.MeterValues(connector_id=1, meter_value=[
                meter(iso(datetime.now(timezone.utc)), current=12.5, power=2875.0)]))
            card = "document.querySelector('article[data-station=\"FLEET-007\"]')"
            assert await page.until("%s.querySelector('.kv[data-key=current_a]').getAttribute('data-value') === '12.5'"
                                    % card, timeout=30)
            assert int(await page.js("document.body.getAttribute('data-updates')")) > updates
            assert await page.js("document.body.getAttribute('data-live')") == "open"
            # the only requests since: the card's new chart readings (no station list, no poll of every station)
            assert gw.metrics.http_requests - fleet_calls <= 2, gw.metrics.http_requests - fleet_calls
            # a station going offline changes the counts at the top, pushed too, and leaves the filtered page
            await live.__aexit__()
            assert await page.until("JSON.parse(document.body.getAttribute('data-counts')).connected === 0", timeout=30)
            assert await page.until("%s.length === 0 && !document.getElementById('no-match').hidden" % CARDS,
                                    timeout=30), await page.js(CARDS)
    finally:
        await live.__aexit__()


async def test_dashboard__overview_polls_when_the_gateway_refuses_its_event_stream(gateway, tmp_path, monkeypatch):
    from picocharge.gateway import events
    chromium()
    monkeypatch.setattr(events, "MAX_SUBSCRIBERS", 0)      # every stream is answered 503
    gw = await gateway(auth="none")
    await gw.register("CP-1")
    async with DevTools(tmp_path) as page:
        await page.send("Page.navigate", url="http://127.0.0.1:%d/#token=%s" % (gw.port, gw.settings.api_token))
        assert await page.until("!!document.body && document.body.getAttribute('data-live') === 'closed'")
        polls = int(await page.js("document.body.getAttribute('data-polls')"))
        # the page polls instead (every 4 s) and shows a change without the stream
        await gw.set_state("CP-1", "pending")
        assert await page.until("!document.querySelector('article[data-station=\"CP-1\"] .pending-box').hidden",
                                timeout=30)
        assert int(await page.js("document.body.getAttribute('data-polls')")) > polls
    assert gw.front.app[events.HUB].refused >= 1
