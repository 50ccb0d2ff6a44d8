# Raspberry Pi Pico W board: the only module that touches machine, network and dht.
# It implements boards/contract.py. The same module runs a Pico 2 W (RP2350): same pinout,
# same CYW43 radio, same MicroPython APIs; it finds the chip at import and uses its watchdog
# registers (boards/pico2_w only renames it).
# Wiring (see docs/wiring.md):
#   GP15  DHT11 data (10k pull-up to 3V3)
#   GP26  ADC0  current transducer (ACS712 via divider, or SCT-013 + burden, biased at 1.65 V)
#   GP27  ADC1  mains voltage (ZMPT101B module, biased at 1.65 V)
#   ADC4        the chip's temperature sensor (ADC.CORE_TEMP: 4 on an RP2040 and on the
#               Pico 2 W's RP2350A)
#   GP16  relay / contactor driver (active high, through a transistor or SSR)
#   GP14  local start/stop push button to GND (internal pull-up)
#   GP17  control pilot PWM, 1 kHz (PWM slice 0 B) into the +-12 V op-amp stage
#   GP28  ADC2  control pilot sense: 1.65 V + V_pilot / 8 through the divider
#   "LED" the Pico W's on-board LED (on the CYW43)
import machine
import network
import sys
import time
import dht
import ubinascii
from micropython import const

NAME = "pico_w"
_PIN_DHT = const(15)
_PIN_RELAY = const(16)
_PIN_BUTTON = const(14)
_ADC_CURRENT = const(0)
_ADC_VOLTAGE = const(1)
_PIN_PILOT = const(17)
_ADC_PILOT = const(2)
_PILOT_US = const(50)      # pilot samples 50 us apart: 20 a 1 kHz period
# "Raspberry Pi Pico W with RP2040", "Raspberry Pi Pico 2 W with RP2350"
_RP2350 = "RP2350" in sys.implementation._machine
# WATCHDOG_BASE (CTRL at +0) + 0x3000, the atomic bit-clear alias: 0x40058000 on an RP2040
# (datasheet 4.7), 0x400D8000 on an RP2350 (pico-sdk's addressmap.h); CTRL bit 30 is ENABLE
# on both.
# Not const(): these do not fit a 32-bit port's small int, so they are made once, at import.
_WATCHDOG_CTRL_CLR = 0x400DB000 if _RP2350 else 0x4005B000
_WATCHDOG_ENABLE = 0x40000000


class Board:
    name = "pico2_w" if _RP2350 else NAME

    def __init__(self):
        self._dht = dht.DHT11(machine.Pin(_PIN_DHT))
        self._relay = machine.Pin(_PIN_RELAY, machine.Pin.OUT, value=0)
        self._button = machine.Pin(_PIN_BUTTON, machine.Pin.IN, machine.Pin.PULL_UP)
        self._led = machine.Pin("LED", machine.Pin.OUT, value=0)
        self._adc_i = machine.ADC(_ADC_CURRENT)
        self._adc_v = machine.ADC(_ADC_VOLTAGE)
        self._adc_t = machine.ADC(machine.ADC.CORE_TEMP)
        # +12 V steady (100 %) from power-up: "no charging now" until the firmware decides
        self._pwm = machine.PWM(machine.Pin(_PIN_PILOT), freq=1000, duty_u16=65535)
        self._adc_p = machine.ADC(_ADC_PILOT)
        self._wlan = network.WLAN(network.STA_IF)
        self._wdt = None

    def unique_id(self):
        return ubinascii.hexlify(machine.unique_id()).decode()

    def read_dht(self):
        # the dht driver raises OSError on timeout and Exception on checksum: one type for callers
        try:
            self._dht.measure()
        except OSError:
            raise
        except Exception as e:
            raise OSError(5, str(e))
        return float(self._dht.temperature()), float(self._dht.humidity())

    def adc_burst(self, buf_i, buf_v, rate_hz):
        # Interleaved current/voltage pairs paced by ticks_us; read_u16 takes ~4 us.
        ri = self._adc_i.read_u16
        rv = self._adc_v.read_u16
        period = 1000000 // rate_hz
        ticks_us = time.ticks_us
        ticks_diff = time.ticks_diff
        t = ticks_us()
        for k in range(len(buf_i)):
            buf_i[k] = ri()
            buf_v[k] = rv()
            t += period
            while ticks_diff(t, ticks_us()) > 0:
                pass

    def pilot_pwm(self, duty):
        self._pwm.duty_u16(duty)

    def pilot_burst(self, buf):
        # paced by ticks_us like adc_burst; 20 samples a period catch the high and the low phase
        # of any duty from 8 % up (a duty below 5 % is not a valid pilot anyway)
        r = self._adc_p.read_u16
        ticks_us = time.ticks_us
        ticks_diff = time.ticks_diff
        ticks_add = time.ticks_add
        t = ticks_us()
        for k in range(len(buf)):
            buf[k] = r()
            t = ticks_add(t, _PILOT_US)
            while ticks_diff(t, ticks_us()) > 0:
                pass

    def read_chip_temp(self):
        return self._adc_t.read_u16()

    def relay(self, on):
        self._relay.value(1 if on else 0)

    def led(self, on):
        self._led.value(1 if on else 0)

    def button(self):
        return self._button.value() == 0

    def wifi_connect(self, ssid, password, country=""):
        if country:
            import rp2
            rp2.country(country)
        self._wlan.active(True)
        self._wlan.config(pm=0xA11140)  # no power-save: keeps latency low for OCPP
        self._wlan.connect(ssid, password)

    def wifi_connected(self):
        return self._wlan.isconnected()

    def sync_clock(self, host):
        """Set the RTC from an NTP server: it starts at 2021-01-01 after power-up, and TLS
        checks a certificate's dates against it. True when set. Blocks for up to a second."""
        try:
            import ntptime
            ntptime.host = host
            ntptime.settime()
            return True
        except Exception:   # no answer, no DNS, no ntptime in this build
            return False

    def wifi_disconnect(self):
        self._wlan.disconnect()
        self._wlan.active(False)

    def ip(self):
        return self._wlan.ifconfig()[0] if self._wlan.isconnected() else ""

    def wdt_start(self, timeout_ms):
        self._wdt = machine.WDT(timeout=min(timeout_ms, 8388))

    def wdt_feed(self):
        if self._wdt:
            self._wdt.feed()

    def wdt_stop(self):
        """Switch the watchdog off (machine.WDT cannot): clear CTRL.ENABLE through the
        register block's atomic clear alias (+0x3000), so a Ctrl-C back to the REPL is not
        followed by a reset. RP2040 datasheet 4.7: WATCHDOG_BASE 0x40058000, CTRL at offset
        0, ENABLE is bit 30 ("when not enabled the watchdog timer is paused"); an RP2350's
        block is at 0x400D8000 with the same CTRL layout (_WATCHDOG_CTRL_CLR above)."""
        machine.mem32[_WATCHDOG_CTRL_CLR] = _WATCHDOG_ENABLE  # no allocation: the heap may be locked
        self._wdt = None

    def reset(self, hard=False):
        if hard:
            machine.reset()
        machine.soft_reset()

    def halt(self, code):
        """Stop for good (bad config): blink the LED forever, 3 short + 1 long, so it shows in
        the field; Ctrl-C on the USB REPL still reaches the board to re-provision it."""
        while True:
            for ms in (150, 150, 150, 150, 150, 150, 800, 800):
                self._led.toggle()
                time.sleep_ms(ms)
