"""``plexhpc bench shards``: shard scaling of the parallel-inference app.

``plexhpc bench shards --shards 2,4,8,16,32 --requests 64 [--weak] --json --report DIR``
(launches ``mpiexec -n 2`` unless run inside one). For every shard count a group of
``InferenceWorker`` shards is created over the ranks and driven with scatter_gather
rounds of real forward passes (256 KiB per request by default). Rows use the
reference's keys plus ``ranks`` and ``core_efficiency_pct``; see
:mod:`benchmarks.shards_report` for every formula.
"""

from __future__ import annotations

import json
import os
import sys
import time

from mpi4py import MPI

from plexhpc import start
from .shards_report import finish_rows, make_row, markdown, write_reports

__all__ = ["main"]


def _progress(i: int, n: int, label: str) -> None:
    width = 24
    done = int(width * i / n) if n else width
    sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {i}/{n} {label:<28}")
    if i == n:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _shard_counts(text: str) -> list:
    try:
        counts = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--shards expects comma-separated integers, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise SystemExit(f"--shards expects integers >= 1, got {text!r}")
    return counts


def _raw_allreduce_us(comm, reps: int = 2000) -> float:
    """mpi4py's Allreduce of what a group reduction of metrics moves (2 float64), over
    the same ranks: the raw floor the collective mode is compared with."""
    import numpy as np
    a, b = np.ones(2), np.empty(2)
    for _ in range(100):
        comm.Allreduce(a, b)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        comm.Allreduce(a, b)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] * 1e6


def _other_mode(args, mode: str) -> int:
    cfg = {"app": {"name": f"bench-{mode}"}, "supervisor": {"children": [
        {"name": "bench", "class": "plexhpc.apps.inference.actors:BenchmarkActor", "rank": 0}]}}
    comm = MPI.COMM_WORLD.Dup()
    raw = comm.allreduce(_raw_allreduce_us(comm), op=MPI.MAX) if mode == "collective" else None
    comm.Free()
    shards = _shard_counts(getattr(args, "shards", "4"))[-1]
    with start(cfg) as node:
        if not node.is_driver:
            return node.exit_code
        if mode == "pool":
            res = node.ask("bench", "pool_run", {
                "size": 2, "max_size": max(2, shards), "requests": int(args.requests),
                "clients": max(2, shards), "model_type": args.model,
                "batch_size": int(args.batch), "kb": float(args.kb)}, timeout_ms=3_600_000)
        else:
            res = node.ask("bench", "collective_run", {"shards": shards,
                                                       "model_type": args.model},
                           timeout_ms=3_600_000)
            res["mpi4py_allreduce_2xf64_us"] = round(raw, 2)
            res["allreduce_vs_raw"] = round(res["allreduce"]["p50_ms"] * 1000 / raw, 1)
            # the cross-rank part alone (one Iallgather of 512-byte slots + the combine)
            res["reduce_exchange_vs_raw"] = round(res["reduce"]["exchange_p50_ms"] * 1000 / raw,
                                                  2)
            # the yardstick: raw allreduce over the same ranks plus the local phase
            local_us = res["reduce"]["local_p50_ms"] * 1000
            res["allreduce_vs_raw_plus_local"] = round(
                res["allreduce"]["p50_ms"] * 1000 / (raw + local_us), 2)
    res["ranks"] = MPI.COMM_WORLD.Get_size()
    print(json.dumps(res, default=str), flush=True)
    return 0


def main(args) -> int:
    mode = getattr(args, "mode", "scaling")
    if mode != "scaling":
        return _other_mode(args, mode)
    comm = MPI.COMM_WORLD
    counts = _shard_counts(getattr(args, "shards", "2,4,8,16,32"))
    requests = int(getattr(args, "requests", 256))
    weak = bool(getattr(args, "weak", False))
    model = getattr(args, "model", "small")
    batch = int(getattr(args, "batch", 64))
    kb = float(getattr(args, "kb", 256.0))
    lanes = int(getattr(args, "lanes", 2))
    cfg = {"app": {"name": "bench-shards"}, "supervisor": {"children": [
        {"name": "bench", "class": "plexhpc.apps.inference.actors:BenchmarkActor", "rank": 0}]}}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with start(cfg) as node:
        if not node.is_driver:
            return node.exit_code
        rows = []
        t0 = time.perf_counter()
        for i, n in enumerate(counts):
            _progress(i, len(counts), f"{n} shards")
            raw = node.ask("bench", "shard_run", {
                "shards": n, "requests": requests, "weak": weak, "model_type": model,
                "batch_size": batch, "kb": kb, "lanes": lanes}, timeout_ms=3_600_000)
            ranks = len(raw["ranks"])
            rows.append(make_row(shards=n, batch_size=batch, kb_per_request=kb,
                                 latencies_ms=raw["latencies_ms"], compute_ms=raw["compute_ms"],
                                 wall_time_ms=raw["wall_time_ms"],
                                 error_count=raw["error_count"], ranks=ranks,
                                 cores_in_use=max(1, min(ranks, cores))))
        _progress(len(counts), len(counts), "done")
        rows = finish_rows(rows)
    size = comm.Get_size()
    command = (f"plexhpc bench shards -n {size} --shards {','.join(map(str, counts))} "
               f"--requests {requests}{' --weak' if weak else ''} --model {model} --lanes {lanes}")
    title = (f"Shard scaling ({'weak' if weak else 'strong'}, {model} model, {size} ranks, "
             f"{cores} cores)")
    meta = {"ranks": size, "cores": cores, "weak": weak, "model": model, "lanes": lanes,
            "elapsed_s": round(time.perf_counter() - t0, 1),
            "mpi": MPI.Get_library_version().splitlines()[0]}
    if getattr(args, "report", None):
        write_reports(rows, args.report, title=title, command=command, meta=meta)
    if not getattr(args, "json", False):
        print(markdown(rows, title=title, command=command))
    print(json.dumps({"title": title, "command": command, "meta": meta, "rows": rows}),
          flush=True)
    return 0
