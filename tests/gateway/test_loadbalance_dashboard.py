"""The dashboard's load groups page and a station's charging profiles (issue 13), in headless
Chromium against the real gateway and charge points built on the ocpp package: what the page shows
(limit, allocation, what each station holds, the measured current), and what its forms change on
the gateway and on the stations."""
from ocpp.v16 import call

from support.chromium import DevTools, chromium, form_result, settled, submit_form
from support.gwhttp import http
from support.smartstation import SmartStation
from support.stations import Connected, boot, meter


_MEMBERS = ("Array.from(document.querySelectorAll('[data-group=site] tbody tr')).map(function (r) {"
            " return Array.from(r.cells).map(function (c) { return c.textContent; }); })")


async def test_loadbalance_dashboard__groups_page_and_station_profiles(gateway, tmp_path):
    chromium()
    gw = await gateway()
    async with Connected(gw.port, "CP-1", cls=SmartStation) as c1, Connected(gw.port, "CP-2", cls=SmartStation) as c2:
        assert (await boot(c1)).status == "Accepted" and (await boot(c2)).status == "Accepted"
        async with DevTools(tmp_path, "1280,900") as page:
            await settled(page, "http://127.0.0.1:%d/load-groups" % gw.port)
            assert await page.js("document.body.getAttribute('data-loaded')") == "loadgroups"
            assert await page.js("document.getElementById('lg-empty').hidden") is False
            got = await submit_form(page, "lg-form", "lg-result",
                                "document.getElementById('lg-name').value = 'site';"
                                "document.getElementById('lg-limit').value = '32';"
                                "document.getElementById('lg-members').value = 'CP-1, CP-2:1:5';")
            assert got == ["result ok", "Save site: done"], got
            s, g = await http(gw, "GET", "/api/load-groups/site")
            assert [(m["station"], m["connector"], m["priority"]) for m in g["members"]] == [
                ("CP-1", 1, 0), ("CP-2", 1, 5)], g
            # a wrong one says why
            got = await submit_form(page, "lg-form", "lg-result", "document.getElementById('lg-name').value = 'x';"
                                                              "document.getElementById('lg-members').value = 'CP-9';")
            assert got == ["result bad", "Save x failed (400): bad group: members[0].station CP-9 is not a "
                                         "registered station (GET /api/stations)"], got
            await gw.loadbalance.settled()
            t1 = (await c1.call(call.StartTransaction(connector_id=1, id_tag="T", meter_start=0,
                                                      timestamp="2026-06-01T10:00:00Z"))).transaction_id
            t2 = (await c2.call(call.StartTransaction(connector_id=1, id_tag="T", meter_start=0,
                                                      timestamp="2026-06-01T10:00:00Z"))).transaction_id
            await c1.call(call.MeterValues(connector_id=1, transaction_id=t1,
                                           meter_value=[meter("2026-06-01T10:01:00Z", current=15.2)]))
            await gw.loadbalance.settled()
            await page.js("refresh(); true")
            rows = await page.until("(function (r) { return r.length === 2 && r[0][5] === '16 A' && r; })(%s)"
                                    % _MEMBERS)
            assert rows == [["CP-1", "1", "0", "online", "#%d" % t1, "16 A", "16 A", "15.2 A"],
                            ["CP-2", "1", "5", "online", "#%d" % t2, "16 A", "16 A", ""]], rows
            meta = await page.js("document.querySelector('[data-group=site] .meta').textContent")
            assert meta == ("limit 32 A per phase \u00b7 3 phases \u00b7 allocated 32 A \u00b7 measured 15.2 A "
                            "\u00b7 offline share 16 A"), meta
            # the limit through the group's own field: 10 A is one car at 6 A or more; CP-2 (priority 5) keeps it
            await page.js("document.querySelector('[data-group=site] input').value = '10';"
                          "document.querySelector('[data-group=site] button[data-act=limit]').click(); true")
            assert await page.until(form_result("lg-result")) == ["result ok", "Limit of site: done"]
            await gw.loadbalance.settled()
            assert (c1.limit_now(1, t1), c2.limit_now(1, t2)) == (0.0, 10.0), (c1.set_calls, c2.set_calls)
            await page.js("refresh(); true")
            assert await page.until("(function (r) { return r[0][5] === '0 A' && r[1][5] === '10 A'; })(%s)"
                                    % _MEMBERS)

            # a station's charging profiles: set one, ask the composite schedule, see it kept
            await settled(page, "http://127.0.0.1:%d/station/CP-1" % gw.port)
            got = await submit_form(page, "cp-form", "cp-result",
                                "document.getElementById('cp-purpose').value = 'ChargePointMaxProfile';"
                                "document.getElementById('cp-conn').value = '0';"
                                "document.getElementById('cp-limit').value = '7.5';"
                                "document.getElementById('cp-id').value = '42';")
            assert got == ["result ok", "Set ChargePointMaxProfile: CP-1 answered Accepted"], got
            assert c1.profiles[42][1]["charging_schedule"]["charging_schedule_period"][0]["limit"] == 7.5, c1.profiles
            c1.profiles.pop(1300001, None)      # the balancer's TxProfile (0 A): the composite is the max profile's
            got = await submit_form(page, "cs-form", "cp-result", "document.getElementById('cs-conn').value = '1';")
            assert got == ["result ok", "Composite schedule: CP-1 answered Accepted"], got
            rows = await page.until("(function (r) { return r.length && r; })(Array.from(document.querySelectorAll("
                                    "'#cs tbody tr')).map(function (r) { return Array.from(r.cells).slice(0, 4)"
                                    ".map(function (c) { return c.textContent; }); }))")
            # what the station composed: its TxDefaultProfile (10 A / 2 members: under 6 A, so 0) under the max
            want = c1.limit_now(1, None)
            assert want == 0.0, c1.profiles
            assert rows[0][:2] == ["1", "Accepted"] and rows[0][3] == "0: 0 A", rows
            s, kept = await http(gw, "GET", "/api/stations/CP-1/composite-schedules")
            assert [(k["connector_id"], k["status"], k["charging_schedule"]["chargingSchedulePeriod"]) for k in kept] \
                == [(1, "Accepted", [{"startPeriod": 0, "limit": 0.0}])], kept
