"""`picocharge gateway --workers N` (gateway/workers.py), through the CLI as a subprocess: N
processes on one port and one PostgreSQL database, watched and restarted by their parent,
stopped with it."""
import asyncio
import os
import re
import signal
import subprocess
import sys

import psycopg

from support.gwcluster import until
from support.gwhttp import http
from support.net import free_port
from support.stations import Connected, boot

N_STATIONS = 16


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose (its parent has not reaped it yet)
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:   # gone between the two looks
        return False


def test_workers__more_than_one_on_sqlite_is_refused_with_what_to_do(tmp_path):
    out = subprocess.run([sys.executable, "-m", "picocharge.cli", "gateway", "--workers", "2", "--db",
                          str(tmp_path / "gw.db"), "--port", "0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    assert "2 workers need a database they can share: give --db postgresql://" in " ".join(out.stderr.split()), \
        out.stderr
    assert not (tmp_path / "gw.db").exists()


async def test_workers__two_processes_share_the_port_are_restarted_and_stop_with_their_parent(pg_url):
    from picocharge.cmd_demo import GatewayProcess
    port = free_port()
    gw = await asyncio.to_thread(lambda: GatewayProcess(pg_url, port=port, extra=(
        "--workers", "2", "--auth", "none", "--thingspeak-url", "")).start(timeout=90))
    try:
        # the parent says it once both workers run, which may come after the first one's
        # "listening" line that start() waits for
        for _ in range(300):
            line = next((ln for ln in gw.log if " workers on port " in ln), None)
            if line is not None:
                break
            await asyncio.sleep(0.1)
        assert line is not None, gw.log
        m = re.fullmatch(r"2 workers on port (\d+): pids (\d+) (\d+)", line)
        assert m and int(m.group(1)) == port, line
        pids = [int(m.group(2)), int(m.group(3))]
        assert all(_alive(p) for p in pids), pids

        # the kernel spreads the connections over both (SO_REUSEPORT); any worker answers for all
        conns = [Connected(port, "CP-%02d" % i) for i in range(N_STATIONS)]
        cps = [await c.__aenter__() for c in conns]
        try:
            await asyncio.gather(*(boot(cp) for cp in cps))
            with psycopg.connect(pg_url) as db:
                nodes = {r[0] for r in db.execute("SELECT node FROM cluster_sessions")}
            assert len(nodes) == 2 and all(any("-%d-" % p in n for n in nodes) for p in pids), (nodes, pids)

            async def all_connected():
                s, out = await http(port, "GET", "/api/stations")
                return s == 200 and sum(1 for x in out if x["connected"]) == N_STATIONS
            for _ in range(4):  # whichever worker answers
                assert await until(all_connected), await http(port, "GET", "/api/stations")
        finally:
            for c in conns:
                await c.__aexit__(None, None, None)

        # a worker killed: its parent starts it again
        os.kill(pids[0], signal.SIGKILL)

        async def restarted():
            return [ln for ln in gw.log if "workers: worker 1 started again: pid" in ln]
        again = await until(restarted, 30)
        assert again, gw.log[-20:]
        new_pid = int(again[0].rsplit(" ", 1)[1])
        assert new_pid not in pids and _alive(new_pid), (new_pid, pids)
        s, out = await http(port, "GET", "/healthz")
        assert s == 200, out

        # SIGTERM to the parent stops the workers, then the parent
        gw.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(gw.proc.wait, 40) == 0, gw.log[-20:]
        assert not _alive(new_pid) and not _alive(pids[1]), gw.log[-20:]
        assert gw.log[-1] == "gateway stopped", gw.log[-5:]
    finally:
        await asyncio.to_thread(gw.stop)


def test_workers__a_first_worker_that_cannot_start_ends_the_parent_with_its_reason():
    out = subprocess.run([sys.executable, "-m", "picocharge.cli", "gateway", "--workers", "2", "--db",
                          "postgresql://nobody@127.0.0.1:%d/x" % free_port(), "--port", "0"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out
    assert "cannot connect to the database postgresql://nobody@127.0.0.1:" in out.stderr and \
        "workers: worker 1 did not start (exit code 1)" in out.stderr, out.stderr
    assert "gateway listening" not in out.stdout, out.stdout
