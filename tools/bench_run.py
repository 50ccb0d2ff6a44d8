"""One benchmark run: for every step (stations) and mode, each target central system is
started fresh as a subprocess, loaded by the generator processes, measured, and stopped.
Targets alternate inside a step (ours, baseline, ours, ...) so both see the same machine
weather, which keeps the ratio honest on a noisy box.

A step, on the wall clock:
    t0 ........ t0+ramp ... w0 ============ w1 ...... w1+drain
    connects spread      settle   measured     StopTransaction, close
Then the central system's counters are read (waiting until stored readings catch up with
the acknowledged ones, and MQTT deliveries with the stored ones), and it is stopped.
"""
import contextlib
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

from picocharge import bench_cs, bench_load, bench_report

SQLITE, POSTGRESQL = "sqlite", "postgresql"


class Config:
    """One central system configuration of a step: the target, its database, its processes."""

    def __init__(self, target, db=SQLITE, procs=1):
        self.target, self.db, self.procs = target, db, procs

    @property
    def label(self):
        """'ours' and 'baseline' as before issue 15; 'ours-pgN' for N processes on PostgreSQL."""
        return self.target if self.db == SQLITE else "%s-pg%d" % (self.target, self.procs)

    def __repr__(self):
        return self.label


class Options:
    """Everything a run needs (the CLI fills it; tests build it directly)."""

    def __init__(self, targets=("ours", "baseline"), steps=(10, 20, 40, 80, 160, 1000, 5000, 10000),
                 modes=("paced",), hold=30.0, interval=10.0, heartbeat=60.0, ramp=None, settle=None,
                 drain=20.0, procs=0, mqtt=True, seed=1, open_timeout=60.0, catch_up=60.0,
                 source_addrs=1, stop_fail_ratio=0.1, firmware_steps=(5, 10, 20), retry_for=120.0,
                 dbs=(SQLITE,), gw_procs=(1,), pg_url=None, kill_at=None):
        self.__dict__.update(locals())
        del self.__dict__["self"]

    def configs(self):
        """The configurations of every step, in the order they run (alternating inside a step):
        ours on SQLite (one process), ours on PostgreSQL with each of gw_procs processes, the
        baseline."""
        out = []
        for target in self.targets:
            if target != "ours":
                out.append(Config(target))
                continue
            for db in self.dbs:
                out += [Config(target, db, p) for p in self.gw_procs] if db == POSTGRESQL else [Config(target)]
        return out

    def ramp_for(self, n):
        """Seconds over which the step's connects are spread (paced mode: staggered starts)."""
        if self.ramp is not None:
            return float(self.ramp)
        return min(30.0, max(0.5, n / 400.0))

    def settle_for(self, n):
        if self.settle is not None:
            return float(self.settle)
        return 1.0 + n / 2000.0


def _gc_cpu_s(cs):
    """Seconds of CPU the central system's collector has taken (its /metrics), or None."""
    try:
        return bench_cs.gc_cpu_seconds(cs.metrics())
    except (OSError, ValueError):
        return None


