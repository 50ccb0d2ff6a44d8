# Tiny levelled logger: "[tag] L: message". Never pass a secret to it.
# With logring.start() the lines also go, time-stamped in UTC, to a bounded ring on flash that
# GetDiagnostics uploads (diag.py): two files, logs/cur.txt written, logs/old.txt the one before;
# when cur.txt reaches half the ring's size it is renamed over old.txt (one rename: a power cut leaves
# both readable). The config's secrets are masked in it as a second line of defence.
import time

_LEVELS = {"debug": 0, "info": 1, "warn": 2, "error": 3}
_LETTERS = "DIWE"
_level = 1
# [folder, half size, open file, bytes in it, secrets, second stamped, its stamp, os.rename]
_ring = None


def set_level(name):
    global _level
    _level = _LEVELS.get(name, 1)


def _to_ring(line):
    """Append `line` to the ring (set up by logring.start). Written in pieces (stamp, line,
    newline): nothing is allocated for a line but its stamp, once a second (the full firmware
    runs at the edge of a 192K heap)."""
    r = _ring
    for s in r[4]:
        if s in line:
            line = line.replace(s, "***")
    t = time.time()
    if t != r[5]:
        r[5] = t
        r[6] = "%04d-%02d-%02dT%02d:%02d:%02dZ " % time.gmtime(t)[:6]
    n = 22 + len(line)
    try:
        if r[3] + n > r[1]:
            r[2].close()
            r[7](r[0] + "/cur.txt", r[0] + "/old.txt")
            r[2] = open(r[0] + "/cur.txt", "w")
            r[3] = 0
        f = r[2]
        f.write(r[6])
        f.write(line)
        f.write("\n")
        f.flush()
        r[3] += n
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
