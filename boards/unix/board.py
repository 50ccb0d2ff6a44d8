# Unix board: simulated Pico W hardware for the MicroPython unix port (boards/contract.py).
#
# The same firmware runs here unchanged. What a Pico W measures is simulated from a
# scenario (JSON), so tests and demos can script a charging session, an overheating
# enclosure, a flaky DHT11 or a Wi-Fi drop:
#   {"seed": 1, "unique_id": "e6614103e7452d2f",
#    "dht":   {"temp_c": 24.0, "humidity": 45.0, "drift": 0.02, "wander": 2.0, "error_rate": 0.05},
#    "mains": {"hz": 50, "vrms": 230.0, "irms": 16.0, "noise": 0.01, "offset": 32768},
#    "wifi":  {"drops": [[30, 40]], "connect_s": 0.2},
#    "button": [[5, 6]],
#    "timeline": [[60, "dht.temp_c", 62.0], [90, "mains.irms", 6.0]]}
# Times are seconds since boot. `irms` is what the EV draws while the relay is closed.
# A scenario with an "ev" section simulates the EV behind the control pilot instead:
#    "ev": {"state": "B", "diode": true, "max_a": 32.0, "noise_mv": 300},
#    "timeline": [[5, "ev.state", "C"], [40, "ev.state", "B"], [60, "ev.state", "A"], [70, "ev.diode", false]]
# state: A unplugged, B plugged in, C asking for charge (D: with ventilation, E: pilot shorted).
# The EV loads the pilot as a J1772 car does (its high level 12/9/6/3/0 V, the low -12 V, or
# mirrored without the diode) and, while the relay is closed and it asks for charge, draws the
# current the PWM duty allows (at most max_a), so the measured current follows the limit.
# "ev": {"control": "ev.json"} also reads that file (in the flash directory) whenever it changes
# and merges it over the EV: a test drives the EV step by step ({"state": "C"}), a demo by hand.
# RFID cards (charger.rfid): "rfid": [[5, "04A1B2C3"], [20, "04A1B2C3"]] holds each card to the
# reader for 0.6 s at that time; a timeline event [t, "rfid_tap", "04A1B2C3"] does the same, and
# "rfid_control": "rfid.txt" reads a card's UID (hex) from that file (in the flash directory),
# checked every 0.5 s and removed once read (1 s at least after the card before it went): a
# test taps when it is ready.
# "led_log": true prints each change of the LED ("[board] I: led on").
# "clock": {"speed": 1800} (the station's wall clock runs fast) and "flash": {"size_kb": 848}
# (the flash directory checked against a Pico W's filesystem) simulate long outages: flashsim.py.
# The DHT11's readings wander around the scenario's values: a seeded random walk of at most
# `drift` per read, kept within +-`wander` (degC, and %RH), which the sensor follows with a lag.
# The scenario file is $PICOCHARGE_SCENARIO, else scenario.json in the flash directory
# (the current directory), else the defaults below.
import math
import os
import random
import sys
import time

try:
    import ujson as json
except ImportError:
    import json

NAME = "unix"
RESET_EXIT = 75          # process exit code for reset(): a supervisor restarts us
ADC_MAX = 65535
# Analogue front end (matches boards/pico_w wiring docs): 3.3 V ADC reference, current
# and voltage transducers biased at mid-rail.
_VREF = 3.3
_CURRENT_A_PER_COUNT = 0.0015   # default sensors.current_scale in config
_VOLTAGE_V_PER_COUNT = 0.015    # default sensors.voltage_scale in config

DEFAULTS = {
    "seed": 1,
    "unique_id": "",
    "dht": {"temp_c": 24.0, "humidity": 45.0, "drift": 0.02, "wander": 2.0, "error_rate": 0.0},
    "mains": {"hz": 50, "vrms": 230.0, "irms": 16.0, "noise": 0.005, "offset": 32768},
    "wifi": {"drops": [], "connect_s": 0.2, "ntp": True},   # ntp: whether a time server answers
    "button": [],
    "timeline": [],
    "chip_temp_c": 30.0,
}
_EV_UNPLUGGED = {"state": "A"}
_EV_MV = {"A": 12000, "B": 9000, "C": 6000, "D": 3000, "E": 0}
# the pilot front end (docs/wiring.md): ADC = 1.65 V + V_pilot / 8, 0..3.3 V on 0..65535
_PILOT_ZERO = 32768
_PILOT_NUM = 65535     # counts per mV: _PILOT_NUM / _PILOT_DEN, in integers
_PILOT_DEN = 26400


