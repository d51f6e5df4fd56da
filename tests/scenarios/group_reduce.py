"""Group reductions (numba per rank + one MPI collective); rank 0 prints RESULT JSON."""

import json
import time

import numpy as np

import plexhpc
from scenario_util import err




def main():
    from mpi4py import MPI
    size = MPI.COMM_WORLD.Get_size()
    cfg = {"supervisor": {"children": [
        {"name": "user", "class": "lib_actors:GroupUser", "rank": size - 1}]}}
    out = {}
    with plexhpc.start(cfg) as node:
        if not node.is_driver:
            return
        n = 6
        node.create_shard_group({"group_id": "m", "actor_type": "lib_actors:MetricShard",
                                 "shard_count": n})
        r = node.reduce_shard_group({"group_id": "m", "map_function": {"op": "metrics"},
                                     "reduction": "sum"})
        out["sum"] = r["value"]
        out["answered"] = r["shards_answered"]
        out["ranks"] = r["ranks"]
        out["max"] = node.reduce_shard_group({"group_id": "m", "map_function": {
            "op": "metrics"}, "reduction": "max"})["value"]
        v = node.reduce_shard_group({"group_id": "m", "map_function": {"op": "vector",
                                     "n": 5}, "reduction": "sum"})["value"]
        out["vector"] = np.asarray(v).tolist()
        big = node.reduce_shard_group({"group_id": "m", "map_function": {"op": "vector",
                                       "n": 50000}, "reduction": "max"})["value"]
        out["big_vector"] = [len(big), float(np.max(big)), float(np.min(big))]
        out["product"] = node.reduce_shard_group({"group_id": "m", "map_function": {
            "op": "metrics"}, "reduction": "product"})["value"]
        out["bool_and"] = node.reduce_shard_group({"group_id": "m", "map_function": {
            "op": "flag"}, "reduction": "bool_and"})["value"]
        out["bool_or"] = node.reduce_shard_group({"group_id": "m", "map_function": {
            "op": "flag"}, "reduction": "bool_or"})["value"]
        out["concat"] = sorted(node.reduce_shard_group({"group_id": "m", "map_function": {
            "op": "tag"}, "reduction": "concat"})["value"])
        a = node.all_reduce_shard_group({"group_id": "m", "map_function": {"op": "metrics"},
                                         "reduction": "sum"})
        time.sleep(0.2)
        got = node.scatter_gather({"group_id": "m", "query": {"op": "last_received"}})
        out["all_reduce_value"] = a["value"]
        out["every_shard_received"] = all(x == a["value"] for x in got["result"])
        out["from_actor"] = node.ask("user", "go", {"group_id": "m"}, timeout_ms=20000)
        e = err(lambda: node.reduce_shard_group({"group_id": "m", "map_function": {
            "op": "boom"}, "reduction": "sum", "timeout_ms": 3000}))
        out["failure"] = [type(e).__name__, "did not answer" in str(e)]
        out["after_failure"] = node.reduce_shard_group({"group_id": "m", "map_function": {
            "op": "metrics"}, "reduction": "sum"})["value"]["served"]
        out["errors"] = {
            "reduction": str(err(lambda: node.reduce_shard_group({"group_id": "m",
                "map_function": {"op": "metrics"}, "reduction": "median"}))),
            "map": str(err(lambda: node.reduce_shard_group({"group_id": "m",
                "map_function": "metrics"}))),
            "group": type(err(lambda: node.reduce_shard_group({"group_id": "zz",
                "map_function": {"op": "metrics"}}))).__name__,
        }
        # many in a row stay ordered across ranks (sequenced by rank 0)
        vals = [node.reduce_shard_group({"group_id": "m", "map_function": {"op": "metrics"},
                                         "reduction": "sum"})["value"]["served"]
                for _ in range(20)]
        out["repeat"] = vals == [sum(range(1, n + 1))] * 20
    print("RESULT " + json.dumps(out, default=str), flush=True)


if __name__ == "__main__":
    main()
