"""The dashboard in headless Chromium (Debian's chromium) against the real gateway, with a charge point built
on the ocpp package sending readings: rendered DOM, drawn charts, phone and desktop screenshots, and the
command buttons driven through the DevTools protocol."""
import asyncio
import base64
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

from ocpp.v16 import call

from support.gwhttp import TEST_TOKEN, http
from support.stations import Connected, boot, meter
from support.chromium import (CURRENT_VIOLET, HUMIDITY_BLUE, POWER_GREEN, TEMP_ORANGE, DevTools, canvas_pixels,
                               check_png, chromium, click_and_wait, dump_dom, pixels_near, screenshot)


# the page has what it will show: it got data twice (the overview: its page and the live stream's
# hello; a station page: two polls) and no card waits for its chart readings, or it shows an error.
# (Chromium's --virtual-time-budget cannot be used: an open event stream is a network fetch that
# never ends, which holds virtual time still.)


# series colours from app.js; orange and violet appear nowhere else on the page but in the legend marks


# --- reading the dumped DOM ---------------------------------------------------------------
class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent, self.children = tag, dict(attrs), parent, []

    def text(self):
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def classes(self):
        return (self.attrs.get("class") or "").split()

    def find_all(self, tag=None, cls=None, **attrs):
        out = []
        for c in self.children:
            if isinstance(c, str):
                continue
            if ((tag is None or c.tag == tag) and (cls is None or cls in c.classes()) and
                    all(c.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())):
                out.append(c)
            out += c.find_all(tag, cls, **attrs)
        return out

    def find(self, tag=None, cls=None, **attrs):
        hits = self.find_all(tag, cls, **attrs)
        assert len(hits) == 1, ("expected one %s.%s%s" % (tag, cls, attrs), len(hits))
        return hits[0]


class _Tree(HTMLParser):
    VOID = {"meta", "link", "input", "br", "img", "hr", "source", "wbr"}

    def __init__(self):
        super().__init__()
        self.root = self.cur = Node("#root", {}, None)

    def handle_starttag(self, tag, attrs):
        n = Node(tag, attrs, self.cur)
        self.cur.children.append(n)
        if tag not in self.VOID:
            self.cur = n

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def parse(html):
    t = _Tree()
    t.feed(html)
    return t.root


def readings_shown(box):
    return {kv.attrs["data-key"]: (kv.attrs["data-value"], kv.find("b").text())
            for kv in box.find_all("div", cls="kv")}


def charts_drawn(box):
    return {c.attrs["data-key"]: (int(c.attrs.get("data-points", -1)), c.attrs.get("data-last"))
            for c in box.find_all("canvas")}


# --- the station and its data -----------------------------------------------------------
def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


async def charging_station(gw):
    """CP-1: one finished and one running transaction, ten meter values, humidity over HTTP and OCPP."""
    s, out = await http(gw, "POST", "/api/stations", {"id": "CP-1", "thingspeak_channel": 1,
                                                     "thingspeak_key": "PROTOKEY"},
                        headers={"Authorization": "Bearer %s" % gw.settings.api_token})
    assert s == 201, out
    conn = Connected(gw.port, "CP-1")
    cp = await conn.__aenter__()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    await boot(cp)
    await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
    t1 = await cp.call(call.StartTransaction(connector_id=1, id_tag="TAG-1", meter_start=0,
                                             timestamp=iso(now - timedelta(seconds=300))))
    await cp.call(call.StopTransaction(meter_stop=120, timestamp=iso(now - timedelta(seconds=200)),
                                       transaction_id=t1.transaction_id, reason="Local"))
    t2 = await cp.call(call.StartTransaction(connector_id=1, id_tag="TAG-42", meter_start=120,
                                             timestamp=iso(now - timedelta(seconds=110))))
    await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
    await cp.call(call.MeterValues(connector_id=1, transaction_id=t2.transaction_id, meter_value=[
        meter(iso(now - timedelta(seconds=100 - 10 * i)), current=10 + 0.5 * i, voltage=230 + 0.1 * i,
              power=round((10 + 0.5 * i) * (230 + 0.1 * i), 2), energy=100 * (i + 1), temp=20 + 0.5 * i,
              chip=30 + i) for i in range(10)]))
    # humidity as the original prototype posts it (ThingSpeak field2 with CP-1's write key), then over OCPP
    for i, rh in enumerate((40, 42, 44, 46)):
        s, out = await http(gw, "GET", "/update?api_key=PROTOKEY&field2=%d&created_at=%s"
                            % (rh, iso(now - timedelta(seconds=80 - 20 * i))))
        assert s == 200, out
    dt = await cp.call(call.DataTransfer(vendor_id="PicoCharge", message_id="Humidity", data="47"))
    assert dt.status == "Accepted", dt
    return conn, cp, t2.transaction_id


