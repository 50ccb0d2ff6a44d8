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
#   GP10..13 SPI1 SCK, MOSI, MISO and chip select (the RC522 module pin marked SDA)
#   GP9   MFRC522 reset (RST); 3V3 and GND: an RC522 module (13.56 MHz) for RFID cards
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
_SPI_RFID = const(1)
_PIN_SCK = const(10)
_PIN_MOSI = const(11)
_PIN_MISO = const(12)
_PIN_CS = const(13)
_PIN_RFID_RST = const(9)
# MFRC522 registers (NXP MFRC522 datasheet, 9.2) and commands (10.3)
_COMMAND = const(0x01)
_COMIRQ = const(0x04)
_ERROR = const(0x06)
_FIFODATA = const(0x09)
_FIFOLEVEL = const(0x0A)
_BITFRAMING = const(0x0D)
_MODE = const(0x11)
_TXCONTROL = const(0x14)
_TXASK = const(0x15)
_TMODE = const(0x2A)
_TPRESCALER = const(0x2B)
_TRELOADH = const(0x2C)
_TRELOADL = const(0x2D)
_IDLE = const(0x00)
_TRANSCEIVE = const(0x0C)
_SOFTRESET = const(0x0F)
# "Raspberry Pi Pico W with RP2040", "Raspberry Pi Pico 2 W with RP2350"
_RP2350 = "RP2350" in sys.implementation._machine
# WATCHDOG_BASE (CTRL at +0) + 0x3000, the atomic bit-clear alias: 0x40058000 on an RP2040
# (datasheet 4.7), 0x400D8000 on an RP2350 (pico-sdk's addressmap.h); CTRL bit 30 is ENABLE
# on both.
# Not const(): these do not fit a 32-bit port's small int, so they are made once, at import.
_WATCHDOG_CTRL_CLR = 0x400DB000 if _RP2350 else 0x4005B000
_WATCHDOG_ENABLE = 0x40000000


class MFRC522:
    """Enough of an NXP MFRC522 (SPI) to read a card's UID: REQA, then the cascade level 1
    anticollision (ISO/IEC 14443-3), for 4-byte UIDs (MIFARE Classic, most access cards; a 7-byte
    UID reads as its first cascade level, 0x88 and three bytes). Our own: PyPI has no maintained
    MicroPython MFRC522 driver (the packages there are for a Raspberry Pi's spidev, or HaaS), and
    the copies in circulation allocate on every poll and read blocks we do not need. A poll
    with no card allocates nothing: fixed buffers, register access through write_readinto."""

    def __init__(self, spi, cs, rst):
        self._spi = spi
        self._cs = cs
        self._w = bytearray(2)
        self._r = bytearray(2)
        self._buf = bytearray(5)      # the anticollision answer: 4 UID bytes and their BCC
        rst.value(1)
        self.put(_COMMAND, _SOFTRESET)
        time.sleep_ms(50)
        self.put(_TMODE, 0x8D)         # timer: auto-start, prescaler 0xD3E, reload 30: ~25 ms
        self.put(_TPRESCALER, 0x3E)
        self.put(_TRELOADH, 0)
        self.put(_TRELOADL, 30)
        self.put(_TXASK, 0x40)         # 100 % ASK
        self.put(_MODE, 0x3D)          # CRC preset 0x6363
        self.put(_TXCONTROL, self.get(_TXCONTROL) | 0x03)   # antenna on

    def get(self, reg):
        w = self._w
        w[0] = 0x80 | (reg << 1)
        w[1] = 0
        self._cs.value(0)
        self._spi.write_readinto(w, self._r)
        self._cs.value(1)
        return self._r[1]

    def put(self, reg, v):
        w = self._w
        w[0] = reg << 1
        w[1] = v
        self._cs.value(0)
        self._spi.write_readinto(w, self._r)
        self._cs.value(1)

    def _transceive(self, b0, b1, bits):
        """Send one or two bytes (b1 < 0: one) with `bits` valid in the last; the number of
        bytes answered (in the FIFO), or 0 on no answer or an error."""
        self.put(_COMMAND, _IDLE)
        self.put(_COMIRQ, 0x7F)        # clear every interrupt request bit
        self.put(_FIFOLEVEL, 0x80)     # flush the FIFO
        self.put(_FIFODATA, b0)
        if b1 >= 0:
            self.put(_FIFODATA, b1)
        self.put(_BITFRAMING, bits)
        self.put(_COMMAND, _TRANSCEIVE)
        self.put(_BITFRAMING, 0x80 | bits)   # StartSend
        for _ in range(400):           # the timer (~25 ms) ends it first
            irq = self.get(_COMIRQ)
            if irq & 0x31:             # RxIRq, IdleIRq, TimerIRq
                break
        self.put(_BITFRAMING, 0)
        if not irq & 0x30 or irq & 0x01 or self.get(_ERROR) & 0x13:   # timeout, buffer/parity/protocol error
            return 0
        return self.get(_FIFOLEVEL)

    def uid(self):
        """The UID of the card in the field, or None."""
        if self._transceive(0x26, -1, 7) != 2:     # REQA (7 bits), ATQA: 2 bytes
            return None
        if self._transceive(0x93, 0x20, 0) != 5:   # anticollision, cascade level 1
            return None
        b = self._buf
        x = 0
        for i in range(5):
            b[i] = self.get(_FIFODATA)
            x ^= b[i]
        if x:                                      # BCC: the XOR of the four bytes
            return None
        return bytes(b[:4])


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
        self._rfid = None      # the MFRC522, set up at the first rfid_uid() (charger.rfid)

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

    def rfid_uid(self):
        r = self._rfid
        if r is None:
            spi = machine.SPI(_SPI_RFID, baudrate=1000000, polarity=0, phase=0, sck=machine.Pin(_PIN_SCK),
                              mosi=machine.Pin(_PIN_MOSI), miso=machine.Pin(_PIN_MISO))
            r = self._rfid = MFRC522(spi, machine.Pin(_PIN_CS, machine.Pin.OUT, value=1),
                                     machine.Pin(_PIN_RFID_RST, machine.Pin.OUT, value=0))
        return r.uid()

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
