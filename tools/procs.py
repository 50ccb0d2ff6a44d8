"""Ending child processes: ask first, then insist."""
import subprocess


def stop_process(proc, grace=5.0):
    """Terminate `proc` (SIGTERM), wait up to `grace` seconds, then kill it; returns its exit code.

    Safe to call on a process that has already ended, or with None."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()
