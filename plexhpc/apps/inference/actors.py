"""The parallel-inference actors: a worker that serves a real model, and the benchmark
that drives groups of them and measures what happens.

``InferenceWorker`` loads its model once, in init (the point of stateful shards: the
model stays warm across requests), and answers ``infer`` by running the real forward
pass over the request's input (256 KiB by default), replying with a checksum and the
measured compute time. ``BenchmarkActor`` creates shard groups of workers and measures
shard scaling (strong: a fixed number of requests; weak: a fixed number per shard).
Every reported time is measured with ``time.perf_counter``; nothing is simulated.
"""

from __future__ import annotations

import os
import time

from ... import actor, handler, host, init_handler, state
from .model import MLP, make_request_input

__all__ = ["InferenceWorker", "BenchmarkActor", "limit_blas_threads"]


def limit_blas_threads(n: int = 1) -> None:
    """One BLAS thread per rank: a rank is a core here, and ranks × BLAS threads beyond
    the cores only adds contention (the benchmark measures cores in use)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a declared dependency
        return
    threadpool_limits(n)


@actor
class InferenceWorker:
    """Serves ``infer`` with a real forward pass of a seeded MLP loaded once in init."""

    model_type: str = state(default="small")
    shard_id: int = state(default=-1)
    served: int = state(default=0)
    compute_ms: float = state(default=0.0)

    @init_handler
    def on_init(self, config: dict) -> None:
        args = config.get("args", {})
        initial = args.get("initial_state") or {}
        self.model_type = initial.get("model_type", args.get("model_type", self.model_type))
        self.shard_id = int(args.get("shard_id", -1))
        limit_blas_threads(int(initial.get("blas_threads", 1)))
        self._model = MLP(self.model_type, seed=int(initial.get("seed", 0)))

    @handler("infer")
    def infer(self, request_id: str = "", input=None, batch_size: int = 64,
              kb: float = 256.0) -> dict:
        t0 = time.perf_counter()
        x = input if hasattr(input, "shape") else make_request_input(
            str(request_id), batch_size=batch_size, kb=kb, input_dim=self._model.input_dim)
        reply = self._model.infer(x)
        self.served += 1
        self.compute_ms += reply["compute_time_ms"]
        reply.update({"status": "ok", "request_id": request_id, "shard_id": self.shard_id,
                      "rank": host.rank(),
                      "latency_ms": (time.perf_counter() - t0) * 1e3})
        return reply

    @handler("get_metrics")
    def get_metrics(self) -> dict:
        return {"served": self.served, "compute_ms": self.compute_ms}

    @handler("reset")
    def reset(self) -> dict:
        self.served = 0
        self.compute_ms = 0.0
        return {"status": "ok"}


@actor
class BenchLane:
    """One client stream of scatter_gather rounds. Several lanes run at once, so shards
    always have the next request queued and no core idles between rounds. Lane ``i`` of
    ``L`` sends rounds ``i, i+L, i+2L, ...``."""

    lane: int = state(default=0)

    @init_handler
    def on_init(self, config: dict) -> None:
        self.lane = int(config["args"].get("lane", 0))

    @handler("rounds")
    def rounds(self, group_id: str, shards: int, lanes: int, rounds: int,
               batch_size: int = 64, kb: float = 256.0, timeout_ms: int = 120000) -> dict:
        inputs = [make_request_input(f"input-{self.lane}-{k}", batch_size=batch_size, kb=kb)
                  for k in range(2)]
        latencies, computes, errors = [], [], 0
        for i in range(self.lane, rounds, lanes):
            query = {"op": "infer", "batch_size": batch_size, "kb": kb,
                     "request_id": f"r{shards}-{i}", "input": inputs[i % 2]}
            try:
                rows = host.scatter_gather({"group_id": group_id, "query": query,
                                            "timeout_ms": timeout_ms})["shard_responses"]
            except Exception as exc:  # noqa: BLE001 - counted, reported by the caller
                partial = getattr(exc, "partial", None) or {}
                rows = partial.get("shard_responses", [])
                errors += shards - sum(1 for r in rows if r["success"])
            for r in rows:
                if r["success"]:
                    latencies.append(r["latency_ms"])
                    computes.append(r["response"]["compute_time_ms"])
        return {"latencies_ms": latencies, "compute_ms": computes, "error_count": errors}


@actor
class BenchmarkActor:
    """Runs one shard-scaling measurement per call, from inside a handler."""

    lanes: list = state(default_factory=list)

    clients: list = state(default_factory=list)

    @handler("pool_run")
    def pool_run(self, size: int = 2, max_size: int = 4, requests: int = 64,
                 clients: int = 4, model_type: str = "small", batch_size: int = 64,
                 kb: float = 256.0) -> dict:
        """The reference's pool mode: ``clients`` concurrent callers lease workers from a
        pool of ``size``..``max_size`` InferenceWorkers, ``requests`` leases in all."""
        name = f"bench-pool-{host.now_ms()}"
        host.create_pool(name, "plexhpc.apps.inference.actors:InferenceWorker", size=size,
                         max_size=max_size, worker_args={"model_type": model_type})
        while len(self.clients) < clients:
            self.clients.append(host.spawn(PoolClient))
        mine = self.clients[:clients]
        per = max(1, -(-requests // clients))
        try:
            t0 = time.perf_counter()
            parts = _check_all(host.ask_many(mine, "run", {
                "pool": name, "requests": per, "batch_size": batch_size, "kb": kb},
                600_000))
            wall_ms = (time.perf_counter() - t0) * 1e3
            stats = host.pool_stats(name)
        finally:
            host.destroy_pool(name)
        waits = [w for p in parts for w in p["wait_ms"]]
        execs = [e for p in parts for e in p["exec_ms"]]
        computes = [c for p in parts for c in p["compute_ms"]]
        done = len(execs) - sum(p["failed"] for p in parts)
        return {"mode": "pool", "requests": per * clients, "completed": done,
                "failed": sum(p["failed"] for p in parts), "wall_time_ms": wall_ms,
                "throughput_rps": done / (wall_ms / 1000.0) if wall_ms else 0.0,
                "avg_wait_ms": sum(waits) / len(waits) if waits else 0.0,
                "avg_exec_ms": sum(execs) / len(execs) if execs else 0.0,
                "compute_time_ms": sum(computes), "pool_stats": stats}

    @handler("collective_run")
    def collective_run(self, shards: int = 4, repeats: int = 20,
                       model_type: str = "small") -> dict:
        """The reference's collective mode: broadcast (a reset), barrier, reduce and
        all-reduce (of every worker's metrics) over a group, each timed ``repeats``
        times (medians), each reporting how many shards took part."""
        gid = f"bench-coll-{shards}-{host.now_ms()}"
        host.create_shard_group({
            "group_id": gid, "actor_type": "plexhpc.apps.inference.actors:InferenceWorker",
            "shard_count": shards, "initial_state": {"model_type": model_type}})
        calls = {
            "broadcast": lambda: host.broadcast_shard_group(
                {"group_id": gid, "message": {"op": "reset"}})["acks"],
            "barrier": lambda: host.barrier_shard_group({"group_id": gid})["arrived"],
            "reduce": lambda: _keep(host.reduce_shard_group(
                {"group_id": gid, "map_function": {"op": "get_metrics"},
                 "reduction": "sum"})),
            "allreduce": lambda: host.all_reduce_shard_group(
                {"group_id": gid, "map_function": {"op": "get_metrics"},
                 "reduction": "sum", "target": "get_metrics"})["shards_answered"],
        }
        out = {}
        exchange: list = []
        local: list = []

        def _keep(reply):
            exchange.append(reply["exchange_ms"])
            local.append(reply["local_ms"])
            return reply["shards_answered"]

        try:
            for name, fn in calls.items():
                fn()  # warm-up
                times, took_part = [], 0
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    took_part = fn()
                    times.append((time.perf_counter() - t0) * 1e3)
                times.sort()
                out[name] = {"p50_ms": times[len(times) // 2], "shards": took_part}
            exchange.sort()
            local.sort()
            out["reduce"]["exchange_p50_ms"] = exchange[len(exchange) // 2]
            # the local phase: asking this rank's shards and combining their values
            out["reduce"]["local_p50_ms"] = local[len(local) // 2]
        finally:
            host.destroy_shard_group(gid)
        return {"mode": "collective", "shard_count": shards, "repeats": repeats, **out}

    @handler("shard_run")
    def shard_run(self, shards: int = 2, requests: int = 64, weak: bool = False,
                  model_type: str = "small", batch_size: int = 64, kb: float = 256.0,
                  warmup: int = 2, lanes: int = 2, timeout_ms: int = 120000) -> dict:
        """Create a group of ``shards`` workers, send ``requests`` requests (strong
        scaling: in total; weak: per shard) as scatter_gather rounds from ``lanes``
        concurrent clients, and return the raw measurements (per-request latency and
        compute, wall time, errors). The request data (256 KiB by default) travels with
        each request."""
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be an int >= 1, got {lanes!r}")
        while len(self.lanes) < lanes:
            self.lanes.append(host.spawn(BenchLane, args={"lane": len(self.lanes)}))
        gid = f"bench-{shards}-{host.now_ms()}-{os.getpid()}"
        group = host.create_shard_group({
            "group_id": gid, "actor_type": "plexhpc.apps.inference.actors:InferenceWorker",
            "shard_count": shards, "partition_strategy": "hash",
            "placement": {"strategy": "spread"},
            "initial_state": {"model_type": model_type}})
        rounds = requests if weak else max(1, -(-requests // shards))
        common = {"group_id": gid, "shards": shards, "batch_size": batch_size, "kb": kb,
                  "timeout_ms": timeout_ms}
        mine = self.lanes[:lanes]
        try:
            _check_all(host.ask_many(mine, "rounds", dict(common, lanes=lanes,
                                                          rounds=warmup * lanes),
                                     timeout_ms * (warmup + 1)))
            t0 = time.perf_counter()
            parts = _check_all(host.ask_many(mine, "rounds", dict(common, lanes=lanes,
                                                                  rounds=rounds),
                                             timeout_ms * (rounds + 1)))
            wall_ms = (time.perf_counter() - t0) * 1e3
        finally:
            host.destroy_shard_group(gid)
        return {"shards": shards, "ranks": sorted(set(group["rank_of_shard"])),
                "world_size": host.world_size(), "rounds": rounds, "lanes": lanes,
                "latencies_ms": [x for p in parts for x in p["latencies_ms"]],
                "compute_ms": [x for p in parts for x in p["compute_ms"]],
                "wall_time_ms": wall_ms,
                "error_count": sum(p["error_count"] for p in parts),
                "batch_size": batch_size, "kb": kb, "model_type": model_type}


@actor
class PoolClient:
    """One client of the pool benchmark: lease, infer, return, repeat."""

    @handler("run")
    def run(self, pool: str, requests: int, batch_size: int = 64, kb: float = 256.0,
            timeout_ms: int = 30000) -> dict:
        x = make_request_input(f"pool-{host.self_id()}", batch_size=batch_size, kb=kb)
        waits, execs, computes, failed = [], [], [], 0
        for i in range(requests):
            t0 = time.perf_counter()
            try:
                lease = host.pool_checkout(pool, timeout_ms=timeout_ms)
            except Exception:  # noqa: BLE001 - a checkout that timed out: counted
                failed += 1
                continue
            t1 = time.perf_counter()
            healthy = True
            try:
                reply = host.ask(lease["actor_id"], "infer", {"request_id": f"p{i}",
                                                              "input": x}, timeout_ms)
                computes.append(reply["compute_time_ms"])
            except Exception:  # noqa: BLE001 - the worker failed: replace it
                healthy = False
                failed += 1
            t2 = time.perf_counter()
            host.pool_checkin(pool, lease["actor_id"], lease["checkout_id"], healthy)
            waits.append((t1 - t0) * 1e3)
            execs.append((t2 - t1) * 1e3)
        return {"wait_ms": waits, "exec_ms": execs, "compute_ms": computes, "failed": failed}


def _check_all(replies: list) -> list:
    for r in replies:
        if isinstance(r, Exception):
            raise r
    return replies
