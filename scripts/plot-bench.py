#!/usr/bin/env python3
"""Plots of `loadgen sweep` JSON:

    .venv/bin/python scripts/plot-bench.py target/bench/sweep.json [out-dir]

(matplotlib: scripts/install-bench-tools.sh). Writes into out-dir (default:
the JSON's directory):
  throughput.png   req/s vs concurrency, per backend, ours vs raw
  p99.png          p99 latency vs concurrency, same series
  cpu.png          server and PostgreSQL CPU µs per request vs concurrency
  replicas.png     req/s vs server processes over one PostgreSQL database
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    ("refresh", "ours"): dict(color="tab:blue", marker="o", linestyle="-"),
    ("refresh", "raw"): dict(color="tab:blue", marker="s", linestyle="--"),
    ("issue", "ours"): dict(color="tab:orange", marker="o", linestyle="-"),
    ("issue", "raw"): dict(color="tab:orange", marker="s", linestyle="--"),
}


def series(points, backend, workload, kind):
    rows = sorted(
        (p for p in points
         if p["phase"] == "sweep" and p["backend"] == backend
         and p["workload"] == workload and p["series"] == kind),
        key=lambda p: p["concurrency"],
    )
    return rows


def curves(sweep, out, name, value, ylabel, title, logy=False):
    points = sweep["points"]
    backends = [b for b in ("sqlite", "postgres") if any(p["backend"] == b for p in points)]
    fig, axes = plt.subplots(1, len(backends), figsize=(6 * len(backends), 4.2), squeeze=False)
    for ax, backend in zip(axes[0], backends):
        for (workload, kind), style in STYLE.items():
            rows = series(points, backend, workload, kind)
            ys = [value(p) for p in rows]
            if not rows or all(y is None for y in ys):
                continue
            label = f"{workload}, {'ours (server binary)' if kind == 'ours' else 'raw (sqlx)'}"
            ax.plot([p["concurrency"] for p in rows], ys, label=label, **style)
        ax.set_xscale("log", base=2)
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}, {backend}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(durability_line(sweep), fontsize=8)
    fig.tight_layout()
    path = os.path.join(out, name)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(path)


def durability_line(sweep):
    d = sweep.get("durability", {})
    pg = ", ".join(f"{k}={v}" for k, v in d.get("postgres", []) if k != "shared_preload_libraries")
    return (f"{sweep['seconds_per_point']:g} s per point, {sweep['cores']} cores; "
            f"SQLite synchronous={d.get('server_sqlite_synchronous')}; PostgreSQL {pg or '-'}")


def cpu(sweep, out):
    points = sweep["points"]
    backends = [b for b in ("sqlite", "postgres") if any(p["backend"] == b for p in points)]
    fig, axes = plt.subplots(1, len(backends), figsize=(6 * len(backends), 4.2), squeeze=False)
    for ax, backend in zip(axes[0], backends):
        for workload, color in (("refresh", "tab:blue"), ("issue", "tab:orange")):
            ours = series(points, backend, workload, "ours")
            raw = series(points, backend, workload, "raw")
            xs = [p["concurrency"] for p in ours]
            ax.plot(xs, [p["cpu_us_per_op"]["server_us"] for p in ours], color=color,
                    marker="o", label=f"{workload}: server process")
            if backend == "postgres":
                ax.plot(xs, [p["cpu_us_per_op"]["postgres_us"] for p in ours], color=color,
                        marker="^", linestyle=":", label=f"{workload}: PostgreSQL, ours")
                ax.plot([p["concurrency"] for p in raw],
                        [p["cpu_us_per_op"]["postgres_us"] for p in raw], color=color,
                        marker="s", linestyle="--", label=f"{workload}: PostgreSQL, raw")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel("CPU µs per request")
        ax.set_title(f"CPU per request, {backend}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out, "cpu.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(path)


def replicas(sweep, out):
    rows = [p for p in sweep["points"] if p["phase"] == "replicas"]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for workload, color in (("refresh", "tab:blue"), ("issue", "tab:orange")):
        rs = sorted((p for p in rows if p["workload"] == workload), key=lambda p: p["replicas"])
        ax.plot([p["replicas"] for p in rs], [p["stats"]["per_second"] for p in rs],
                color=color, marker="o", label=f"{workload} ({rs[0]['concurrency'] if rs else '?'} streams)")
    ax.set_xlabel("server processes over one PostgreSQL database")
    ax.set_ylabel("requests per second")
    ax.set_xticks(sorted({p["replicas"] for p in rows}))
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Throughput vs replicas, PostgreSQL")
    fig.tight_layout()
    path = os.path.join(out, "replicas.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(path)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        sweep = json.load(f)
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.abspath(sys.argv[1]))
    os.makedirs(out, exist_ok=True)
    curves(sweep, out, "throughput.png", lambda p: p["stats"]["per_second"],
           "requests per second", "Throughput")
    curves(sweep, out, "p99.png", lambda p: p["stats"]["p99_ms"],
           "p99 latency, ms (log)", "p99 latency", logy=True)
    cpu(sweep, out)
    replicas(sweep, out)


if __name__ == "__main__":
    main()
