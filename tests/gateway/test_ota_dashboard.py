"""The dashboard's firmware views in headless Chromium (issue 12): the station page's update control
and diagnostics list, the /firmware page's releases and a staged rollout with its progress, and the
firmware version on the overview's cards, against the real gateway and support.otaboard.OtaBoard stations
that fetch and install the release over HTTP."""
import asyncio
import json

from support.chromium import BROWSER_TIMEOUT, DevTools, chromium, settled
from support.gwhttp import http
from support.otaboard import OtaBoard, make_bundle, tar_of

PW = {"CP-1": "password-of-cp-1-xx", "CP-2": "password-of-cp-2-xx"}


def _el(i):
    return "document.getElementById('%s')" % i


async def test_ota_dashboard__update_diagnostics_and_a_rollout_from_the_pages(gateway, tmp_path):
    chromium()
    gw = await gateway(auth="password")
    for sid, pw in PW.items():
        await gw.register(sid, pw)
    bundle = make_bundle(tmp_path / "b", "0.2.0")
    s, out = await http(gw, "POST", "/api/releases", raw=tar_of(bundle), headers={
        "Authorization": "Bearer " + gw.settings.api_token, "Content-Type": "application/x-tar"})
    assert s == 201, out
    hold = asyncio.Event()      # CP-1 waits to install until the page showed the update under way
    boards = {sid: await OtaBoard(gw.port, sid, pw, hold=hold if sid == "CP-1" else None).start()
              for sid, pw in PW.items()}
    base = "http://127.0.0.1:%d" % gw.port
    try:
        async with DevTools(tmp_path, "1280,900") as page:
            # the station page: its version, the release to install, the update sent and followed to Installed
            await settled(page, base + "/station/CP-1")
            assert await page.js(_el("fw-now") + ".textContent") == "running 0.1.0"
            assert await page.js("Array.from(%s.options).map(o => o.value)" % _el("fw-version")) == ["0.2.0"]
            await page.js(_el("btn-update") + ".click(); true")
            assert await page.until(_el("fw-result") + ".classList.contains('ok')", BROWSER_TIMEOUT), \
                await page.js(_el("fw-result") + ".textContent")
            assert await page.js(_el("fw-result") + ".textContent") == (
                "Update to 0.2.0: CP-1 accepted; it fetches %s/fw/0.2.0/manifest.json" % base)
            assert page.dialogs == ["Update CP-1 to 0.2.0? It installs when no transaction runs."], page.dialogs
            # while it is under way, no second update from the page
            assert await page.until(_el("btn-update") + ".disabled && " + _el("btn-update") +
                                    ".title === 'an update is under way (Downloaded)'", BROWSER_TIMEOUT), \
                await page.js(_el("btn-update") + ".title")
            hold.set()
            assert await page.until(_el("fw-now") + ".textContent.indexOf('running 0.2.0 \u00b7 update Installed') "
                                                    "=== 0", BROWSER_TIMEOUT), \
                await page.js(_el("fw-now") + ".textContent")
            assert boards["CP-1"].version == "0.2.0"

            # diagnostics: requested, uploaded by the station, listed with a download link that gives the file
            await page.js(_el("btn-diag") + ".click(); true")
            assert await page.until(_el("fw-result") + ".textContent.indexOf('Diagnostics: CP-1 uploads CP-1-') === 0",
                                    BROWSER_TIMEOUT), await page.js(_el("fw-result") + ".textContent")
            assert await page.until("document.querySelectorAll('#diag-list li a').length === 1", BROWSER_TIMEOUT)
            name = await page.js("document.querySelector('#diag-list li a').textContent")
            got = await page.js("fetch(document.querySelector('#diag-list li a').href).then(r => r.text())")
            assert got == "\n".join(boards["CP-1"].log) + "\n", got
            assert name.startswith("CP-1-") and name.endswith("Z.log"), name

            # the firmware page: the release, a rollout to CP-2 started from the form, its progress to done
            await settled(page, base + "/firmware")
            assert await page.js("Array.from(document.querySelectorAll('#rel tbody tr')).map(r => r.dataset.release)"
                                 ) == ["0.2.0"]
            await page.js(_el("ro-stations") + ".value = 'CP-2'; " + _el("ro-wave") + ".value = '1'; "
                          + _el("ro-form") + ".requestSubmit(); true")
            assert await page.until(_el("ro-result") + ".classList.contains('ok')", BROWSER_TIMEOUT), \
                await page.js(_el("ro-result") + ".textContent")
            assert await page.js(_el("ro-result") + ".textContent") == \
                "Rollout #1 of 0.2.0 started: 1 stations in waves of 1"
            assert await page.until("!!document.querySelector('[data-rollout=\"1\"][data-state=\"done\"]')",
                                    BROWSER_TIMEOUT), await page.js(_el("rollouts") + ".textContent")
            assert await page.js("document.querySelector('[data-rollout=\"1\"] h3').textContent") == \
                "#1 \u00b7 0.2.0 \u00b7 done \u00b7 1 of 1 done \u00b7 waves of 1"
            assert await page.js("document.querySelector('[data-rollout=\"1\"] progress').value") == 1
            assert json.loads(await page.js(
                "JSON.stringify(Array.from(document.querySelectorAll('[data-rollout=\"1\"] tbody tr')).map("
                "r => Array.from(r.cells).map(c => c.textContent)))")) == [["CP-2", "done", "Installed, running 0.2.0"]]
            # a rollout that waits for an offline station, cancelled from its Cancel button
            await gw.register("CP-3", "password-of-cp-3-xx")
            s, ro = await http(gw, "POST", "/api/rollouts", {"version": "0.2.0", "stations": ["CP-3"]})
            assert s == 201, ro
            assert await page.until("!!document.querySelector('[data-rollout=\"2\"][data-state=\"running\"] "
                                    "button.danger')", BROWSER_TIMEOUT), await page.js(_el("rollouts") + ".textContent")
            await page.js("document.querySelector('[data-rollout=\"2\"] button.danger').click(); true")
            assert await page.until("!!document.querySelector('[data-rollout=\"2\"][data-state=\"cancelled\"]')",
                                    BROWSER_TIMEOUT), await page.js(_el("rollouts") + ".textContent")
            assert (await gw.rollouts.get(2))["stations"][0]["state"] == "cancelled"

            # the overview: each card names the version its station runs
            await settled(page, base + "/")
            assert await page.until("document.querySelectorAll('[data-firmware=\"0.2.0\"]').length === 2",
                                    BROWSER_TIMEOUT), await page.js(
                "Array.from(document.querySelectorAll('.card')).map(c => c.dataset.firmware).join()")
            assert "fw 0.2.0" in await page.js(
                "document.querySelector('[data-station=\"CP-1\"] .card-sub').textContent")
            # and follows an update live (the gateway's events), without the page being loaded again
            s, out = await http(gw, "POST", "/api/releases", raw=tar_of(make_bundle(tmp_path / "c", "0.3.0")),
                                headers={"Authorization": "Bearer " + gw.settings.api_token,
                                         "Content-Type": "application/x-tar"})
            assert s == 201, out
            await page.js("document.body.setAttribute('data-same-page', '1'); true")
            s, out = await http(gw, "POST", "/api/stations/CP-2/update", {"version": "0.3.0"})
            assert s == 200, out
            assert await page.until("document.querySelector('[data-station=\"CP-2\"]').dataset.firmware === "
                                    "'0.3.0'", BROWSER_TIMEOUT)
            assert await page.js("document.body.getAttribute('data-same-page')") == "1"
    finally:
        for b in boards.values():
            await b.stop()
