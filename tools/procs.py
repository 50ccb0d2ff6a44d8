"""Ending child processes: ask first, then insist; and stopping them on any signal that ends us."""
import contextlib
import signal
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


@contextlib.contextmanager
def stop_on_signals():
    """Inside this block SIGTERM and SIGHUP (a `kill`, a service manager, a closed terminal)
    raise KeyboardInterrupt in the main thread, so the code that stops child processes on
    Ctrl-C stops them on these too. The children run in their own sessions and get none of
    these signals themselves. The previous handlers are put back on the way out."""
    def handler(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    sigs = [getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    old = {s: signal.signal(s, handler) for s in sigs}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
