"""PicoCharge firmware (MicroPython).

The modules in this folder run unchanged on the Pico W and on the MicroPython
unix port. On a board they are flat modules in the filesystem root; this
``__init__`` only exists so that the wheel carries the folder, and is never
deployed.
"""
