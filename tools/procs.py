"""Ending child processes: ask first, then insist; stopping them on any signal that ends us;
and, where the OS can, ending them when we are killed without a chance to stop them."""
import contextlib
import os
import signal
import subprocess
import sys

_PR_SET_PDEATHSIG = 1


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()   # looked up here, not in the forked child


def child_options():
    """Popen keyword arguments for a long-lived child (gateway, simulated station): its own
    session, so Ctrl-C in our terminal reaches only us and we stop it in order; and on Linux
    PR_SET_PDEATHSIG, so a `kill -9` of us (no handler runs) still ends it with SIGTERM
    instead of leaving it re-parented, holding its port. Start children from a thread that
    lives as long as they should: the kernel sends the signal when the forking thread ends."""
    if _prctl is None:
        return {"start_new_session": True}
    parent = os.getpid()

    def die_with_parent():
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:   # the parent died before prctl: nobody will signal us
            os._exit(1)

    return {"start_new_session": True, "preexec_fn": die_with_parent}


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


def remove_stale_temp(prefix):
    """Remove the temporary folders `<tmp>/<prefix><pid>-*` whose process is gone: what a
    command killed with -9 (no cleanup runs) left behind. Folders of live processes stay."""
    import shutil
    import tempfile
    from pathlib import Path

    for d in Path(tempfile.gettempdir()).glob(prefix + "*-*"):
        pid = d.name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or not d.is_dir():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:   # alive, another user's
            pass


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
