# Tiny levelled logger: "[tag] L: message". Never pass a secret to it.
# With ring() the lines also go, time-stamped in UTC, to a bounded ring on flash that
# GetDiagnostics uploads (diag.py): two files, log/cur.txt written, log/old.txt the one before;
# when cur.txt reaches half the ring's size it is renamed over old.txt (one rename: a power cut leaves
# both readable). The config's secrets are masked in it as a second line of defence.
import time

_LEVELS = {"debug": 0, "info": 1, "warn": 2, "error": 3}
_LETTERS = "DIWE"
_level = 1
_ring = None    # [folder, half size, open file, bytes in it, secrets]


def set_level(name):
    global _level
    _level = _LEVELS.get(name, 1)


def ring(folder, size, secrets=()):
    """Also write every line to the log ring in `folder`, at most `size` bytes."""
    global _ring
    import os

    try:
        os.mkdir(folder)
    except OSError:
        pass
    f = open(folder + "/cur.txt", "a")
    try:
        n = os.stat(folder + "/cur.txt")[6]
    except OSError:
        n = 0
    _ring = [folder, size // 2, f, n, tuple(secrets)]


def ring_files():
    """The ring's files, oldest first ([] when there is no ring)."""
    if _ring is None:
        return []
    _ring[2].flush()
    return (_ring[0] + "/old.txt", _ring[0] + "/cur.txt")


def stamp(t=None):
    y, mo, d, h, mi, s = time.gmtime(time.time() if t is None else t)[:6]
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, mo, d, h, mi, s)


def _to_ring(line):
    r = _ring
    for s in r[4]:
        if s in line:
            line = line.replace(s, "***")
    line = "%s %s\n" % (stamp(), line)
    try:
        if r[3] + len(line) > r[1]:
            import os

            r[2].close()
            os.rename(r[0] + "/cur.txt", r[0] + "/old.txt")
            r[2] = open(r[0] + "/cur.txt", "w")
            r[3] = 0
        r[2].write(line)
        r[2].flush()
        r[3] += len(line)
    except OSError:   # a full or failing flash must not stop the station: the console has it
        pass


class Logger:
    def __init__(self, tag):
        self.tag = tag

    def _log(self, lvl, msg, args):
        if lvl < _level:
            return
        if args:
            msg = msg % args
        line = "[%s] %s: %s" % (self.tag, _LETTERS[lvl], msg)
        print(line)
        if _ring is not None:
            _to_ring(line)

    def debug(self, msg, *args):
        self._log(0, msg, args)

    def info(self, msg, *args):
        self._log(1, msg, args)

    def warn(self, msg, *args):
        self._log(2, msg, args)

    def error(self, msg, *args):
        self._log(3, msg, args)


_loggers = {}


def get(tag):
    """The logger of `tag`, one per tag (several modules log as "ocpp")."""
    lg = _loggers.get(tag)
    if lg is None:
        lg = _loggers[tag] = Logger(tag)
    return lg
