"""The report side of ``plexhpc bench shards``: raw measurements to rows, rows to files.

What: the shard-scaling benchmark runs a parallel-inference app at several shard counts
and collects, for each count, the per-request latencies and compute times, the wall time
of the run and its errors. This module turns one such set of raw measurements into one
row (:func:`make_row`), finishes a list of rows by computing the efficiencies relative to
the first row (:func:`finish_rows`), and writes ``shards.json``, ``shards.md`` and a plot
``shards.png`` (:func:`write_reports`). The plot needs matplotlib, an optional extra
(``pip install 'plexhpc[plot]'``); without it the JSON and Markdown reports are still
written and the plot is skipped with a warning on stderr.

Why: the functions are pure (apart from :func:`write_reports`, which only writes files)
so that every number in a report can be checked in a unit test, without MPI, and so
that every reader of the report knows exactly how each number was computed: the
definitions below are also printed under the Markdown table.

Definitions (times in milliseconds; "successful requests" is ``len(latencies_ms)``):

- ``total_requests = len(latencies_ms) + error_count``.
- ``throughput_rps = successful requests / (wall_time_ms / 1000)``.
- ``p50_latency_ms``, ``p95_latency_ms``, ``p99_latency_ms``: the nearest-rank
  percentile of ``latencies_ms`` (the smallest latency such that at least that
  percentage of the latencies are less than or equal to it); 0 when there are none.
- ``compute_time_ms = sum(compute_ms)``: time spent computing, summed over requests.
- ``coordination_time_ms = sum(latencies_ms) - sum(compute_ms)``: the part of the
  requests' latency not spent computing, i.e. messaging, queueing and coordination;
  clamped at 0 so it is never negative.
- ``compute_pct = compute_time_ms / wall_time_ms * 100``: the reference's definition,
  parallel compute counted against serial wall time, so it can exceed 100.
- ``granularity_ratio = compute_time_ms / coordination_time_ms``: how much compute
  there is per unit of coordination; ``None`` when the coordination time is 0 (the
  ratio would be infinite).
- ``parallel_efficiency_pct = throughput_rps / (throughput_rps[first row]
  * shards / shards[first row]) * 100``: the reference's definition, throughput
  relative to linear speed-up in shards from the first row (so the first row is 100);
  ``None`` when the first row's throughput is 0. Filled in by :func:`finish_rows`.
- ``core_efficiency_pct = compute_time_ms / (cores_in_use * wall_time_ms) * 100``,
  where ``cores_in_use = min(ranks, free cores)`` is given by the caller: the honest
  measure, how close the run came to what the machine can actually do.

:func:`finish_rows` rounds every float in a row (latencies, times, rates, percentages,
ratios) to 2 decimals; the efficiencies are computed from the unrounded values first.
"""

from __future__ import annotations

import json
import math
import os
import sys
from numbers import Integral, Real

from .report import percentile

__all__ = ["ROW_KEYS", "make_row", "finish_rows", "markdown", "write_reports",
           "PLOT_HINT"]

#: how to get the optional plotting dependency
PLOT_HINT = "pip install 'plexhpc[plot]'"

ROW_KEYS = (
    "shards",
    "batch_size",
    "total_requests",
    "kb_per_request",
    "throughput_rps",
    "p50_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
    "wall_time_ms",
    "compute_time_ms",
    "coordination_time_ms",
    "compute_pct",
    "granularity_ratio",
    "parallel_efficiency_pct",
    "error_count",
    "ranks",
    "core_efficiency_pct",
)

# Markdown column header -> row key, in table order.
_COLUMNS = (
    ("shards", "shards"),
    ("batch", "batch_size"),
    ("total requests", "total_requests"),
    ("KB/req", "kb_per_request"),
    ("req/s", "throughput_rps"),
    ("wall ms", "wall_time_ms"),
    ("p50", "p50_latency_ms"),
    ("p95", "p95_latency_ms"),
    ("p99", "p99_latency_ms"),
    ("compute ms", "compute_time_ms"),
    ("coord ms", "coordination_time_ms"),
    ("comp %", "compute_pct"),
    ("granularity", "granularity_ratio"),
    ("eff %", "parallel_efficiency_pct"),
    ("core eff %", "core_efficiency_pct"),
    ("ranks", "ranks"),
    ("errors", "error_count"),
)

