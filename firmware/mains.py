# Mains measurement maths (pure): RMS current and voltage, real power, energy, RP2040 temperature.
# Bursts cover whole mains cycles, so the mean of a burst is the front end's DC bias;
# it is removed before squaring. One pass, no allocation per sample.
from math import sqrt

from compat import ticks_ms, ticks_diff


def burst_geometry(mains_hz, cycles, samples_per_cycle):
    """(number of sample pairs, sample rate in Hz) for a burst over whole cycles."""
    return cycles * samples_per_cycle, mains_hz * samples_per_cycle


def analyse(buf_i, buf_v, n, i_scale, v_scale, i_offset=0.0, v_offset=0.0):
    """(irms A, vrms V, real power W) from n interleaved samples.

    i_scale / v_scale: amps / volts per ADC count. i_offset / v_offset: the DC bias in
    counts, or 0 to take it from the burst's own mean (the usual case).
    """
    si = 0
    sv = 0
    for k in range(n):
        si += buf_i[k]
        sv += buf_v[k]
    mi = i_offset if i_offset else si / n
    mv = v_offset if v_offset else sv / n
    sii = 0.0
    svv = 0.0
    siv = 0.0
    for k in range(n):
        a = buf_i[k] - mi
        b = buf_v[k] - mv
        sii += a * a
        svv += b * b
        siv += a * b
    irms = sqrt(sii / n) * i_scale
    vrms = sqrt(svv / n) * v_scale
    power = siv / n * i_scale * v_scale
    return irms, vrms, power


def chip_temp(raw_u16, vref=3.3):
    """RP2040 internal sensor: 27 degC at 0.706 V, -1.721 mV/degC (RP2040 datasheet 4.9.5)."""
    volts = raw_u16 * vref / 65535
    return 27.0 - (volts - 0.706) / 0.001721


class EnergyMeter:
    """Integrates real power into an energy register (Wh), trapezoidal between samples.

    The register is whole Wh (int) plus a fraction (float, 0 <= f < 1): a Pico W's floats are
    single precision, and a float register alone stops adding small increments right once it
    is large (spacing 0.06 Wh at 1 MWh, 0.25 Wh at 4 MWh; the integer part stays exact)."""

    def __init__(self, wh=0.0):
        self._wh = int(wh)
        self._frac = wh - self._wh
        self._last_p = None
        self._last_t = None

    @property
    def wh(self):
        return self._wh + self._frac

    def add(self, watts, now_ms=None):
        if now_ms is None:
            now_ms = ticks_ms()
        if watts < 0:
            watts = 0.0  # we only meter import
        if self._last_t is not None:
            dt = ticks_diff(now_ms, self._last_t) / 3600000.0
            if dt > 0:
                f = self._frac + (watts + self._last_p) * 0.5 * dt
                k = int(f)
                self._wh += k
                self._frac = f - k
        self._last_p = watts
        self._last_t = now_ms
        return self.wh
