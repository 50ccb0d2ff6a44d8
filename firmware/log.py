# Tiny levelled logger: "[tag] L: message". Never pass a secret to it.
try:
    from time import ticks_ms
except ImportError:  # CPython
    import time as _t

    def ticks_ms():
        return int(_t.monotonic() * 1000)

_LEVELS = {"debug": 0, "info": 1, "warn": 2, "error": 3}
_LETTERS = "DIWE"
_level = 1
_sink = None  # optional callable(line) for tests / the web page's recent log


def set_level(name):
    global _level
    _level = _LEVELS.get(name, 1)


def set_sink(fn):
    global _sink
    _sink = fn


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
        if _sink:
            _sink(line)

    def debug(self, msg, *args):
        self._log(0, msg, args)

    def info(self, msg, *args):
        self._log(1, msg, args)

    def warn(self, msg, *args):
        self._log(2, msg, args)

    def error(self, msg, *args):
        self._log(3, msg, args)


def get(tag):
    return Logger(tag)