def ev_amps(duty):
    """What a J1772 EV may draw at PWM duty `duty` (0..65535): 0 below 8 % and above 97 %."""
    pct = duty * 100.0 / 65535
    if pct < 8 or pct > 97:
        return 0.0
    a = pct * 0.6 if pct <= 85 else (pct - 64) * 2.5
    return a if a >= 6 else 0.0


def _merge(base, extra):
    out = {}
    for k, v in base.items():
        if isinstance(v, dict):
            out[k] = _merge(v, extra.get(k, {}) if isinstance(extra.get(k), dict) else {})
        else:
            out[k] = extra.get(k, v)
    for k, v in extra.items():
        if k not in out:
            out[k] = v
    return out


def load_scenario(path=None):
    if path is None:
        path = os.getenv("PICOCHARGE_SCENARIO")
    if path is None:
        try:
            os.stat("scenario.json")
            path = "scenario.json"
        except OSError:
            return _merge(DEFAULTS, {})
    with open(path) as f:
        return _merge(DEFAULTS, json.load(f))


def _walk(x, step, bound):
    """One step of a random walk kept within +-bound (reflected at the edges)."""
    x += step
    if x > bound:
        return 2 * bound - x
    if x < -bound:
        return -2 * bound - x
    return x


class _Timeline:
    # Applies [[t, "section.key", value], ...] to the scenario as time passes.
    def __init__(self, sc):
        self.sc = sc
        self.events = sorted(sc.get("timeline") or [], key=lambda e: e[0])
        self.i = 0

    def advance(self, t):
        ev = self.events
        while self.i < len(ev) and ev[self.i][0] <= t:
            _t, key, value = ev[self.i]
            sec, _, leaf = key.rpartition(".")
            target = self.sc[sec] if sec else self.sc
            target[leaf] = value
            self.i += 1


