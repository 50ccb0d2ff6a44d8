"""`picocharge bench --db postgresql --gw-procs ...` (issue 15): our gateway as several processes on
one PostgreSQL server the bench starts (Debian's binaries), behind HAProxy (deploy/haproxy.cfg),
with a real mosquitto behind the MQTT uplink; and `--kill-at`, a process killed in the window.
The bench runs as a subprocess, as an operator runs it; its JSON is what is checked."""
import json
import re
import subprocess
import sys

from click.testing import CliRunner

from picocharge.cli import cli

SMALL = ["--target", "ours", "--steps", "20", "--interval", "0.5", "--heartbeat", "1", "--ramp", "0.3"]


def bench(tmp_path, *args, timeout=300):
    out, chart = tmp_path / "r.json", tmp_path / "c.png"
    p = subprocess.run([sys.executable, "-m", "picocharge.cli", "bench", *SMALL, *args, "--out", str(out),
                        "--chart", str(chart), "--workdir", str(tmp_path / "w")],
                       capture_output=True, text=True, timeout=timeout)
    return p, out, chart


def test_bench_cluster__postgresql_1_and_2_processes_summed(tmp_path):
    p, out, chart = bench(tmp_path, "--db", "postgresql", "--gw-procs", "1,2", "--hold", "3")
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(out.read_text())
    steps = doc["steps"]
    assert [(s["config"], s["db"], s["gw_procs"], s["balancer"]) for s in steps] == [
        ("ours-pg1", "postgresql", 1, "haproxy"), ("ours-pg2", "postgresql", 2, "haproxy")], steps
    for s in steps:
        ev = json.dumps({k: v for k, v in s.items() if k != "timeline"}, indent=1)
        assert s["connected"] == 20 and s["connect_failures"] == s["dropped"] == 0, ev
        # every acknowledged reading found in the database (by station and energy register),
        # and each of them at the MQTT subscriber once (by seq)
        assert s["readings_acked"] == s["readings_stored"] == s["readings_mqtt"] > 0, ev
        assert s["readings_lost"] == 0 and s["mqtt_missing"] == 0 and s["mqtt_duplicates"] == 0, ev
        assert s["msgs_per_s"] > 0 and s["rtt_p99_ms"] > 0, ev
        assert s["cs_cpu_percent"] > 0 and s["lb_cpu_percent"] > 0 and s["db_cpu_percent"] > 0, ev
        assert s["kill"] is None, ev
        # the figures are the sum of every process's own: each took stations (HAProxy's leastconn)
        parts = s["cs_by_process"]
        assert len(parts) == s["gw_procs"], ev
        assert all(q["readings_stored"] > 0 and q["cpu_percent"] > 0 for q in parts), ev
        assert sum(q["readings_stored"] for q in parts) == s["readings_stored"], ev
        assert abs(sum(q["cpu_percent"] for q in parts) - s["cs_cpu_percent"]) < 0.5, ev
    assert doc["meta"]["postgresql"]["server"] == "started by the bench", doc["meta"]
    sc = doc["scaling"]
    assert [(r["gw_procs"], r["mode"], r["stations"]) for r in sc] == [(2, "paced", 20)], sc
    assert sc[0]["throughput_ratio"] == steps[1]["msgs_per_s"] / steps[0]["msgs_per_s"], sc
    assert "PostgreSQL, 2 processes / 1 process, msgs/s at 20 stations (paced): %.2f" % sc[0]["throughput_ratio"] \
        in p.stdout, p.stdout
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_cluster__kill_at_a_process_nothing_lost_takeover_reported(tmp_path):
    p, out, _chart = bench(tmp_path, "--db", "postgresql", "--gw-procs", "2", "--hold", "6", "--kill-at", "2")
    assert p.returncode == 0, p.stdout + p.stderr
    s, = json.loads(out.read_text())["steps"]
    ev = json.dumps({k: v for k, v in s.items() if k != "timeline"}, indent=1)
    k = s["kill"]
    # the process holding the MQTT stream's lease was killed, 2 s into the window
    assert k["held_mqtt_lease"] is True and 1.9 < k["at_s_into_window"] < 5, ev
    assert [q["killed"] for q in s["cs_by_process"]] == [q["process"] == k["process"] for q in s["cs_by_process"]]
    # its stations (leastconn: about half) dropped and got back in through HAProxy, to the other
    assert s["dropped"] == s["reconnected"] == k["stations_reconnected"] > 0 and k["stations_not_back"] == 0, ev
    assert 0 < k["reconnect_p50_s"] <= k["takeover_s"] < 20, ev
    # the other process took the MQTT stream over (its log says when)
    assert k["lease_takeover_s"] is not None and 0 <= k["lease_takeover_s"] < 10, ev
    # nothing lost: every acknowledged reading stored, every stored one at the broker (by seq);
    # a reading sent again by the new stream owner is counted apart
    assert s["readings_acked"] == s["readings_stored"] == s["readings_mqtt"] > 0, ev
    assert s["readings_lost"] == 0 and s["mqtt_missing"] == 0, ev
    assert s["mqtt_messages"] == s["readings_mqtt"] + s["mqtt_duplicates"], ev
    assert "killed 2.0 s into the window: %d stations back on the others" % k["stations_reconnected"] in p.stdout, \
        p.stdout


