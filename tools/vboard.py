"""A virtual Pico W: the unix-port `micropython` behind a pseudo-terminal, for mpremote.

The unix port already speaks MicroPython's raw REPL on a terminal. What it lacks is
what a board does around it: a soft reboot (Ctrl-D in either REPL exits the unix port),
running /main.py at boot, and a flash filesystem at "/". A small supervisor adds these:

    host (mpremote, picocharge monitor)
      |  opens `device` (the slave end of the outer pty, like /dev/ttyACM0)
    supervisor: outer pty master <-> inner pty master, restarts the interpreter
      |
    micropython -i -c <boot code>   (stdin/stdout: the inner pty slave)

The boot code mounts the flash folder at "/" (`os.VfsPosix(flash)`), sets `sys.path`
as on a board (['', '.frozen', '/lib']) and, on a boot that is not a raw-REPL soft
reset, runs /main.py like a board does. When the interpreter exits the supervisor prints
what a board prints ("MPY: soft reboot") and starts a fresh one on the same terminal:
the device path never changes, just as a real board's soft reset keeps its port.
Exit code 75 is boards/unix/board.py's `RESET_EXIT` (the firmware asked for a reset).

Each running virtual board announces itself in the state folder
($PICOCHARGE_STATE_DIR, else $XDG_RUNTIME_DIR/picocharge/vboards, else
~/.cache/picocharge/vboards) so that `picocharge devices` lists it.

Run one by hand:  picocharge vboard --flash ./flash  (prints the device path; tools/cmd_vboard.py).
"""
import fcntl
import json
import os
import select
import signal
import subprocess
import termios
import threading
import time
from pathlib import Path

RESET_EXIT = 75  # boards/unix/board.py: the firmware asked for a (hard) reset
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
SOFT_REBOOT = b"MPY: soft reboot\r\n"
# printed by the boot code once the interpreter handles Ctrl-C itself; never shown to the host
READY = b"\x1b[vboard-ready]"
# printed by the boot code when main.py raised SystemExit (under `-i` the unix port would
# drop to its REPL instead of exiting): the supervisor ends that interpreter with this code
EXIT = b"\x1b[vboard-exit:"
# Restarting an interpreter that fails at once in a tight loop would hide the failure:
# after this many quick exits in a row the board stays down (like a crash loop you can see).
_MAX_QUICK_EXITS = 5
_GATE_S = 1.0  # how long input after a control character waits for a prompt


def state_dir() -> Path:
    d = os.environ.get("PICOCHARGE_STATE_DIR")
    if d:
        return Path(d)
    run = os.environ.get("XDG_RUNTIME_DIR")
    if run:
        return Path(run) / "picocharge" / "vboards"
    return Path(os.path.expanduser("~")) / ".cache" / "picocharge" / "vboards"


def boot_code(flash, run_main):
    """The interpreter's start-up code: make `flash` the board's "/", then maybe run main.py."""
    lines = [
        "import os, sys",
        "os.umount('/')",
        "os.mount(os.VfsPosix(%r), '/')" % str(flash),
        "os.chdir('/')",
        "sys.path[:] = ['', '.frozen', '/lib']",
        "sys.stdout.write(%r)" % READY.decode(),
    ]
    if run_main:
        lines += [
            "try:",
            "    os.stat('/main.py')",
            "    _m = True",
            "except OSError:",
            "    _m = False",
            "if _m:",
            "    del _m",
            "    try:",
            "        exec(open('/main.py').read(), {'__name__': '__main__'})",
            "    except SystemExit as _e:",
            "        _c = _e.args[0] if _e.args else 0",
            "        _c = _c if isinstance(_c, int) else (0 if _c is None else 1)",
            "        sys.stdout.write(%r %% _c)" % (EXIT.decode() + "%d]"),
            "        import time",
            "        while True:",
            "            time.sleep(1)",
            "else:",
            "    del _m",
        ]
    return "\n".join(lines) + "\n"


def _raw_tty(fd, isig=False):
    """Raw terminal: no echo, no line editing, no output translation (a USB CDC port)."""
    a = termios.tcgetattr(fd)
    a[0] &= ~(termios.ICRNL | termios.INLCR | termios.IGNCR | termios.IXON | termios.IXOFF
              | termios.ISTRIP | termios.BRKINT | termios.PARMRK)
    a[1] &= ~termios.OPOST
    a[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.IEXTEN)
    if isig:
        # Ctrl-C interrupts a running main.py (KeyboardInterrupt); NOFLSH keeps what follows
        # it (mpremote sends "\r\x03" then "\r\x01") instead of discarding it
        a[3] |= termios.ISIG | termios.NOFLSH
    else:
        a[3] &= ~termios.ISIG
    a[6][termios.VMIN] = 1
    a[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, a)


