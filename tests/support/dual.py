"""The runner for checks that must pass under both interpreters: CPython (pytest) and the
unix-port micropython, with the firmware's modules importable by their flat names.

A check module (e.g. support/pure_checks.py) holds MicroPython-compatible functions named
`check_*` and a `main()` that runs them all printing "ok <name>" each; `check_names` lists
them for pytest's parametrize, `run_checks` runs the module as a script under micropython.
`mp_run` runs a snippet under micropython (for a check written inline).
"""
import os
import subprocess
from pathlib import Path

from picocharge.unixport import find_micropython

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
BOARD_UNIX = ROOT / "boards" / "unix"


def _env(path):
    parts = [".frozen", str(FIRMWARE)] + [str(p) for p in path]
    return dict(os.environ, MICROPYPATH=os.pathsep.join(parts))


def mp_run(code, heap="192K", timeout=30, path=()):
    """Run `code` under the unix-port micropython with the firmware (then `path`: e.g.
    BOARD_UNIX, the board libraries) importable; its stdout. Fails with the output unless
    it exits 0."""
    heap_opt = ["-X", "heapsize=" + heap] if heap else []   # None: the port's default heap
    r = subprocess.run([find_micropython()] + heap_opt + ["-c", code],
                       capture_output=True, text=True, timeout=timeout, env=_env(path))
    assert r.returncode == 0, "micropython failed:\n" + r.stdout + r.stderr
    return r.stdout


def check_names(module):
    """The names of the module's checks, in the order main() runs them."""
    return [name for name, _fn in module.CHECKS]


def run_checks(module, cwd, heap="512K", timeout=120):
    """Run a check module as a script under micropython in `cwd`; (names of the checks that
    printed "ok", the whole output)."""
    script = Path(module.__file__)
    r = subprocess.run([find_micropython(), "-X", "heapsize=" + heap, str(script)], cwd=str(cwd),
                       env=_env([script.parent]), capture_output=True, text=True, timeout=timeout)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    return [line.split()[1] for line in r.stdout.splitlines() if line.startswith("ok ")], out
