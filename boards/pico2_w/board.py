# Raspberry Pi Pico 2 W (RP2350A, 520 KB SRAM): the Pico W's board module as it is. Same
# pinout (docs/wiring.md), same CYW43 radio, same MicroPython machine/network/dht APIs, the
# temperature sensor on the same ADC channel (ADC.CORE_TEMP = 4 on an RP2350A; 8 only on
# the 80-pin RP2350B). boards/pico_w/board.py finds the RP2350 at import and uses its
# watchdog registers; `picocharge deploy --board pico2_w` ships it as /pico_w.mpy next to
# this file, so there is one implementation of the contract (boards/contract.py) for both.
from pico_w import Board  # noqa: F401

NAME = "pico2_w"
