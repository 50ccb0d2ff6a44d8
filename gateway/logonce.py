"""A repeating error is logged once with a count, never in a loop.

    _once = LogOnce(log)
    _once.warning("mqtt ingest: station=%s bad telemetry: %s", sid, why)

The first occurrence of a message (its text after formatting, or an explicit `key=`) is
logged at once. The same message again within `interval` seconds is only counted; the first
occurrence after the interval is logged with "(and N more like it in the last S s)", and
starts a new interval. So a publisher sending the same bad payload 1,000 times a second
costs one log line a minute, and the operator still sees that it goes on and how often.
`flush()` logs what is still counted (a gateway stopping calls it). At most `max_keys`
different messages are tracked; past that the oldest are forgotten. And whatever the
messages, at most `burst` lines are written per interval: messages that all differ (a
publisher rotating station ids or values) are then counted in one line per interval.
"""
import logging
import time
import weakref

_ALL = weakref.WeakSet()


def reset_all():
    """Forget what every LogOnce has seen (tests: each starts with a clean slate)."""
    for once in list(_ALL):
        once.reset()


class LogOnce:
    def __init__(self, logger, interval=60.0, max_keys=1024, burst=20, clock=time.monotonic):
        self.logger = logger
        self.interval = float(interval)
        self.max_keys = max_keys
        self.burst = burst
        self.clock = clock
        self._seen = {}     # key -> [first time of this interval, count suppressed, level, msg, args]
        self.suppressed = 0     # lines not written, in all
        self._window = [clock(), 0, 0, logging.WARNING]  # [start, lines written, new messages held back, level]
        _ALL.add(self)

    def reset(self):
        self._seen.clear()
        self._window = [self.clock(), 0, 0, logging.WARNING]

    def log(self, level, msg, *args, key=None, exc_info=None):
        """Log msg % args at level, unless the same message was logged within `interval`."""
        if key is None:
            try:
                key = msg % args if args else msg
            except (TypeError, ValueError):
                key = (msg, repr(args))
        now = self.clock()
        hit = self._seen.get(key)
        if hit is not None and now - hit[0] < self.interval:
            hit[1] += 1
            self.suppressed += 1
            return False
        if not self._budget(now, level):
            self.suppressed += 1
            return False
        more = hit[1] if hit is not None else 0
        if hit is None and len(self._seen) >= self.max_keys:
            for old in list(self._seen)[:max(1, self.max_keys // 4)]:
                self._emit(old)
                del self._seen[old]
        self._seen[key] = [now, 0, level, msg, args]
        if more:
            self.logger.log(level, msg + " (and %d more like it in the last %.0f s)", *args, more,
                            now - hit[0], exc_info=exc_info)
        else:
            self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def _budget(self, now, level):
        """True if one more line may be written in this interval."""
        w = self._window
        if now - w[0] >= self.interval:
            if w[2]:
                self.logger.log(w[3], "%d more messages were not logged in the last %.0f s (at most %d lines "
                                "per %.0f s)", w[2], now - w[0], self.burst, self.interval)
            w[:] = [now, 0, 0, logging.WARNING]
        if w[1] >= self.burst:
            w[2] += 1
            w[3] = max(w[3], level)
            return False
        w[1] += 1
        return True

    def _emit(self, key):
        first, n, level, msg, args = self._seen[key]
        if n:
            now = self.clock()
            self._seen[key][1] = 0
            if self._budget(now, level):
                self.logger.log(level, msg + " (and %d more like it in the last %.0f s)", *args, n, now - first)
            else:
                self._window[2] += n - 1     # _budget counted one

    def flush(self):
        """Log the counts still pending (each as one line)."""
        for key in list(self._seen):
            self._emit(key)

    def warning(self, msg, *args, **kw):
        return self.log(logging.WARNING, msg, *args, **kw)

    def error(self, msg, *args, **kw):
        return self.log(logging.ERROR, msg, *args, **kw)

    def exception(self, msg, *args, **kw):
        kw.setdefault("exc_info", True)
        return self.log(logging.ERROR, msg, *args, **kw)
