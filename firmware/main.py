# The boot loader: a Pico W runs /main.py at boot; the unix port runs this file directly, with
# the flash folder as its current directory. It is never replaced over the air (a release
# does not hold it), so it stays small and leans on nothing the air can change: it picks the
# application's slot from the pointer file, puts that slot first on sys.path and starts app.
#
# fw/ptr    "<slot> <state> <prev> <boots> <version>": slot a or b runs; state "trial" (a new
#           version not yet Accepted) or "ok"; prev the slot to go back to ("-": the firmware
#           at the top of the flash, as `picocharge deploy` wrote it); boots the most boots on
#           trial. Replaced by rename only: a power cut leaves the old pointer or the new one.
# fw/boots  boots made on trial so far (watchdog resets and crashes included), by rename too.
# fw/note   why the last rollback happened, for the application to report once Accepted.
# No fw/ptr (or any problem reading it): the firmware at the top runs, as before updates.
# docs/firmware.md "Updates over the air" has the whole layout.
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


try:
    _slot, _trial = pick()
except Exception as e:  # a damaged flash must not stop the station: the top firmware runs
    print("[boot] E: cannot read the update pointer (%r): starting the installed firmware" % e)
    _slot, _trial = None, False
if _slot:
    sys.path.insert(0, _slot)
try:
    import app

    app.main()
except Exception as e:
    if not _trial:
        raise
    # a new version that crashes is reset (and counted) rather than left at the REPL
    sys.print_exception(e)
    print("[boot] E: the version on trial crashed: resetting")
    import board

    board.Board().reset(True)
