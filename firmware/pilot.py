# The IEC 61851-1 / SAE J1772 control pilot: the PWM duty cycle that advertises a current limit,
# and the EV's state read from the pilot's levels, debounced, with the diode check. Pure logic,
# integers only and nothing allocated per sample (it runs in the sample loop): the same code runs
# on the board and under CPython (tests/firmware_smart).
#
# The pilot is a +-12 V, 1 kHz square wave from the station through 1 kOhm; the EV loads it with
# a diode and resistors, which pull the HIGH level down (the low level stays at -12 V behind the
# diode):
#   A  +12 V  no EV           B  +9 V  EV connected       C  +6 V  EV asks for charge
#   D   +3 V  charge, ventilation required                 E   0 V  pilot shorted / no power
#   F  -12 V  the station itself says "not available" (we never read it from an EV)
# Missing diode: the low level is not at -12 V but mirrors the high one (an EV or adapter that
# is not an EV, or a pilot shorted through a resistor): no charging.
#
# Duty cycle (IEC 61851-1 table A.8, J1772): 6..51 A -> duty = A / 0.6 %; 51..80 A -> A / 2.5 + 64 %;
# 100 % (no PWM, +12 V steady) = no charging allowed now (below 6 A: paused); 0 % (-12 V
# steady) = state F, the station is not available (a fault).
from compat import const

A = const(0)
B = const(1)
C = const(2)
D = const(3)
E = const(4)
F = const(5)
DIODE = const(6)       # missing diode: a fault, like E
NAMES = "ABCDEF!"      # NAMES[state], for the log

FULL = const(65535)    # duty_u16 of 100 %: +12 V steady, state-B wait / paused
OFF = const(0)         # duty_u16 of 0 %: -12 V steady, state F (not available)
MIN_A = const(6)       # below this the EV may not charge: the station pauses (100 %)
MAX_A = const(80)

# Thresholds of the high level in mV, halfway between the nominal levels (J1772 allows +-1 V)
_A_MV = const(10500)
_B_MV = const(7500)
_C_MV = const(4500)
_D_MV = const(1500)
_E_MV = const(-1500)
_F_MV = const(-10500)
# the low level of a PWM pilot with the diode in place is -12 V; above this the diode is missing
LOW_MV = const(-10500)
_DC_MV = const(2000)   # a burst whose samples span less than this is steady (no PWM)


def duty_u16(amps10):
    """The PWM duty (machine.PWM.duty_u16, 0..65535) advertising `amps10` tenths of an ampere
    per phase; below 6 A: FULL (no charging now), above 80 A: 80 A's."""
    if amps10 < MIN_A * 10:
        return FULL
    if amps10 > MAX_A * 10:
        amps10 = MAX_A * 10
    if amps10 <= 510:     # duty = A / 0.6 %, i.e. amps10 / 600 of the period
        return (amps10 * 65535 + 300) // 600
    return ((amps10 + 1600) * 65535 + 1250) // 2500     # duty = A / 2.5 + 64 %


_DUTY_8 = const(5243)     # 8 % of 65535: below it (and above 97 %) no charging (J1772)
_DUTY_85 = const(55705)
_DUTY_97 = const(63569)


def amps10_of(duty):
    """What an EV reads from a duty_u16: the tenths of an ampere it may draw (0: may not charge)."""
    if duty < _DUTY_8 or duty > _DUTY_97:
        return 0
    if duty <= _DUTY_85:
        a = (duty * 600 + 32767) // 65535
    else:
        a = (duty * 2500 + 32767) // 65535 - 1600
    return a if a >= MIN_A * 10 else 0


def level(mv):
    """The state a pilot's high level in mV stands for (A..F), without debouncing."""
    if mv >= _A_MV:
        return A
    if mv >= _B_MV:
        return B
    if mv >= _C_MV:
        return C
    if mv >= _D_MV:
        return D
    if mv >= _E_MV:
        return E
    if mv <= _F_MV:
        return F
    return E        # between 0 V and -12 V: no valid state, an error like E


def levels(buf, n, zero, num, den, out):
    """The high and low level of a burst of n raw ADC samples of the pilot, in mV, into out[0]
    and out[1] (a list made once): the means of the samples above and below the middle of their
    span; out[1] None for a steady pilot (no PWM). A sample's mV = (sample - zero) * num // den
    (the front end's calibration). Two passes, nothing allocated."""
    lo = hi = buf[0]
    for i in range(n):
        s = buf[i]
        if s < lo:
            lo = s
        elif s > hi:
            hi = s
    if (hi - lo) * num // den < _DC_MV:
        t = 0
        for i in range(n):
            t += buf[i]
        out[0] = (t // n - zero) * num // den
        out[1] = None
        return
    mid = (hi + lo) // 2
    th = tl = nh = nl = 0
    for i in range(n):
        s = buf[i]
        if s > mid:
            th += s
            nh += 1
        else:
            tl += s
            nl += 1
    out[0] = (th // nh - zero) * num // den
    out[1] = (tl // nl - zero) * num // den


class Pilot:
    """The EV's state from one (high, low) reading at a time, debounced: a new state counts once
    it is read `n` times in a row. State F is never taken from a reading (the station sets it);
    a PWM pilot (low given) whose low level is not near -12 V in state B, C or D is DIODE, and
    stays DIODE until the EV is unplugged (state A): without PWM (after the station stops it for
    the fault) the diode cannot be checked, and the EV would read as fine again."""

    def __init__(self, n=3):
        self.n = n
        self.state = A
        self._cand = A
        self._count = 0

    def feed(self, high_mv, low_mv):
        s = level(high_mv)
        if s == F:
            s = E
        elif B <= s <= D and low_mv is not None and low_mv > LOW_MV:
            s = DIODE
        if s == self.state or (self.state == DIODE and s != A):
            self._count = 0
            return self.state
        if s != self._cand:
            self._cand = s
            self._count = 1
        else:
            self._count += 1
        if self._count >= self.n:
            self.state = s
            self._count = 0
        return self.state


def error_code(state):
    """The OCPP ChargePointErrorCode of a pilot state: NoError, or EVCommunicationError for E and
    a missing diode (the EV or cable is faulty)."""
    return "EVCommunicationError" if state >= E else "NoError"
