"""``plexhpc bench actors``: actor messaging speed against raw mpi4py, in one run.

Run under MPI (``mpiexec -n 2 python -m plexhpc bench actors --json``, or
``plexhpc bench actors -n 2``). With 2 ranks, rank 0 measures against rank 1; with 4,
two pairs (0<->1, 2<->3) measure at the same time and the report gives the slower pair.

All latencies are measured inside a handler (the caller is itself an actor waiting for
its reply) and reported as medians (p50) and p99 over many samples. The raw baselines
(mpi4py buffer ping-pong, ``mpi4py.util.pkl5`` ping-pong of a 256 KiB array) are measured
by the same processes just before the node starts, so ratios compare like with like.
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from mpi4py import MPI

from plexhpc import actor, handler, host, start, state
from .report import check_targets, emit, percentile

#: (key, comparison, target) with one core per rank; the 4-on-2-cores run has its own
TARGETS_2 = [
    ("remote_ask_p50_us", "<=", 12), ("remote_ask_p99_us", "<=", 30),
    ("remote_ask_256k_vs_pkl5", "<=", 1.25), ("local_ask_p50_us", "<=", 5),
    ("local_send_per_s", ">=", 400_000), ("remote_send_per_s", ">=", 200_000),
    ("idle_cpu_pct", "<=", 1), ("first_ask_after_idle_us", "<=", 1000),
    ("actor_mem_bytes", "<=", 1024), ("spawn_100k_s", "<=", 1),
]
TARGETS_4 = [("remote_ask_p50_us", "<=", 100)]


@actor
class Echo:
    """Replies with what it was sent; counts casts."""

    received: int = state(default=0)

    @handler("echo")
    def echo(self, data=None):
        return data

    @handler("note", "cast")
    def note(self, data=None) -> None:
        self.received += 1

    @handler("count")
    def count(self) -> int:
        n, self.received = self.received, 0
        return n

    @handler("cpu")
    def cpu(self) -> float:
        return time.process_time()

    @handler("rss")
    def rss(self) -> int:
        gc.collect()
        return _rss_bytes()

    @handler("spawn_many")
    def spawn_many(self, count: int = 100_000) -> dict:
        gc.collect()
        before = _rss_bytes()
        t0 = time.perf_counter()
        ids = host.spawn_many(Small, count)
        elapsed = time.perf_counter() - t0
        gc.collect()
        after = _rss_bytes()
        probe = host.ask(ids[-1], "size")
        for aid in ids:
            host.stop(aid)
        return {"spawn_s": elapsed, "rss_delta": after - before, "count": len(ids),
                "state_bytes": probe}


@actor
class Small:
    """The smallest useful actor: one integer of state."""

    n: int = state(default=0)

    @handler("size")
    def size(self) -> int:
        return sys.getsizeof(self.__dict__) + sum(sys.getsizeof(v) for v in
                                                   self.__dict__.values())


@actor
class Bench:
    """Runs the measurements from inside a handler."""

    @handler("asks")
    def asks(self, to: str = "", n: int = 10000, nbytes: int = 64, warmup: int = 500) -> dict:
        data = np.zeros(nbytes, np.uint8) if nbytes >= 4096 else b"x" * nbytes
        ask = host.ask
        for _ in range(warmup):
            ask(to, "echo", {"data": data})
        samples = []
        clock = time.perf_counter
        for _ in range(n):
            t0 = clock()
            ask(to, "echo", {"data": data})
            samples.append(clock() - t0)
        return {"p50_us": percentile(samples, 50) * 1e6, "p99_us": percentile(samples, 99) * 1e6,
                "n": n}

    @handler("sends")
    def sends(self, to: str = "", n: int = 100_000) -> dict:
        send = host.send
        payload = {"data": 1}
        host.ask(to, "count")
        t0 = time.perf_counter()
        for _ in range(n):
            send(to, "note", payload)
        got = host.ask(to, "count", timeout_ms=120_000)  # FIFO: after every note
        elapsed = time.perf_counter() - t0
        return {"per_s": n / elapsed, "received": got, "n": n}

    @handler("one_ask")
    def one_ask(self, to: str = "") -> float:
        t0 = time.perf_counter()
        host.ask(to, "echo", {"data": b"x" * 64})
        return (time.perf_counter() - t0) * 1e6


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _raw_baselines(comm, iters: int) -> dict:
    """mpi4py ping-pong (64 B buffer) and pkl5 ping-pong (256 KiB ndarray), pairwise."""
    from mpi4py.util import pkl5
    rank, size = comm.Get_rank(), comm.Get_size()
    peer = rank + 1 if rank % 2 == 0 else rank - 1
    out = {}
    if peer >= size:
        return out
    buf = bytearray(64)

    def pingpong():
        if rank % 2 == 0:
            comm.Send([buf, MPI.BYTE], peer, 7)
            comm.Recv([buf, MPI.BYTE], peer, 7)
        else:
            comm.Recv([buf, MPI.BYTE], peer, 7)
            comm.Send([buf, MPI.BYTE], peer, 7)

    for _ in range(200):
        pingpong()
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        pingpong()
        samples.append(time.perf_counter() - t0)
    out["mpi_pingpong_p50_us"] = percentile(samples, 50) * 1e6
    pcomm = pkl5.Intracomm(comm)
    arr = np.zeros(256 * 1024, np.uint8)
    samples = []
    n = max(iters // 10, 50)
    for i in range(n + 50):
        t0 = time.perf_counter()
        if rank % 2 == 0:
            pcomm.send(arr, peer, 8)
            arr = pcomm.recv(source=peer, tag=8)
        else:
            arr = pcomm.recv(source=peer, tag=8)
            pcomm.send(arr, peer, 8)
        if i >= 50:
            samples.append(time.perf_counter() - t0)
    out["pkl5_pingpong_256k_p50_us"] = percentile(samples, 50) * 1e6
    return out


def _config(size: int) -> dict:
    children = []
    for r in range(size):
        children.append({"name": f"echo{r}", "class": f"{__name__}:Echo", "rank": r})
        if r % 2 == 0:
            children.append({"name": f"bench{r}", "class": f"{__name__}:Bench", "rank": r})
    return {"app": {"name": "bench-actors"}, "supervisor": {"children": children}}


def _worst(values, key, higher_is_worse=True):
    vals = [v[key] for v in values]
    return max(vals) if higher_is_worse else min(vals)


def measure(node, quick: bool) -> dict:
    """The driver's side: run every phase and assemble the result."""
    size = node.size
    pairs = [(r, r + 1) for r in range(0, size - 1, 2)]
    n_ask = 2000 if quick else 20000
    n_big = 200 if quick else 2000
    n_send = 20000 if quick else 200_000
    n_spawn = 10000 if quick else 100_000
    pool = ThreadPoolExecutor(max(len(pairs), 1))

    def on_pairs(fn):
        return list(pool.map(fn, pairs))

    res: dict = {}
    local = on_pairs(lambda p: node.ask(f"bench{p[0]}", "asks",
                                        {"to": f"echo{p[0]}", "n": n_ask}, 300_000))
    res["local_ask_p50_us"] = _worst(local, "p50_us")
    res["local_ask_p99_us"] = _worst(local, "p99_us")
    remote = on_pairs(lambda p: node.ask(f"bench{p[0]}", "asks",
                                         {"to": f"echo{p[1]}", "n": n_ask}, 300_000))
    res["remote_ask_p50_us"] = _worst(remote, "p50_us")
    res["remote_ask_p99_us"] = _worst(remote, "p99_us")
    big = on_pairs(lambda p: node.ask(f"bench{p[0]}", "asks", {
        "to": f"echo{p[1]}", "n": n_big, "nbytes": 256 * 1024, "warmup": 50}, 300_000))
    res["remote_ask_256k_p50_us"] = _worst(big, "p50_us")
    ls = on_pairs(lambda p: node.ask(f"bench{p[0]}", "sends",
                                     {"to": f"echo{p[0]}", "n": n_send}, 300_000))
    res["local_send_per_s"] = _worst(ls, "per_s", higher_is_worse=False)
    rs = on_pairs(lambda p: node.ask(f"bench{p[0]}", "sends",
                                     {"to": f"echo{p[1]}", "n": n_send}, 300_000))
    res["remote_send_per_s"] = _worst(rs, "per_s", higher_is_worse=False)
    res["sends_delivered"] = all(x["received"] == n_send for x in ls + rs)

    # idle: nobody sends anything for 2 s; each rank's own CPU time over the window
    cpu0 = [node.ask(f"echo{r}", "cpu") for r in range(size)]
    w0 = time.perf_counter()
    time.sleep(2.0)
    cpu1 = [node.ask(f"echo{r}", "cpu") for r in range(size)]
    wall = time.perf_counter() - w0
    per_rank = [(b - a) / wall * 100 for a, b in zip(cpu0, cpu1)]
    res["idle_cpu_pct"] = max(per_rank)
    res["idle_cpu_pct_per_rank"] = [round(x, 3) for x in per_rank]
    # after 2 s of idle, one ask from rank 0 to its peer (the peer was asleep)
    node.ask(f"echo{size - 1}", "echo", {})
    time.sleep(2.0)
    res["first_ask_after_idle_us"] = node.ask("bench0", "one_ask", {"to": "echo1"})

    spawn_rank = 1 if size > 1 else 0
    sp = node.ask(f"echo{spawn_rank}", "spawn_many", {"count": n_spawn}, 600_000)
    res["spawn_100k_s"] = sp["spawn_s"] * (100_000 / n_spawn)
    res["actor_mem_total_bytes"] = sp["rss_delta"] / sp["count"]
    res["actor_state_bytes"] = sp["state_bytes"]
    res["actor_mem_bytes"] = res["actor_mem_total_bytes"] - sp["state_bytes"]
    pool.shutdown()
    return res


