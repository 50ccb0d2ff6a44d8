# Checks of the control pilot logic (firmware/pilot.py), written once and run under both
# interpreters like smart_checks.py: the duty cycle for a limit, and the EV's state read from
# synthetic pilot waveforms (PWM at several duties, noise, the diode missing), debounced.
# MicroPython-compatible code only.
try:
    from support import checkrun   # CPython: tests/ is on sys.path
except ImportError:
    import checkrun                # micropython runs this file from tests/support

import gc
from array import array

import pilot

# the front end of docs/wiring.md: the ADC sees 1.65 V + V_pilot / 8 (0..3.3 V for -13.2..+13.2 V)
ZERO = 32768
NUM = 3300 * 8
DEN = 65535
N = 200          # samples per burst: 10 periods of a 1 kHz pilot at 20 kS/s


class Lcg:
    """A seeded generator, the same under both interpreters."""

    def __init__(self, seed):
        self.x = seed

    def next(self, span):
        """-span..span"""
        self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
        return self.x % (2 * span + 1) - span


def wave(buf, high_mv, low_mv, duty_pct, noise_mv, rng, phase=0):
    """A pilot burst: 20 samples a period, high for duty_pct of it, with uniform noise."""
    for k in range(len(buf)):
        ph = (k + phase) % 20
        mv = high_mv if ph * 100 < duty_pct * 20 else low_mv
        mv += rng.next(noise_mv)
        c = ZERO + mv * DEN // NUM
        buf[k] = 0 if c < 0 else (65535 if c > 65535 else c)


def read(p, buf, out):
    pilot.levels(buf, len(buf), ZERO, NUM, DEN, out)
    return p.feed(out[0], out[1])


def check_pilot__duty_for_limits():
    cases = [(0, pilot.FULL), (59, pilot.FULL), (60, 6554), (100, 10923), (160, 17476), (320, 34952),
             (510, 55705), (630, 58457), (800, 62914), (1000, 62914)]
    for amps10, want in cases:
        got = pilot.duty_u16(amps10)
        assert got == want, (amps10, got, want)
    # what an EV reads back: the same limit (6-51 A, 51-80 A), nothing at 100 % and 0 %
    for amps10 in (60, 100, 133, 160, 320, 500, 510, 630, 800):
        assert pilot.amps10_of(pilot.duty_u16(amps10)) == amps10, amps10
    assert pilot.amps10_of(pilot.FULL) == 0 and pilot.amps10_of(pilot.OFF) == 0
    assert pilot.amps10_of(3000) == 0     # 4.6 %: not a valid duty, no charging


def check_pilot__states_from_noisy_waveforms():
    rng = Lcg(7)
    buf = array("H", bytes(2 * N))
    out = [0, 0]
    # (high mV, low mV, duty %, noise mV, state)
    cases = [(12000, 12000, 100, 400, pilot.A), (12000, -12000, 27, 400, pilot.A),
             (9000, 9000, 100, 400, pilot.B), (9000, -12000, 27, 600, pilot.B), (9000, -12000, 53, 600, pilot.B),
             (6000, -12000, 27, 600, pilot.C), (6000, -12000, 10, 600, pilot.C), (6000, -12000, 96, 600, pilot.C),
             (3000, -12000, 53, 600, pilot.D), (0, 0, 100, 400, pilot.E), (-12000, -12000, 100, 400, pilot.E),
             (8200, -11000, 27, 300, pilot.B), (6800, -11500, 27, 300, pilot.C),
             # the diode missing: the low level mirrors the high one
             (9000, -9000, 27, 400, pilot.DIODE), (6000, -6000, 53, 400, pilot.DIODE)]
    for high, low, duty, noise, want in cases:
        p = pilot.Pilot(3)
        for i in range(3):
            wave(buf, high, low, duty, noise, rng, phase=i * 7)
            got = read(p, buf, out)
        assert got == want, (high, low, duty, noise, pilot.NAMES[got], pilot.NAMES[want], out)
        assert pilot.error_code(got) == ("NoError" if want <= pilot.D else "EVCommunicationError"), got


def check_pilot__levels_in_mv():
    rng = Lcg(3)
    buf = array("H", bytes(2 * N))
    out = [0, 0]
    wave(buf, 9000, -12000, 27, 300, rng)
    pilot.levels(buf, N, ZERO, NUM, DEN, out)
    assert abs(out[0] - 9000) < 150 and abs(out[1] + 12000) < 150, out
    wave(buf, 12000, 12000, 100, 300, rng)
    pilot.levels(buf, N, ZERO, NUM, DEN, out)
    assert abs(out[0] - 12000) < 150 and out[1] is None, out


def check_pilot__debounced():
    p = pilot.Pilot(3)
    seq = [(9000, -12000)] * 3 + [(6000, -12000)] + [(9000, -12000)] * 2 + [(6000, -12000)] * 2
    got = [p.feed(h, lo) for h, lo in seq]
    assert "".join(pilot.NAMES[s] for s in got) == "AABBBBBB", got   # one C and two Cs: not yet
    assert p.feed(6000, -12000) == pilot.C                           # the third C in a row
    for _ in range(2):
        assert p.feed(12000, None) == pilot.C
    assert p.feed(12000, None) == pilot.A                            # unplugged
    # a diode fault, like any state, needs n readings in a row; it stays until unplugged, also
    # when the PWM stops and the EV reads as C without its low level
    assert [p.feed(9000, -9000) for _ in range(3)] == [pilot.A, pilot.A, pilot.DIODE]
    assert [p.feed(6000, None) for _ in range(4)] == [pilot.DIODE] * 4
    assert [p.feed(12000, None) for _ in range(3)] == [pilot.DIODE, pilot.DIODE, pilot.A]


def check_pilot__reading_allocates_nothing():
    rng = Lcg(5)
    buf = array("H", bytes(2 * N))
    out = [0, 0]
    p = pilot.Pilot(3)
    wave(buf, 6000, -12000, 27, 500, rng)
    read(p, buf, out)
    gc.collect()
    try:
        before = gc.mem_alloc()
    except AttributeError:   # CPython
        return
    for _ in range(50):
        read(p, buf, out)
    assert gc.mem_alloc() - before == 0, gc.mem_alloc() - before


CHECKS = checkrun.checks(globals())

if __name__ == "__main__":
    checkrun.main(CHECKS)
