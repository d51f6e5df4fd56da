"""``plexhpc bench state``: the state primitives against raw SQLite, in the same run.

Run under MPI (``plexhpc bench state -n 2 --json``). Measured from actors, through the
host API, as applications use them: KV put/get, TupleSpace write+take and a durable
channel's send+receive+ack, each from the rank that owns the stores and from another
rank; the cost a durability checkpoint adds to a message at checkpoint_interval 1 and
10 (a ~1 KB state); and the baseline: raw ``sqlite3`` single-row inserts of the same
size, each committed, on a file opened with the same settings. Each figure is the
median of several repeats; ratios compare figures from this same run.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

from mpi4py import MPI

from plexhpc import actor, handler, host, start, state
from .report import check_targets, emit

_PAYLOAD = {"task": "x" * 64, "n": 0}
_STATE_BLOB = "s" * 1000

TARGETS = [("durable_msg_overhead_us_interval_1", "<=", 50.0),
           ("channel_vs_sqlite_insert", ">=", 0.25)]


@actor
class StateBench:
    """Times host state calls from where it runs."""

    @handler("kv")
    def kv(self, n: int) -> dict:
        t0 = time.perf_counter()
        for i in range(n):
            host.kv_put(f"k{i}", _PAYLOAD)
        t1 = time.perf_counter()
        for i in range(n):
            host.kv_get(f"k{i}")
        t2 = time.perf_counter()
        return {"put_per_s": n / (t1 - t0), "get_per_s": n / (t2 - t1)}

    @handler("ts")
    def ts(self, n: int) -> dict:
        t0 = time.perf_counter()
        for i in range(n):
            host.ts.write(["bench", i, "payload"])
            host.ts.take_nowait(["bench", i, None])
        return {"per_s": n / (time.perf_counter() - t0)}

    @handler("channel")
    def channel(self, n: int) -> dict:
        t0 = time.perf_counter()
        for _ in range(n):
            host.channel.send("bench", "task", _PAYLOAD)
            msg = host.channel.receive("bench")
            host.channel.ack("bench", msg["msg_id"])
        return {"per_s": n / (time.perf_counter() - t0)}

    @handler("bumps")
    def bumps(self, to: str, n: int) -> float:
        """Seconds per local ask of ``bump`` to ``to``."""
        for _ in range(50):
            host.ask(to, "bump")
        t0 = time.perf_counter()
        for _ in range(n):
            host.ask(to, "bump")
        return (time.perf_counter() - t0) / n


class _Bump:
    count: int = state(default=0)
    blob: str = state(default=_STATE_BLOB)

    @handler("bump")
    def bump(self) -> int:
        self.count += 1
        return self.count


@actor
class PlainBump(_Bump):
    pass


@actor(facets=[{"type": "durability", "config": {"checkpoint_interval": 1}}])
class DurableBump1(_Bump):
    pass


@actor(facets=[{"type": "durability", "config": {"checkpoint_interval": 10}}])
class DurableBump10(_Bump):
    pass


def _sqlite_insert_per_s(n: int) -> float:
    """Raw sqlite3: one committed single-row insert per message, same settings and row
    size as the channel's."""
    from plexhpc.storage.codec import encode
    from plexhpc.storage.db import open_db
    with tempfile.TemporaryDirectory(prefix="plexhpc-bench-") as d:
        conn = open_db(os.path.join(d, "raw.sqlite"))
        conn.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, body BLOB)")
        body = encode(_PAYLOAD)
        ins = "INSERT INTO raw (body) VALUES (?)"
        t0 = time.perf_counter()
        for _ in range(n):
            conn.execute(ins, (body,))
        per_s = n / (time.perf_counter() - t0)
        conn.close()
    return per_s


def _median(values):
    return statistics.median(values)


def measure(node, quick: bool) -> dict:
    last = node.size - 1
    n = 300 if quick else 3000
    n_ask = 500 if quick else 5000
    reps = 3
    here = node.spawn(StateBench, rank=0)
    there = node.spawn(StateBench, rank=last)
    res: dict = {}
    for where, who in (("same_rank", here), ("other_rank", there)):
        kv = [node.ask(who, "kv", {"n": n}, 600_000) for _ in range(reps)]
        res[f"kv_put_per_s_{where}"] = _median([x["put_per_s"] for x in kv])
        res[f"kv_get_per_s_{where}"] = _median([x["get_per_s"] for x in kv])
        res[f"ts_write_take_per_s_{where}"] = _median(
            [node.ask(who, "ts", {"n": n}, 600_000)["per_s"] for _ in range(reps)])
        res[f"channel_send_ack_per_s_{where}"] = _median(
            [node.ask(who, "channel", {"n": n}, 600_000)["per_s"] for _ in range(reps)])
    res["kv_put_per_s"] = res["kv_put_per_s_same_rank"]
    res["kv_get_per_s"] = res["kv_get_per_s_same_rank"]
    res["ts_write_take_per_s"] = res["ts_write_take_per_s_same_rank"]
    # the channel against raw inserts: pairs measured back to back, the median ratio
    pairs = [(node.ask(here, "channel", {"n": n}, 600_000)["per_s"], _sqlite_insert_per_s(n))
             for _ in range(2 * reps + 1)]
    res["channel_send_ack_per_s"] = _median([c for c, _ in pairs])
    res["sqlite_insert_per_s"] = _median([r for _, r in pairs])
    res["channel_vs_sqlite_insert"] = _median([c / r for c, r in pairs])
    plain = node.spawn(PlainBump, rank=0)
    d1 = node.spawn(DurableBump1, rank=0)
    d10 = node.spawn(DurableBump10, rank=0)
    per = {name: [] for name in ("plain", "d1", "d10")}
    for _ in range(reps):  # interleaved, so drift in the machine hits all three alike
        for name, who in (("plain", plain), ("d1", d1), ("d10", d10)):
            per[name].append(node.ask(here, "bumps", {"to": who, "n": n_ask}, 600_000))
    base = _median(per["plain"])
    res["local_ask_us"] = base * 1e6
    res["durable_msg_overhead_us_interval_1"] = (_median(per["d1"]) - base) * 1e6
    res["durable_msg_overhead_us_interval_10"] = (_median(per["d10"]) - base) * 1e6
    return res


def main(args) -> int:
    comm = MPI.COMM_WORLD
    quick = bool(getattr(args, "quick", False))
    with tempfile.TemporaryDirectory(prefix="plexhpc-bench-state-") as tmp:
        tmp = comm.bcast(tmp, root=0)
        cfg = {"app": {"name": "bench-state"}, "supervisor": {"children": []},
               "state": {"dir": tmp}}
        with start(cfg) as node:
            if not node.is_driver:
                return node.exit_code
            res = measure(node, quick)
    res["targets"] = check_targets(res, TARGETS)
    res.update({"ranks": comm.Get_size(), "quick": quick, "cores": os.cpu_count(),
                "python": sys.version.split()[0]})
    return emit(args, "state", f"plexhpc bench state ({comm.Get_size()} ranks)", res)
