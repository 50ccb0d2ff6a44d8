# What differs between MicroPython and CPython, in one place: the firmware imports these names
# from here, so the same modules run on a board and, for their pure logic, under CPython (the
# tests). On a board every name is the port's own function.
#
# const(): MicroPython's compiler folds `_NAME = const(...)` itself (a private name then takes no
# RAM at all), CPython needs a function of that name. str_buf(text): a MicroPython str has the
# buffer protocol, so it is written to a file without an encoded copy; CPython needs the bytes.
# json_dump(obj, f): MicroPython's json.dump writes to a binary file in pieces, without building
# the text in RAM; CPython's writes str.
# ocppj.py does not import this module: the gateway's tools import it as picocharge.firmware.ocppj.
try:
    from micropython import const
    from json import dump as json_dump
    from time import ticks_ms, ticks_diff, ticks_add, time_ns

    def str_buf(text):
        return text
except ImportError:  # CPython
    from json import dumps as _dumps
    from time import monotonic as _monotonic, time_ns

    def const(x):
        return x

    def ticks_ms():
        return int(_monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def ticks_add(a, b):
        return a + b

    def str_buf(text):
        return text.encode()

    def json_dump(obj, f):
        f.write(_dumps(obj).encode())
