"""`picocharge gateway --workers N`: N gateway processes on one host and one port.

The parent does no gateway work: it starts N workers (`picocharge gateway ... --workers 1
--reuse-port`, the same options otherwise), each a whole gateway on the shared PostgreSQL
database (cluster.py), all listening on the one port with SO_REUSEPORT, so that the kernel
spreads the connections over them (no front process copies bytes). It watches them: a worker
that ends is started again (after 1 s, doubling up to 30 s while it keeps failing at once); on
SIGTERM or SIGINT it stops them all (SIGTERM, then SIGKILL after the grace period) and ends.
The workers die with it if it is killed (PR_SET_PDEATHSIG, procs.child_options).

Port 0 (any free port): the parent binds a socket with SO_REUSEPORT to learn the port, holds it
(bound, not listening: the kernel gives connections to listening sockets only) while the first
workers start on that port, then closes it.
"""
import logging
import signal
import socket
import subprocess
import sys
import threading
import time

from picocharge.procs import child_options

log = logging.getLogger(__name__)

GRACE_S = 15.0          # a worker has this long to stop after SIGTERM
START_TIMEOUT_S = 60.0  # a worker must say it listens within this
_BACKOFF = (1.0, 30.0)
_STABLE_S = 30.0        # a worker that ran this long failed "not at once": its restart waits 1 s again


def strip_options(argv, names_with_value):
    """argv without the options named (each with its value: `--port 9000` or `--port=9000`)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in names_with_value:
            skip = True
            continue
        if any(a.startswith(n + "=") for n in names_with_value):
            continue
        out.append(a)
    return out


def reserve_port(host, port):
    """A socket bound to host:port with SO_REUSEPORT (port 0: a free one), not listening."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, port))
    return s


class Worker:
    def __init__(self, n, argv):
        self.n = n
        self.argv = argv
        self.proc = None
        self.started = 0.0
        self.backoff = _BACKOFF[0]
        self.next_start = 0.0
        self.listening = threading.Event()
        self.url = None
        self.out = []       # its stdout lines (what it prints for the operator)

    def start(self):
        self.listening.clear()
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, **child_options())
        self.started = time.monotonic()
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()

    def _pump(self, proc):
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith("gateway listening on ") and not self.listening.is_set():
                self.url = line.split("gateway listening on ", 1)[1].strip()
                self.listening.set()
            elif line.startswith(("admin API token", "dashboard sign-in")):
                self.out.append(line)   # never printed again by the parent: the token is shown once
        self.listening.set()    # ended: nobody waits for a line that will not come


class Supervisor:
    """The parent of --workers N. run() returns the exit code."""

    def __init__(self, n, argv, host, port, echo=print):
        self.n = n
        self.host = host
        self.port = port
        self.base = list(argv)
        self.echo = echo
        self.workers = []
        self.stopping = threading.Event()
        self.restarts = 0

    def _argv(self):
        return self.base + ["--port", str(self.port), "--workers", "1", "--reuse-port"]

    def _stop_signal(self, signum, frame):
        log.info("workers: %s: stopping the %d workers", signal.Signals(signum).name, len(self.workers))
        self.stopping.set()

    def run(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stop_signal)
        held = reserve_port(self.host, self.port)
        self.port = held.getsockname()[1]
        try:
            self.workers = [Worker(k + 1, self._argv()) for k in range(self.n)]
            # the first starts alone: it applies the migrations and makes the first admin token,
            # which the others then find (nothing is made twice)
            first = self.workers[0]
            first.start()
            if not self._wait_listening([first]):
                return self._fail(first)
            for w in self.workers[1:]:
                w.start()
            if not self._wait_listening(self.workers[1:]):
                return self._fail(next(w for w in self.workers if w.proc.poll() is not None))
        finally:
            held.close()
        self.echo("gateway listening on %s" % first.url)
        for line in first.out:
            self.echo(line)
        self.echo("%d workers on port %d: pids %s" % (self.n, self.port, " ".join(str(w.proc.pid)
                                                                                   for w in self.workers)))
        sys.stdout.flush()
        self._watch()
        self._stop_all()
        self.echo("gateway stopped")
        return 0

    def _wait_listening(self, workers):
        end = time.monotonic() + START_TIMEOUT_S
        for w in workers:
            while not w.listening.wait(0.2):
                if self.stopping.is_set() or time.monotonic() > end:
                    return False
            if w.proc.poll() is not None or w.url is None:
                return False
        return True

    def _fail(self, w):
        self._stop_all()
        code = w.proc.poll() if w is not None and w.proc is not None else None
        if self.stopping.is_set():
            return 0
        log.error("workers: worker %d did not start (exit code %s); see its lines above", w.n if w else 0, code)
        return 1

    def _watch(self):
        while not self.stopping.wait(0.5):
            now = time.monotonic()
            for w in self.workers:
                if w.proc.poll() is None:
                    continue
                if w.next_start == 0.0:
                    ran = now - w.started
                    if ran >= _STABLE_S:
                        w.backoff = _BACKOFF[0]
                    w.next_start = now + w.backoff
                    log.warning("workers: worker %d (pid %d) ended with exit code %s after %.0f s: starting it again "
                                "in %.0f s", w.n, w.proc.pid, w.proc.returncode, ran, w.backoff)
                    w.backoff = min(w.backoff * 2, _BACKOFF[1])
                elif now >= w.next_start:
                    w.next_start = 0.0
                    self.restarts += 1
                    w.start()
                    log.info("workers: worker %d started again: pid %d", w.n, w.proc.pid)

    def _stop_all(self):
        live = [w for w in self.workers if w.proc is not None and w.proc.poll() is None]
        for w in live:
            try:
                w.proc.terminate()
            except ProcessLookupError:
                pass
        end = time.monotonic() + GRACE_S
        for w in live:
            try:
                w.proc.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("workers: worker %d (pid %d) did not stop in %.0f s: killed", w.n, w.proc.pid, GRACE_S)
                w.proc.kill()
                w.proc.wait()


def worker_argv(argv):
    """The command line of a worker: this one's, without --workers and --port (the parent gives
    them), as `python -m picocharge.cli ...`."""
    return [sys.executable, "-m", "picocharge.cli"] + strip_options(argv, ("--workers", "--port"))