def _wait_for(get, want, timeout, stable=2.0):
    """Poll get() until it reaches `want`, or stops moving for `stable` s, or `timeout`. A get()
    that fails (a busy central system's /metrics timing out) is asked again until `timeout`, then
    its error is raised."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while True:
        try:
            v = get()
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
            since = time.monotonic()
            continue
        if v is not None and want is not None and v >= want:
            return v
        if v != last:
            last, since = v, time.monotonic()
        elif time.monotonic() - since >= stable:
            return v
        if time.monotonic() >= deadline:
            return v
        time.sleep(0.2)


def measure(target, n, mode, opts, workers, workdir, broker=None, counter=None, config=None, pg=None):
    """One step against one central system (`config`: ours on PostgreSQL with several processes
    behind HAProxy, on the server `pg`); returns its results dict."""
    from picocharge import bench_cluster

    config = config or Config(target)
    if target != "ours":
        broker = counter = None  # only our gateway has an MQTT uplink
    wd = Path(workdir) / ("%s-%s-%d" % (config.label, mode, n))
    cluster = config.db == POSTGRESQL
    db_url = None
    if cluster:
        db_url = pg.create_database("%s_%s_%d" % (config.label, mode, n))
        cs = bench_cluster.GatewayCluster(wd, db_url, config.procs, mqtt_url=broker.url if broker else None,
                                          stations=n)
    else:
        cs = bench_cs.CentralSystem(target, wd, mqtt_url=broker.url if broker else None)
    cs.start()
    kill = {}
    side = {}   # the balancer's and the database server's samplers
    try:
        sampler = bench_cs.Sampler(cs.processes()).start()
        if cluster:
            side["lb"] = bench_cs.Sampler([lb.ps for lb in cs.lbs]).start()
            if pg.processes():
                side["db"] = bench_cs.Sampler(pg.processes()).start()
        time.sleep(0.5)
        idle_rss = sampler.mark()[2]
        if counter:
            counter.reset()
        ramp, settle = opts.ramp_for(n), opts.settle_for(n)
        t0 = time.time() + 0.5
        spec = {"url": cs.ws_base, "n": n, "mode": mode, "interval": opts.interval,
                "heartbeat": opts.heartbeat, "t0": t0, "ramp": ramp, "drain": opts.drain,
                "open_timeout": opts.open_timeout, "seed": opts.seed,
                "source_addrs": opts.source_addrs, "retry_for": opts.retry_for,
                "setup_timeout": ramp + opts.retry_for + opts.open_timeout + 60}
        marks = {}
        threads = []
        if cluster:
            spec["urls"] = cs.ws_bases     # station i through HAProxy i % len
            spec["track"] = True    # every acknowledged reading looked up in the database
        if opts.kill_at is not None:
            spec["reconnect"] = True

        def killer(w0):
            at = w0 + opts.kill_at
            time.sleep(max(0.0, at - 1.0 - time.time()))     # which process, and its stations: looked up ahead
            k = cs.holder("mqtt")   # the most to take over: the MQTT stream and its share of ThingSpeak
            held = k is not None
            victims = cs.stations_on(k if held else 0)     # for the command probe's report
            time.sleep(max(0.0, at - time.time()))
            t = cs.kill(k if held else 0)
            kill.update(process=k if held else 0, lease_holder=held, t=t, at=t - w0, victims=victims)

        probe = []

        def prober(w0, w1):     # commands across the kill, from the window's start to its end
            time.sleep(max(0.0, w0 - time.time()))
            probe.append(bench_cluster.CommandProbe(cs.api_base, bench_cluster.probe_sample(n)).start())
            time.sleep(max(0.0, w1 - time.time()))
            probe[0].stop()

        depth = []      # (s into the window, MQTT outbox depth)

        def marker(w0, w1):
            for name, at in (("w0", w0), ("w1", w1)):
                time.sleep(max(0.0, at - time.time()))
                marks[name] = sampler.mark()
                marks["sys_" + name] = _machine_busy()
                marks["pids_" + name] = sampler.cpu_by_process()
                marks["gc_" + name] = _gc_cpu_s(cs)
                for k, smp in side.items():
                    marks[k + "_" + name] = smp.mark()

        def on_window(w0, w1):
            t = threading.Thread(target=marker, args=(w0, w1), daemon=True)
            t.start()
            threads.append(t)
            if opts.kill_at is not None and cluster:
                for fn, args in ((killer, (w0,)), (prober, (w0, w1))):
                    t = threading.Thread(target=fn, args=args, daemon=True)
                    t.start()
                    threads.append(t)
            if broker is not None:
                t = threading.Thread(target=sample_depth, args=(cs, w0, w1, max(1.0, opts.hold / 20.0), depth),
                                     daemon=True)
                t.start()
                threads.append(t)

        stats = workers.step(spec, settle, opts.hold, on_window)
        for mt in threads:
            mt.join()
        sampler.stop()
        for smp in side.values():
            smp.stop()

        stored = mqtt = None
        uplinks = {}
        metrics_error = None
        lost_exact = None
        try:
            if cluster:     # counted in the database: right even after a process was killed
                stored = _wait_for(cs.stored_count, stats.readings_acked, opts.catch_up)
                by = cs.stored()["by_station"]
                lost_exact = sum(len(set(whs) - by.get(sid, set())) for sid, whs in stats.acked_wh.items())
            else:
                stored = _wait_for(lambda: bench_cs.stored_readings(cs.metrics()), stats.readings_acked,
                                   opts.catch_up)
        except OSError as e:
            metrics_error = "GET /metrics: %s" % e
        by_process = None
        if cluster:   # what each process did: the sum's parts (a killed one's counters went with it)
            span = max(1e-9, marks["w1"][0] - marks["w0"][0])
            by_process = []
            for k, g in enumerate(cs.gws):
                pid = g.ps.pid
                c0_, c1_ = marks["pids_w0"].get(pid), marks["pids_w1"].get(pid)
                row = {"process": k + 1, "killed": k in cs.killed,
                       "cpu_percent": 100.0 * (c1_ - c0_) / span if c0_ is not None and c1_ is not None else None}
                if k not in cs.killed:
                    try:
                        m = g.metrics()
                        row.update(readings_stored=bench_cs.stored_readings(m),
                                   ocpp_messages=bench_cs.calls_total(m))
                    except OSError:
                        pass
                by_process.append(row)
        if counter:
            # by seq: a reading sent again after a takeover (at-least-once) counts once
            mqtt = _wait_for((lambda: counter.distinct) if cluster else (lambda: counter.count), stored,
                             opts.catch_up)
        try:
            if counter and not kill:
                # the broker hands a message to our subscriber before the gateway has its
                # PUBACK and counts it delivered: wait for the gateway's count to settle too
                _wait_for(lambda: bench_bs_uplinks(cs.metrics()).get("mqtt"), stored, opts.catch_up)
            uplinks = bench_bs_uplinks(cs.metrics())
        except OSError:
            pass
    finally:
        cs.stop()
        if db_url:
            try:
                pg.drop_database(db_url)
            except Exception as e:  # a step's database left behind does not change its figures
                print("could not drop the step's database: %s" % bench_cluster.redact(str(e)), file=sys.stderr)

    gc_full, gc_longest = bench_cs.gc_summary(cs.log_path)
    (tw0, cw0, rss_w0), (tw1, cw1, rss_w1) = marks["w0"], marks["w1"]
    # the window's own pauses (the step's setup and teardown collect far more)
    gc_in_window = [ms for t, ms in bench_cs.gc_pauses(cs.log_path) if tw0 <= t <= tw1]
    (busy0, all0), (busy1, all1) = marks["sys_w0"], marks["sys_w1"]
    rtt = bench_report.rtt_figures(stats.rtt_ms)
    conn = bench_report.rtt_figures(stats.connect_ms)
    tl = bench_report.timeline(stats.rtt_t, stats.rtt_ms, sampler.rss_samples, tw0, tw1,
                               max(5.0, opts.hold / 20.0), sampler.cpu_samples)
    in_window = [(t - tw0, r / 2**20) for t, r in sampler.rss_samples if tw0 <= t <= tw1]
    res = {
        "target": target, "config": config.label, "db": config.db if target == "ours" else None,
        "gw_procs": config.procs, "balancer": "haproxy" if cluster else None,
        "balancers": len(cs.lbs) if cluster else None,
        "mode": mode, "stations": n, "hold_s": opts.hold,
        "interval_s": opts.interval if mode == "paced" else None, "heartbeat_s": opts.heartbeat,
        "ramp_s": ramp, "setup_s": stats.setup_s, "generator_procs": workers.procs,
        "connected": stats.connected, "connected_by_window": stats.connected_by_window,
        "connect_failures": stats.connect_failures, "connect_retries": stats.connect_retries,
        "dropped": stats.dropped,
        "failure_kinds": stats.failure_kinds, "call_errors": stats.call_errors,
        "unanswered": stats.unanswered,
        "calls_in_window": stats.calls, "calls_total": stats.calls_total,
        "msgs_per_s": stats.calls / opts.hold,
        "connect_p50_ms": conn["rtt_p50_ms"], "connect_p99_ms": conn["rtt_p99_ms"],
        "connect_max_ms": conn["rtt_max_ms"],
        "cs_cpu_percent": 100.0 * (cw1 - cw0) / max(1e-9, tw1 - tw0),
        # the central system's own CPU time per CALL answered in the window (less sensitive to
        # the rest of a busy machine than the round trips)
        "cs_cpu_us_per_msg": 1e6 * (cw1 - cw0) / stats.calls if stats.calls else None,
        "cs_idle_rss_mb": idle_rss / 2**20, "cs_rss_start_mb": rss_w0 / 2**20,
        "cs_rss_end_mb": rss_w1 / 2**20,
        "machine_cpu_percent": 100.0 * (busy1 - busy0) / max(1e-9, all1 - all0) * (os.cpu_count() or 1),
        "loadavg_1m": os.getloadavg()[0],
        "cs_peak_rss_mb": sampler.peak_rss / 2**20,
        # (not after a kill: the killed process's memory left the sum)
        "cs_kb_per_station": ((rss_w1 - idle_rss) / 1024.0 / stats.connected) if stats.connected and not kill
        else None,
        "cs_rss_slope_mb_per_min": bench_report.slope_per_min(in_window),
        "timeline": tl,
        "generator_cpu_percent": 100.0 * stats.cpu_s / opts.hold,
        # the generators' own lateness (their event loops' worst lag) and their CPU before the window
        "generator_loop_lag_setup_ms": stats.loop_lag_setup_ms,
        "generator_loop_lag_window_ms": stats.loop_lag_window_ms,
        "generator_setup_cpu_s": stats.setup_cpu_s,
        "transactions_started": stats.tx_started, "transactions_stopped": stats.tx_stopped,
        "readings_sent": stats.readings_sent, "readings_acked": stats.readings_acked,
        "readings_stored": stored,
        "readings_lost": (lost_exact if lost_exact is not None else
                          max(0, stats.readings_acked - stored) if stored is not None else None),
        "readings_lost_how": "acknowledged (station, energy register) missing from the database" if lost_exact is not None
        else "acknowledged minus stored (counts)",
        "readings_mqtt": mqtt, "mqtt_stations": len(counter.stations) if counter else None,
        "mqtt_messages": counter.count if counter else None,
        "mqtt_duplicates": counter.duplicates if counter else None,
        "reconnected": stats.reconnected,
        "mqtt_missing": (max(0, stored - mqtt) if (mqtt is not None and stored is not None) else None),
        "uplinks_delivered": uplinks,
        # the MQTT outbox's depth sampled through the window: growing means the uplink falls behind
        "mqtt_outbox_depth": depth if broker is not None else None,
        "mqtt_outbox_end": depth[-1][1] if depth else None,
        "mqtt_outbox_max": max(d for _t, d in depth) if depth else None,
        "metrics_error": metrics_error,
        # the share of the central system's CPU in the window that its garbage collector took
        "cs_gc_cpu_share": (100.0 * (marks["gc_w1"] - marks["gc_w0"]) / (cw1 - cw0)
                            if marks.get("gc_w0") is not None and marks.get("gc_w1") is not None and cw1 > cw0
                            else None),
        "cs_gc_full_collections": gc_full, "cs_gc_longest_pause_ms": gc_longest,
        "cs_gc_window_pauses_20ms": len(gc_in_window) if gc_full is not None else None,
        "cs_gc_window_longest_ms": (max(gc_in_window) if gc_in_window else 0.0) if gc_full is not None else None,
        "cs_log": str(cs.log_path),
    }
    for k in side:      # (time, CPU s, RSS) at the window's ends
        a_, b_ = marks[k + "_w0"], marks[k + "_w1"]
        res[k + "_cpu_percent"] = 100.0 * (b_[1] - a_[1]) / max(1e-9, b_[0] - a_[0])
    res["cs_by_process"] = by_process
    res.setdefault("lb_cpu_percent", None)
    res.setdefault("db_cpu_percent", None)
    res["lb"] = cs.lb_report() if cluster else None     # HAProxy's own account (its log, show info/stat)
    res["kill"] = takeover(kill, stats, cs.log_paths) if kill else None
    if kill and probe:
        res["kill"]["commands"] = probe[0].report(kill["t"], kill["victims"])
    res.update(rtt)
    return res


def takeover(kill, stats, log_paths):
    """What a SIGKILL of one gateway process in the window did: its stations' drops and their
    reconnects (through HAProxy, to the processes left), and the survivors' first lease taken
    over (their log lines `cluster: took over ...`)."""
    t = kill["t"]
    back = sorted(b - t for d, b in zip(stats.drop_t, stats.back_t) if d >= t - 0.5)
    first = None
    for k, path in enumerate(log_paths):
        if k == kill["process"]:
            continue
        for at in bench_cs.log_times(path, "cluster: took over "):
            if at >= t - 0.5 and (first is None or at < first):
                first = at
    return {"process": kill["process"] + 1, "held_mqtt_lease": kill["lease_holder"],
            "at_s_into_window": kill["at"], "t": t,
            "stations_reconnected": len(back),
            "stations_not_back": stats.dropped - stats.reconnected,
            # from the kill until the last of its stations was booted again on another process
            "takeover_s": back[-1] if back else None,
            "reconnect_p50_s": bench_report.percentile(back, 50),
            "lease_takeover_s": (first - t) if first is not None else None}


def measure_firmware(target, n, opts, workdir, broker=None, counter=None, scenario="charging"):
    """One step whose stations are the real firmware under the unix port (SimFleet), for
    small N. The generator cannot time the firmware's CALLs, so msgs/s comes from the
    central system's own CALL counter and RTT is not reported; the central system's CPU,
    RSS and stored readings are measured as in `measure`."""
    from picocharge.fleet import SimFleet
    from picocharge.paths import board_dir

    if target != "ours":
        broker = counter = None
    wd = Path(workdir) / ("%s-firmware-%d" % (target, n))
    cs = bench_cs.CentralSystem(target, wd, mqtt_url=broker.url if (broker and target == "ours") else None)
    cs.start()
    fleet = None
    try:
        sampler = bench_cs.Sampler(cs.ps).start()
        time.sleep(0.5)
        idle_rss = sampler.mark()[2]
        if counter:
            counter.reset()
        sc = json.loads((board_dir("unix") / "scenarios" / (scenario + ".json")).read_text())
        base = {"sensors": {"interval_s": 2},
                "ocpp": {"id_tag": bench_load.ID_TAG, "meter_interval_s": max(1, int(round(opts.interval))),
                         "heartbeat_s": max(1, int(round(opts.heartbeat)))}}
        fleet = SimFleet(wd / "flash", n, prefix="BENCH-", central=cs.ws_base, base_config=base,
                         scenario=sc, seed=opts.seed)
        t_start = time.monotonic()
        fleet.start(stagger_s=opts.ramp_for(n) / max(1, n))
        # wait until every station is connected (the central system's gauge), at most 60 s
        connected = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            connected = bench_cs.connected_stations(cs.metrics()) or 0
            if connected >= n:
                break
            time.sleep(0.5)
        ramp = time.monotonic() - t_start
        time.sleep(opts.settle_for(n))
        m0, c0 = bench_cs.calls_total(cs.metrics()), sampler.mark()
        time.sleep(opts.hold)
        m1, c1 = bench_cs.calls_total(cs.metrics()), sampler.mark()
        connected_end = bench_cs.connected_stations(cs.metrics())
        fleet.stop()
        fleet_rc = [s.proc.returncode for s in fleet.stations]
        fleet = None
        sampler.stop()
        stored = bench_cs.stored_readings(cs.metrics())
        mqtt = _wait_for(lambda: counter.count, stored, opts.catch_up) if counter else None
    finally:
        if fleet:
            fleet.stop()
        cs.stop()
    return {
        "target": target, "mode": "firmware", "stations": n, "hold_s": opts.hold,
        "interval_s": opts.interval, "heartbeat_s": opts.heartbeat, "ramp_s": ramp,
        "generator_procs": 0, "connected": connected, "connected_by_window": connected,
        "connected_at_end": connected_end,
        "connect_failures": n - connected, "dropped": max(0, connected - (connected_end or 0)),
        "failure_kinds": {}, "call_errors": {}, "unanswered": None,
        "calls_in_window": (m1 - m0) if (m0 is not None and m1 is not None) else None,
        "msgs_per_s": ((m1 - m0) / opts.hold) if (m0 is not None and m1 is not None) else 0.0,
        "rtt_p50_ms": None, "rtt_p95_ms": None, "rtt_p99_ms": None, "rtt_max_ms": None,
        "cs_cpu_percent": 100.0 * (c1[1] - c0[1]) / max(1e-9, c1[0] - c0[0]),
        "cs_idle_rss_mb": idle_rss / 2**20, "cs_rss_end_mb": c1[2] / 2**20,
        "cs_peak_rss_mb": sampler.peak_rss / 2**20,
        "cs_kb_per_station": ((c1[2] - idle_rss) / 1024.0 / connected) if connected else None,
        "generator_cpu_percent": None, "readings_sent": None, "readings_acked": None,
        "readings_stored": stored, "readings_lost": None, "readings_mqtt": mqtt,
        "mqtt_missing": (max(0, stored - mqtt) if (mqtt is not None and stored is not None) else None),
        "firmware_exit_codes": sorted(set(fleet_rc)), "cs_log": str(cs.log_path),
    }


def _machine_busy():
    """(busy, total) CPU seconds of the whole machine, all cores."""
    import psutil

    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    total = sum(t)
    return total - idle, total


def sample_depth(cs, w0, w1, every, out):
    """Append (seconds into the window, MQTT outbox depth) to out every `every` s until w1."""
    t = w0
    while t <= w1 + 0.01:
        time.sleep(max(0.0, t - time.time()))
        try:
            d = bench_cs.uplink_counts(cs.metrics(), bench_cs.OUTBOX_METRIC).get("mqtt")
        except OSError:
            d = None
        if d is not None:
            out.append((round(time.time() - w0, 1), d))
        t += every


def bench_bs_uplinks(metrics):
    return bench_cs.uplink_counts(metrics, bench_cs.DELIVERED_METRIC)


def machine():
    try:
        import psutil

        mem = psutil.virtual_memory().total
    except ImportError:
        mem = None
    return {"cpus": os.cpu_count(), "mem_bytes": mem, "python": platform.python_version(),
            "platform": platform.platform(), "nofile": bench_load.raise_nofile()}


def run(opts, workdir, echo=print, on_step=None):
    """Run every step; echo(line) shows the live table; returns (meta, results)."""
    configs = opts.configs()
    pg = None
    if any(c.db == POSTGRESQL for c in configs):
        from picocharge import bench_cluster

        pg = bench_cluster.PostgresServer(workdir, url=opts.pg_url)
    try:
        if pg:
            Path(workdir).mkdir(parents=True, exist_ok=True)
            pg.start()
        meta, results = _run(opts, workdir, configs, pg, echo, on_step)
    finally:
        if pg:
            pg.stop()
    if pg:
        meta["postgresql"] = {"server": "given (--db URL)" if opts.pg_url else "started by the bench",
                              "settings": None if opts.pg_url else dict(pg.SETTINGS)}
    return meta, results


def _run(opts, workdir, configs, pg, echo, on_step):
    """run() once the database server is up."""
    bench_load.raise_nofile()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    procs = opts.procs or bench_load.auto_procs(max(opts.steps))
    broker = counter = None
    results = []
    stopped = {}
    meta = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
            "generator_procs": procs, "options": {k: (list(v) if isinstance(v, tuple) else v)
                                                  for k, v in vars(opts).items()}}
    if opts.pg_url:     # never the password of the server given
        from picocharge.bench_cluster import redact

        meta["options"]["pg_url"] = redact(opts.pg_url)
    try:
        if opts.mqtt and "ours" in opts.targets:
            broker = bench_cs.Broker(workdir).start()
            counter = bench_cs.TelemetryCounter(broker.port)
        firmware_only = set(opts.modes) == {"firmware"}
        if firmware_only:
            procs = meta["generator_procs"] = 0
        with (contextlib.nullcontext() if firmware_only else bench_load.Workers(procs)) as workers:
            echo("generator: %s; central systems: %s; workdir %s"
                 % ("the real firmware under the unix port, one micropython process per station"
                    if firmware_only else "%d process(es)" % procs, ", ".join(opts.targets), workdir))
            echo(bench_report.header())
            for mode in opts.modes:
                for n in (opts.firmware_steps if mode == "firmware" else opts.steps):
                    for config in (configs if mode != "firmware" else [Config(t) for t in opts.targets]):
                        target = config.target
                        if (config.label, mode) in stopped:
                            continue
                        if mode == "firmware":
                            r = measure_firmware(target, n, opts, workdir, broker, counter)
                            r.update(config=config.label, db=SQLITE if target == "ours" else None, gw_procs=1)
                        else:
                            r = measure(target, n, mode, opts, workers, workdir, broker, counter, config, pg)
                        results.append(r)
                        echo(bench_report.row(r))
                        if r.get("kill"):
                            echo(bench_report.kill_line(r))
                        if on_step:
                            on_step(meta, results)
                        failed = r["connect_failures"] + r["dropped"] - r.get("reconnected", 0)
                        if failed > opts.stop_fail_ratio * n:
                            stopped[(config.label, mode)] = n
                            echo("%s (%s): %d of %d stations failed or dropped at this step: "
                                 "larger steps skipped" % (config.label, mode, failed, n))
    finally:
        if counter:
            counter.stop()
        if broker:
            broker.stop()
    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    meta["stopped_early"] = ["%s/%s at %d" % (t, m, n) for (t, m), n in stopped.items()]
    return meta, results
