"""One running firmware on the unix board: provision its flash folder (config.json, the
board's scenario), start the real main.py under the unix port, read its console a line at a
time, wait for a line, stop it.

`picocharge sim` (through fleet.SimStation) and the tests (tests/support) run stations with
this, so a station in a test is started, read and stopped exactly as a simulated one is.

Waiting is event-driven: the thread that reads the console wakes whoever waits (a thread in
`expect`, an asyncio task in `aexpect`, anything registered with `subscribe`) on each line
and once more when the process has ended, so nothing polls on a timer.
"""
import asyncio
import json
import os
import threading
import time
from pathlib import Path

from . import unixport
from .procs import stop_process

RESET_EXIT = 75   # boards/unix/board.py: the firmware asked for a reset
CONFIG_EXIT = 78  # boards/unix/board.py: config.json missing or invalid


def write_private(path, text):
    """Write `path` readable by its owner only (0600) from the first byte: a station's config
    holds its Wi-Fi and OCPP passwords."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
        os.fchmod(fd, 0o600)    # an older file keeps its mode through O_CREAT: set it
        f.write(text)


class _Boot:
    """The console of one interpreter run (a restart starts a new one)."""

    __slots__ = ("proc", "lines", "eof", "reader")

    def __init__(self, proc):
        self.proc = proc
        self.lines = []
        self.eof = False    # the process has ended and every line it printed is in `lines`
        self.reader = None


class FirmwareProcess:
    """The real firmware/main.py on the unix board, on its own flash folder.

    `config` (a dict) is written to flash/config.json (0600) unless None (the folder is
    provisioned already); `scenario` (a dict) to flash/scenario.json for the unix board
    (None: the board's defaults). `record=False` keeps no console history (a long `picocharge
    sim` run): lines then only go to `on_line(line)`, which also gets None when the process
    ends. `start()` may be called again after the process ended (a board reboot): the console
    starts afresh.
    """

    def __init__(self, flash, config=None, scenario=None, heap=unixport.DEFAULT_HEAP,
                 on_line=None, record=True, indent=None):
        self.flash = Path(flash)
        self.config = config
        self.scenario = scenario
        self.heap = heap
        self.on_line = on_line
        self.record = record
        self.indent = indent
        self.scenario_file = None
        self._boot = None
        self._pos = 0
        self._cond = threading.Condition()
        self._subscribers = []
        self.write_files()

    # --- provisioning ---------------------------------------------------------------
    def write_files(self):
        self.flash.mkdir(parents=True, exist_ok=True)
        if self.config is not None:
            write_private(self.flash / "config.json", json.dumps(self.config, indent=self.indent))
        if self.scenario is not None:
            self.scenario_file = self.flash / "scenario.json"
            self.scenario_file.write_text(json.dumps(self.scenario))

    # --- life cycle -----------------------------------------------------------------
    def start(self, **popen):
        """Start the firmware (`popen`: extra subprocess.Popen options, e.g.
        procs.child_options()); returns self."""
        proc = unixport.start_firmware(self.flash, scenario=self.scenario_file, heap=self.heap,
                                       **popen)
        boot = _Boot(proc)
        with self._cond:
            self._boot = boot
            self._pos = 0
        boot.reader = threading.Thread(target=self._pump, args=(boot,), daemon=True,
                                       name="fwproc-%s" % self.flash.name)
        boot.reader.start()
        return self

    @property
    def proc(self):
        return self._boot.proc if self._boot else None

    @property
    def lines(self):
        """The console lines of the current run, in order."""
        return self._boot.lines if self._boot else []

    def _pump(self, boot):
        for raw in boot.proc.stdout or ():   # None: the console goes elsewhere (stdout=None)
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if self.record:
                with self._cond:
                    boot.lines.append(line)
                    self._cond.notify_all()
            if self.on_line is not None:
                self.on_line(line)
            self._wake()
        boot.proc.wait()     # ended, not only its stdout closed: `proc.poll()` now says so
        with self._cond:
            boot.eof = True
            self._cond.notify_all()
        if self.on_line is not None:
            self.on_line(None)
        self._wake()

    def subscribe(self, fn):
        """Call `fn()` (from the reader thread) after each console line and when the process
        ends; returns the function that unsubscribes it."""
        with self._cond:
            self._subscribers.append(fn)

        def unsubscribe():
            with self._cond:
                if fn in self._subscribers:
                    self._subscribers.remove(fn)
        return unsubscribe

    def _wake(self):
        with self._cond:
            subs = list(self._subscribers)
        for fn in subs:
            fn()

    def wait(self, timeout=15):
        """The exit code, once the process has ended and everything it printed is in `lines`
        (its last lines may still be in the pipe when it exits: on a busy machine they were)."""
        boot = self._boot
        rc = boot.proc.wait(timeout)
        boot.reader.join(timeout)
        return rc

    def kill(self):
        """Power cut: SIGKILL, no chance to write anything."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def stop(self, grace=5.0):
        """SIGTERM, then SIGKILL after `grace` seconds; the exit code (None if never started)."""
        return stop_process(self.proc, grace)

    # --- reading the console --------------------------------------------------------
    def output(self):
        return "\n".join(self.lines)

    def tail(self, n=60):
        """The last console lines; all of them once the process has ended."""
        boot = self._boot
        if boot is not None and boot.proc.poll() is not None and boot.reader is not None:
            boot.reader.join(10)
        return "\n".join(self.lines[-n:])

    def _next_match(self, needle):
        """The first line containing `needle` after the last one looked at (under _cond)."""
        if not self.record:
            raise RuntimeError("this firmware process keeps no console (record=False): use on_line")
        lines = self._boot.lines
        while self._pos < len(lines):
            line = lines[self._pos]
            self._pos += 1
            if needle in line:
                return line
        return None

    def _missing(self, needle, timeout):
        proc = self.proc
        return "no console line with %r within %ss (exit %r); console:\n%s" % (
            needle, timeout, proc.poll() if proc else None, self.tail())

    def expect(self, needle, timeout=20.0):
        """Wait for a console line (after the last one matched) containing `needle`; return
        it. Raises AssertionError with the console if none comes within `timeout` seconds or
        the process ends first."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                line = self._next_match(needle)
                if line is not None:
                    return line
                left = end - time.monotonic()
                if self._boot.eof or left <= 0:
                    break
                self._cond.wait(left)
        raise AssertionError(self._missing(needle, timeout))

    async def aexpect(self, needle, timeout=20.0):
        """`expect` for asyncio code: the event loop runs on while it waits."""
        def look():
            line = self._next_match(needle)
            return line is not None or self._boot.eof, line

        line = await self._until(look, timeout)
        if line is None:
            raise AssertionError(self._missing(needle, timeout))
        return line

    async def await_exit(self, timeout=15.0):
        """`wait` for asyncio code: the exit code once the process has ended and all it printed
        is in `lines`, without blocking the event loop (a central system in the same loop goes
        on answering the station while it shuts down). AssertionError after `timeout`."""
        def look():
            return self._boot.eof, self._boot.proc.returncode

        done = await self._until(look, timeout)
        if not self._boot.eof:
            raise AssertionError("still running after %ss; console:\n%s" % (timeout, self.tail()))
        return done

    async def _until(self, look, timeout):
        """look() -> (done, value), called under the lock after each console event until done
        or `timeout` seconds have passed; returns the last value."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        changed = asyncio.Event()
        unsubscribe = self.subscribe(lambda: _set_threadsafe(loop, changed))
        try:
            while True:
                changed.clear()
                with self._cond:
                    done, value = look()
                left = end - loop.time()
                if done or left <= 0:
                    return value
                try:
                    await asyncio.wait_for(changed.wait(), left)
                except asyncio.TimeoutError:
                    pass
        finally:
            unsubscribe()


def _set_threadsafe(loop, event):
    try:
        loop.call_soon_threadsafe(event.set)
    except RuntimeError:   # the loop is closed: nobody waits any more
        pass
