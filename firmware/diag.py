# GetDiagnostics: upload the log ring's lines between startTime and stopTime by HTTP PUT
# (docs/ota.md). The window is copied line by line to logs/up.txt first (the ring goes on
# growing and may rotate meanwhile), then streamed from there with its exact length: no more
# than a line is ever in RAM. Imported by the handler, dropped when the upload ends.
import asyncio
import os
import sys

import httpstream
import log
import logring
import ocppj
from compat import const

L = log.get("diag")
DS = "DiagnosticsStatusNotification"
UP = "logs/up.txt"
_PIECE = const(512)
_TIMEOUT_S = const(20)


def file_name(station, ms):
    s = ocppj.iso_ms(ms)   # 2026-11-30T18:00:00.000Z
    return "%s-%s%s%sT%s%s%sZ.log" % (station, s[0:4], s[5:7], s[8:10], s[11:13], s[14:16], s[17:19])


def _second(ms):
    """'2026-11-30T18:00:00Z' of epoch ms (the ring's stamps), or None."""
    return None if ms is None else ocppj.iso_ms(ms)[:19] + "Z"


def select(files, start, stop, out):
    """Copy the lines of `files` (oldest first) stamped within [start, stop] (stamps as text,
    None: open) to the file `out`; the bytes written."""
    n = 0
    with open(out, "wb") as o:
        for p in files:
            try:
                f = open(p, "rb")
            except OSError:
                continue
            with f:
                for line in f:
                    if len(line) < 22 or line[19:21] != b"Z " or not line.endswith(b"\n"):
                        continue   # a line cut by a power loss
                    t = line[:20].decode()
                    if (start is None or t >= start) and (stop is None or t <= stop):
                        o.write(line)
                        n += len(line)
    return n


def _pieces(path):
    buf = bytearray(_PIECE)
    mv = memoryview(buf)
    with open(path, "rb") as f:
        while True:
            k = f.readinto(buf)
            if not k:
                return
            yield mv[:k]


class Upload:
    def __init__(self, cp, p):
        self.cp = cp
        loc = p["location"]
        self.url = loc if loc.endswith("/") else loc + "/"
        self.name = file_name(cp.ctx.cfg["station_id"], cp.now())
        self.start = self._at(p.get("startTime"))
        self.stop = self._at(p.get("stopTime"))
        self.retries = max(0, min(p.get("retries", 2), 10))
        self.interval_s = max(1, min(p.get("retryInterval", 30), 3600))
        c = cp.cfg
        self.auth = httpstream.basic(cp.ctx.cfg["station_id"], c["password"]) if c["password"] else None
        # https: the server checked against ocpp.ca_cert; the station's own certificate (OCPP
        # security profile 3) presented, as on its wss:// link
        mine = (c["client_cert"], c["client_key"]) if c["client_cert"] else None
        self.tls = ("ocpp.ca_cert", c["ca_cert"], L, mine)

    def _at(self, iso):
        if not iso:
            return None
        try:
            return _second(ocppj.parse_iso_ms(iso))
        except ValueError:
            L.warn("GetDiagnostics: unreadable time %r: the window stays open there", iso[:40])
            return None

    def note(self, status):
        self.cp.fw_status[DS] = status
        self.cp.triggers.append((DS, {"status": status}))

    async def run(self):
        self.note("Uploading")
        files = logring.files()
        n = select(files, self.start, self.stop, UP)
        L.info("uploading %d bytes of log as %s", n, self.name)
        tries = 0
        while True:
            try:
                status = await httpstream.put_from(self.url + self.name, self.auth, "text/plain; charset=utf-8", n,
                                              _pieces(UP), _TIMEOUT_S, self.tls)
                if status // 100 == 2:
                    self.note("Uploaded")
                    break
                raise httpstream.HttpError("HTTP %d" % status)
            except Exception as e:
                tries += 1
                L.warn("diagnostics upload failed (%d of %d tries): %r", tries, self.retries + 1, e)
                if tries > self.retries:
                    self.note("UploadFailed")
                    break
                await asyncio.sleep(self.interval_s)
        self.cp.fw_status[DS] = "Idle"
        try:
            os.remove(UP)
        except OSError:
            pass


def start(cp, p):
    """GetDiagnostics: the file name it answers with; the upload runs as a task of its own
    (None: no log ring, or an upload is in progress)."""
    if not hasattr(cp, "fw_status"):   # what TriggerMessage answers (ocpp_calls): Idle until now
        cp.fw_status = {}
    if getattr(cp, "diag_task", None) is not None:
        return None    # an upload in progress (diag and logring stay for it)
    loc = p["location"]
    if not logring.files() or not (loc.startswith("http://") or loc.startswith("https://")):
        L.warn("GetDiagnostics: %s", "location is not http(s)://" if logring.files() else "no log ring (ota.diag_kb 0)")
        sys.modules.pop("logring", None)
        return None
    u = Upload(cp, p)

    async def job():
        try:
            await u.run()
        except Exception as e:
            L.error("diagnostics upload failed: %r", e)
            u.note("UploadFailed")
            cp.fw_status[DS] = "Idle"
        finally:
            cp.diag_task = None
            sys.modules.pop("diag", None)
            sys.modules.pop("logring", None)

    cp.diag_task = asyncio.create_task(job())
    return u.name
