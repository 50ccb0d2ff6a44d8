"""The collector's thresholds follow the fleet: low while stations connect, high once they are in.

CPython starts a young collection when the tracked objects allocated, net of those freed, pass
the first threshold, and each collection walks every young object still alive. Once a fleet is in,
what is alive and young is mostly the awaits in flight, a few per connection, made anew for every
frame: 14,000-26,000 objects at 2,000 closed-loop stations, so with a threshold of 2,000 every
young collection walked them all, and the collector took 13-16 % of the gateway's CPU (20000
takes it to 0.2-1.2 %, and 224 -> 204-209 us per message; docs/performance.md, "Third round").
While a fleet connects, every connection adds objects that stay, and large young collections
are long pauses then: with 20000 from the start, 10,000 stations connecting at once waited
25.5 s at p99 instead of 8.0 s. So: CONNECTING from the start and whenever CHURN stations
connected within PERIOD seconds, STEADY after a PERIOD with fewer.
"""
import asyncio
import gc
import logging

log = logging.getLogger(__name__)

CONNECTING = (2000, 5, 1000)
STEADY = (20000, 5, 1000)


class GcTuner:
    PERIOD = 5.0        # seconds looked at
    CHURN = 50          # connections within a PERIOD that mean "stations are connecting"

    def __init__(self):
        self.connects = 0       # in the current period
        self.steady = False
        self._task = None

    def start(self):
        self._set(False)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def connected(self):
        """A station connected (Gateway.run_session)."""
        self.connects += 1
        if self.steady and self.connects >= self.CHURN:
            self._set(False)

    def _set(self, steady):
        """Called at start and on each change only (connected(), _run() look before they call)."""
        gc.set_threshold(*(STEADY if steady else CONNECTING))
        log.info("gc: thresholds %s (%s)", STEADY if steady else CONNECTING,
                 "the fleet is in" if steady else "stations are connecting")
        self.steady = steady

    async def _run(self):
        while True:
            await asyncio.sleep(self.PERIOD)
            calm = self.connects < self.CHURN
            self.connects = 0
            if calm and not self.steady:
                self._set(True)