FORMULAS = (
    "**total requests** = successful requests (latencies measured) + errors",
    "**req/s** (throughput) = successful requests / (wall ms / 1000)",
    "**p50 / p95 / p99** = nearest-rank percentile of the per-request latencies, in ms "
    "(0 when there are none)",
    "**compute ms** = sum of the per-request compute times",
    "**coord ms** = sum of the per-request latencies - compute ms: time in messaging, "
    "queueing and coordination (clamped at 0)",
    "**comp %** = compute ms / wall ms * 100: parallel compute counted against serial "
    "wall time, so it can exceed 100",
    "**granularity** = compute ms / coord ms (n/a when coord ms is 0)",
    "**eff %** (parallel efficiency) = req/s / (req/s of the first row * shards / shards "
    "of the first row) * 100: throughput relative to linear speed-up in shards from the "
    "first row",
    "**core eff %** = compute ms / (cores in use * wall ms) * 100, cores in use = "
    "min(ranks, free cores): how close the run came to what the machine can do",
)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_number(name: str, value, *, positive: bool = False) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, Real)
          and math.isfinite(value) and (value > 0 if positive else value >= 0))
    if not ok:
        kind = "a finite number > 0" if positive else "a finite number >= 0"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return float(value)


def _check_samples(name: str, values) -> list:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name} must be a list of finite numbers >= 0 (ms), got {values!r}")
    out = []
    for i, v in enumerate(values):
        out.append(_check_number(f"{name}[{i}]", v))
    return out


def make_row(*, shards, batch_size, kb_per_request, latencies_ms, compute_ms,
             wall_time_ms, error_count, ranks, cores_in_use) -> dict:
    """One report row (keys exactly :data:`ROW_KEYS`) from one run's raw measurements.

    ``latencies_ms`` and ``compute_ms`` are per-request, one entry per successful
    request, in the same order. ``parallel_efficiency_pct`` is ``None`` until
    :func:`finish_rows`. Raises ValueError on invalid input.
    """
    shards = _check_int("shards", shards, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    error_count = _check_int("error_count", error_count, 0)
    ranks = _check_int("ranks", ranks, 1)
    cores_in_use = _check_int("cores_in_use", cores_in_use, 1)
    if cores_in_use > ranks:
        raise ValueError(f"cores_in_use must be <= ranks ({ranks}), being min(ranks, free "
                         f"cores); got {cores_in_use}")
    kb_per_request = _check_number("kb_per_request", kb_per_request)
    wall_time_ms = _check_number("wall_time_ms", wall_time_ms, positive=True)
    latencies = _check_samples("latencies_ms", latencies_ms)
    computes = _check_samples("compute_ms", compute_ms)
    if len(latencies) != len(computes):
        raise ValueError(f"latencies_ms and compute_ms must have equal lengths (one entry "
                         f"per successful request), got {len(latencies)} and {len(computes)}")

    successes = len(latencies)
    compute_time = math.fsum(computes)
    coordination_time = max(0.0, math.fsum(latencies) - compute_time)

    def pct(q: float) -> float:
        return float(percentile(latencies, q)) if latencies else 0.0

    row = {
        "shards": shards,
        "batch_size": batch_size,
        "total_requests": successes + error_count,
        "kb_per_request": kb_per_request,
        "throughput_rps": successes / (wall_time_ms / 1000.0),
        "p50_latency_ms": pct(50),
        "p95_latency_ms": pct(95),
        "p99_latency_ms": pct(99),
        "wall_time_ms": wall_time_ms,
        "compute_time_ms": compute_time,
        "coordination_time_ms": coordination_time,
        "compute_pct": compute_time / wall_time_ms * 100.0,
        "granularity_ratio": (compute_time / coordination_time
                              if coordination_time > 0 else None),
        "parallel_efficiency_pct": None,
        "error_count": error_count,
        "ranks": ranks,
        "core_efficiency_pct": compute_time / (cores_in_use * wall_time_ms) * 100.0,
    }
    assert tuple(row) == ROW_KEYS
    return row


def finish_rows(rows) -> list:
    """New rows with ``parallel_efficiency_pct`` filled in and every float rounded to 2
    decimals; efficiency is relative to linear speed-up in shards from the first row."""
    rows = [dict(r) for r in rows]
    for i, r in enumerate(rows):
        missing = [k for k in ROW_KEYS if k not in r]
        if missing:
            raise ValueError(f"row {i} must have every key of ROW_KEYS (from make_row); "
                             f"missing {missing}")
    if not rows:
        return []
    base_rps = rows[0]["throughput_rps"]
    base_shards = rows[0]["shards"]
    out = []
    for r in rows:
        if base_rps > 0:
            ideal = base_rps * r["shards"] / base_shards
            r["parallel_efficiency_pct"] = r["throughput_rps"] / ideal * 100.0
        else:
            r["parallel_efficiency_pct"] = None
        out.append({k: (round(v, 2) if isinstance(v, float) else v)
                    for k, v in ((k, r[k]) for k in ROW_KEYS)})
    return out


def _cell(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def markdown(rows, *, title: str, command: str) -> str:
    """The rows as a Markdown table, followed by the formulas and the command that
    produced them."""
    lines = [f"## {title}", "",
             "| " + " | ".join(h for h, _ in _COLUMNS) + " |",
             "|" + "|".join("---" for _ in _COLUMNS) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(k)) for _, k in _COLUMNS) + " |")
    lines += ["", "### Formulas", ""]
    lines += [f"- {f}" for f in FORMULAS]
    lines += ["", "### Command", "", "```", command, "```"]
    return "\n".join(lines) + "\n"


