# The boot loader's choice of slot (main.py imports it from the top of the flash before any
# slot is on sys.path, and drops it before starting the application: its code is not in the
# heap while the station runs). Like main.py it is never replaced over the air: a release does
# not hold it (tools/release.py). The files it reads are described in main.py.
import os
import sys


def _read(p):
    try:
        with open(p) as f:
            return f.read()
    except OSError:
        return ""


def _put(p, text):
    with open(p + ".tmp", "w") as f:
        f.write(text)
    os.rename(p + ".tmp", p)


def _complete(slot):
    try:
        os.stat("fw/%s/manifest.json" % slot)   # written last, when every file was verified
        return True
    except OSError:
        return False


def pick():
    """(slot folder or None, on trial)."""
    f = _read("fw/ptr").split()
    if len(f) != 5 or f[0] not in ("a", "b"):
        return None, False
    slot, state, prev, boots, version = f
    why = None
    if not _complete(slot):
        why = "slot %s incomplete" % slot
    elif state == "trial":
        try:
            n = int(_read("fw/boots") or "0") + 1
        except ValueError:
            n = 1
        if n > int(boots):
            why = "crash loop (%d boots)" % (n - 1)
        else:
            _put("fw/boots", str(n))
            print("[boot] I: version %s on trial, boot %d of %s" % (version, n, boots))
    if why is None:
        return "fw/" + slot, state == "trial"
    # back to the previous version: the note first, so a cut now only repeats this
    print("[boot] W: rollback from %s: %s" % (version, why))
    _put("fw/note", "rollback %s: %s" % (version, why))
    if prev in ("a", "b") and _complete(prev):
        _put("fw/ptr", "%s ok - 1 -" % prev)
        return "fw/" + prev, False
    os.remove("fw/ptr")
    return None, False


def boot():
    """Put the slot to run first on sys.path; whether it is on trial."""
    try:
        slot, trial = pick()
    except Exception as e:  # a damaged flash must not stop the station: the top firmware runs
        print("[boot] E: cannot read the update pointer (%r): starting the installed firmware" % e)
        return False
    if slot:
        sys.path.insert(0, slot)
    return trial


def crashed(e):
    sys.print_exception(e)
    print("[boot] E: the version on trial crashed: resetting")
    import board

    board.Board().reset(True)
