"""Board modules: boards/<name>/board.py, deployed to a board as /board.py.

pico_w: the real Raspberry Pi Pico W (the only code importing machine/network/dht).
unix:   simulated hardware for the MicroPython unix port, driven by a scenario.
This ``__init__`` only exists so that the wheel carries the folder.
"""