def main(args) -> int:
    comm = MPI.COMM_WORLD
    size = comm.Get_size()
    if size < 2 or size % 2:
        if comm.Get_rank() == 0:
            print(f"plexhpc bench actors needs an even number of ranks >= 2, got {size}",
                  file=sys.stderr)
        return 2
    quick = bool(getattr(args, "quick", False))
    base_comm = comm.Dup()
    raw = _raw_baselines(base_comm, 2000 if quick else 20000)
    raws = base_comm.gather(raw, root=0)
    base_comm.Free()
    with start(_config(size)) as node:
        if not node.is_driver:
            return node.exit_code
        res = measure(node, quick)
    res["mpi_pingpong_p50_us"] = max(r["mpi_pingpong_p50_us"] for r in raws if r)
    res["pkl5_pingpong_256k_p50_us"] = max(r["pkl5_pingpong_256k_p50_us"] for r in raws if r)
    res["remote_ask_vs_mpi"] = res["remote_ask_p50_us"] / res["mpi_pingpong_p50_us"]
    res["remote_ask_256k_vs_pkl5"] = (res["remote_ask_256k_p50_us"]
                                      / res["pkl5_pingpong_256k_p50_us"])
    targets = TARGETS_2 if size == 2 else TARGETS_4
    res["targets"] = check_targets(res, targets)
    res.update({"ranks": size, "pairs": size // 2, "quick": quick,
                "cores": os.cpu_count(), "mpi": MPI.Get_library_version().splitlines()[0],
                "python": sys.version.split()[0],
                "maxrss_kb_rank0": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})
    return emit(args, "actors", f"plexhpc bench actors ({size} ranks)", res)
