"""The dashboard's id-tag page and a station's reservations and local list (issue 14), in headless
Chromium driven over the DevTools protocol against the real gateway and a charge point built on the
ocpp package: what the page shows, and what its forms and buttons change in the gateway."""
from ocpp.v16 import call

from support.chromium import DevTools, chromium, form_result, settled, submit_form
from support.gwhttp import http
from support.stations import Connected, boot


async def _rows(page, table, attr):
    return await page.js("Array.from(document.querySelectorAll('#%s tbody tr')).map(function (r) {"
                         " return [r.getAttribute('%s')].concat(Array.from(r.cells).slice(0, 4).map(function (c) {"
                         " return c.textContent; })); })" % (table, attr))


async def test_idtags_dashboard__lists_adds_blocks_imports_exports_and_deletes(gateway, tmp_path):
    chromium()
    gw = await gateway()
    for b in ({"id_tag": "CARD-1", "parent_id_tag": "FLEET"},
              {"id_tag": "CARD-2", "expiry_date": "2020-01-01T00:00:00Z"}):
        assert (await http(gw, "POST", "/api/id-tags", b))[0] == 201
    async with DevTools(tmp_path, "1280,900") as page:
        url = "http://127.0.0.1:%d/id-tags" % gw.port
        await settled(page, url)
        assert await page.js("document.body.getAttribute('data-loaded')") == "idtags"
        rows = await _rows(page, "it", "data-tag")
        assert [r[:4] for r in rows] == [["CARD-1", "CARD-1", "Accepted", "FLEET"],
                                         ["CARD-2", "CARD-2", "Expired", ""]], rows
        assert await page.js("document.getElementById('it-page').textContent") == "page 1 of 1 \u00b7 list version 2"
        # add one through the form
        got = await submit_form(page, "it-form", "it-result",
                            "document.getElementById('it-tag').value = 'CARD-3';"
                            "document.getElementById('it-status').value = 'Invalid';"
                            "document.getElementById('it-parent').value = 'FLEET';"
                            "document.getElementById('it-expiry').value = '2031-05-01T12:00:00Z';")
        assert got == ["result ok", "Save CARD-3: done"], got
        s, t = await http(gw, "GET", "/api/id-tags/CARD-3")
        assert t == {"id_tag": "CARD-3", "status": "Invalid", "parent_id_tag": "FLEET",
                     "expiry_date": "2031-05-01T12:00:00Z"}, t
        # a wrong one says why
        got = await submit_form(page, "it-form", "it-result", "document.getElementById('it-tag').value = 'CARD-4';"
                                                          "document.getElementById('it-expiry').value = 'soon';")
        assert got == ["result bad", "Save CARD-4 failed (400): expiry_date 'soon' is not an ISO 8601 date-time "
                                     "(e.g. 2027-01-31T23:59:59Z)"], got
        # block CARD-1 with its row's button
        await page.until("!!document.querySelector('#it tr[data-tag=\"CARD-3\"]')")
        await page.js("document.getElementById('it-result').textContent = '';"
                      "document.querySelector('#it tr[data-tag=\"CARD-1\"] button[data-act=block]').click(); true")
        assert await page.until(form_result("it-result")) == ["result ok", "Block CARD-1: done"]
        assert gw.id_tags["CARD-1"] == "Blocked", gw.id_tags
        assert await page.until("document.querySelector('#it tr[data-tag=\"CARD-1\"] button[data-act=block]')"
                                ".textContent === 'Unblock'")
        # CSV import: a wrong line and nothing is imported; then a right one
        got = await submit_form(page, "it-import", "it-result",
                            "document.getElementById('it-csv').value = "
                            "'id_tag,status\\nNEW-1,Accepted\\nNEW-2,Maybe\\n';")
        assert got == ["result bad", "Import failed (400): nothing imported: 1 wrong line: line 3: status must be "
                                     "Accepted, Blocked, Expired or Invalid"], got
        assert "NEW-1" not in gw.id_tags
        got = await submit_form(page, "it-import", "it-result",
                            "document.getElementById('it-csv').value = "
                            "'id_tag,status\\nNEW-1,Accepted\\nNEW-2,Blocked\\n';")
        assert got == ["result ok", "Import: done, 2 tags imported"], got
        assert (gw.id_tags.get("NEW-1"), gw.id_tags.get("NEW-2")) == ("Accepted", "Blocked"), gw.id_tags
        # the export link gives the list as the API does
        href = await page.js("document.getElementById('it-export').getAttribute('href')")
        text = await page.js("fetch(%r).then(function (r) { return r.text(); })" % href)
        s, api_text = await http(gw, "GET", "/api/id-tags.csv")
        assert text == api_text, (text, api_text)
        assert text.startswith("id_tag,status,parent_id_tag,expiry_date\r\nCARD-1,Blocked,FLEET,"), text
        # delete (the confirm dialog is accepted)
        await page.until("!!document.querySelector('#it tr[data-tag=\"NEW-2\"]')")
        await page.js("document.getElementById('it-result').textContent = '';"
                      "document.querySelector('#it tr[data-tag=\"NEW-2\"] button[data-act=delete]').click(); true")
        assert await page.until(form_result("it-result")) == ["result ok", "Delete NEW-2: done"]
        assert "NEW-2" not in gw.id_tags and page.dialogs == ["Delete id tag NEW-2?"], page.dialogs
        # the search narrows the table
        await page.js("var q = document.getElementById('it-q'); q.value = 'new';"
                      "q.dispatchEvent(new Event('input')); true")
        assert await page.until("document.querySelectorAll('#it tbody tr').length === 1")
        assert (await _rows(page, "it", "data-tag"))[0][0] == "NEW-1"


