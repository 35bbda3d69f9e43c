"""PNG plots of the perf scripts' tables (matplotlib, no display needed).

    python3 perf/plot.py e2e TSV PREFIX   # TSV: offered sent ok p50_us p99_us p999_us (a line a rate)
        -> PREFIX-throughput.png (sent vs offered, lossless runs marked) and PREFIX-latency.png
    python3 perf/plot.py cpu TSV PNG      # TSV: rate thread cpu_us_per_message (lines of cpu_cost.sh)
        -> CPU-microseconds per message by thread, a group of bars a rate
    python3 perf/plot.py rate TSV PNG     # TSV: lines of rate_cost.sh (`who: thread`, `who: rss_mib`)
        -> CPU-microseconds per message (all threads) and resident memory against the offered
           rate, a line per `who` (builds, the plain-client floor), log-log

Each plot's title carries the machine and the date it was measured on (TITLE env, else
`nproc` cores and today)."""

import collections
import datetime
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def title(what):
    t = os.environ.get("TITLE") or f"{os.cpu_count()} cores, {datetime.date.today().isoformat()}"
    return f"{what}\n{t}"


def rows(path):
    with open(path) as f:
        return [l.split("\t") for l in f.read().splitlines() if l.strip()]


def e2e(tsv, prefix):
    r = [(float(o), float(s), ok == "yes", float(p50), float(p99), float(p999))
         for o, s, ok, p50, p99, p999 in rows(tsv)]
    r.sort()
    off = [x[0] for x in r]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(off, off, "--", color="grey", label="offered")
    ax.plot(off, [x[1] for x in r], "o-", label="sent by the simulator and taken")
    bad = [x for x in r if not x[2]]
    if bad:
        ax.plot([x[0] for x in bad], [x[1] for x in bad], "x", color="red", markersize=10, label="records lost")
    ax.set_xscale("log"); ax.set_yscale("log")
    ax.set_xlabel("offered msg/s"); ax.set_ylabel("msg/s")
    ax.set_title(title("tickwire demo: throughput vs offered rate (perf/e2e.sh)"))
    ax.grid(True, which="both", alpha=0.3); ax.legend()
    fig.tight_layout(); fig.savefig(f"{prefix}-throughput.png", dpi=110); plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, name in [(3, "p50"), (4, "p99"), (5, "p99.9")]:
        ax.plot(off, [x[i] for x in r], "o-", label=name)
    # symlog: a p50 below the histogram's 1 µs resolution is 0 and still drawn.
    ax.set_xscale("log"); ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel("offered msg/s"); ax.set_ylabel("receive -> ZMQ publish, µs (0 = under 1 µs)")
    ax.set_title(title("tickwire demo: latency percentiles vs rate (perf/e2e.sh)"))
    ax.grid(True, which="both", alpha=0.3); ax.legend()
    fig.tight_layout(); fig.savefig(f"{prefix}-latency.png", dpi=110); plt.close(fig)


def cpu(tsv, png):
    by = collections.OrderedDict()
    for rate, thread, us in rows(tsv):
        by.setdefault(rate, {})[thread] = float(us)
    threads = sorted({t for d in by.values() for t in d}, key=lambda t: -max(d.get(t, 0) for d in by.values()))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(1, len(by))
    for i, (rate, d) in enumerate(by.items()):
        ax.bar([j + i * width for j in range(len(threads))], [d.get(t, 0) for t in threads], width,
               label=f"{int(float(rate)):,} msg/s" if float(rate) > 0 else "as fast as it goes")
    ax.set_xticks([j + width * (len(by) - 1) / 2 for j in range(len(threads))], threads, rotation=30, ha="right")
    ax.set_ylabel("CPU µs per message"); ax.grid(True, axis="y", alpha=0.3); ax.legend()
    ax.set_title(title("tickwire demo: CPU per message by thread (perf/cpu_cost.sh)"))
    fig.tight_layout(); fig.savefig(png, dpi=110); plt.close(fig)


def rate(tsv, png):
    cpu_by = collections.defaultdict(dict)  # who -> rate -> CPU-us a message, all threads
    rss_by = collections.defaultdict(dict)  # who -> rate -> MiB
    for r, name, value, _wake in rows(tsv):
        who, thread = name.rsplit(": ", 1)
        r = float(r)
        if thread == "rss_mib":
            rss_by[who][r] = float(value)
        else:
            cpu_by[who][r] = cpu_by[who].get(r, 0.0) + float(value)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    for who, d in cpu_by.items():
        xs = sorted(d)
        a.plot(xs, [d[x] for x in xs], marker="o", label=who)
        for x in xs:
            a.annotate(f"{d[x]:.1f}", (x, d[x]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    for who, d in rss_by.items():
        xs = sorted(d)
        b.plot(xs, [d[x] for x in xs], marker="o", label=who)
    for ax, what in ((a, "CPU µs per message (all threads)"), (b, "resident memory, MiB")):
        ax.set_xscale("log")
        ax.set_xlabel("offered msg/s")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    a.set_yscale("log")
    fig.suptitle(title("cost by rate: tickwire run vs the plain client (perf/rate_cost.sh)"))
    fig.tight_layout(); fig.savefig(png, dpi=110); plt.close(fig)


if __name__ == "__main__":
    {"e2e": e2e, "cpu": cpu, "rate": rate}[sys.argv[1]](*sys.argv[2:])
