"""Over-the-air updates in the gateway tests (docs/ota.md): release bundles written exactly in the
contract's format, and `OtaBoard`, an ocpp-package charge point that follows the board's side of
the contract (a test double until the firmware's own update path runs against the gateway):

- UpdateFirmware: answered at once; then Downloading, GET manifest.json and manifest.sig from the
  location's folder with its Basic credentials, the HMAC checked with the fleet key, each file
  fetched and its size and SHA-256 checked, Downloaded, Installing, a "reboot" (the WebSocket
  closed, opened again, BootNotification with the new firmwareVersion), Installed once Accepted.
  A failed GET is DownloadFailed, a failed check InstallationFailed (nothing installed).
- GetDiagnostics: answers the fileName `<id>-<UTC yyyymmddThhmmssZ>.log`, Uploading, PUT of its
  log lines to location + fileName with its credentials, Uploaded (2xx) or UploadFailed.
"""
import asyncio
import base64
import hashlib
import hmac
import io
import itertools
import json
import tarfile
import time

import aiohttp
import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

KEY = bytes(range(32))      # the fleet release key of these tests (32 bytes)
_ORDER = itertools.count(1)     # one sequence for every board: which of two things happened first


def key_id(key=KEY):
    return hashlib.sha256(key).hexdigest()[:8]


def write_key(path, key=KEY):
    path.write_text(key.hex() + "\n")
    return path


