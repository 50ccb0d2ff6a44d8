"""The board contract: what the firmware calls on the board object, in one place.

Every board module (boards/<name>/board.py, deployed as /board.py) defines `NAME` and a
class `Board` with a no-argument constructor that provides exactly this. The firmware
receives the board as an argument (`ctx.board`) and never imports machine, network or dht
itself. tests/boards/test_contract.py holds every board to it: names, signatures and
behaviour (the Pico W modules under CPython against fake machine/network/dht modules), and
mypy checks boards/pico_w against the published MicroPython rp2 stubs for the Pico W.

This file is documentation and a typing Protocol for CPython (tests, mypy); it is not
deployed to a board.
"""
from typing import Dict, Optional, Protocol, Tuple


class BoardContract(Protocol):
    name: str
    """The board's name ("pico_w", "pico2_w", "unix"): on the status page and in the boot log."""

    # --- identity -----------------------------------------------------------
    def unique_id(self) -> str:
        """The chip's unique id as lower-case hex (16 characters on an RP2040/RP2350 flash):
        stable across reboots; the OCPP BootNotification's chargePointSerialNumber."""
        ...

    # --- sensors ------------------------------------------------------------
    def read_dht(self) -> Tuple[float, float]:
        """One DHT11 reading: (temperature in degC, relative humidity in %), whole units as a
        DHT11 gives them. Raises OSError on any failed read (timeout: errno 110, checksum:
        errno 5); a DHT11 must not be read more often than once a second."""
        ...

    def adc_burst(self, buf_i, buf_v, rate_hz: int) -> None:
        """Fill buf_i (current) and buf_v (voltage), two array('H') of the same length, with
        interleaved raw 16-bit ADC samples (0..65535, read_u16 scale) taken at rate_hz pairs
        per second. Blocks for len(buf_i) / rate_hz seconds; allocates nothing."""
        ...

    def read_chip_temp(self) -> int:
        """The raw 16-bit reading (0..65535) of the chip's temperature sensor (ADC channel
        CORE_TEMP); firmware/mains.chip_temp converts it with the datasheet formula."""
        ...

    def button(self) -> bool:
        """True while the local start/stop button is pressed."""
        ...

    def rfid_uid(self) -> Optional[bytes]:
        """The UID (4, 7 or 10 bytes) of an RFID card held to the reader now, or None. Called
        every 200 ms while charger.rfid is on (firmware/rfid.py), and only then: a board may set
        its reader up at the first call. Must not allocate when no card is there."""
        ...

    # --- control pilot (IEC 61851-1; firmware/pilot.py, firmware/evse.py) -------
    def pilot_pwm(self, duty: int) -> None:
        """Set the pilot's 1 kHz PWM duty, 0..65535 (machine.PWM.duty_u16): 65535 = +12 V
        steady (no PWM), 0 = -12 V steady (state F). Must not allocate."""
        ...

    def pilot_burst(self, buf) -> None:
        """Fill buf (array('H')) with raw 16-bit ADC samples (read_u16 scale) of the pilot through
        its front end (docs/wiring.md: 1.65 V + V_pilot / 8) at 20,000 samples a second, 20 a
        PWM period. Blocks for len(buf) / 20000 s; allocates nothing."""
        ...

    # --- outputs ------------------------------------------------------------
    def relay(self, on: bool) -> None:
        """Close (True) or open (False) the contactor relay. Must not allocate: it is called
        from the Ctrl-C path, where the heap may be locked."""
        ...

    def led(self, on: bool) -> None:
        """Switch the status LED on or off."""
        ...

    # --- Wi-Fi --------------------------------------------------------------
    def wifi_connect(self, ssid: str, password: str, country: str = "") -> None:
        """Start connecting to the access point and return at once (poll wifi_connected).
        country: ISO 3166 two-letter code for the radio's regulatory domain, "" for the
        default. Raises OSError when the radio cannot start."""
        ...

    def wifi_connected(self) -> bool:
        """True once the link is up with an address; False while connecting or after a drop."""
        ...

    def wifi_disconnect(self) -> None:
        """Leave the access point and switch the radio off."""
        ...

    def ip(self) -> str:
        """The station's IPv4 address as text, "" when not connected."""
        ...

    def sync_clock(self, host: str) -> bool:
        """Set the real-time clock from the NTP server `host` (TLS checks certificate dates
        by it). True when set; False on no answer. Never raises; blocks for up to ~1 s."""
        ...

    # --- system -------------------------------------------------------------
    def wdt_start(self, timeout_ms: int) -> None:
        """Start the hardware watchdog: the board resets unless wdt_feed is called within
        timeout_ms (an RP2040 caps it at 8388 ms)."""
        ...

    def wdt_feed(self) -> None:
        """Feed the watchdog started by wdt_start (nothing before it)."""
        ...

    def wdt_stop(self) -> None:
        """Stop the watchdog (Ctrl-C back to the REPL must not be followed by a reset).
        Must not allocate: the heap may be locked."""
        ...

    def reset(self, hard: bool = False) -> None:
        """Restart the firmware: a soft reset, or a hard (chip) reset with hard=True. Does not
        return."""
        ...

    def halt(self, code: int) -> None:
        """Stop for good after a fatal error such as a bad config (code 78, EX_CONFIG): show
        it (LED blink code, exit status) and never return."""
        ...


def members() -> Dict[str, str]:
    """The contract's names: {name: "attribute" or "method"}."""
    out: Dict[str, str] = {}
    for cls in BoardContract.__mro__:
        if cls in (object, Protocol) or cls.__name__ == "Generic":
            continue
        for name in getattr(cls, "__annotations__", {}):
            out.setdefault(name, "attribute")
        for name, value in vars(cls).items():
            if not name.startswith("_") and callable(value):
                out[name] = "method"
    return out
