# Checks of the over-the-air update's pure parts, written once and run under both interpreters
# (support/dual.py): the HMAC against RFC 4231's vectors, the manifest's limits (valid and
# invalid), the slot pointer's life (install, trial, accept, rollback), the log ring (rotation,
# masking) and the diagnostics window. MicroPython-compatible code only. Each check runs in a
# scratch current directory (its flash).
try:
    from support import checkrun   # CPython: tests/ is on sys.path
except ImportError:
    import checkrun                # micropython runs this file from tests/support

import os
from binascii import hexlify

import diag
import fwslot
import log
import logring
import ota


def _read(p):
    with open(p) as f:
        return f.read()


def _write(p, text):
    with open(p, "w") as f:
        f.write(text)


def check_hmac_rfc4231_vectors():
    h = lambda k, m: hexlify(ota.hmac_sha256(k, m)).decode()
    assert h(b"\x0b" * 20, b"Hi There") == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    assert h(b"Jefe", b"what do ya want for nothing?") == \
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert h(b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First") == \
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"


def _manifest(**kw):
    m = {"format": 1, "version": "0.2.0", "board": None, "mpy": 6, "key_id": "3f9c2a1b",
         "created": "2026-11-30T18:00:00Z",
         "files": [{"name": "app.mpy", "size": 10, "sha256": "a" * 64},
                   {"name": "ocpp_calls.py", "size": 0, "sha256": "0" * 64}]}
    m.update(kw)
    return m


def _refused(m, why):
    try:
        ota.check_manifest(m, "unix", 6)
    except ota.Refused as e:
        assert str(e) == why, (str(e), why)
        return
    raise AssertionError("accepted: %r" % (m,))


def check_manifest_valid():
    v, files, total = ota.check_manifest(_manifest(), "unix", 6)
    assert (v, total) == ("0.2.0", 10) and files == [("app.mpy", 10, b"\xaa" * 32), ("ocpp_calls.py", 0, bytes(32))], files
    ota.check_manifest(_manifest(board="unix", mpy=None, version="1.0+rc.2_x-y"), "unix", 6)


def check_manifest_invalid():
    f = _manifest()["files"]
    _refused(_manifest(format=2), "manifest format is not 1")
    _refused(_manifest(version="0.2.0 beta"), "manifest version is not valid")
    _refused(_manifest(version="x" * 33), "manifest version is not valid")
    _refused(_manifest(board="pico_w"), "release is for board pico_w")
    _refused(_manifest(mpy=5), ".mpy v5, this board loads v6")
    _refused(_manifest(files=[]), "manifest files: 1 to 64 expected")
    _refused(_manifest(files=[f[0]] * 65), "manifest files: 1 to 64 expected")
    _refused(_manifest(files=[f[0], f[0]]), "bad or repeated file name")
    _refused(_manifest(files=[{"name": "../boot.py", "size": 1, "sha256": "a" * 64}]), "bad or repeated file name")
    _refused(_manifest(files=[{"name": "lib/x.mpy", "size": 1, "sha256": "a" * 64}]), "bad or repeated file name")
    _refused(_manifest(files=[{"name": "app.txt", "size": 1, "sha256": "a" * 64}]), "bad or repeated file name")
    _refused(_manifest(files=[{"name": "app.mpy", "size": 262145, "sha256": "a" * 64}]), "app.mpy: bad size")
    _refused(_manifest(files=[{"name": "app.mpy", "size": "1", "sha256": "a" * 64}]), "app.mpy: bad size")
    _refused(_manifest(files=[{"name": "app.mpy", "size": 1, "sha256": "A" * 64}]), "app.mpy: bad sha256")
    big = [{"name": "m%d.mpy" % i, "size": 262144, "sha256": "a" * 64} for i in range(3)]
    _refused(_manifest(files=big), "release is over 512 KiB")
    _refused(_manifest(files=[f[1]]), "release has no app module")
    _refused([1, 2], "manifest format is not 1")


def check_slots_install_accept_and_rollback():
    os.mkdir("fw")
    os.mkdir(fwslot.STAGE)
    _write(fwslot.STAGE + "/manifest.json", "{}")
    steps = []
    fwslot.install("0.2.0", 3, steps.append)
    assert steps == ["cleared", "moved", "pointed"], steps
    assert _read(fwslot.PTR) == "a trial - 3 0.2.0" and _read(fwslot.BOOTS) == "0"
    assert fwslot.in_trial() and sorted(os.listdir("fw")) == ["a", "boots", "ptr"], os.listdir("fw")

    class CP:
        triggers = []

        class conn:
            @staticmethod
            def status(c):
                return "Available", "NoError"

        def stamp(self):
            return "2026-11-30T18:00:00.000Z"

    cp = CP()
    fwslot.accepted(cp)
    assert _read(fwslot.PTR) == "a ok - 3 0.2.0" and not fwslot.in_trial()
    assert cp.triggers == [("FirmwareStatusNotification", {"status": "Installed"})], cp.triggers
    # the next release goes to b, on trial, back to a
    os.mkdir(fwslot.STAGE)
    _write(fwslot.STAGE + "/manifest.json", "{}")
    fwslot.install("0.3.0", 2)
    assert _read(fwslot.PTR) == "b trial a 2 0.3.0"
    fwslot.rollback("no BootNotification Accepted")
    assert _read(fwslot.PTR) == "a ok - 1 -" and _read(fwslot.NOTE) == "rollback 0.3.0: no BootNotification Accepted"
    cp.triggers = []
    fwslot.accepted(cp)
    assert cp.triggers[0] == ("FirmwareStatusNotification", {"status": "InstallationFailed"}), cp.triggers
    sn = cp.triggers[1][1]
    assert cp.triggers[1][0] == "StatusNotification" and sn["connectorId"] == 0 and \
        sn["info"] == "rollback 0.3.0: no BootNotification Accepted", sn
    assert "note" not in os.listdir("fw")


def check_log_ring_rotates_and_masks():
    logring.start("lg", 400, ["s3cret-value"])
    lg = log.get("t")
    try:
        for i in range(20):
            lg.info("line %d with s3cret-value inside", i)
        a, b = logring.files()
        text = _read(a) + _read(b)
        assert "s3cret" not in text and "line 19 with *** inside" in text, text
        assert os.stat(a)[6] <= 200 and os.stat(b)[6] <= 200, (os.stat(a)[6], os.stat(b)[6])
        lines = text.splitlines()
        assert lines[-1].endswith("[t] I: line 19 with *** inside") and lines[-1][19:21] == "Z ", lines
        n = [int(x.split("line ")[1].split()[0]) for x in lines]
        assert n == list(range(n[0], 20)), n     # oldest first, nothing lost within the ring
    finally:
        logring.stop()


def check_diagnostics_window():
    _write("a.txt", "2026-11-30T17:59:59Z [x] I: before\n2026-11-30T18:00:00Z [x] I: first\n")
    _write("b.txt", "2026-11-30T18:30:00Z [x] I: middle\n2026-11-30T19:00:01Z [x] I: after\n"
                    "2026-11-30T19:00:0")   # cut by a power loss
    n = diag.select(["a.txt", "b.txt", "missing.txt"], "2026-11-30T18:00:00Z", "2026-11-30T19:00:00Z", "up.txt")
    assert _read("up.txt") == "2026-11-30T18:00:00Z [x] I: first\n2026-11-30T18:30:00Z [x] I: middle\n"
    assert n == os.stat("up.txt")[6]
    n = diag.select(["a.txt", "b.txt"], None, None, "up.txt")
    assert n == os.stat("up.txt")[6] and len(_read("up.txt").splitlines()) == 4, _read("up.txt")
    assert diag.file_name("CP-1", 1764525600000) == "CP-1-20251130T180000Z.log"


CHECKS = checkrun.checks(globals())

if __name__ == "__main__":
    checkrun.main(CHECKS, scratch=True)
