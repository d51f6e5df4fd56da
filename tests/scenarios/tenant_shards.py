"""Shard groups behind tenant walls, attacked from tenant B's side; rank 0 prints one
RESULT line of JSON.

Tenant A ("acme") creates groups through a Client actor asked in its context; tenant B
("evil") tries to name, read, change and destroy them the same way, from both ranks.
"""

import json

import plexhpc

A, B = "acme", "evil"


def main():
    from mpi4py import MPI
    size = MPI.COMM_WORLD.Get_size()
    cfg = {"supervisor": {"max_restarts": 20, "children": [
        {"name": "client", "class": "tenant_actors_sp:Client", "rank": 0},
        {"name": "client1", "class": "tenant_actors_sp:Client", "rank": size - 1}]}}
    out = {}
    with plexhpc.start(cfg) as node:
        if not node.is_driver:
            return

        def as_(tenant, call, *args, client="client"):
            return node.ask(client, "do", {"call": call, "args": list(args)}, 30000,
                            tenant=tenant)

        def safe(fn):
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - recorded as data
                return ["err", type(exc).__name__, str(exc)]

        def spec(gid, n=4):
            return {"group_id": gid, "actor_type": "lib_actors:KVShard", "shard_count": n}

        out["a_create"] = as_(A, "create_shard_group", spec("g"))[0]
        out["a_put"] = as_(A, "route", "g", "secret", "put", {"key": "secret", "value": 42})[0]
        # the same id from B is B's own group, not a clash and not A's group
        b = as_(B, "create_shard_group", spec("g"))
        out["b_create_same_id"] = b[:2] if b[0] == "err" else "ok"
        out["b_route_own_g"] = as_(B, "route", "g", "secret", "get", {"key": "secret"})
        out["a_route_own_g"] = as_(A, "route", "g", "secret", "get", {"key": "secret"})

        # a group only A has: every call B can make on it looks like a missing group
        as_(A, "create_shard_group", spec("only_a", 2))
        as_(A, "route", "only_a", "secret", "put", {"key": "secret", "value": 7})
        attacks = {}
        for gid in ("only_a", "nope", "only_a@acme"):
            for where in ("client", "client1"):
                a = {
                    "route": as_(B, "route", gid, "secret", "get", {"key": "secret"},
                                 client=where),
                    "scatter_gather": as_(B, "scatter_gather", {
                        "group_id": gid, "query": {"op": "count"}}, client=where),
                    "broadcast": as_(B, "broadcast_shard_group", {
                        "group_id": gid, "message": {"op": "put", "key": "x"}},
                        client=where),
                    "barrier": as_(B, "barrier_shard_group", {"group_id": gid},
                                   client=where),
                    "reduce": as_(B, "reduce_shard_group", {
                        "group_id": gid, "map_function": {"op": "count"}}, client=where),
                    "destroy": as_(B, "destroy_shard_group", gid, client=where),
                }
                attacks[f"{gid}/{where}"] = a
        out["attacks"] = attacks
        # A's group survived it all, from both ranks
        out["a_after"] = [
            as_(A, "route", "only_a", "secret", "get", {"key": "secret"}),
            as_(A, "route", "only_a", "secret", "get", {"key": "secret"}, client="client1"),
            as_(A, "scatter_gather", {"group_id": "only_a", "query": {"op": "count"},
                                      "aggregation": "sum"}),
            as_(A, "reduce_shard_group", {"group_id": "only_a",
                                          "map_function": {"op": "count"}}),
            as_(A, "barrier_shard_group", {"group_id": "only_a"}, client="client1"),
        ]
        # the system reaches a tenant's group as "<group>@<tenant>", its own by the plain id
        out["sys_plain"] = as_(None, "route", "only_a", "secret", "get", {"key": "secret"})
        out["sys_qualified"] = [
            as_(None, "route", "only_a@acme", "secret", "get", {"key": "secret"}),
            safe(lambda: node.route("only_a@acme", "secret", "get", {"key": "secret"})),
            safe(lambda: node.scatter_gather({"group_id": "only_a@acme", "query": {
                "op": "count"}, "aggregation": "sum"})["result"]),
            safe(lambda: node.reduce_shard_group({"group_id": "only_a@acme",
                                                  "map_function": {"op": "count"}})["value"])]
        out["sys_destroy_b"] = as_(None, "destroy_shard_group", "g@evil")
        out["b_after_sys_destroy"] = as_(B, "route", "g", "k", "get", {"key": "k"})[:2]
        out["a_g_after_sys_destroy_b"] = as_(A, "route", "g", "secret", "get",
                                             {"key": "secret"})
        # the owner destroys its own groups
        out["a_destroy"] = [as_(A, "destroy_shard_group", "g")[0],
                            as_(A, "destroy_shard_group", "only_a", client="client1")[0]]
    print("RESULT " + json.dumps(out, default=str), flush=True)


if __name__ == "__main__":
    main()
