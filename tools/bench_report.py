"""Figures, the live table, the JSON results file and the PNG chart of `picocharge bench`."""
import json
import math
import re

COLUMNS = (  # (header, key, format)
    ("target", "target", "%-8s"),
    ("mode", "mode", "%-6s"),
    ("stations", "stations", "%8d"),
    ("conn", "connected", "%6d"),
    ("msgs/s", "msgs_per_s", "%8.1f"),
    ("p50ms", "rtt_p50_ms", "%7.2f"),
    ("p95ms", "rtt_p95_ms", "%7.2f"),
    ("p99ms", "rtt_p99_ms", "%7.2f"),
    ("maxms", "rtt_max_ms", "%8.1f"),
    ("cpu%", "cs_cpu_percent", "%6.1f"),
    ("rssMB", "cs_peak_rss_mb", "%7.1f"),
    ("KB/stn", "cs_kb_per_station", "%7.1f"),
    ("acked", "readings_acked", "%8d"),
    ("stored", "readings_stored", "%8s"),
    ("mqtt", "readings_mqtt", "%8s"),
    ("lost", "readings_lost", "%5s"),
    ("fail", "connect_failures", "%5d"),
    ("drop", "dropped", "%5d"),
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


def _width(fmt):
    return int(re.match(r"%-?(\d+)", fmt).group(1))


def _cell(fmt, v):
    if v is None:
        return "%*s" % (_width(fmt), "n/a")
    return fmt % (v,)


def header():
    return " ".join("%*s" % (_width(f), h) for h, _k, f in COLUMNS)


def row(result):
    return " ".join(_cell(f, result.get(k)) for _h, k, f in COLUMNS)


def ratios(results):
    """ours/baseline msgs/s for every (mode, stations) both targets ran."""
    by = {}
    for r in results:
        by.setdefault((r["mode"], r["stations"]), {})[r["target"]] = r
    out = []
    for (mode, n), d in sorted(by.items()):
        if "ours" in d and "baseline" in d and d["baseline"]["msgs_per_s"]:
            out.append({"mode": mode, "stations": n,
                        "throughput_ratio": d["ours"]["msgs_per_s"] / d["baseline"]["msgs_per_s"]})
    return out


def write_json(path, meta, results):
    doc = {"meta": meta, "steps": results, "ratios": ratios(results)}
    with open(path, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
    return doc


def write_chart(path, results, title="picocharge bench"):
    """PNG, three panels: stations vs msgs/s, RTT p50/p95/p99, central-system peak RSS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    series = {}
    for r in results:
        series.setdefault((r["target"], r["mode"]), []).append(r)
    for (target, mode), rs in sorted(series.items()):
        rs = sorted(rs, key=lambda r: r["stations"])
        xs = [r["stations"] for r in rs]
        label = "%s (%s)" % (target, mode)
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
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
