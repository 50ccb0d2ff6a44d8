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
try:   # no pointer, no update ever installed: fwboot is not even loaded
    open("fw/ptr").close()
    import fwboot

    _trial = fwboot.boot()   # the slot to run is first on sys.path now
    fwboot = None
    __import__("sys").modules.pop("fwboot", None)   # the heap is the application's from here
except OSError:
    _trial = False
try:
    import app

    app.main()
except Exception as e:
    if _trial:   # a new version that crashes is reset (and counted), not left at the REPL
        import fwboot
        fwboot.crashed(e)
    raise