def _pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend, imported only when a chart
    is drawn; ImportError naming the extra to install when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(f"the shards.png chart needs matplotlib, which is not "
                          f"installed: {PLOT_HINT}") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _plot(plt, rows, path: str, title: str) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    def series(key):
        return [math.nan if r.get(key) is None else r[key] for r in rows]

    shards = [r["shards"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    try:
        ax2 = ax.twinx()
        h1 = ax.plot(shards, series("throughput_rps"), "o-", color="tab:blue",
                     label="throughput (req/s)")
        h2 = ax2.plot(shards, series("parallel_efficiency_pct"), "s--", color="tab:orange",
                      label="parallel efficiency (%)")
        h3 = ax2.plot(shards, series("core_efficiency_pct"), "^:", color="tab:green",
                      label="core efficiency (%)")
        ax.set_xscale("log", base=2)
        ticks = sorted(set(shards))
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
        lo, hi = ticks[0], ticks[-1]
        ax.set_xlim(lo / 1.25, hi * 1.25)
        ax.set_xlabel("shards")
        ax.set_ylabel("throughput (req/s)")
        ax2.set_ylabel("efficiency (%)")
        ax.set_ylim(bottom=0)
        ax2.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        handles = h1 + h2 + h3
        ax2.legend(handles, [h.get_label() for h in handles], loc="upper center",
                   bbox_to_anchor=(0.5, -0.13), ncol=3, frameon=False)
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def write_reports(rows, directory, *, title: str, command: str, meta=None) -> dict:
    """Write ``shards.json``, ``shards.md`` and ``shards.png`` into ``directory``
    (created if missing); returns ``{"json": path, "markdown": path, "png": path}``.

    Without matplotlib the chart is skipped (``"png"`` is then None) with a warning on
    stderr naming ``pip install 'plexhpc[plot]'``: the measurements behind a report can
    take minutes, and the JSON and Markdown files hold every number."""
    rows = list(rows)
    if not rows:
        raise ValueError("write_reports needs at least one row, got none")
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    paths = {"json": os.path.join(directory, "shards.json"),
             "markdown": os.path.join(directory, "shards.md"),
             "png": os.path.join(directory, "shards.png")}
    with open(paths["json"], "w") as fh:
        json.dump({"title": title, "command": command, "meta": meta, "rows": rows}, fh,
                  indent=2, allow_nan=False)
        fh.write("\n")
    with open(paths["markdown"], "w") as fh:
        fh.write(markdown(rows, title=title, command=command))
    try:
        plt = _pyplot()
    except ImportError as exc:
        print(f"plexhpc bench shards: warning: {exc}; wrote {paths['json']} and "
              f"{paths['markdown']} without the chart", file=sys.stderr, flush=True)
        paths["png"] = None
    else:
        _plot(plt, rows, paths["png"], title)
    return paths
