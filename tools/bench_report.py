"""Figures, the live table, the JSON results file and the PNG chart of `picocharge bench`."""
import json
import math
import re

COLUMNS = (  # (header, key, format)
    ("target", "config", "%-8s"),   # ours, baseline, ours-pg2 (PostgreSQL, 2 processes)
    ("mode", "mode", "%-6s"),
    ("stations", "stations", "%8d"),
    ("conn", "connected", "%6d"),
    ("msgs/s", "msgs_per_s", "%8.1f"),
    ("p50ms", "rtt_p50_ms", "%7.2f"),
    ("p95ms", "rtt_p95_ms", "%7.2f"),
    ("p99ms", "rtt_p99_ms", "%7.2f"),
    ("maxms", "rtt_max_ms", "%8.1f"),
    ("cpu%", "cs_cpu_percent", "%6.1f"),
    ("lb%", "lb_cpu_percent", "%5.1f"),
    ("db%", "db_cpu_percent", "%5.1f"),
    ("us/msg", "cs_cpu_us_per_msg", "%7.0f"),
    ("rssMB", "cs_peak_rss_mb", "%7.1f"),
    ("KB/stn", "cs_kb_per_station", "%7.1f"),
    ("acked", "readings_acked", "%8d"),
    ("stored", "readings_stored", "%8s"),
    ("mqtt", "readings_mqtt", "%8s"),
    ("outbox", "mqtt_outbox_end", "%8s"),
    ("lost", "readings_lost", "%5s"),
    ("fail", "connect_failures", "%5d"),
    ("retry", "connect_retries", "%5d"),
    ("drop", "dropped", "%5d"),
    ("gcms", "cs_gc_window_longest_ms", "%6.1f"),
    ("gc%", "cs_gc_cpu_share", "%5.1f"),
    ("gen%", "generator_cpu_percent", "%6.1f"),
    ("sys%", "machine_cpu_percent", "%6.1f"),
)


def percentile(sorted_values, q):
    """Nearest-rank percentile (q in 0..100) of an ascending list; None when empty."""
    n = len(sorted_values)
    if not n:
        return None
    k = max(0, min(n - 1, int(math.ceil(q / 100.0 * n)) - 1))
    return sorted_values[k]


def rtt_figures(rtt_ms):
    s = sorted(rtt_ms)
    return {"rtt_p50_ms": percentile(s, 50), "rtt_p95_ms": percentile(s, 95),
            "rtt_p99_ms": percentile(s, 99), "rtt_max_ms": s[-1] if s else None,
            "rtt_mean_ms": (sum(s) / len(s)) if s else None}


def timeline(rtt_t, rtt_ms, rss_samples, w0, w1, slice_s, cpu_samples=None):
    """Per slice of the window: msgs/s, RTT p50/p99/max of the CALLs sent in it, the central
    system's RSS at its end (the figures that show whether a long run stays flat) and, given
    cpu_samples [(t, CPU s so far)], its CPU% over the slice (100 = one core)."""
    n = max(1, int(round((w1 - w0) / slice_s)))
    width = (w1 - w0) / n
    buckets = [[] for _ in range(n)]
    for t, ms in zip(rtt_t, rtt_ms):
        k = int((t - w0) / width)
        if 0 <= k < n:
            buckets[k].append(ms)
    out = []
    for k, b in enumerate(buckets):
        end = w0 + (k + 1) * width
        rss = [r for (t, r) in rss_samples if t <= end]
        b.sort()
        out.append({"t_s": round((k + 1) * width, 1), "msgs_per_s": len(b) / width,
                    "rtt_p50_ms": percentile(b, 50), "rtt_p99_ms": percentile(b, 99),
                    "rtt_max_ms": b[-1] if b else None,
                    "cs_rss_mb": (rss[-1] / 2**20) if rss else None})
        if cpu_samples:
            out[-1]["cs_cpu_percent"] = _cpu_between(cpu_samples, end - width, end)
    return out