# the last reading as the dashboard must show it: data-value, then the text (number and unit)
EXPECTED_NOW = {
    "temp_c": ("24.5", "24.5\u00b0C"),
    "humidity": ("47", "47%"),
    "current_a": ("14.5", "14.50A"),
    "voltage_v": ("230.9", "230.9V"),
    "power_w": ("3348.05", "3348W"),
    "energy_wh": ("1000", "1000Wh"),
    "chip_temp_c": ("39", "39.0\u00b0C"),
}
# points per chart and the newest value drawn
EXPECTED_CHARTS = {"temp_c": (10, "24.5"), "humidity": (5, "47"), "current_a": (10, "14.5"),
                   "power_w": (10, "3348.05")}


async def test_dashboard__overview_and_station_page_render_the_station_in_chromium(gateway, tmp_path):
    chromium()
    gw = await gateway(auth="none")
    conn, cp, running = await charging_station(gw)
    s, out = await http(gw, "POST", "/api/stations", {"id": "CP-IDLE", "password": "idle-station-pw-01"})
    assert s == 201, out
    base = "http://127.0.0.1:%d" % gw.port
    try:
        # --- overview, phone width
        dom = parse(await dump_dom(tmp_path, base + "/"))
        body = dom.find("body")
        assert body.attrs.get("data-loaded") == "overview", body.attrs
        assert int(body.attrs.get("data-polls", 0)) >= 2, ("the page did not poll again", body.attrs)
        cards = dom.find_all("article", cls="card")
        assert [c.attrs["data-station"] for c in cards] == ["CP-1", "CP-IDLE"], cards
        c1 = cards[0]
        assert c1.find("h2").text() == "CP-1", c1.find("h2").text()
        assert c1.find("span", cls="pill").text() == "Charging"
        assert "on" in c1.find("span", cls="dot").classes()
        assert c1.find("p", cls="card-sub").text().startswith("connected"), c1.find("p", cls="card-sub").text()
        shown = readings_shown(c1)
        assert {k: shown[k] for k in EXPECTED_NOW} == EXPECTED_NOW, shown
        assert charts_drawn(c1) == EXPECTED_CHARTS, charts_drawn(c1)
        idle = cards[1]
        assert "on" not in idle.find("span", cls="dot").classes()
        assert idle.find("p", cls="card-sub").text() == "offline", idle.find("p", cls="card-sub").text()
        assert charts_drawn(idle) == {k: (0, "") for k in EXPECTED_CHARTS}, charts_drawn(idle)
        summary = dom.find(id="summary").text()
        assert summary.startswith("2 stations \u00b7 1 connected"), summary

        # --- station page, phone width
        dom = parse(await dump_dom(tmp_path, base + "/station/CP-1", size="390,1800"))
        assert dom.find("body").attrs.get("data-loaded") == "station"
        assert dom.find(id="st-id").text() == "CP-1"
        assert dom.find(id="st-status").text() == "Charging"
        assert dom.find(id="st-link").text() == "connected"
        assert "PicoCharge PicoW" in dom.find(id="st-meta").text(), dom.find(id="st-meta").text()
        shown = readings_shown(dom.find(id="st-now"))
        assert {k: shown[k] for k in EXPECTED_NOW} == EXPECTED_NOW, shown
        assert charts_drawn(dom.find(id="station")) == EXPECTED_CHARTS
        assert {k: dom.find(id="v-" + k).text() for k in EXPECTED_CHARTS} == {
            "temp_c": "24.5 \u00b0C", "humidity": "47 %", "current_a": "14.50 A", "power_w": "3348 W"}
        rows = dom.find(id="tx").find("tbody").find_all("tr")
        got = [[td.text() for td in r.find_all("td")] for r in rows]
        assert [r.attrs["data-tx"] for r in rows] == [str(running), str(running - 1)], got
        assert [(g[0], g[2], g[4], g[5], g[6]) for g in got] == [
            (str(running), "TAG-42", "running", "", ""), (str(running - 1), "TAG-1", got[1][4], "120", "Local")]
        assert dom.find(id="btn-stop").text() == "Stop #%d" % running
        hist = [[td.text() for td in r.find_all("td")] for r in dom.find(id="hist").find("tbody").find_all("tr")]
        assert [h[2] for h in hist] == ["Charging", "Preparing"], hist

        # --- unknown station: a clear message, not an empty page
        dom = parse(await dump_dom(tmp_path, base + "/station/NOPE"))
        banner = dom.find(id="banner")
        assert "hidden" not in banner.attrs and banner.text() == "Unknown station NOPE: unknown station 'NOPE'", \
            banner.text()

        # --- screenshots: phone and desktop, overview and station page
        shots = {}
        for name, path, size in [("overview-phone.png", "/", "390,844"),
                                 ("station-phone.png", "/station/CP-1", "390,1800"),
                                 ("overview-desktop.png", "/", "1280,900"),
                                 ("station-desktop.png", "/station/CP-1", "1280,1300")]:
            shots[name] = await screenshot(tmp_path, base + path, name, size)
        for name, rgb in shots.items():
            # the temperature and current lines are drawn: their colours appear nowhere else but in the
            # 10x3 legend marks of the overview's cards (two cards here); a drawn line gives 60 pixels or more
            floor = 60 + (2 * 30 if name.startswith("overview") else 0)
            for colour in (TEMP_ORANGE, CURRENT_VIOLET):
                n = pixels_near(rgb, colour)
                assert n >= floor, (name, colour, n, floor)
    finally:
        await conn.__aexit__()


