"""PicoCharge: toolkit for small EV charging stations on the Raspberry Pi Pico W."""

__version__ = "0.1.0"
