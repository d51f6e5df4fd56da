"""Shard groups across ranks; rank 0 prints one RESULT line of JSON."""

import json
import time

import plexhpc
from plexhpc.shards import hash_shard
from scenario_util import err




def main():
    from mpi4py import MPI
    size = MPI.COMM_WORLD.Get_size()
    cfg = {"supervisor": {"max_restarts": 20, "children": [
        {"name": "coord", "class": "lib_actors:Coordinator", "rank": size - 1},
        {"name": "kvtemplate", "class": "lib_actors:KVShard", "rank": 0,
         "args": {"shard_id": -1, "group_id": "none"}}]}}
    out = {}
    with plexhpc.start(cfg) as node:
        if not node.is_driver:
            return
        n = 8
        g = node.create_shard_group({"group_id": "kv", "actor_type": "lib_actors:KVShard",
                                     "shard_count": n, "partition_strategy": "hash",
                                     "initial_state": {"model": "m1"}})
        out["create"] = g
        who = node.scatter_gather({"group_id": "kv", "query": {"op": "whoami"}})
        out["who"] = who["result"]
        out["who_stats"] = who["stats"]
        out["latencies_present"] = all(r["latency_ms"] is not None and r["latency_ms"] >= 0
                                       for r in who["shard_responses"])
        # route: every key lands on the shard hash_shard names
        owners = {}
        for k in range(40):
            r = node.route("kv", f"key{k}", "put", {"key": f"key{k}", "value": k})
            owners[f"key{k}"] = r["shard_id"]
        out["route_matches_hash"] = all(owners[k] == hash_shard(k, n) for k in owners)
        out["route_get"] = node.route("kv", "key3", "get", {"key": "key3"})["value"]
        out["sum"] = node.scatter_gather({"group_id": "kv", "query": {"op": "count"},
                                          "aggregation": "sum"})["result"]
        out["max"] = node.scatter_gather({"group_id": "kv", "query": {"op": "count"},
                                          "aggregation": "max"})["result"]
        out["merge"] = sorted(node.scatter_gather({"group_id": "kv", "query": {"op": "put",
                                                   "key": "x"}, "aggregation": "merge"})
                              ["result"])
        out["majority"] = node.scatter_gather({"group_id": "kv", "query": {"op": "vote"},
                                               "aggregation": "majority"})["result"]
        out["stats_sum"] = node.scatter_gather({"group_id": "kv", "query": {"op": "stats"},
                                                "aggregation": "sum"})["result"]
        # min_responses below n returns before a slow shard answers
        t0 = time.monotonic()
        r = node.scatter_gather({"group_id": "kv", "query": {"op": "slow", "ms": 600,
                                 "only": 5}, "aggregation": "first", "min_responses": 1,
                                 "timeout_ms": 5000})
        out["min1_seconds"] = round(time.monotonic() - t0, 2)
        out["min1_responded"] = r["stats"]["shards_responded"]
        time.sleep(0.8)
        # a slow shard past the timeout: an error listing it, never a hang
        e = err(lambda: node.scatter_gather({"group_id": "kv", "query": {
            "op": "slow", "ms": 700, "only": 3}, "timeout_ms": 300}))
        out["timeout"] = [type(e).__name__, getattr(e, "missing", None),
                          isinstance(e, TimeoutError),
                          (e.partial or {}).get("stats", {}).get("shards_responded")]
        time.sleep(0.8)
        # a crashed shard is restarted under the same id and keeps its partition
        e = err(lambda: node.route("kv", "key3", "crash"))
        out["crash"] = type(e).__name__
        who2 = node.scatter_gather({"group_id": "kv", "query": {"op": "whoami"}})
        out["after_crash_ids"] = [w["id"] for w in who2["result"]] == [
            w["id"] for w in out["who"]]
        out["after_crash_route"] = node.route("kv", "key3", "put", {"key": "key3"})["shard_id"]
        out["broadcast"] = node.broadcast_shard_group({"group_id": "kv",
                                                       "message": {"op": "reset"}})
        out["barrier"] = node.barrier_shard_group({"group_id": "kv"})
        out["count_after_reset"] = node.scatter_gather({"group_id": "kv", "query": {
            "op": "count"}, "aggregation": "sum"})["result"]
        # placement: pack and explicit ranks; a config child's class reused by name
        p = node.create_shard_group({"group_id": "packed", "actor_type": "kvtemplate",
                                     "shard_count": 2 * size, "placement": {"strategy": "pack"}})
        out["pack_ranks"] = p["rank_of_shard"]
        q = node.create_shard_group({"group_id": "onlylast", "actor_type": "lib_actors:KVShard",
                                     "shard_count": 3, "partition_strategy": "round_robin",
                                     "placement": {"strategy": "ranks", "ranks": [size - 1]}})
        out["ranks_ranks"] = q["rank_of_shard"]
        out["rr"] = [node.route("onlylast", None, "whoami")["shard_id"] for _ in range(4)]
        # a group driven from inside an actor (host.*)
        out["coord"] = node.ask("coord", "run", {"shards": 3}, timeout_ms=30000)
        # bad input: clear errors
        out["errors"] = {
            "unknown_group": type(err(lambda: node.scatter_gather(
                {"group_id": "nope", "query": {"op": "x"}}))).__name__,
            "unknown_key": str(err(lambda: node.create_shard_group(
                {"group_id": "b", "actor_type": "lib_actors:KVShard", "shard_count": 2,
                 "colour": "red"}))),
            "zero": str(err(lambda: node.create_shard_group(
                {"group_id": "b", "actor_type": "lib_actors:KVShard", "shard_count": 0}))),
            "strategy": str(err(lambda: node.create_shard_group(
                {"group_id": "b", "actor_type": "lib_actors:KVShard", "shard_count": 2,
                 "partition_strategy": "random"}))),
            "actor_type": str(err(lambda: node.create_shard_group(
                {"group_id": "b", "actor_type": "nowhere:X", "shard_count": 2}))),
            "aggregation": str(err(lambda: node.scatter_gather(
                {"group_id": "kv", "query": {"op": "count"}, "aggregation": "avg"}))),
            "duplicate": str(err(lambda: node.create_shard_group(
                {"group_id": "kv", "actor_type": "lib_actors:KVShard", "shard_count": 1}))),
            "min_too_big": str(err(lambda: node.scatter_gather(
                {"group_id": "kv", "query": {"op": "count"}, "min_responses": 99}))),
        }
        out["destroy"] = node.destroy_shard_group("kv")
        out["after_destroy"] = type(err(lambda: node.scatter_gather(
            {"group_id": "kv", "query": {"op": "count"}}))).__name__
        out["shard_gone"] = type(err(lambda: node.ask(g["shard_actor_ids"][0], "count"))).__name__
    print("RESULT " + json.dumps(out, default=str), flush=True)


if __name__ == "__main__":
    main()
