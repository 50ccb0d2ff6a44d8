"""Headless Chromium for the dashboard tests: one-shot runs (DOM dumps, screenshots) and a
page driven over the DevTools protocol; plus the pixel checks their charts use."""
import asyncio
import base64
import io
import json
import shutil
import time
import urllib.request

import matplotlib.image
import numpy
import pytest
import websockets

from .gwhttp import TEST_TOKEN


BROWSER_TIMEOUT = 180     # a loaded 2-core machine runs other suites meanwhile


def chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("headless Chromium is needed for the dashboard tests and neither `chromium` nor "
                "`chromium-browser` is on PATH: run `bash scripts/test.sh`, which installs it", pytrace=False)


def _flags(profile):
    return ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--user-data-dir=%s" % profile]


async def run_chromium(tmp_path, *args):
    """stdout of one headless Chromium run (its own profile, so parallel runs do not collide)."""
    profile = tmp_path / ("profile-%d" % time.monotonic_ns())
    proc = await asyncio.create_subprocess_exec(chromium(), *_flags(profile), *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), BROWSER_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("chromium %s did not finish in %d s" % (" ".join(args), BROWSER_TIMEOUT))
    assert proc.returncode == 0, (args, proc.returncode, err.decode()[-2000:])
    return out.decode()


def signed_in(url):
    """The page's address with the sign-in link's #token= (the conftest gateways' admin token)."""
    return url if "#" in url else url + "#token=" + TEST_TOKEN


SETTLED = ("(function () { var b = document.body, n = document.getElementById('banner');"
           "  if (!b || !n || b.hasAttribute('data-left')) return false;"      # not yet the new page
           "  return (+b.getAttribute('data-polls') >= 2 && b.getAttribute('data-pending') === '0') ||"
           "         (!n.hidden && n.textContent !== ''); })()")


async def settled(page, url):
    await page.js("document.body && document.body.setAttribute('data-left', '1'); true")
    await page.send("Page.navigate", url=signed_in(url))
    for _ in range(2):      # and still so a moment later (a card that just came on screen fetches)
        assert await page.until(SETTLED, timeout=BROWSER_TIMEOUT), \
            await page.js("document.body ? document.body.outerHTML.slice(0, 3000) : 'no body'")
        await asyncio.sleep(0.4)


async def dump_dom(tmp_path, url, size="390,844"):
    async with DevTools(tmp_path, size) as page:
        await settled(page, url)
        return await page.js("document.documentElement.outerHTML")


async def screenshot(tmp_path, url, name, size):
    png = tmp_path / name
    async with DevTools(tmp_path, size) as page:
        await settled(page, url)
        shot = await page.send("Page.captureScreenshot", format="png")
    png.write_bytes(base64.b64decode(shot["data"]))
    w, h = (int(x) for x in size.split(","))
    img = check_png(png, w, h)
    print("screenshot %s (%dx%d): %s" % (name, w, h, png))
    return img


def check_png(path, w, h):
    """The PNG decodes to the window size and is not blank (many colours, real contrast)."""
    assert path.is_file() and path.stat().st_size > 20000, (path, path.stat().st_size if path.exists() else None)
    img = matplotlib.image.imread(str(path))
    assert img.shape[:2] == (h, w), (path, img.shape)
    rgb = (img[:, :, :3] * 255).round().astype(numpy.int32)
    colours = len(numpy.unique(rgb.reshape(-1, 3) @ numpy.array([65536, 256, 1])))
    assert colours > 200 and rgb.std() > 10, (path, colours, rgb.std())
    return rgb


def pixels_near(rgb, hex_colour, tol=10):
    want = numpy.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int((numpy.abs(rgb - want).max(axis=2) <= tol).sum())


TEMP_ORANGE, HUMIDITY_BLUE, CURRENT_VIOLET, POWER_GREEN = "#fb923c", "#38bdf8", "#a78bfa", "#22c55e"


