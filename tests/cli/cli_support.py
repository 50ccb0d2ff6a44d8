"""Helpers shared by the CLI tests (imported by name; tests/cli is on sys.path)."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args, input=None, timeout=120, env=None):
    """The installed `picocharge` console command in a subprocess."""
    e = dict(os.environ)
    e.update(env or {})
    script = Path(sys.executable).with_name("picocharge")
    argv = [str(script)] if script.is_file() else [sys.executable, "-m", "picocharge.cli"]
    return subprocess.run(argv + list(args), input=input,
                          capture_output=True, text=True, timeout=timeout, env=e)


def snapshot(folder):
    """{relative path: sha256} of every file under folder (a board's flash)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}
