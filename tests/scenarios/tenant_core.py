"""Tenant walls of the core, from the attacker's side: tenant "globex" (B) goes after
tenant "acme"'s (A) actors by id and by name, takes names, forges replies; an actor
without capabilities tries to end the job, watch and link; a tenant's request tries to
shut the job down. Rank 0 prints one RESULT line.

With ``durable-first`` / ``durable-second`` it runs the two launches of the durable-key
check instead (the same state directory both times)."""

import json
import sys
import threading
import time

import plexhpc
from scenario_util import err

A = {"tenant": "acme", "namespace": "prod", "principal": "alice"}
B = {"tenant": "globex", "namespace": "prod", "principal": "mallory"}


def name(e):
    return type(e).__name__ if e is not None else None


def config(last):
    return {"supervisor": {"children": [
        {"name": "spawner", "class": "tenant_actors_core:Spawner", "rank": last},
        {"name": "nocaps", "class": "tenant_actors_core:Prober", "rank": 0,
         "capabilities": []},
        {"name": "deferrer", "class": "tenant_actors_core:Deferrer", "rank": last},
        {"name": "forger", "class": "tenant_actors_core:Prober", "rank": last}]}}


def walls(job, last):
    out = {}
    spawn = lambda ctx, cls, nm=None: job.ask("spawner", "spawn",  # noqa: E731
                                              {"cls": cls, "name": nm}, **ctx)
    wa = spawn(A, "tenant_actors_core:Wallet", "wallet")
    job.ask(wa, "add", {"n": 100}, **A)
    pb = spawn(B, "tenant_actors_core:Prober")
    out["ids"] = [wa, pb]
    # B by id and by name, from the driver and from B's own actor on another rank
    out["b_by_id"] = name(err(lambda: job.ask(wa, "get", **B)))
    out["b_by_name"] = name(err(lambda: job.ask("wallet", "get", **B)))
    out["b_actor_by_id"] = job.ask(pb, "ask", {"to": wa, "op": "get"}, **B)
    out["b_send_by_id"] = name(err(lambda: job.send(wa, "add", {"n": -100}, **B)))
    out["a_reads"] = job.ask("wallet", "get", **A)
    # B's own "wallet": its own namespace, and empty (not A's durable state)
    wb = spawn(B, "tenant_actors_core:Wallet", "wallet")
    out["b_wallet"] = [wb != wa, job.ask("wallet", "get", **B), job.ask("wallet", "get", **A)]
    # B takes a name first; the system's later spawn of that name is not blocked
    spawn(B, "tenant_actors_core:Prober", "svc")
    sys_svc = job.spawn("tenant_actors_core:Prober", name="svc", rank=last)
    out["system_svc"] = job.resolve("svc") == sys_svc
    # B watches and links to A's wallet: it reads as missing (noproc), no real reason
    out["b_monitor"] = job.ask(pb, "monitor", {"target": wa}, **B)[0]
    out["b_link"] = job.ask(pb, "link", {"target": wa}, **B)[0]
    # stopping A's wallet from B
    job.ask(pb, "stop_other", {"target": wa}, **B)
    time.sleep(0.3)
    out["a_after_b_stop"] = job.ask(wa, "get", **A)
    # the reserved system tenant cannot be claimed
    out["claim_default"] = name(err(lambda: job.ask("spawner", "spawn", {
        "cls": "tenant_actors_core:Prober"}, tenant="default")))
    out["namespace_only"] = name(err(lambda: job.ask(wa, "get", namespace="prod")))
    # capabilities: an actor that declared none
    out["nocaps"] = {op: job.ask("nocaps", op, arg)[1] for op, arg in (
        ("shutdown", {}), ("monitor", {"target": "spawner"}), ("link", {"target": "spawner"}),
        ("metrics_of", {"target": "spawner"}))}
    # a tenant's request cannot make a shared service end the job
    out["tenant_shutdown"] = job.ask("spawner", "shutdown_for_caller", **B)
    # reply tokens: made up, someone else's, used twice
    out["forged"] = job.ask("forger", "forge_reply", {"corr": 1, "rank": 0, "to": "x",
                                                     "op": "get"})[1]
    res = {}
    th = threading.Thread(target=lambda: res.setdefault("v", job.ask("deferrer", "wait",
                                                                     timeout_ms=10000)))
    th.start()
    time.sleep(0.3)
    out["others_token"] = job.ask("forger", "reply_with_leaked")[1]
    out["own_token"] = job.ask("deferrer", "release", {"value": "real"})[0]
    th.join(15)
    out["waiter_got"] = res.get("v")
    out["token_twice"] = job.ask("deferrer", "release_twice")[1]
    time.sleep(0.3)
    out["b_downs"] = job.ask(pb, "downs", **B)
    return out


def durable(job, last, phase):
    out = {}
    w = job.spawn("tenant_actors_core:Wallet", rank=last)  # unnamed: Wallet-N@r
    if phase == "durable-first":
        out["first"] = [w, job.ask(w, "add", {"n": 7})]
    else:
        out["second"] = [w, job.ask(w, "get")]
    return out


def main():
    from mpi4py import MPI
    last = MPI.COMM_WORLD.Get_size() - 1
    phase = sys.argv[1] if len(sys.argv) > 1 else "walls"
    cfg = config(last) if phase == "walls" else {}
    with plexhpc.start(cfg) as job:
        if not job.is_driver:
            return
        out = walls(job, last) if phase == "walls" else durable(job, last, phase)
    out["exit_code"] = job.exit_code
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
