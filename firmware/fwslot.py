# The application's side of the A/B slots main.py (the boot loader) boots from: the switch to a
# verified release, the trial that ends when BootNotification is Accepted (or rolls back when
# it is not within ota.trial_s), and the report of a rollback. The pointer format is main.py's.
# Imported only when an update is installed, at the first BootNotification Accepted of a run,
# and while a version is on trial.
import asyncio
import os

import log

L = log.get("ota")

PTR = "fw/ptr"
BOOTS = "fw/boots"
NOTE = "fw/note"
STAGE = "fw/new"
FS = "FirmwareStatusNotification"


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


def _rm(p):
    try:
        os.remove(p)
    except OSError:
        pass


def rmtree(d):
    try:
        names = os.listdir(d)
    except OSError:
        return
    for n in names:
        p = d + "/" + n
        try:
            os.remove(p)
        except OSError:
            rmtree(p)
    os.rmdir(d)


def pointer():
    """[slot, state, prev, boots, version] of fw/ptr, or None (the top firmware runs)."""
    f = _read(PTR).split()
    return f if len(f) == 5 else None


def in_trial():
    p = pointer()
    return p is not None and p[1] == "trial"


def install(version, boots, step=None):
    """Make the verified staging folder the next slot and point at it, on trial: the one
    moment a release changes what boots. A power cut before the pointer's rename boots the
    old version (the staging folder or the half-cleared other slot are never booted), after
    it the new one."""
    p = pointer()
    cur = p[0] if p else "-"
    target = "b" if cur == "a" else "a"
    rmtree("fw/" + target)           # the version before the current one: not booted from
    if step:
        step("cleared")
    os.rename(STAGE, "fw/" + target)
    if step:
        step("moved")
    _put(BOOTS, "0")
    _put(PTR, "%s trial %s %d %s" % (target, cur, boots, version))
    L.info("switched to %s in slot %s (on trial, back to %s otherwise)", version, target, cur)
    if step:
        step("pointed")


def rollback(why):
    """Back to the previous slot (the loader's rollback, for a version that boots but is not
    Accepted in time)."""
    p = pointer()
    if p is None or p[1] != "trial":
        return
    L.warn("rollback from %s: %s", p[4], why)
    _put(NOTE, "rollback %s: %s" % (p[4], why))
    if p[2] in ("a", "b"):
        _put(PTR, "%s ok - 1 -" % p[2])
    else:
        os.remove(PTR)


def accepted(cp):
    """BootNotification Accepted: a version on trial is kept (Installed), a rollback the loader
    made is reported (InstallationFailed, and connector 0's status with why)."""
    p = pointer()
    if p is not None and p[1] == "trial":
        _put(PTR, "%s ok %s %s %s" % (p[0], p[2], p[3], p[4]))
        _rm(BOOTS)
        L.info("version %s accepted: kept", p[4])
        cp.triggers.append((FS, {"status": "Installed"}))
    note = _read(NOTE)
    if note:
        report(cp, note)
        _rm(NOTE)


def report(cp, info):
    """InstallationFailed and a StatusNotification on connector 0 saying why (docs/ota.md)."""
    import ocppj

    cp.triggers.append((FS, {"status": "InstallationFailed"}))
    s, err = cp.conn.status(0)
    cp.triggers.append(("StatusNotification", ocppj.status_notification(0, s, cp.stamp(), err, info)))
    L.warn("update failed: %s", info)


async def trial_watch(ctx):
    """The app's task while a version is on trial: no BootNotification Accepted within
    ota.trial_s -> rollback and reset."""
    end = ctx.cfg["ota"]["trial_s"]
    while end > 0 and in_trial():
        await asyncio.sleep(1)
        end -= 1
    if in_trial():
        rollback("no BootNotification Accepted")
        ctx.board.reset(True)
    while True:
        await asyncio.sleep(3600)