def make_bundle(folder, version, files=None, key=KEY, manifest=None):
    """Write `<folder>/<version>/` (manifest.json, manifest.sig, the files) as docs/ota.md has it;
    its path. `files`: {name: bytes} (default main.py and app.py); `manifest`: entries changed
    after the files were listed (to make a bundle lie)."""
    files = files if files is not None else {"main.py": b"import app\napp.run()\n",
                                             "app.py": ("VERSION = %r\ndef run():\n    pass\n" % version).encode()}
    m = {"format": 1, "version": version, "board": None, "mpy": None, "key_id": key_id(key),
         "created": "2026-11-30T18:00:00Z",
         "files": [{"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in files.items()]}
    m.update(manifest or {})
    raw = json.dumps(m, indent=1).encode()
    d = folder / version
    d.mkdir(parents=True)
    (d / "manifest.json").write_bytes(raw)
    (d / "manifest.sig").write_text(hmac.new(key, raw, hashlib.sha256).hexdigest())
    for n, data in files.items():
        (d / n).write_bytes(data)
    return d


def tar_of(bundle, extra=()):
    """A tar archive of a bundle folder, members `<version>/<file>`; `extra`: (TarInfo, bytes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for p in sorted(bundle.iterdir()):
            t.add(str(p), arcname="%s/%s" % (bundle.name, p.name))
        for info, data in extra:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def basic(user, pw):
    return "Basic " + base64.b64encode(("%s:%s" % (user, pw)).encode()).decode()


class _Link(ChargePoint):
    """One WebSocket connection of an OtaBoard."""

    def __init__(self, board, ws):
        super().__init__(board.sid, ws)
        self.board = board

    @on(Action.update_firmware)
    def on_update_firmware(self, location, retrieve_date, **kw):
        self.board.received.append(("UpdateFirmware", location, retrieve_date))
        self.board.marks["UpdateFirmware"] = next(_ORDER)
        self.board.spawn(self.board.update(location))
        return call_result.UpdateFirmware()

    @on(Action.get_diagnostics)
    def on_get_diagnostics(self, location, **kw):
        name = "%s-%s.log" % (self.board.sid, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
        self.board.received.append(("GetDiagnostics", location, kw))
        self.board.spawn(self.board.upload(location, name))
        return call_result.GetDiagnostics(file_name=name)


class OtaBoard:
    """A station that updates itself over the air as docs/ota.md says. `fail`: None, "download"
    (every GET answered as if the server were gone: DownloadFailed), "install" (the new
    version does not come up: InstallationFailed, stays on the old one). `hold`: an Event the
    update waits for before installing (a test decides when a board reboots)."""

    def __init__(self, port, sid, password, version="0.1.0", key=KEY, fail=None, hold=None, ssl=None):
        self.port, self.sid, self.password, self.ssl = port, sid, password, ssl
        self.version, self.key, self.fail, self.hold = version, key, fail, hold
        self.received = []
        self.statuses = []      # (kind, status) sent, in order
        self.marks = {}         # what happened (UpdateFirmware received, a status sent) -> its place in _ORDER
        self.fetched = {}       # file name -> bytes, of the last update
        self.log = ["2026-11-30T18:00:00Z [boot] I: %s up" % sid, "2026-11-30T18:00:01Z [ocpp] I: connected"]
        self.link = None
        self.connected = asyncio.Event()
        self._pending_installed = False
        self._tasks = set()
        self._stop = False
        self._reboot = asyncio.Event()
        self._runner = None

    def spawn(self, coro):
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def start(self):
        self._runner = asyncio.get_running_loop().create_task(self._run())
        await asyncio.wait_for(self.connected.wait(), 20)
        return self

    async def stop(self):
        self._stop = True
        for t in list(self._tasks) + [self._runner]:
            if t is not None:
                t.cancel()
        if self.link is not None:
            await self.link._connection.close()

    async def _run(self):
        while not self._stop:
            try:
                ws = await websockets.connect("%s://127.0.0.1:%d/ocpp/%s" % ("wss" if self.ssl else "ws", self.port,
                                                                             self.sid),
                                              subprotocols=["ocpp1.6"], open_timeout=10, ssl=self.ssl,
                                              additional_headers=self._credentials())
            except (OSError, websockets.exceptions.WebSocketException, asyncio.TimeoutError):
                await asyncio.sleep(0.1)
                continue
            link = self.link = _Link(self, ws)
            serve = asyncio.get_running_loop().create_task(link.start())
            try:
                res = await link.call(call.BootNotification(charge_point_vendor="PicoCharge",
                                                            charge_point_model="PicoW",
                                                            firmware_version=self.version))
                if res.status == "Accepted":
                    if self._pending_installed:
                        await self.status("firmware", "Installed")
                        self._pending_installed = False
                    self.connected.set()
                self._reboot.clear()
                done, _ = await asyncio.wait([serve, asyncio.ensure_future(self._reboot.wait())],
                                             return_when=asyncio.FIRST_COMPLETED)
            except (websockets.exceptions.ConnectionClosed, asyncio.TimeoutError):
                pass
            finally:
                self.connected.clear()
                serve.cancel()
                await ws.close()
            await asyncio.sleep(0.05)

    def _credentials(self):
        """HTTP Basic with the station id and password; none with a client certificate alone."""
        return {"Authorization": basic(self.sid, self.password)} if self.password else {}

    async def status(self, kind, status):
        self.statuses.append((kind, status))
        self.marks[status] = next(_ORDER)
        if kind == "firmware":
            await self.link.call(call.FirmwareStatusNotification(status=status))
        else:
            await self.link.call(call.DiagnosticsStatusNotification(status=status))

    async def _get(self, session, url, limit):
        if self.fail == "download":
            raise aiohttp.ClientError("the server went away")
        async with session.get(url, headers=self._credentials(), ssl=self.ssl or True) as r:
            if r.status != 200:
                raise aiohttp.ClientError("GET %s: %d" % (url, r.status))
            data = b""
            while True:     # streamed, never more than its manifest size plus one byte
                chunk = await r.content.read(limit + 1 - len(data))
                if not chunk:
                    return data
                data += chunk
                if len(data) > limit:
                    raise ValueError("%s is longer than %d bytes" % (url, limit))

    async def update(self, location):
        """docs/ota.md's "Fetching a release", as the board does it."""
        await self.status("firmware", "Downloading")
        folder = location.rsplit("/", 1)[0] + "/"
        try:
            async with aiohttp.ClientSession() as s:
                raw = await self._get(s, location, 8192)
                sig = (await self._get(s, folder + "manifest.sig", 64)).decode()
                good = hmac.compare_digest(hmac.new(self.key, raw, hashlib.sha256).hexdigest(), sig)
                manifest = json.loads(raw)
                files = {}
                if good:
                    for f in manifest["files"]:
                        files[f["name"]] = await self._get(s, folder + f["name"], f["size"])
        except (aiohttp.ClientError, ValueError):
            await self.status("firmware", "DownloadFailed")
            return
        self.fetched = dict(files, **{"manifest.json": raw, "manifest.sig": sig.encode()})
        ok = good and all(len(files[f["name"]]) == f["size"] and
                          hashlib.sha256(files[f["name"]]).hexdigest() == f["sha256"] for f in manifest["files"])
        if not ok:
            await self.status("firmware", "InstallationFailed")
            return
        await self.status("firmware", "Downloaded")
        if self.hold is not None:
            await self.hold.wait()
        await self.status("firmware", "Installing")
        if self.fail == "install":
            await self.status("firmware", "InstallationFailed")    # rolled back: still the old version
            return
        self.version = manifest["version"]
        self._pending_installed = True
        self._reboot.set()          # the reboot: the link closes, the board connects again

    async def upload(self, location, name):
        """docs/ota.md's "Diagnostics", as the board does it."""
        await self.status("diagnostics", "Uploading")
        url = location if location.endswith("/") else location + "/"
        body = ("\n".join(self.log) + "\n").encode()
        try:
            async with aiohttp.ClientSession() as s:
                async with s.put(url + name, data=body, ssl=self.ssl or True, headers=dict(
                        self._credentials(), **{"Content-Type": "text/plain; charset=utf-8"})) as r:
                    ok = 200 <= r.status < 300
        except aiohttp.ClientError:
            ok = False
        await self.status("diagnostics", "Uploaded" if ok else "UploadFailed")
