# The unix board's long-outage simulation, loaded by board.py only for a scenario that asks
# for it (a station without it does not hold this code: heap in the 192K test):
#   "clock": {"speed": 1800, "offset_s": 0}: the station's wall clock (what the firmware stamps
#   readings and OCPP messages with, compat.time_ns) runs `speed` times as fast as the host's,
#   `offset_s` ahead of it, so 48 hours of readings pass in a few minutes (intervals and
#   timeouts stay in real seconds).
#   "flash": {"size_kb": 848}: the size of the board's filesystem (848 KB: a Pico W's,
#   MicroPython's MICROPY_HW_FLASH_STORAGE_BYTES with the CYW43 driver); the flash directory
#   is checked at each watchdog feed, in littlefs blocks of 4 KB per file: past the size the
#   board stops (exit 74, as a Pico W would have failed its writes), and each new high mark of
#   64 KB is said.
import os
import sys

FLASH_FULL_EXIT = 74     # EX_IOERR: the flash directory outgrew the board's filesystem


def fast_clock(ck):
    """The firmware's one clock (compat.time_ns: modules importing it later get this one)."""
    import compat

    real = compat.time_ns
    t0 = real()
    speed = int(ck.get("speed", 1))
    ahead = t0 + int(ck.get("offset_s", 0)) * 1000000000
    compat.time_ns = lambda: ahead + (real() - t0) * speed
    print("[board] I: clock runs %dx fast, %ss ahead" % (speed, ck.get("offset_s", 0)))


def flash_used(path="."):
    """Bytes the flash directory would take on littlefs (each file in whole 4 KB blocks)."""
    n = 0
    for name in os.listdir(path):
        st = os.stat(path + "/" + name)
        n += 4096 + flash_used(path + "/" + name) if st[0] & 0x4000 else -(-st[6] // 4096) * 4096
    return n


class Flash:
    def __init__(self, fl):
        self.size = fl.get("size_kb", 848)
        self.mark = 0   # the last 64 KB high mark said

    def check(self):
        used = flash_used() // 1024
        if used > self.size or used >= self.mark + 64:
            self.mark = used // 64 * 64
            full = used > self.size
            print("[board] %s: flash %s%d KB used of %d KB" % (
                "E" if full else "I", "full: " if full else "", used, self.size))
            if full:
                sys.exit(FLASH_FULL_EXIT)


def start(board, sc):
    """What the scenario asks for, on `board`: the clock, the flash check at each feed."""
    if sc.get("clock"):
        fast_clock(sc["clock"])
    if sc.get("flash"):
        board.wdt_feed = Flash(sc["flash"]).check
