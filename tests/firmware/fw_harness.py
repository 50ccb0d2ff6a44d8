"""Helpers to run the real firmware on the unix board and to run snippets under micropython."""
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def mp_run(code, heap="192K", timeout=30):
    """Run `code` under the unix-port micropython with the firmware on its path; stdout text."""
    from picocharge.unixport import find_micropython

    env = dict(os.environ, MICROPYPATH=".frozen:%s" % (ROOT / "firmware"))
    r = subprocess.run([find_micropython(), "-X", "heapsize=" + heap, "-c", code],
                       capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, "micropython failed:\n" + r.stdout + r.stderr
    return r.stdout


class Station:
    """The real firmware/main.py under the unix port, on its own flash directory."""

    def __init__(self, flash, config, scenario=None, heap="192K"):
        self.flash = Path(flash)
        self.flash.mkdir(parents=True, exist_ok=True)
        (self.flash / "config.json").write_text(json.dumps(config))
        self.scenario = None
        if scenario is not None:
            self.scenario = self.flash / "scenario.json"
            self.scenario.write_text(json.dumps(scenario))
        self.heap = heap
        self.proc = None
        self.lines = []
        self._q = queue.Queue()

    def start(self):
        from picocharge.unixport import start_firmware

        self.proc = start_firmware(self.flash, scenario=self.scenario, heap=self.heap)
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        return self

    def _pump(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            self._q.put(line)
        self._q.put(None)

    def expect(self, needle, timeout=15.0):
        """Wait for a console line containing `needle`; return it (fails with the log)."""
        end = time.monotonic() + timeout
        for line in list(self.lines):
            pass
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            if needle in line:
                return line
        raise AssertionError("no line with %r within %.0fs; console:\n%s" % (
            needle, timeout, "\n".join(self.lines[-60:])))

    def output(self):
        return "\n".join(self.lines)

    def wait(self, timeout=15):
        """The exit code, once the process has ended and everything it printed is in `lines`
        (its last lines may still be in the pipe when it exits: on a busy machine they were)."""
        rc = self.proc.wait(timeout)
        self._reader.join(timeout)
        return rc

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
