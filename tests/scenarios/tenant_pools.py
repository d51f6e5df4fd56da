"""Pools behind tenant walls, attacked from tenant B's side, plus argument checks and a
manager crash; rank 0 prints one RESULT line of JSON."""

import json
import re
import time

import plexhpc

A, B = "acme", "evil"
W = "tenant_actors_sp:HomeWorker"


def main():
    from mpi4py import MPI
    size = MPI.COMM_WORLD.Get_size()
    cfg = {"supervisor": {"max_restarts": 20, "children": [
        {"name": "client", "class": "tenant_actors_sp:Client", "rank": 0},
        {"name": "client1", "class": "tenant_actors_sp:Client", "rank": size - 1},
        {"name": "saboteur", "class": "tenant_actors_sp:Saboteur", "rank": size - 1}]}}
    out = {}
    with plexhpc.start(cfg) as node:
        if not node.is_driver:
            return

        def as_(who, call, *args, client="client", **kwargs):
            return node.ask(client, "do", {"call": call, "args": list(args),
                                           "kwargs": kwargs}, 30000, tenant=who)

        def raw(tenant, to, op, payload=None, client="client"):
            return node.ask(client, "ask", {"to": to, "op": op, "payload": payload}, 30000,
                            tenant=tenant)

        def safe(fn):
            try:
                return ["ok", fn()]
            except Exception as exc:  # noqa: BLE001 - recorded as data
                return ["err", type(exc).__name__, str(exc)]

        out["a_create"] = as_(A, "create_pool", "p", W, 1, 2)[0]
        # B, through the pool calls, from both ranks: A's pool is not there for B
        attacks = {}
        for name in ("p", "nope"):
            for where in ("client", "client1"):
                attacks[f"{name}/{where}"] = {
                    "destroy": as_(B, "destroy_pool", name, client=where),
                    "checkout": as_(B, "pool_checkout", name, client=where),
                    "stats": as_(B, "pool_stats", name, client=where),
                    "checkin": as_(B, "pool_checkin", name, "x@0", f"{name}-1",
                                   client=where),
                }
        out["attacks"] = attacks
        # B's own "p" is another pool
        out["b_create_same_name"] = as_(B, "create_pool", "p", W, 2, 2)
        lease = as_(A, "pool_checkout", "p")
        out["a_lease"] = lease
        cid = lease[1]["checkout_id"] if lease[0] == "ok" else "p-1"
        out["cid_unguessable"] = [re.fullmatch(r"p-\d+", cid) is None, len(cid) >= 16]
        # B asks A's manager directly, by the names it would guess
        out["raw"] = {to: {op: raw(B, to, op, payload) for op, payload in (
            ("stats", None), ("checkout", {"timeout_ms": 100}),
            ("checkin", {"actor_id": lease[1]["actor_id"] if lease[0] == "ok" else "x",
                         "checkout_id": cid}),
            ("destroy", None))} for to in ("pool:p", "pool[acme]:p", "$acme/pool[acme]:p@0")}
        out["a_checkin"] = as_(A, "pool_checkin", "p", lease[1]["actor_id"], cid)[0] \
            if lease[0] == "ok" else lease
        out["a_stats"] = as_(A, "pool_stats", "p")
        out["b_stats"] = as_(B, "pool_stats", "p")

        # growth spawns in the pool owner's home context, never the caller's: A acting
        # in another namespace makes the pool grow; the new worker is homed where the
        # pool is (namespace "default"), not in the caller's namespace
        def as_ns2(call, *args, **kwargs):
            return node.ask("client", "do", {"call": call, "args": list(args),
                                             "kwargs": kwargs}, 30000, tenant=A,
                            namespace="ns2", principal="mallory")
        s1 = as_ns2("pool_checkout", "p")
        s2 = as_ns2("pool_checkout", "p")  # grows to max_size 2
        out["grow_leases"] = [s1[0], s2[0]]
        if s1[0] == "ok" and s2[0] == "ok":
            out["homes"] = [node.ask(s[1]["actor_id"], "home")[0][:2] for s in (s1, s2)]
            out["grow_checkin"] = [as_ns2("pool_checkin", "p", s[1]["actor_id"],
                                          s[1]["checkout_id"])[0] for s in (s1, s2)]
        # a system service reaches A's pool with tenant=...
        s3 = as_(None, "pool_checkout", "p", tenant=A)
        out["sys_lease"] = [s3[0], as_(None, "pool_checkin", "p", s3[1]["actor_id"],
                                       s3[1]["checkout_id"], tenant=A)[0]
                            if s3[0] == "ok" else s3]
        # bad arguments: a clear refusal, and the manager keeps its state (no restart)
        held = as_(A, "pool_checkout", "p")
        out["bad"] = {
            "api_soon": as_(A, "pool_checkout", "p", timeout_ms="soon")[:3],
            "api_neg": as_(A, "pool_checkout", "p", timeout_ms=-1)[:2],
            # A asking its own manager directly, past the pool calls' own checks
            "raw_soon": raw(A, "pool[acme]:p", "checkout", {"timeout_ms": "soon"}),
            "raw_inf": raw(A, "pool[acme]:p", "checkout", {"timeout_ms": float("inf")})[:2],
            "raw_bool": raw(A, "pool[acme]:p", "checkout", {"timeout_ms": True})[:2],
            "raw_healthy": raw(A, "pool[acme]:p", "checkin", {
                "actor_id": "x@0", "checkout_id": "y", "healthy": "yes"}),
            "raw_ids": raw(A, "pool[acme]:p", "checkin", {
                "actor_id": 5, "checkout_id": None}),
        }
        out["busy_after_bad"] = as_(A, "pool_stats", "p")
        if held[0] == "ok":
            as_(A, "pool_checkin", "p", held[1]["actor_id"], held[1]["checkout_id"])

        # a crashed manager leaves no workers of its last life running
        node.create_pool("r", W, size=2, max_size=2)
        ids = []
        for _ in range(2):
            ids.append(node.pool_checkout("r"))
        for lease_r in ids:
            node.pool_checkin("r", lease_r["actor_id"], lease_r["checkout_id"])
        old = [lease_r["actor_id"] for lease_r in ids]
        out["crash"] = safe(lambda: node.ask("saboteur", "link_and_crash",
                                             {"target": node.resolve("pool:r")}))[:2]
        deadline = time.monotonic() + 15
        while True:
            alive = [a for a in old if safe(lambda: node.ask(a, "home"))[0] == "ok"]
            st = safe(lambda: node.pool_stats("r"))
            if (not alive and st[0] == "ok" and st[1]["size"] == 2) or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.1)
        out["after_crash"] = {"old_alive": len(alive), "stats": st,
                              "checkout": safe(lambda: node.pool_checkout("r"))[0]}

        # the system reaches a tenant's pool with tenant=..., and may destroy it
        out["sys_stats_a"] = safe(lambda: node.pool_stats("p", tenant=A))[0]
        out["sys_destroy_a"] = safe(lambda: node.destroy_pool("p", tenant=A))
        out["a_after_destroy"] = as_(A, "pool_stats", "p")[:2]
        out["b_destroy_own"] = as_(B, "destroy_pool", "p")[0]
    print("RESULT " + json.dumps(out, default=str), flush=True)


if __name__ == "__main__":
    main()
