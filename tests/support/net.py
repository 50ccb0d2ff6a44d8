"""Ports: a free one on 127.0.0.1, and waiting until something listens on one."""
import socket
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, host="127.0.0.1"):
    """Return once a TCP connection to host:port succeeds (the server is up); TimeoutError
    after `timeout` seconds. Nothing tells a client when a listener appears: this retries."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("nothing listening on %s:%d after %.0fs" % (host, port, timeout))


def wait_until(pred, timeout=20.0, what="condition", interval=0.05):
    """Return pred()'s first true value, checked until `timeout` seconds have passed; raise
    AssertionError naming `what` otherwise. For state another process changes and nothing
    announces (a server's counters, a page): every wait that has an event waits for it."""
    end = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() >= end:
            raise AssertionError("no %s within %ss" % (what, timeout))
        time.sleep(interval)