class DevTools:
    """A page of a headless Chromium, driven over the DevTools protocol (websockets); JS dialogs are accepted."""

    def __init__(self, tmp_path, size="390,844"):
        self.tmp_path = tmp_path
        self.size = [int(x) for x in size.split(",")]
        self.ids = iter(range(1, 1 << 30))
        self.pending = {}
        self.dialogs = []

    async def __aenter__(self):
        profile = self.tmp_path / ("profile-devtools-%d" % time.monotonic_ns())
        self.proc = await asyncio.create_subprocess_exec(
            chromium(), *_flags(profile), "--remote-debugging-port=0", "--window-size=%d,%d" % tuple(self.size),
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        for _ in range(BROWSER_TIMEOUT * 10):
            if port_file.is_file() and port_file.read_text().count("\n") >= 1:
                break
            assert self.proc.returncode is None, "chromium exited with %s" % self.proc.returncode
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        pages = await asyncio.get_running_loop().run_in_executor(None, lambda: json.loads(
            urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=30).read()))
        url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
        self.ws = await websockets.connect(url, max_size=1 << 26, open_timeout=30)
        self.reader = asyncio.create_task(self._read())
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        await self.send("Emulation.setDeviceMetricsOverride", width=self.size[0], height=self.size[1],
                        deviceScaleFactor=1, mobile=self.size[0] < 600)
        return self

    async def __aexit__(self, *exc):
        self.reader.cancel()
        await self.ws.close()
        self.proc.kill()
        await self.proc.wait()

    async def _read(self):
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg and msg["id"] in self.pending:
                self.pending.pop(msg["id"]).set_result(msg)
            elif msg.get("method") == "Page.javascriptDialogOpening":
                self.dialogs.append(msg["params"]["message"])
                asyncio.ensure_future(self.send("Page.handleJavaScriptDialog", accept=True))

    async def send(self, method, **params):
        i = next(self.ids)
        fut = self.pending[i] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        msg = await asyncio.wait_for(fut, BROWSER_TIMEOUT)
        assert "error" not in msg, (method, msg["error"])
        return msg["result"]

    async def js(self, expr):
        r = await self.send("Runtime.evaluate", expression=expr, awaitPromise=True, returnByValue=True)
        assert "exceptionDetails" not in r, (expr, r["exceptionDetails"])
        return r["result"].get("value")

    async def until(self, expr, timeout=60):
        """Poll a JS expression until it is truthy; its last value."""
        deadline = time.monotonic() + timeout
        while True:
            v = await self.js(expr)
            if v or time.monotonic() > deadline:
                return v
            await asyncio.sleep(0.1)


RESULT = "document.getElementById('st-result')"


async def click_and_wait(page, button, before=""):
    """Click a button of the station page; (the result line's class, its text) once the answer is in."""
    await page.js("document.getElementById('st-result').textContent = ''; %s"
                  "document.getElementById('%s').click(); true" % (before, button))
    await page.until("!%s.classList.contains('busy') && %s.textContent !== ''" % (RESULT, RESULT))
    return await page.js("[%s.className, %s.textContent]" % (RESULT, RESULT))


def form_result(box):
    """A condition for DevTools.until: the result line `box` of a form once its answer is in,
    as [its class, its text]."""
    el = "document.getElementById('%s')" % box
    return ("!%s.classList.contains('busy') && %s.textContent !== '' && [%s.className, %s.textContent]"
            % (el, el, el, el))


async def submit_form(page, form, box, before=""):
    """Submit a form of the page; (the result line's class, its text) once the answer is in."""
    await page.js("document.getElementById('%s').textContent = ''; %s"
                  "document.getElementById('%s').requestSubmit(); true" % (box, before, form))
    return await page.until(form_result(box))


def canvas_pixels(data_url):
    png = base64.b64decode(data_url.split(",", 1)[1])
    return (matplotlib.image.imread(io.BytesIO(png), format="png")[:, :, :3] * 255).round().astype(numpy.int32)