def test_bench_cluster__options_valid_and_invalid(tmp_path):
    def run(*args):
        return CliRunner().invoke(cli, ["bench", *SMALL, "--out", str(tmp_path / "r.json"), *args])

    r = run("--gw-procs", "2")
    assert r.exit_code == 2 and "2 processes need a database they share: add --db postgresql" in r.output, r.output
    r = run("--db", "postgresql", "--gw-procs", "1", "--kill-at", "1")
    assert r.exit_code == 2 and "give --db postgresql --gw-procs 2" in r.output, r.output
    r = run("--db", "postgresql", "--gw-procs", "2", "--kill-at", "40", "--hold", "30")
    assert r.exit_code == 2 and "40 s is past the window (--hold 30)" in r.output, r.output
    r = run("--db", "mysql")
    assert r.exit_code == 2 and "'mysql': give sqlite, postgresql" in r.output, r.output
    r = run("--db", "postgresql", "--gw-procs", "1,x")
    assert r.exit_code == 2 and "give process counts separated by commas" in r.output, r.output
    r = run("--db", "postgresql://u:secret@127.0.0.1:1/x,postgresql://u:secret@127.0.0.1:2/y")
    assert r.exit_code == 2 and "give one PostgreSQL server" in r.output and "secret" not in r.output, r.output


def test_bench_cluster__stations_split_over_balancers_past_the_open_files_limit(tmp_path):
    """HAProxy holds two files per station and refuses to start past its limit (on this machine
    20,000: fewer than 10,000 stations): the bench then runs several HAProxy processes, each with
    every gateway process behind it, and gives each a share of the stations. Here with a limit of
    280 files, 20 stations need two."""
    import resource

    def few_files():
        resource.setrlimit(resource.RLIMIT_NOFILE, (280, 280))

    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, "-m", "picocharge.cli", "bench", *SMALL, "--db", "postgresql",
                        "--gw-procs", "2", "--hold", "2", "--out", str(out), "--chart", str(tmp_path / "c.png"),
                        "--workdir", str(tmp_path / "w")], capture_output=True, text=True, timeout=300,
                       preexec_fn=few_files)
    assert p.returncode == 0, p.stdout + p.stderr
    s, = json.loads(out.read_text())["steps"]
    ev = json.dumps({k: v for k, v in s.items() if k != "timeline"}, indent=1)
    assert s["balancers"] == 2 and s["connected"] == 20, ev
    assert s["readings_acked"] == s["readings_stored"] == s["readings_mqtt"] > 0 and s["readings_lost"] == 0, ev
    # station i went through HAProxy 1 + i % 2 (its log has a line per WebSocket when it ends)
    for b, parity in ((1, 0), (2, 1)):
        log = (tmp_path / "w" / "ours-pg2-paced-20" / ("haproxy%d" % b) / "haproxy.log").read_text()
        got = {int(n) for n in re.findall(r"GET /ocpp/BENCH-(\d+) ", log)}
        assert got == {i for i in range(1, 21) if i % 2 == parity}, (b, sorted(got))


def test_bench_cluster__a_given_postgresql_server_gets_a_database_per_step_dropped_after(pg_server, tmp_path):
    import psycopg

    url = pg_server.url()
    p, out, _chart = bench(tmp_path, "--db", url, "--gw-procs", "2", "--hold", "2", "--steps", "10")
    assert p.returncode == 0, p.stdout + p.stderr
    assert pg_server.password not in p.stdout + p.stderr, "the server's password was printed"
    doc = json.loads(out.read_text())
    s, = doc["steps"]
    ev = json.dumps({k: v for k, v in s.items() if k != "timeline"}, indent=1)
    assert (s["config"], s["connected"], s["readings_lost"]) == ("ours-pg2", 10, 0), ev
    assert s["readings_acked"] == s["readings_stored"] == s["readings_mqtt"] > 0, ev
    assert doc["meta"]["postgresql"] == {"server": "given (--db URL)", "settings": None}, doc["meta"]
    assert pg_server.password not in out.read_text(), "the server's password is in the results file"
    with psycopg.connect(url) as c:
        left = [r[0] for r in c.execute("SELECT datname FROM pg_database WHERE datname LIKE 'bench_%'")]
    assert left == [], left
