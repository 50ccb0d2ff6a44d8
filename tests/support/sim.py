"""Helpers for the tests that start `picocharge run`, `sim` and `demo` as processes: finding
their firmware processes, waiting for them to end."""
import os
import time
from pathlib import Path

import psutil


def procs_of(folder):
    """{pid: command line} of every process working in `folder` or naming it on its command line.

    The firmware runs as `micropython -X heapsize=192K <image>/main.py` in its own session,
    with its flash folder as its working directory: its command line never names the run's
    folder, and it is no child of the command's process group, so `pgrep -f` and the
    command's process tree both miss it."""
    folder = str(Path(folder).resolve())
    out = {}
    for p in psutil.process_iter(["pid", "cmdline", "cwd"]):
        if p.info["pid"] == os.getpid():
            continue
        cwd = p.info["cwd"] or ""
        cmd = " ".join(p.info["cmdline"] or [])
        if cwd == folder or cwd.startswith(folder + os.sep) or folder in cmd:
            out[p.info["pid"]] = cmd
    return out


def firmware_pids(folder):
    return {pid for pid, cmd in procs_of(folder).items() if cmd.rstrip().endswith("main.py")}


def wait_gone(pids, timeout=10):
    """The pids among `pids` still running after `timeout` seconds."""
    end = time.monotonic() + timeout
    left = set(pids)
    while left and time.monotonic() < end:
        left = {p for p in left if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE}
        time.sleep(0.1)
    return left