def _cpu_between(samples, t0, t1):
    """CPU% between wall times t0 and t1 from [(t, CPU seconds so far)] (the samples nearest inside)."""
    inside = [(t, c) for t, c in samples if t0 - 0.3 <= t <= t1 + 0.3]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return None
    return 100.0 * (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def slope_per_min(points):
    """Least-squares slope of [(t_s, y)] in y per minute; None with fewer than 2 points."""
    pts = [(t, y) for t, y in points if y is not None]
    if len(pts) < 2:
        return None
    mt = sum(t for t, _y in pts) / len(pts)
    my = sum(y for _t, y in pts) / len(pts)
    den = sum((t - mt) ** 2 for t, _y in pts)
    if not den:
        return None
    return 60.0 * sum((t - mt) * (y - my) for t, y in pts) / den


def _width(fmt):
    return int(re.match(r"%-?(\d+)", fmt).group(1))


def _cell(fmt, v):
    if v is None:
        return "%*s" % (_width(fmt), "n/a")
    return fmt % (v,)


def kill_line(r):
    k = r["kill"]

    def s(v):
        return "n/a" if v is None else "%.2f s" % v

    return ("%s: gateway process %d (%s) killed %.1f s into the window: %d stations back on the others "
            "(all in %s, median %s), %d not back; leases taken over after %s; readings lost %s, "
            "MQTT repeats %s" % (r["config"], k["process"], "held the MQTT lease" if k["held_mqtt_lease"]
                                 else "not the MQTT lease holder", k["at_s_into_window"], k["stations_reconnected"],
                                 s(k["takeover_s"]), s(k["reconnect_p50_s"]), k["stations_not_back"],
                                 s(k["lease_takeover_s"]), r["readings_lost"], r.get("mqtt_duplicates"))
            + ("" if not k.get("commands") else
               "; commands (GetConfiguration to %(stations)d stations every second): %(ok)d answered, %(failed)d "
               "failed, %(wrong)d wrong" % k["commands"] + ", the %d on the killed process answered again after %s"
               % (k["commands"]["on_killed_process"], s(k["commands"]["back_s"]))))


def header():
    return " ".join("%*s" % (_width(f), h) for h, _k, f in COLUMNS)


def row(result):
    return " ".join(_cell(f, result.get(k)) for _h, k, f in COLUMNS)


def ratios(results):
    """ours/baseline msgs/s for every (mode, stations) both targets ran."""
    by = {}
    for r in results:   # ours on SQLite, one process, as before issue 15
        if r.get("config", r["target"]) in ("ours", "baseline"):
            by.setdefault((r["mode"], r["stations"]), {})[r["target"]] = r
    out = []
    for (mode, n), d in sorted(by.items()):
        if "ours" in d and "baseline" in d and d["baseline"]["msgs_per_s"]:
            out.append({"mode": mode, "stations": n,
                        "throughput_ratio": d["ours"]["msgs_per_s"] / d["baseline"]["msgs_per_s"]})
    return out


def scaling(results):
    """msgs/s of N processes on PostgreSQL over 1 process on PostgreSQL, per (mode, stations)."""
    by = {}
    for r in results:
        if r.get("db") == "postgresql" and r["target"] == "ours":
            by.setdefault((r["mode"], r["stations"]), {})[r["gw_procs"]] = r["msgs_per_s"]
    out = []
    for (mode, n), d in sorted(by.items()):
        for p, v in sorted(d.items()):
            if p != 1 and d.get(1):
                out.append({"mode": mode, "stations": n, "gw_procs": p, "throughput_ratio": v / d[1]})
    return out


def write_json(path, meta, results):
    doc = {"meta": meta, "steps": results, "ratios": ratios(results), "scaling": scaling(results)}
    with open(path, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
    return doc


def config_name(r):
    """A chart legend's name of a result's configuration."""
    if r.get("db") == "postgresql":
        return "ours, PostgreSQL, %d process%s behind HAProxy" % (r["gw_procs"], "" if r["gw_procs"] == 1 else "es")
    if r["target"] == "ours" and "db" in r:
        return "ours, SQLite, 1 process"
    return r["target"]


def write_chart(path, results, title="picocharge bench"):
    """PNG, three panels: stations vs msgs/s, RTT p50/p95/p99, central-system peak RSS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    long_runs = [r for r in results if r.get("timeline") and (r.get("hold_s") or 0) >= 120]
    if long_runs:
        fig, grid = plt.subplots(2, 3, figsize=(16, 9))
        axes, taxes = grid[0], grid[1]
    else:
        fig, axes = plt.subplots(1, 3, figsize=(16, 5))
        taxes = ()
    series = {}
    for r in results:
        series.setdefault((r.get("config", r["target"]), r["mode"]), []).append(r)
    for (config, mode), rs in sorted(series.items()):
        rs = sorted(rs, key=lambda r: r["stations"])
        xs = [r["stations"] for r in rs]
        label = "%s (%s)" % (config_name(rs[0]), mode)
        axes[0].plot(xs, [r["msgs_per_s"] for r in rs], marker="o", label=label)
        for key, style in (("rtt_p50_ms", ":"), ("rtt_p95_ms", "--"), ("rtt_p99_ms", "-")):
            pts = [(x, r[key]) for x, r in zip(xs, rs) if r.get(key) is not None]
            if pts:
                axes[1].plot([p[0] for p in pts], [p[1] for p in pts], linestyle=style, marker=".",
                             label="%s %s" % (label, key[4:7]))
        axes[2].plot(xs, [r["cs_peak_rss_mb"] for r in rs], marker="o", label=label)
    for ax, ylabel in zip(axes, ("messages / s", "round trip (ms)", "central system peak RSS (MB)")):
        ax.set_xscale("log")
        ax.set_xlabel("stations")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[1].set_yscale("log")
    for r in long_runs:  # the long runs over time: flat or not
        label = "%s (%s) %d stations" % (config_name(r), r["mode"], r["stations"])
        tl = r["timeline"]
        ts = [p["t_s"] for p in tl]
        for ax, key in zip(taxes, ("msgs_per_s", "rtt_p99_ms", "cs_rss_mb")):
            pts = [(t, p[key]) for t, p in zip(ts, tl) if p[key] is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=label)
    for ax, ylabel in zip(taxes, ("messages / s", "round trip p99 (ms)", "central system RSS (MB)")):
        ax.set_xlabel("seconds into the measurement window")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
