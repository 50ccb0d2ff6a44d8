"""`picocharge bench`: load a central system with N OCPP 1.6J stations, step by step."""
import json
import os
import tempfile
from pathlib import Path

import click

from .options import json_option
from .procs import stop_on_signals

DEFAULT_STEPS = "10,20,40,80,160,1000,5000,10000"


def _steps(ctx, param, value):
    try:
        steps = [int(s) for s in value.replace(" ", "").split(",") if s]
    except ValueError:
        raise click.BadParameter("%r: give station counts separated by commas, e.g. 10,20,40" % value)
    if not steps or any(n < 1 for n in steps):
        raise click.BadParameter("%r: every step needs at least 1 station" % value)
    return steps


def _dbs(ctx, param, value):
    """(databases, URL): 'sqlite', 'postgresql' (a throwaway server), a postgresql:// URL, or
    several separated by commas."""
    dbs, url = [], None
    for d in [x for x in value.replace(" ", "").split(",") if x]:
        if d.startswith(("postgresql://", "postgres://")):
            if url:
                raise click.BadParameter("give one PostgreSQL server (one URL)")
            url, d = d, "postgresql"
        if d not in ("sqlite", "postgresql"):
            raise click.BadParameter("%r: give sqlite, postgresql (a throwaway server started by the bench) or a "
                                     "postgresql://USER:PASSWORD@HOST:PORT/DB URL, or several separated by commas"
                                     % d.split("@")[-1])
        if d in dbs:
            raise click.BadParameter("%s is given twice" % d)
        dbs.append(d)
    if not dbs:
        raise click.BadParameter("give sqlite, postgresql or a postgresql:// URL")
    return dbs, url


def _procs(ctx, param, value):
    try:
        procs = [int(s) for s in value.replace(" ", "").split(",") if s]
    except ValueError:
        raise click.BadParameter("%r: give process counts separated by commas, e.g. 1,2,4" % value)
    if not procs or any(p < 1 or p > 16 for p in procs) or len(set(procs)) != len(procs):
        raise click.BadParameter("%r: each count from 1 to 16 (deploy/haproxy.cfg's servers), each once" % value)
    return procs


@click.command()
@click.option("--target", type=click.Choice(["ours", "baseline", "both"]), default="both",
              show_default=True,
              help="Central system(s) to measure: ours (picocharge gateway), baseline "
                   "(benchmarks/baseline_cs.py, the ocpp package's example), or both side by side.")
@click.option("--steps", default=DEFAULT_STEPS, show_default=True, callback=_steps,
              help="Station counts, one step each.")
@click.option("--mode", type=click.Choice(["paced", "closed", "both"]), default="paced",
              show_default=True,
              help="paced: MeterValues every --interval s per station; closed: the next CALL as "
                   "soon as the answer comes (saturation).")
@click.option("--hold", type=float, default=30.0, show_default=True,
              help="Seconds each step is measured for (after every station has connected).")
@click.option("--interval", type=float, default=10.0, show_default=True,
              help="Paced mode: seconds between a station's MeterValues.")
@click.option("--heartbeat", type=float, default=60.0, show_default=True,
              help="Seconds between a station's Heartbeats (the same for every central system).")
@click.option("--ramp", type=float, default=None,
              help="Seconds over which a step's stations connect (0: all at once, a reconnect "
                   "storm). Default: N/400, at most 30.")
@click.option("--retry-for", type=click.FloatRange(0.0), default=120.0, show_default=True,
              help="A station whose connection is refused or times out retries with the "
                   "firmware's backoff (1, 2, 4 ... s, jittered) for this many seconds; it "
                   "counts under 'retry', and under 'fail' only if it never got in. 0: no retry.")
@click.option("--procs", type=int, default=0,
              help="Generator processes (0: 1 below 500 stations, else one per CPU up to 4).")
@click.option("--mqtt/--no-mqtt", default=True, show_default=True,
              help="Run our gateway with a mosquitto broker and count the telemetry arriving there.")
@click.option("--source-addrs", type=click.IntRange(1, 250), default=1, show_default=True,
              help="Spread client connections over 127.0.0.1..127.0.0.N (more ephemeral ports).")
