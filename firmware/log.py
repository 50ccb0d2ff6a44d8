# Tiny levelled logger: "[tag] L: message". Never pass a secret to it.
_LEVELS = {"debug": 0, "info": 1, "warn": 2, "error": 3}
_LETTERS = "DIWE"
_level = 1


def set_level(name):
    global _level
    _level = _LEVELS.get(name, 1)


class Logger:
    def __init__(self, tag):
        self.tag = tag

    def _log(self, lvl, msg, args):
        if lvl < _level:
            return
        if args:
            msg = msg % args
        print("[%s] %s: %s" % (self.tag, _LETTERS[lvl], msg))

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