# --- the buttons, through the DevTools protocol ------------------------------------------------


async def test_dashboard__signs_in_with_a_token_then_buttons_send_commands_and_show_answers(gateway, tmp_path):
    chromium()
    gw = await gateway(auth="none", api_token="tok-3f9a1c")
    conn, cp, running = await charging_station(gw)
    try:
        async with DevTools(tmp_path) as page:
            await page.send("Page.navigate", url="http://127.0.0.1:%d/station/CP-1" % gw.port)
            # not signed in: nothing is shown, the page says why and opens the sign-in form
            assert await page.until("!!document.getElementById('token-panel') && "
                                    "document.getElementById('token-panel').hidden === false"), \
                await page.js("document.body.outerHTML.slice(0, 2000)")
            assert await page.until("document.getElementById('banner').textContent.indexOf('not signed in') === 0")
            assert await page.js("document.body.getAttribute('data-loaded')") is None

            # a wrong token says so, and the page stays signed out
            await page.js("document.getElementById('token').value = 'guess';"
                          "document.getElementById('token-panel').requestSubmit(); true")
            assert await page.until("document.getElementById('token-msg').textContent === 'That token was refused.'")
            assert await page.js("document.getElementById('btn-token').textContent") == "Sign in"

            # the right token opens a session: an HttpOnly cookie the page cannot read, the token not kept
            await page.js("document.getElementById('token').value = 'tok-3f9a1c';"
                          "document.getElementById('token-panel').requestSubmit(); true")
            assert await page.until("!!document.body && document.body.getAttribute('data-loaded') === 'station'"), \
                await page.js("document.body.outerHTML.slice(0, 2000)")
            assert await page.js("document.getElementById('btn-token').textContent") == "Sign out (admin)"
            assert await page.js("document.cookie") == "", "the session cookie is HttpOnly"
            assert await page.js("JSON.stringify(localStorage)") == "{}"
            assert await page.js("document.getElementById('token').value") == ""
            # every chart's canvas holds its series' colour
            for key, colour in (("temp_c", TEMP_ORANGE), ("humidity", HUMIDITY_BLUE),
                                ("current_a", CURRENT_VIOLET), ("power_w", POWER_GREEN)):
                rgb = canvas_pixels(await page.js("document.getElementById('c-%s').toDataURL()" % key))
                assert pixels_near(rgb, colour) >= 100, (key, pixels_near(rgb, colour))
            assert cp.received == [], cp.received
            await page.js("document.getElementById('idtag').value = 'TAG-7'; true")
            assert await click_and_wait(page, "btn-start") == ["result ok", "Remote start: CP-1 answered Accepted"]
            assert await click_and_wait(page, "btn-stop") == [
                "result ok", "Remote stop #%d: CP-1 answered Accepted" % running]
            assert await click_and_wait(page, "btn-soft") == ["result ok", "Soft reset: CP-1 answered Accepted"]
            assert await click_and_wait(page, "btn-hard") == ["result ok", "Hard reset: CP-1 answered Accepted"]
            assert page.dialogs == ["Hard reset CP-1? A running transaction is stopped."], page.dialogs
            assert cp.received == [("RemoteStartTransaction", "TAG-7"), ("RemoteStopTransaction", running),
                                   ("Reset", "Soft"), ("Reset", "Hard")], cp.received

            # an empty id tag is caught on the page, without a call
            cls, text = await click_and_wait(page, "btn-start", "document.getElementById('idtag').value = '';")
            assert (cls, text) == ("result bad", "Enter an id tag first (1 to 20 characters)."), text

            # the station goes away: the next command shows the gateway's 409
            await conn.__aexit__()
            for _ in range(100):
                if "CP-1" not in gw.sessions:
                    break
                await asyncio.sleep(0.05)
            assert await click_and_wait(page, "btn-soft") == [
                "result bad", "Soft reset failed (409): station CP-1 is not connected"]
            # and the page's next poll shows it offline
            assert await page.until("document.getElementById('st-link').textContent === 'offline'", timeout=30)
            shot = await page.send("Page.captureScreenshot", format="png")
            path = tmp_path / "station-phone-after-commands.png"
            path.write_bytes(base64.b64decode(shot["data"]))
            check_png(path, 390, 844)
            print("screenshot station-phone-after-commands.png (390x844): %s" % path)
    finally:
        await conn.__aexit__()