@click.option("--firmware", is_flag=True,
              help="Stations are the real firmware under the unix-port micropython (one process "
                   "each, at most %d): msgs/s from the central system's counters, no RTT." % 200)
@click.option("--db", "db", default="sqlite", show_default=True, callback=_dbs,
              help="Our gateway's database: sqlite (a fresh file, one process), postgresql (a throwaway "
                   "server from Debian's binaries, started for the run; fsync off), a postgresql:// URL "
                   "(a server of yours: the bench creates and drops a database per step), or both "
                   "(sqlite,postgresql).")
@click.option("--gw-procs", default="1", show_default=True, callback=_procs,
              help="On PostgreSQL: gateway processes, one configuration each (e.g. 1,2,4), each process on "
                   "its own port behind HAProxy (deploy/haproxy.cfg); counters summed over them.")
@click.option("--kill-at", type=click.FloatRange(0.0, min_open=True), default=None, metavar="SECONDS",
              help="On PostgreSQL with 2 or more processes: SIGKILL the process holding the MQTT lease this "
                   "many seconds into each step's window; its stations reconnect through HAProxy to the "
                   "others, and the takeover is reported.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("-o", "--out", type=click.Path(dir_okay=False), default="bench-results.json",
              show_default=True, help="JSON results file.")
@click.option("--chart", type=click.Path(dir_okay=False), default="bench-chart.png",
              show_default=True, help="PNG chart (stations vs msgs/s, latency, memory).")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Where central-system databases and logs go (default: a temporary folder, "
                   "kept and printed).")
