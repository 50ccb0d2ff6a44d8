# UpdateFirmware: fetch a release (docs/ota.md), check it, stage it on flash and switch to it.
# Imported by the UpdateFirmware handler and dropped when the update ends: none of this is in
# the heap the rest of the time.
#
#   wait until retrieveDate
#   GET manifest.json (<= 8192 bytes) and manifest.sig; HMAC-SHA256 under ota.key checked
#   before anything else is fetched; then the manifest's limits, .mpy version and board
#   GET every file into fw/new/ through one 1 KiB buffer, SHA-256 and size checked as it
#   streams (a file never sits in RAM); manifest.json written last (the slot's "complete")
#   a network failure: retry (`retries`, `retryInterval`), then DownloadFailed; a failed check
#   (signature, key, manifest, a file's SHA-256): InstallationFailed, nothing installed
#   wait for the transaction to end, then fwslot.install (one pointer rename) and reset
# FirmwareStatusNotification at each step goes through cp.triggers (the link has one CALL of
# ours outstanding at a time: the main loop sends them).
import asyncio
import gc
import hashlib
import json
import os
import sys
from binascii import hexlify, unhexlify

import fwslot
import httpstream
import log
import ocppj
from compat import const

L = log.get("ota")
FS = "FirmwareStatusNotification"
_BUF = const(1024)
_MAX_MANIFEST = const(8192)
_MAX_FILES = const(64)
_MAX_FILE = const(262144)
_MAX_TOTAL = const(524288)
_TIMEOUT_S = const(20)
_NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
_VERSION_CHARS = _NAME_CHARS + ".+-"


class Refused(Exception):
    """A check failed: InstallationFailed, with why (at most 50 characters)."""


class Hmac:
    """HMAC-SHA256 (RFC 2104) over hashlib.sha256, which is in the firmware (C), fed a piece at
    a time (the manifest streams to flash through it). Written here because micropython-lib's
    hmac is neither in the Pico W's firmware image nor on PyPI, where our other board
    libraries come from (tools/mplibs.py), and it is a dozen lines."""

    def __init__(self, key):
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        k = bytearray(64)
        k[:len(key)] = key
        for i in range(64):
            k[i] ^= 0x36
        self.inner = hashlib.sha256(k)
        for i in range(64):
            k[i] ^= 0x36 ^ 0x5C
        self.outer = hashlib.sha256(k)

    def update(self, data):
        self.inner.update(data)

    def digest(self):
        self.outer.update(self.inner.digest())
        return self.outer.digest()


def hmac_sha256(key, msg):
    h = Hmac(key)
    h.update(msg)
    return h.digest()


def _same(a, b):
    """a == b in a time that does not depend on where they differ."""
    if len(a) != len(b):
        return False
    r = 0
    for i in range(len(a)):
        r |= a[i] ^ b[i]
    return r == 0


def _chars_ok(s, allowed, lo, hi):
    if not isinstance(s, str) or not lo <= len(s) <= hi:
        return False
    for c in s:
        if c not in allowed:
            return False
    return True


def check_manifest(m, board, mpy):
    """The manifest's files [(name, size, sha256 hex)] once it holds to docs/ota.md, or Refused."""
    if not isinstance(m, dict) or m.get("format") != 1:
        raise Refused("manifest format is not 1")
    v = m.get("version")
    if not _chars_ok(v, _VERSION_CHARS, 1, 32):
        raise Refused("manifest version is not valid")
    if m.get("board") is not None and m["board"] != board:
        raise Refused("release is for board %s" % str(m["board"])[:20])
    if m.get("mpy") is not None and mpy and m["mpy"] != mpy:
        raise Refused(".mpy v%s, this board loads v%d" % (str(m["mpy"])[:4], mpy))
    files = m.get("files")
    if not isinstance(files, list) or not 0 < len(files) <= _MAX_FILES:
        raise Refused("manifest files: 1 to 64 expected")
    out = []
    seen = set()
    total = 0
    for e in files:
        if not isinstance(e, dict):
            raise Refused("manifest file entry is not an object")
        n, size, sha = e.get("name"), e.get("size"), e.get("sha256")
        stem, _, ext = n.rpartition(".") if isinstance(n, str) else ("", "", "")
        if ext not in ("py", "mpy") or not _chars_ok(stem, _NAME_CHARS, 1, 40) or n in seen:
            raise Refused("bad or repeated file name")
        if type(size) is not int or not 0 <= size <= _MAX_FILE:
            raise Refused("%s: bad size" % n)
        if not _chars_ok(sha, "0123456789abcdef", 64, 64):
            raise Refused("%s: bad sha256" % n)
        seen.add(n)
        total += size
        out.append((n, size, unhexlify(sha)))   # 32 bytes, not 64 characters, per file in RAM
    if total > _MAX_TOTAL:
        raise Refused("release is over 512 KiB")
    if "app.mpy" not in seen and "app.py" not in seen:
        raise Refused("release has no app module")
    return v, out, total


