# What every *_checks module shares (pure_checks, fields_checks, smart_checks, ...): its checks
# are its check_* functions, in name order; run as a script under the unix-port micropython
# (support/dual.run_checks) it runs each on a collected heap and prints "ok <name>". Imported by
# them as `support.checkrun` under CPython and as `checkrun` under micropython, which runs them
# from this folder. MicroPython-compatible code only.
import gc
import os


def checks(g):
    """[(name, function)] of the check_* functions in a module's globals(), in name order."""
    return [(k, v) for k, v in sorted(g.items()) if k.startswith("check_")]


def main(found, scratch=False):
    """Run the checks; with `scratch`, each in a new folder of the current one (flash files)."""
    base = os.getcwd()
    for i, (name, fn) in enumerate(found):
        if scratch:
            d = "%s/c%d" % (base, i)
            os.mkdir(d)
            os.chdir(d)
        gc.collect()   # each check starts on a collected heap (one needs 64 KiB in one piece)
        fn()
        if scratch:
            os.chdir(base)
        print("ok", name)