async def test_idtags_dashboard__station_page_reserves_cancels_and_shows_its_local_list(gateway, tmp_path):
    chromium()
    gw = await gateway()
    assert (await http(gw, "POST", "/api/id-tags", {"id_tag": "CARD-1", "parent_id_tag": "FLEET"}))[0] == 201
    async with Connected(gw.port, "CP-1") as cp:
        await boot(cp)
        async with DevTools(tmp_path, "1280,900") as page:
            await settled(page, "http://127.0.0.1:%d/station/CP-1" % gw.port)
            assert await page.js("document.getElementById('ll-now').textContent") == "Local list not synced"
            assert await page.js("document.getElementById('rs-empty').hidden") is False
            # switch the sync on: the station's list is sent (TestStation answers version 0, then Accepted)
            await page.js("document.getElementById('btn-ll-sync').click(); true")
            assert await page.until("document.getElementById('ll-now').textContent === "
                                    "'Local list kept in step with the id tags \u00b7 version 1 \u00b7 in sync'"), \
                await page.js("document.getElementById('ll-now').textContent")
            assert ("SendLocalList", 1, "Full") in cp.received, cp.received
            got = await submit_form(page, "rs-form", "rs-result", "document.getElementById('rs-tag').value = 'CARD-1';")
            assert got == ["result ok", "Reserve: CP-1 answered Accepted"], got
            assert ("ReserveNow", 1) in cp.received, cp.received
            assert await page.until("!!document.querySelector('#rs tr[data-resv=\"1\"][data-state=active]')")
            rows = await _rows(page, "rs", "data-resv")
            assert [r[:4] for r in rows] == [["1", "1", "1", "CARD-1 (FLEET)"]], rows
            got = await submit_form(page, "rs-form", "rs-result", "document.getElementById('rs-tag').value = 'NOBODY';")
            assert got[0] == "result bad" and got[1].startswith("Reserve failed (409): id tag NOBODY is not in this "
                                                               "gateway's id-tag list"), got
            await page.js("document.getElementById('rs-result').textContent = '';"
                          "document.querySelector('#rs tr[data-resv=\"1\"] button').click(); true")
            assert await page.until(form_result("rs-result")) == ["result ok",
                                                              "Cancel reservation #1: CP-1 answered Accepted"]
            assert await page.until("!!document.querySelector('#rs tr[data-resv=\"1\"][data-state=cancelled]')")
            assert ("CancelReservation", 1) in cp.received, cp.received
            # a transaction started against a reservation shows it, in both tables
            got = await submit_form(page, "rs-form", "rs-result", "document.getElementById('rs-tag').value = 'CARD-1';")
            assert got == ["result ok", "Reserve: CP-1 answered Accepted"], got
            st = await cp.call(call.StartTransaction(connector_id=1, id_tag="CARD-1", meter_start=0, reservation_id=2,
                                                     timestamp="2026-01-01T10:00:00Z"))
            assert await page.until("!!document.querySelector('#rs tr[data-resv=\"2\"][data-state=used]')")
            assert (await _rows(page, "rs", "data-resv"))[0][:4] == ["2", "2", "1", "CARD-1 (FLEET)"]
            assert await page.js("document.querySelector('#rs tr[data-resv=\"2\"]').cells[5].textContent") == \
                "#%d" % st.transaction_id
            assert await page.js("document.querySelector('#tx tr[data-tx=\"%d\"]').cells[2].textContent"
                                 % st.transaction_id) == "CARD-1 \u00b7 reservation #2"