class Board:
    name = NAME

    def __init__(self, scenario=None):
        self.sc = scenario if scenario is not None else load_scenario()
        self.rng = random.Random(self.sc["seed"]) if hasattr(random, "Random") else None
        if self.rng is None:
            random.seed(self.sc["seed"])
            self.rng = random
        self.t0 = time.ticks_ms()
        self.tl = _Timeline(self.sc)
        self._relay = False
        self._led = False
        self._wifi_want = False
        self._wifi_since = None
        self._last_dht = None
        self._dht_t = self.sc["dht"]["temp_c"]
        self._dht_h = self.sc["dht"]["humidity"]
        self._wander_t = 0.0  # where the random walk has taken the enclosure from the scenario's values
        self._wander_h = 0.0
        self._wdt = None
        self.wdt_stopped = False
        self._phase = 0.0
        self._duty = 65535     # the pilot: +12 V steady until the firmware sets it
        self._pk = 0           # where in a pilot period the next sample falls
        self._noise = int(self.sc["seed"]) & 0x3FFFFFFF   # the pilot noise's generator
        self._ev_stamp = None  # when the EV's control file was last read (s since boot)
        self.led_log = bool(self.sc.get("led_log"))
        # the simulations a scenario asks for (RFID cards, a fast clock, a flash check) are
        # looked for and started by simstart.py, loaded for it and dropped: a station without
        # them holds neither their code nor the looking (heap in the 192K test)
        import simstart
        simstart.start(self, self.sc)
        del sys.modules["simstart"]

    # --- time ---------------------------------------------------------------
    def now_s(self):
        t = time.ticks_diff(time.ticks_ms(), self.t0) / 1000
        self.tl.advance(t)
        return t

    def _in(self, windows, t):
        for w in windows:
            if w[0] <= t < w[1]:
                return True
        return False

    # --- identity -----------------------------------------------------------
    def unique_id(self):
        uid = self.sc.get("unique_id")
        if uid:
            return uid
        # stable per flash directory, like the RP2040's flash unique id
        h = 0
        for c in os.getcwd():
            h = (h * 131 + ord(c)) & 0xFFFFFFFFFFFFFFFF
        return "%016x" % h

    # --- DHT11 --------------------------------------------------------------
    def read_dht(self):
        """(temp_c, humidity) as a DHT11 gives them (whole units); OSError on a bad read."""
        t = self.now_s()
        d = self.sc["dht"]
        if self._last_dht is not None and t - self._last_dht < 1.0:
            # a DHT11 read faster than once a second does not answer
            raise OSError(110, "DHT11 read faster than 1 Hz")
        self._last_dht = t
        # the enclosure wanders (bounded random walk around the scenario's values, which the
        # timeline may move); the sensor follows it with a lag
        r = self.rng
        w = d.get("wander", 2.0)  # scenarios built by hand may leave it out
        self._wander_t = _walk(self._wander_t, (r.random() - 0.5) * 2 * d["drift"], w)
        self._wander_h = _walk(self._wander_h, (r.random() - 0.5) * 2 * d["drift"], w)
        self._dht_t += (d["temp_c"] + self._wander_t - self._dht_t) * 0.5
        self._dht_h += (d["humidity"] + self._wander_h - self._dht_h) * 0.5
        if d["error_rate"] and r.random() < d["error_rate"]:
            if r.random() < 0.5:
                raise OSError(110, "DHT11 timeout")
            raise OSError(5, "DHT11 checksum error")
        return float(int(self._dht_t + 0.5)), float(int(self._dht_h + 0.5))

    # --- ADC ----------------------------------------------------------------
    def adc_burst(self, buf_i, buf_v, rate_hz):
        """Fill buf_i and buf_v (array('H')) with interleaved samples at rate_hz pairs/s."""
        self.now_s()
        m = self.sc["mains"]
        hz = m["hz"]
        ev = self._ev()
        if ev is None:
            irms = m["irms"] if self._relay else 0.0
        elif self._relay and ev.get("state") in ("C", "D"):
            irms = min(ev.get("max_a", 32.0), ev_amps(self._duty))
        else:
            irms = 0.0
        vrms = m["vrms"]
        ipk = irms * 1.41421356 / _CURRENT_A_PER_COUNT
        vpk = vrms * 1.41421356 / _VOLTAGE_V_PER_COUNT
        off = m["offset"]
        noise = m["noise"] * ADC_MAX
        r = self.rng
        w = 2 * math.pi * hz / rate_hz
        ph = self._phase
        lag = 0.1  # current lags voltage a little (power factor ~0.995)
        for k in range(len(buf_i)):
            a = ph + w * k
            s = off + ipk * math.sin(a - lag) + (r.random() - 0.5) * noise
            buf_i[k] = 0 if s < 0 else (ADC_MAX if s > ADC_MAX else int(s))
            s = off + vpk * math.sin(a) + (r.random() - 0.5) * noise
            buf_v[k] = 0 if s < 0 else (ADC_MAX if s > ADC_MAX else int(s))
        # the next burst starts at an arbitrary phase, as on real hardware
        self._phase = r.random() * 6.2831853

    # --- control pilot ------------------------------------------------------
    def pilot_pwm(self, duty):
        self._duty = duty

    def pilot_burst(self, buf):
        """The pilot as the EV of the scenario loads it, 20 samples a 1 kHz period, with noise.
        Integers only, as the board contract asks: a float per sample (the first version) made
        ~5 KB of garbage 50 times a second, which a Pico W's ADC reads do not, and spread the
        firmware's long-lived objects over the heap (a 192K heap then found no 752-byte block
        to connect with)."""
        self.now_s()
        ev = self._ev() or _EV_UNPLUGGED
        st = ev.get("state", "A")
        high = _EV_MV.get(st, 0)
        if st == "A" or ev.get("diode", True):
            low = -12000
        else:
            low = -high
        span = 2 * int(ev.get("noise_mv", 300)) + 1
        half = span // 2
        hi_n = (self._duty * 20 + 32767) // 65535    # samples of a period at the high level
        k = self._pk
        x = self._noise
        for i in range(len(buf)):
            x = (x * 1103515245 + 12345) & 0x3FFFFFFF     # an LCG in small ints
            mv = (high if k < hi_n else low) + (x >> 8) % span - half
            c = _PILOT_ZERO + mv * _PILOT_NUM // _PILOT_DEN
            buf[i] = 0 if c < 0 else (ADC_MAX if c > ADC_MAX else c)
            k += 1
            if k == 20:
                k = 0
        self._pk = k
        self._noise = x

    def _ev(self):
        """The scenario's EV, with its control file merged in (read again every 0.1 s)."""
        ev = self.sc.get("ev")
        if ev is not None and ev.get("control"):
            t = self.now_s()
            if self._ev_stamp is None or t - self._ev_stamp >= 0.1:
                self._ev_stamp = t
                try:
                    with open(ev["control"]) as f:
                        ev.update(json.load(f))
                except (OSError, ValueError):
                    pass     # not there yet, or half written: read again next time
        return ev

    def read_chip_temp(self):
        """Raw 16-bit reading of the RP2040 temperature sensor (ADC channel 4)."""
        self.now_s()
        t = self.sc["chip_temp_c"] + (self.rng.random() - 0.5) * 0.5
        volts = 0.706 - (t - 27.0) * 0.001721
        return int(volts / _VREF * ADC_MAX)

    # --- outputs ------------------------------------------------------------
    def relay(self, on):
        on = bool(on)
        if on != self._relay:
            self._relay = on
            # constant strings: Ctrl-C may land with the heap locked, and this must not allocate
            print("[board] I: relay closed" if on else "[board] I: relay open")

    def led(self, on):
        on = bool(on)
        if on != self._led and self.led_log:
            print("[board] I: led on" if on else "[board] I: led off")
        self._led = on

    def rfid_uid(self):
        """The card on the reader (rfidsim.Reader), or None; allocates nothing without one."""
        r = self._rfid
        if r is None:
            return None
        return r.uid(time.ticks_diff(time.ticks_ms(), self.t0))

    def button(self):
        return self._in(self.sc["button"], self.now_s())

    # --- Wi-Fi --------------------------------------------------------------
    def wifi_connect(self, ssid, password, country=""):
        self._wifi_want = True
        self._wifi_since = self.now_s()

    def wifi_connected(self):
        if not self._wifi_want:
            return False
        t = self.now_s()
        if self._in(self.sc["wifi"]["drops"], t):
            self._wifi_since = None
            return False
        if self._wifi_since is None:
            # the radio comes back by itself after a drop, as the CYW43 does
            self._wifi_since = t
        return t - self._wifi_since >= self.sc["wifi"]["connect_s"]

    def sync_clock(self, host):
        """The unix port's clock is the host's, already right: True, unless the scenario has no
        time server answering (wifi.ntp false), as when a site's firewall drops NTP."""
        if not self.sc["wifi"]["ntp"]:
            return False
        print("[board] I: clock from the host (as NTP from %s would set it)" % host)
        return True

    def wifi_disconnect(self):
        self._wifi_want = False
        self._wifi_since = None

    def ip(self):
        return "127.0.0.1" if self.wifi_connected() else ""

    # --- system -------------------------------------------------------------
    def wdt_start(self, timeout_ms):
        self._wdt = timeout_ms

    def wdt_feed(self):
        pass   # with a scenario's "flash": the flash check (flashsim.py, simstart.py)

    def wdt_stop(self):
        """What a Pico W does on Ctrl-C (clear the RP2040's WATCHDOG_CTRL enable bit): recorded."""
        running = self._wdt is not None
        self._wdt = None
        self.wdt_stopped = True
        if running:
            print("[board] I: watchdog stopped")

    def reset(self, hard=False):
        print("[board] I: %s reset" % ("hard" if hard else "soft"))
        sys.exit(RESET_EXIT)

    def ota_step(self, name):
        """Not in the board contract: the firmware's over-the-air update calls it at each step
        (ota.py, fwslot.py). A step named in the scenario's "ota_freeze" stops the whole board
        there, so that a test can cut its power (SIGKILL) at exactly that point."""
        if name in self.sc.get("ota_freeze", ()):
            print("[board] I: frozen at update step %s" % name)
            while True:
                time.sleep(1)

    def halt(self, code):
        """Stop for good (bad config): the unix port exits with `code` (78 for a bad config)."""
        sys.exit(code)