class Update:
    def __init__(self, cp, location, retrieve_ms, retries, interval_s):
        self.cp = cp
        self.base = location.rsplit("/", 1)[0] + "/"
        self.location = location
        self.retrieve_ms = retrieve_ms
        self.retries = retries
        self.interval_s = interval_s
        c = cp.cfg
        self.auth = httpstream.basic(cp.ctx.cfg["station_id"], c["password"]) if c["password"] else None
        # https: the server checked against ocpp.ca_cert; the station's own certificate (OCPP
        # security profile 3) presented, as on its wss:// link
        mine = (c["client_cert"], c["client_key"]) if c["client_cert"] else None
        self.tls = ("ocpp.ca_cert", c["ca_cert"], L, mine)
        self.version = location.rsplit("/", 2)[-2][-32:] if location.count("/") > 3 else "?"  # /fw/<version>/
        self.step = getattr(cp.board, "ota_step", None)   # the unix board can freeze here (tests)

    def note(self, status):
        self.cp.fw_status[FS] = status
        self.cp.triggers.append((FS, {"status": status}))
        L.info("firmware status: %s", status)

    async def fetch_small(self, name, limit):
        parts = []

        def sink(mv):
            parts.append(bytes(mv))

        status, _n = await self.conn.get_into(self.base + name, self.auth, limit, sink, self.buf)
        if status != 200:
            raise httpstream.HttpError("%s: HTTP %d" % (name, status))
        return b"".join(parts)

    async def manifest(self):
        """Fetch manifest.json to fw/new/manifest.tmp through the HMAC (never whole in RAM: on a
        fragmented heap a 4 KB block was not to be had), check manifest.sig, then read it."""
        key = self.cp.ctx.cfg["ota"]["key"]
        if not key:
            raise Refused("no ota.key on the board")
        key = unhexlify(key)
        tmp = fwslot.STAGE + "/manifest.tmp"
        hm = Hmac(key)
        f = open(tmp, "wb")

        def sink(mv):
            hm.update(mv)
            f.write(mv)

        try:
            status, _n = await self.conn.get_into(self.base + "manifest.json", self.auth, _MAX_MANIFEST, sink,
                                                  self.buf)
        finally:
            f.close()
        if status != 200:
            raise httpstream.HttpError("manifest.json: HTTP %d" % status)
        sig = (await self.fetch_small("manifest.sig", 80)).strip()
        if not _same(hexlify(hm.digest()), sig):
            try:
                with open(tmp) as f:
                    kid = json.load(f).get("key_id")
            except Exception:
                kid = None
            if isinstance(kid, str) and kid != hexlify(hashlib.sha256(key).digest()).decode()[:8]:
                raise Refused("signed with another key (%s)" % kid[:8])
            raise Refused("bad signature (manifest.sig)")
        with open(fwslot.STAGE + "/manifest.sig", "wb") as f:
            f.write(sig)
        with open(tmp) as f:
            m = json.load(f)
        mpy = getattr(sys.implementation, "_mpy", 0) & 0xFF
        self.version, files, total = check_manifest(m, self.cp.board.name, mpy)
        return files, total

    async def download(self):
        fwslot.rmtree(fwslot.STAGE)
        try:
            os.mkdir("fw")
        except OSError:
            pass
        os.mkdir(fwslot.STAGE)
        files, total = await self.manifest()
        L.info("release %s: %d files, %d bytes, signature good", self.version, len(files), total)
        # the slot the release goes to holds the version before the current one, which is
        # never booted again once the current one was Accepted: cleared now, the flash needs
        # room for one release besides the running one, not two (docs/firmware.md's layout)
        p = fwslot.pointer()
        fwslot.rmtree("fw/" + ("b" if p and p[0] == "a" else "a"))
        try:
            st = os.statvfs(".")
        except (AttributeError, OSError):
            st = None
        if st:   # every file takes whole blocks, and the folder and the manifest some more
            bs = st[0] or 4096
            need = 4
            for _n, size, _s in files:
                need += (size + bs - 1) // bs or 1
            if st[4] < need:
                raise Refused("flash full: %d KiB free, %d needed" % (st[4] * bs // 1024, need * bs // 1024))
        buf = self.buf
        for name, size, sha in files:
            gc.collect()   # between files: what a file left is freed before the next
            h = hashlib.sha256()
            f = open(fwslot.STAGE + "/" + name, "wb")

            def sink(mv, f=f, h=h):
                h.update(mv)
                f.write(mv)

            try:
                status, n = await self.conn.get_into(self.base + name, self.auth, size, sink, buf)
            finally:
                f.close()
            if status != 200:
                raise httpstream.HttpError("%s: HTTP %d" % (name, status))
            if n != size:
                raise httpstream.HttpError("%s: %d of %d bytes" % (name, n, size))
            if h.digest() != sha:
                raise Refused("%s corrupted (SHA-256)" % name[:30])
        os.rename(fwslot.STAGE + "/manifest.tmp", fwslot.STAGE + "/manifest.json")   # last: complete
        L.info("release %s downloaded and verified", self.version)

    async def run(self):
        cp = self.cp
        while cp.now() < self.retrieve_ms:
            await asyncio.sleep(1)
        while fwslot.in_trial():     # the running version is still on trial: settle that first
            await asyncio.sleep(2)
        self.note("Downloading")
        tries = 0
        self.buf = bytearray(_BUF)
        while True:
            gc.collect()
            self.conn = httpstream.Conn(self.tls, _TIMEOUT_S)
            try:
                await self.download()
                await self.conn.close()
                break
            except Refused as e:
                await self.conn.close()
                return self.failed(str(e))
            except Exception as e:   # network, HTTP, short body, timeout: try again
                await self.conn.close()
                tries += 1
                L.warn("download of %s failed (%d of %d tries): %r", self.location[-80:], tries,
                       self.retries + 1, e)
                fwslot.rmtree(fwslot.STAGE)
                if tries > self.retries:
                    self.note("DownloadFailed")
                    cp.fw_status[FS] = "Idle"
                    return
                await asyncio.sleep(self.interval_s)
        if self.step:
            self.step("downloaded")
        self.note("Downloaded")
        if cp.conn.tx:
            L.info("release %s waits for the transaction to end", self.version)
            while cp.conn.tx:
                await asyncio.sleep(1)
        self.note("Installing")
        for _ in range(50):      # Installing goes out before the reset (or 10 s have passed)
            if not cp.triggers or not cp.online():
                break
            await asyncio.sleep(0.2)
        fwslot.install(self.version, cp.ctx.cfg["ota"]["trial_boots"], self.step)
        if cp.online():
            cp.req_reset = "Hard"
        else:
            cp.board.reset(True)

    def failed(self, why):
        fwslot.rmtree(fwslot.STAGE)
        fwslot.report(self.cp, ("%s: %s" % (self.version, why))[:50])
        self.cp.fw_status[FS] = "Idle"


def start(cp, p):
    """UpdateFirmware accepted (its answer is empty): the update runs as a task of its own."""
    if not hasattr(cp, "fw_status"):   # what TriggerMessage answers (ocpp_calls): Idle until now
        cp.fw_status = {}
    if getattr(cp, "ota_task", None) is not None:
        L.warn("UpdateFirmware ignored: an update is in progress")
        return
    loc = p["location"]
    if not (loc.startswith("http://") or loc.startswith("https://")):
        L.warn("UpdateFirmware ignored: location is not http(s)://: %s", loc[:60])
        fwslot.report(cp, "location is not http(s)")
        sys.modules.pop("ota", None)
        return
    try:
        at = ocppj.parse_iso_ms(p["retrieveDate"])
    except ValueError:
        L.warn("UpdateFirmware: unreadable retrieveDate %r: now", p["retrieveDate"][:40])
        at = 0
    u = Update(cp, loc, at, max(0, min(p.get("retries", 2), 10)), max(1, min(p.get("retryInterval", 30), 3600)))

    async def job():
        try:
            await u.run()
        except Exception as e:
            L.error("update failed: %r", e)
            u.failed("internal error")
        finally:
            cp.ota_task = None
            sys.modules.pop("ota", None)

    cp.ota_task = asyncio.create_task(job())
