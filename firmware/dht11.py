# DHT11 reading with rate limit and retries: a bad read never reaches the caller as a crash.
import asyncio

import log
from compat import ticks_ms, ticks_diff

_L = log.get("dht")
_MIN_GAP_MS = 1100  # the DHT11 answers at most once a second


class Dht11:
    def __init__(self, board, retries=3):
        self.board = board
        self.retries = retries
        self.last_ms = None
        self.errors = 0       # bad reads since boot

    async def _gap(self):
        if self.last_ms is not None:
            wait = _MIN_GAP_MS - ticks_diff(ticks_ms(), self.last_ms)
            if wait > 0:
                await asyncio.sleep_ms(wait)

    async def read(self):
        """(degC, %RH), or None when every try failed (logged, counted)."""
        for attempt in range(self.retries + 1):
            await self._gap()
            self.last_ms = ticks_ms()
            try:
                t, h = self.board.read_dht()
            except OSError as e:
                self.errors += 1
                _L.debug("read failed (%s), try %d/%d", e, attempt + 1, self.retries + 1)
                continue
            if -20.0 <= t <= 80.0 and 0.0 <= h <= 100.0:
                return t, h
            self.errors += 1
            _L.debug("implausible reading %s degC %s %%", t, h)
        _L.warn("no valid reading after %d tries", self.retries + 1)
        return None