@json_option
def bench(target, steps, mode, hold, interval, heartbeat, ramp, retry_for, procs, mqtt, source_addrs, firmware,
          db, gw_procs, kill_at, seed, out, chart, workdir, as_json):
    """Measure a central system under N OCPP 1.6J stations, step by step.

    Each step starts the central system fresh, connects the stations (station ids
    BENCH-00001...), runs them for --hold seconds and reports msgs/s, round-trip
    p50/p95/p99/max, the central system's CPU% and peak RSS, readings acknowledged,
    stored and delivered to MQTT, readings lost (must be 0) and connection failures.
    """
    try:
        import matplotlib  # noqa: F401
        import psutil  # noqa: F401
    except ImportError as e:
        raise click.ClickException("%s: install the benchmark extra: pip install 'picocharge[bench]'" % e)
    from . import bench_cs, bench_report, bench_run

    targets = ("ours", "baseline") if target == "both" else (target,)
    if "baseline" in targets:
        try:
            bench_cs.baseline_script()
        except FileNotFoundError as e:
            raise click.ClickException(str(e))
    if "ours" in targets:
        import importlib.util

        if importlib.util.find_spec("picocharge.gateway.cli") is None:
            raise click.ClickException("our gateway (picocharge.gateway.cli) is not installed in "
                                       "this checkout yet: use --target baseline")
    if hold <= 0 or interval <= 0 or heartbeat <= 0:
        raise click.BadParameter("--hold, --interval and --heartbeat must be positive")
    if firmware and max(steps) > 200:
        raise click.BadParameter("--firmware runs one micropython process per station: use steps "
                                 "of at most 200 (got %d)" % max(steps), param_hint="--steps")
    if not firmware:
        from .bench_load import raise_nofile

        limit = raise_nofile()  # to the hard limit; the processes started here inherit it
        # the most stations one gateway process holds: all of them on SQLite (or the baseline),
        # a share of them on PostgreSQL (after --kill-at, the share of one process fewer)
        holders = [1] if target == "baseline" or "sqlite" in db[0] else []
        if "postgresql" in db[0]:
            holders += [p - (1 if kill_at is not None else 0) for p in gw_procs]
        per = -(-max(steps) // max(1, min(holders)))
        if limit < per + 256:
            raise click.ClickException(
                "%d stations need about %d open files in the central system's process, and the "
                "limit here is %d: raise it (ulimit -n %d, LimitNOFILE= in a systemd unit) or use "
                "smaller --steps" % (max(steps), per + 256, limit, per + 256))
    dbs, pg_url = db
    if "postgresql" in dbs:
        if target == "baseline":
            raise click.BadParameter("--db postgresql is our gateway's database: give --target ours (or both)",
                                     param_hint="--db")
        if firmware:
            raise click.BadParameter("--firmware runs on SQLite only", param_hint="--db")
    elif max(gw_procs) > 1:
        raise click.BadParameter("%d processes need a database they share: add --db postgresql" % max(gw_procs),
                                 param_hint="--gw-procs")
    if kill_at is not None:
        if "postgresql" not in dbs or min(gw_procs) < 2:
            raise click.BadParameter("a killed process needs another to take its stations over: give --db "
                                     "postgresql --gw-procs 2 (or more)", param_hint="--kill-at")
        if kill_at >= hold:
            raise click.BadParameter("%g s is past the window (--hold %g): kill inside it" % (kill_at, hold),
                                     param_hint="--kill-at")
    modes = ("paced", "closed") if mode == "both" else (mode,)
    opts = bench_run.Options(targets=targets, steps=tuple(steps), firmware_steps=tuple(steps),
                             modes=("firmware",) if firmware else modes,
                             hold=hold, interval=interval, heartbeat=heartbeat, ramp=ramp,
                             procs=procs, mqtt=mqtt, seed=seed, source_addrs=source_addrs,
                             retry_for=retry_for, dbs=tuple(dbs), gw_procs=tuple(gw_procs), pg_url=pg_url,
                             kill_at=kill_at)
    workdir = Path(workdir or tempfile.mkdtemp(prefix="picocharge-bench-"))
    echo = (lambda s: click.echo(s, err=True)) if as_json else click.echo

    saved = []

    def save(meta, results):  # after every step, so an interrupted run keeps what it measured
        bench_report.write_json(out, meta, results)
        saved[:] = [len(results)]

    try:
        with stop_on_signals():     # SIGTERM/SIGHUP stop the run as Ctrl-C does
            meta, results = bench_run.run(opts, workdir, echo=echo, on_step=save)
    except (RuntimeError, FileNotFoundError) as e:
        raise click.ClickException(str(e))
    except KeyboardInterrupt as e:  # the step under way and its processes are stopped
        kept = ("the %d finished step(s) are in %s" % (saved[0], os.path.abspath(out)) if saved
                else "no step had finished, nothing written to %s" % out)
        click.echo("bench interrupted (%s): %s; logs: %s" % (str(e) or "Ctrl-C", kept, workdir), err=True)
        raise SystemExit(130)
    doc = bench_report.write_json(out, meta, results)
    if results:
        bench_report.write_chart(chart, results, title="picocharge bench (%s; %s; %d generator process(es))"
                                 % (", ".join(opts.modes), ", ".join(c.label for c in opts.configs()),
                                    meta["generator_procs"]))
    for r in doc["ratios"]:
        echo("ours/baseline msgs/s at %d stations (%s): %.2f" % (r["stations"], r["mode"], r["throughput_ratio"]))
    for r in doc["scaling"]:
        echo("PostgreSQL, %d processes / 1 process, msgs/s at %d stations (%s): %.2f"
             % (r["gw_procs"], r["stations"], r["mode"], r["throughput_ratio"]))
    lost = [r for r in results if r["readings_lost"]]
    uncounted = [r for r in results if r.get("metrics_error")]
    not_back = [r for r in results if r.get("kill") and r["kill"]["stations_not_back"]]
    echo("results: %s; chart: %s; logs: %s" % (os.path.abspath(out), os.path.abspath(chart), workdir))
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    if lost:
        raise click.ClickException("readings lost (acknowledged but not stored): %s"
                                   % ", ".join("%s@%d: %d" % (r["config"], r["stations"], r["readings_lost"])
                                               for r in lost))
    if uncounted:
        # no count of what was stored: the run cannot say that nothing was lost
        raise click.ClickException("readings stored not counted (so 'lost' is unknown): %s"
                                   % ", ".join("%s@%d: %s" % (r["config"], r["stations"], r["metrics_error"])
                                               for r in uncounted))
    if not_back:
        raise click.ClickException("stations of the killed process that never got back in: %s (see %s)"
                                   % (", ".join("%s@%d: %d" % (r["config"], r["stations"],
                                                              r["kill"]["stations_not_back"]) for r in not_back),
                                      workdir))