class VirtualBoard:
    """One virtual board. `start()` returns self; `.device` is the serial device path."""

    def __init__(self, flash, name=None, micropython=None, heap=None, env=None,
                 announce=True, run_main=True, state=None):
        from .unixport import DEFAULT_HEAP, find_micropython

        self.flash = Path(flash).resolve()
        self.flash.mkdir(parents=True, exist_ok=True)
        self.name = name or ("vboard-%d-%s" % (os.getpid(), self.flash.name))
        self.micropython = micropython or find_micropython()
        self.heap = heap or DEFAULT_HEAP
        self.env = dict(os.environ if env is None else env)
        self.env.pop("MICROPYPATH", None)
        self.announce = announce
        self.run_main = run_main
        self.state = Path(state) if state else state_dir()
        self.device = None
        self.boots = 0          # interpreter starts (1 + soft/hard resets)
        self.exit_codes = []    # every interpreter exit code, in order
        self._stop = threading.Event()
        self._thread = None
        self._om = self._os = self._im = None
        self._proc = None
        self._lock = threading.Lock()

    # --- life cycle ----------------------------------------------------------
    def start(self):
        self._om, self._os = os.openpty()
        _raw_tty(self._os)
        fl = fcntl.fcntl(self._om, fcntl.F_GETFL)
        fcntl.fcntl(self._om, fcntl.F_SETFL, fl | os.O_NONBLOCK)
        self.device = os.ttyname(self._os)
        self._spawn(run_main=self.run_main, raw=False)
        self._thread = threading.Thread(target=self._loop, name="vboard-" + self.name, daemon=True)
        self._thread.start()
        if self.announce:
            self.state.mkdir(parents=True, exist_ok=True)
            tmp = self._state_file().with_suffix(".tmp")
            tmp.write_text(json.dumps({"name": self.name, "device": self.device,
                                       "flash": str(self.flash), "pid": os.getpid()}))
            os.replace(tmp, self._state_file())
        return self

    def stop(self):
        if self._om is None:
            return
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self._kill()
        if self.announce:
            try:
                self._state_file().unlink()
            except FileNotFoundError:
                pass
        for fd in (self._om, self._os):
            if fd is None:
                continue
            try:
                os.close(fd)
            except OSError:
                pass
        self._om = self._os = None  # stop() twice must not close descriptors reused since

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _state_file(self):
        return self.state / (self.name + ".json")

    # --- the interpreter -----------------------------------------------------
    def _spawn(self, run_main, raw):
        im, isl = os.openpty()
        _raw_tty(isl, isig=True)

        def ctty():
            # the inner terminal becomes the interpreter's controlling terminal, so Ctrl-C
            # (ISIG) raises KeyboardInterrupt in a running main.py as on a board
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        argv = [self.micropython, "-X", "heapsize=" + self.heap, "-i", "-c",
                boot_code(self.flash, run_main)]
        self._proc = subprocess.Popen(argv, stdin=isl, stdout=isl, stderr=isl, cwd=str(self.flash),
                                      env=self.env, start_new_session=True, preexec_fn=ctty,
                                      close_fds=True)
        os.close(isl)
        self._im = im
        self._started = time.monotonic()
        self.boots += 1
        # while `_hold` is set, the new interpreter's output is swallowed until it shows the
        # raw REPL banner, and host input waits: a board in raw REPL comes back in raw REPL
        self._hold = raw
        self._held = b""
        # host input not yet given to the interpreter survives a restart, as it would wait
        # in a board's USB buffer across a soft reset
        self._pending = getattr(self, "_pending", b"")
        self._ready = False
        # main.py runs if asked and present; without it, input waits for the REPL prompt
        self._run_main = run_main and (self.flash / "main.py").is_file()
        self._gate = None
        self._pre = b""
        self._carry = b""
        self._forced = None

    def _from_host(self, data):
        """Give host input to the interpreter, one control character at a time.

        The unix port switches its terminal to raw mode with TCSAFLUSH whenever it
        (re-)enters a REPL, which discards input that arrived before; a board's USB
        buffer keeps it. So after Ctrl-B (leave raw REPL), Ctrl-C (stop main.py) or
        Ctrl-D (soft reset, or run a raw-REPL command) what follows waits until the
        interpreter shows a prompt (">>> ", the raw REPL's ">"), restarts, or
        _GATE_S passes (a raw REPL answers Ctrl-C with nothing).
        """
        if self._hold or not self._ready or self._gate is not None:
            self._pending += data
            return
        for i, c in enumerate(data):
            if c in (2, 3, 4):
                data, self._pending = data[:i + 1], data[i + 1:] + self._pending
                self._gate = time.monotonic()
                break
        try:
            os.write(self._im, data)
        except OSError:
            pass

    def _release(self):
        self._gate = None
        if self._pending and self._im is not None:
            data, self._pending = self._pending, b""
            self._from_host(data)

    def _kill(self):
        p = self._proc
        if p and p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        if self._im is not None:
            try:
                os.close(self._im)
            except OSError:
                pass
            self._im = None

    def _to_host(self, data):
        try:
            os.write(self._om, data)
        except BlockingIOError:
            pass  # nobody reads the port: a board's USB CDC drops output too
        except OSError:
            pass

    def _loop(self):
        raw = False         # is the interpreter in the raw REPL (as last seen in its output)
        tail = b""
        quick = 0
        while not self._stop.is_set():
            fds = [self._om]
            if self._im is not None:
                fds.append(self._im)
            try:
                r, _, _ = select.select(fds, [], [], 0.05)
            except (OSError, ValueError):
                break
            if self._om in r:
                try:
                    data = os.read(self._om, 4096)
                except (BlockingIOError, OSError):
                    data = b""
                if data:
                    self._from_host(data)
            if self._gate is not None and time.monotonic() - self._gate > _GATE_S:
                self._release()  # no prompt came (main.py caught Ctrl-C, or a raw REPL)
            out = b""
            eof = False
            if self._im is not None and self._im in r:
                try:
                    out = os.read(self._im, 4096)
                except OSError:
                    eof = True  # EIO: the interpreter closed its terminal
                eof = eof or not out
            if out and not self._ready:
                # until the boot code says so, host input waits (an early Ctrl-C would kill
                # the interpreter before it can turn it into KeyboardInterrupt)
                self._pre += out
                if READY not in self._pre:
                    continue
                if not self._run_main and b">>> " not in self._pre.split(READY, 1)[1]:
                    continue  # no main.py: input waits for the REPL (a raw terminal, no SIGINT)
                out = self._pre.split(READY, 1)[1]
                self._pre = b""
                self._ready = True
                if self._hold:
                    os.write(self._im, b"\r\x01")
                elif self._pending:
                    data, self._pending = self._pending, b""
                    self._from_host(data)
                if not out:
                    continue
            forced = None
            if out or self._carry:
                out = self._carry + out
                self._carry = b""
                i = out.find(EXIT)
                if i >= 0 and b"]" in out[i:]:
                    j = out.index(b"]", i)
                    forced = int(out[i + len(EXIT):j])
                    out = out[:i]
                else:
                    k = out.rfind(b"\x1b")
                    if k >= 0 and len(out) - k < len(EXIT) + 12 and b"]" not in out[k:]:
                        out, self._carry = out[:k], out[k:]  # maybe a marker cut in two
            if forced is not None:
                self._to_host(out)
                self._forced = forced
                try:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if self._forced is not None:
                out = b""  # the interpreter is being ended: nothing more from it
            if out and self._gate is not None and b">" in out:
                self._release()
            if out:
                tail = (tail + out)[-64:]
                i_raw, i_friendly = tail.rfind(b"raw REPL; CTRL-B"), tail.rfind(b">>> ")
                if i_raw >= 0 or i_friendly >= 0:
                    raw = i_raw > i_friendly
                if self._hold:
                    self._held += out
                    if RAW_BANNER in self._held:
                        rest = self._held.split(RAW_BANNER, 1)[1]
                        self._hold = False
                        self._to_host(RAW_BANNER + rest)
                        if self._pending:
                            data, self._pending = self._pending, b""
                            self._from_host(data)
                else:
                    self._to_host(out)
                continue
            p = self._proc
            if p is not None and self._im is not None and (eof or self._im not in r) and p.poll() is not None:
                code = p.returncode if self._forced is None else self._forced
                self.exit_codes.append(code)
                try:
                    os.close(self._im)
                except OSError:
                    pass
                self._im = None
                quick = quick + 1 if time.monotonic() - self._started < 0.5 and code not in (0,) else 0
                if quick >= _MAX_QUICK_EXITS:
                    self._to_host(b"\r\nvboard: the interpreter keeps failing at start (exit %d); "
                                  b"board stopped\r\n" % code)
                    return
                if code == 0:
                    # Ctrl-D: a soft reset. From the raw REPL a board stays in the raw REPL
                    # (and skips main.py); from the friendly REPL it runs main.py.
                    self._to_host(SOFT_REBOOT)
                    self._spawn(run_main=not raw, raw=raw)
                elif code == RESET_EXIT:
                    self._spawn(run_main=True, raw=False)  # hard reset: boots main.py
                elif code < 0:
                    # killed by a signal (e.g. Ctrl-C before the interpreter set its handler):
                    # come back to the friendly REPL, as a board interrupted in main.py does
                    self._spawn(run_main=False, raw=False)
                else:
                    # main.py halted (boards/unix: exit 78 on a bad config) or the interpreter
                    # failed: the board stays up in its REPL, reachable to be fixed
                    self._spawn(run_main=False, raw=False)
                raw = False
                tail = b""


def running(state=None):
    """Announced virtual boards whose supervisor is alive: [{"name","device","flash","pid"}]."""
    d = Path(state) if state else state_dir()
    out = []
    if not d.is_dir():
        return out
    for f in sorted(d.glob("*.json")):
        try:
            info = json.loads(f.read_text())
            os.kill(int(info["pid"]), 0)
        except (ValueError, KeyError, OSError):
            continue
        if os.path.exists(info.get("device", "")):
            out.append(info)
    return out


def main(argv=None):
    """`python -m picocharge.vboard ...` is `picocharge vboard ...` (kept for older scripts)."""
    from .cmd_vboard import vboard

    vboard.main(args=argv, prog_name="picocharge vboard")


if __name__ == "__main__":
    main()
