# The log ring's setup and listing (log.py keeps only the per-line writer): imported at boot
# to start it and by diag.py to read it, dropped again.
import os

import log


def start(folder, size, secrets=()):
    """Also write every log line to the ring in `folder`, at most `size` bytes."""
    try:
        os.mkdir(folder)
    except OSError:
        pass
    f = open(folder + "/cur.txt", "a")
    try:
        n = os.stat(folder + "/cur.txt")[6]
    except OSError:
        n = 0
    log._ring = [folder, size // 2, f, n, tuple(secrets), None, "", os.rename]


def files():
    """The ring's files, oldest first ([] when there is no ring)."""
    r = log._ring
    if r is None:
        return []
    r[2].flush()
    return (r[0] + "/old.txt", r[0] + "/cur.txt")


def stop():
    r = log._ring
    if r is not None:
        r[2].close()
        log._ring = None