async def test_dashboard__overview_fetches_chart_readings_only_for_cards_on_screen(gateway, tmp_path):
    """A fleet page must not cost one readings query per station per poll: with 40 stations on
    a phone screen only the first cards fetch their charts; every card still shows its status."""
    chromium()
    gw = await gateway(auth="none")
    for i in range(40):
        s, out = await http(gw, "POST", "/api/stations", {"id": "FLEET-%02d" % i, "password": "fleet-password-01"})
        assert s == 201, out
    dom = parse(await dump_dom(tmp_path, "http://127.0.0.1:%d/" % gw.port))
    body = dom.find("body")
    assert body.attrs.get("data-loaded") == "overview" and int(body.attrs.get("data-polls", 0)) >= 2, body.attrs
    cards = dom.find_all("article", cls="card")
    assert len(cards) == 40 and all(c.find("p", cls="card-sub").text() == "offline" for c in cards), len(cards)
    fetched = int(body.attrs["data-fetched"])
    assert 1 <= fetched <= 6, ("readings fetched for %d of 40 cards on a 390x844 screen" % fetched)


ATTACK = """<!doctype html><html><body>
<form id="f" method="POST" enctype="text/plain" action="%(gw)s/api/id-tags" target="sink">
<input name='{"id_tag": "FORM-TAG", "x": "' value='"}'></form>
<iframe name="sink"></iframe>
<script>
fetch("%(gw)s/api/id-tags", {method: "POST", mode: "no-cors", credentials: "include",
      headers: {"Content-Type": "text/plain"}, body: JSON.stringify({id_tag: "FETCH-TAG"})})
  .then(function () { document.body.setAttribute("data-fetch", "sent"); },
        function () { document.body.setAttribute("data-fetch", "failed"); });
fetch("%(gw)s/api/stations/CP-1", {method: "DELETE", mode: "no-cors", credentials: "include"})
  .then(function () { document.body.setAttribute("data-delete", "sent"); },
        function () { document.body.setAttribute("data-delete", "failed"); });
document.getElementById("f").submit();
document.body.setAttribute("data-form", "sent");
</script></body></html>"""


async def test_dashboard__a_page_of_another_origin_cannot_write_with_the_signed_in_session(gateway, tmp_path):
    """A signed-in browser visits a page on another origin (another port of 127.0.0.1: the same
    site, so SameSite alone lets the cookie go along): its no-cors fetch POST and its text/plain
    form whose body is JSON reach the gateway and are refused, since neither can carry the CSRF
    header; a no-cors DELETE the browser does not send at all."""
    from aiohttp import web
    chromium()
    gw = await gateway(auth="none")
    s, out = await http(gw, "POST", "/api/stations", {"id": "CP-1", "password": "password-123-4567"})
    assert s == 201, out
    base = "http://127.0.0.1:%d" % gw.port
    app = web.Application()

    async def attack(request):
        return web.Response(text=ATTACK % {"gw": base}, content_type="text/html")

    app.router.add_get("/", attack)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    evil = "http://127.0.0.1:%d/" % site._server.sockets[0].getsockname()[1]
    try:
        async with DevTools(tmp_path) as page:
            await page.send("Page.navigate", url=base + "/#token=" + TEST_TOKEN)
            assert await page.until("!!document.body && document.body.getAttribute('data-polls') >= '1'")
            assert (await page.js("document.getElementById('btn-token').textContent")).startswith("Sign out")
            before = gw.metrics.http_requests
            await page.send("Page.navigate", url=evil)
            assert await page.until("!!document.body && document.body.getAttribute('data-fetch') && "
                                    "document.body.getAttribute('data-delete') && "
                                    "document.body.getAttribute('data-form')")
            # a no-cors DELETE is not even sent (not a simple method); the POST and the form are
            assert await page.js("document.body.getAttribute('data-delete')") == "failed"
            for _ in range(50):         # the two requests did reach the gateway (and were refused)
                if gw.metrics.http_requests - before >= 2:
                    break
                await asyncio.sleep(0.1)
            assert gw.metrics.http_requests - before >= 2, gw.metrics.http_requests - before
    finally:
        await runner.cleanup()
    assert gw.id_tags == {}, gw.id_tags
    assert "CP-1" in gw.stations
