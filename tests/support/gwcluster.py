"""Several `picocharge gateway` processes on one PostgreSQL database (issue 15, gateway/cluster.py):
started as real subprocesses, each on its own free port, killed or stopped by the test."""
import asyncio
import os
import signal
import time

from .gwhttp import http
from .net import free_port


def start_gateway(db, *extra, port=None):
    """`picocharge gateway --db <db>` on a free port (cmd_demo.GatewayProcess: its admin token is
    the tests' TEST_TOKEN, from the environment conftest sets)."""
    from picocharge.cmd_demo import GatewayProcess
    return GatewayProcess(db, port=port or free_port(), extra=tuple(extra)).start()


def port_of(gw):
    return int(gw.url.rsplit(":", 1)[1])


def kill(gw):
    """SIGKILL, no goodbye: its leases and sessions stay in the database until the others see it gone."""
    os.killpg(gw.proc.pid, signal.SIGKILL)
    gw.proc.wait(10)


async def until(fn, timeout=30, every=0.05):
    """Waits for the async predicate fn() to be true (returns its value), or returns None."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = await fn()
        if got:
            return got
        await asyncio.sleep(every)
    return None


async def station(port, sid):
    """GET /api/stations/<sid> of one process."""
    s, out = await http(port, "GET", "/api/stations/%s" % sid)
    assert s == 200, (s, out)
    return out


def log_lines(gw, text):
    return [ln for ln in gw.log if text in ln]


def logged_at(line):
    """The wall-clock time (time.time()) of a gateway log line ('2026-11-30 21:29:14,353 INFO ...')."""
    from datetime import datetime
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
