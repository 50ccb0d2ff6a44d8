# Exponential backoff with equal jitter (pure): 1, 2, 4 ... cap seconds, each cut by a random
# amount of up to half, so a fleet that lost its link at once does not come back at once.
from random import getrandbits


class Backoff:
    def __init__(self, base_s=1.0, cap_s=300.0):
        self.base = base_s
        self.cap = cap_s
        self.attempt = 0

    def reset(self):
        self.attempt = 0

    def next(self):
        """Seconds to wait before the next try: uniform in [d/2, d], d = min(cap, base*2^n)."""
        d = self.base * (1 << min(self.attempt, 20))
        if d > self.cap:
            d = self.cap
        self.attempt += 1
        frac = getrandbits(16) / 65536
        return d * (0.5 + 0.5 * frac)
