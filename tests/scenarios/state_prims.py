"""KV, TupleSpace, channels, tenants, capabilities, monitors, links and behaviors over
the ranks of the job; rank 0 prints one RESULT line of JSON.

Actors sit on the last rank while the stores live on rank 0, so every state call but
the driver's crosses ranks when there are two or more."""

import json
import sys
import threading
import time

import plexhpc
from scenario_util import err

ACME = {"tenant": "acme", "namespace": "prod", "principal": "alice"}
GLOBEX = {"tenant": "globex", "namespace": "prod", "principal": "bob"}


def main():
    out = {}
    cfg = {"supervisor": {"max_restarts": 50, "children": []}}
    if len(sys.argv) > 1:  # the rank that owns the stores (default 0)
        cfg["state"] = {"rank": int(sys.argv[1])}
    with plexhpc.start(cfg) as node:
        if not node.is_driver:
            return
        last = node.size - 1
        s = node.spawn("state_actors:Store", name="store", rank=last)
        s0 = node.spawn("state_actors:Store", name="store0", rank=0)
        other = node.spawn("state_actors:OtherType", name="other", rank=last)
        kvonly = node.spawn("state_actors:KvOnly", name="kvonly", rank=last)

        def kv(op, *args, who=s, ctx=ACME, **kw):
            return node.ask(who, "kv", {"op": op, "args": list(args), "kw": kw}, **ctx)

        def ts(op, *args, who=s, ctx=ACME, timeout_ms=5000, **kw):
            return node.ask(who, "ts", {"op": op, "args": list(args), "kw": kw},
                            timeout_ms=timeout_ms, **ctx)

        def ch(op, *args, who=s, ctx=ACME, **kw):
            return node.ask(who, "ch", {"op": op, "args": list(args), "kw": kw}, **ctx)

        def fails(op, *args, who=s, ctx=ACME, prim="kv", **kw):
            return node.ask(who, "err", {"op": op, "args": list(args), "kw": kw,
                                         "prim": prim}, **ctx)

        # ---- KV -----------------------------------------------------------------
        kv("put", "a", {"x": [1, 2]})
        kv("put", "ab", 2)
        kv("put", "b", 3)
        out["kv_get"] = kv("get", "a")
        out["kv_list"] = kv("list", "a")
        out["kv_cas"] = [kv("cas", "b", 3, 4), kv("cas", "b", 3, 5), kv("get", "b"),
                         kv("cas", "new", None, 1), kv("cas", "new", None, 2)]
        out["kv_incr"] = [kv("increment", "n"), kv("increment", "n", 5)]
        out["kv_delete"] = [kv("delete", "ab"), kv("delete", "ab"), kv("get", "ab", "gone")]
        kv("put_with_ttl", "tmp", 1, 150)
        out["kv_ttl_before"] = kv("get", "tmp")
        time.sleep(0.3)
        out["kv_ttl_after"] = kv("get", "tmp", "expired")
        # the same keys from rank 0 and the same type: shared by the type
        out["kv_same_type_other_rank"] = kv("get", "a", who=s0)
        # another type, another tenant: nothing
        out["kv_other_type"] = [kv("get", "a", None, who=other), kv("list", "", who=other)]
        out["kv_other_tenant"] = [kv("get", "a", None, ctx=GLOBEX),
                                  kv("list", "", ctx=GLOBEX),
                                  kv("cas", "b", 4, 99, ctx=GLOBEX),
                                  kv("delete", "a", ctx=GLOBEX)]
        out["kv_after_attacks"] = kv("get", "a")
        kv("put", "s", "shared-value", shared=True)
        out["kv_shared"] = [kv("get", "s", shared=True, who=other),
                            kv("get", "s", None, shared=True, ctx=GLOBEX)]
        out["kv_bad"] = [fails("put", "", 1), fails("put_with_ttl", "k", 1, -5),
                         fails("increment", "a")]

        # ---- TupleSpace ----------------------------------------------------------
        ts("write", ["job", 1, "a"])
        ts("write", ["job", 2, "b"])
        ts("write", ["other", 1])
        out["ts_read"] = ts("read", ["job", None, None])
        out["ts_read_all"] = ts("read_all", ["job", None, None])
        out["ts_take"] = [ts("take", ["job", 2, None]), ts("take_nowait", ["job", 2, None]),
                          ts("count", ["job", None, None])]
        out["ts_other_tenant"] = [ts("read_all", [None, None, None], ctx=GLOBEX),
                                  ts("take_nowait", ["job", None, None], ctx=GLOBEX),
                                  ts("count", ctx=GLOBEX)]
        t0 = time.monotonic()
        out["ts_timeout"] = [fails("take", ["never"], prim="ts", timeout_ms=200)[0],
                             round(time.monotonic() - t0, 1)]
        # a blocking take on the last rank woken by a write made on rank 0
        got = {}

        def taker():
            got["t"] = node.ask(s, "ts", {"op": "take", "args": [["wake", None]],
                                          "kw": {"timeout_ms": 4000}}, timeout_ms=6000, **ACME)
        th = threading.Thread(target=taker)
        th.start()
        time.sleep(0.3)
        ts("write", ["wake", 42], who=s0)
        th.join(6)
        out["ts_woken"] = got.get("t")

        # ---- channels ------------------------------------------------------------
        ids = [ch("send", "q", "task", {"n": i}) for i in range(3)]
        out["ch_idem"] = [ch("send", "q", "task", {"n": 9}, idempotency_key="k1"),
                          ch("send", "q", "task", {"n": 9}, idempotency_key="k1")]
        out["ch_depth"] = ch("depth", "q")
        m1 = ch("receive", "q", visibility_ms=200)
        out["ch_first"] = [m1["msg_id"] == ids[0], m1["payload"], m1["delivery_count"]]
        ch("ack", "q", m1["msg_id"])
        out["ch_ack_twice"] = fails("ack", "q", m1["msg_id"], prim="ch")[0]
        m2 = ch("receive", "q", visibility_ms=200)
        ch("nack", "q", m2["msg_id"])
        m2b = ch("receive", "q", visibility_ms=150)
        out["ch_nack_redelivers"] = [m2b["msg_id"] == m2["msg_id"], m2b["delivery_count"]]
        time.sleep(0.3)  # lease runs out: redelivered
        m2c = ch("receive", "q", visibility_ms=5000)
        out["ch_expired_redelivers"] = [m2c["msg_id"] == m2["msg_id"], m2c["delivery_count"]]
        out["ch_other_tenant"] = [ch("receive", "q", ctx=GLOBEX), ch("depth", "q", ctx=GLOBEX),
                                  fails("ack", "q", m2c["msg_id"], prim="ch", ctx=GLOBEX)[0]]
        ch("ack", "q", m2c["msg_id"])
        m3 = ch("receive", "q")
        ch("nack", "q", m3["msg_id"], False)
        out["ch_dead"] = [ch("depth", "q"), len(ch("dead_letters", "q"))]
        t0 = time.monotonic()
        got2 = {}

        def receiver():
            got2["m"] = node.ask(s, "ch", {"op": "receive", "args": ["wake"],
                                           "kw": {"timeout_ms": 4000}}, timeout_ms=6000,
                                 **ACME)
        th = threading.Thread(target=receiver)
        th.start()
        time.sleep(0.3)
        ch("send", "wake", "t", {"v": 1}, who=s0)
        th.join(6)
        out["ch_woken"] = got2.get("m", {}).get("payload")
        out["ch_timeout_none"] = ch("receive", "empty", timeout_ms=150)
        # a consumer whose lease ran out cannot settle the next consumer's lease
        ch("send", "stale", "t", {"v": 2})
        ma = ch("receive", "stale", visibility_ms=150)             # consumer s
        time.sleep(0.3)
        mb = ch("receive", "stale", who=s0, visibility_ms=5000)    # consumer s0
        out["ch_stale"] = [ma["msg_id"] == mb["msg_id"], mb["delivery_count"],
                           fails("ack", "stale", ma["msg_id"], prim="ch")[0],
                           fails("nack", "stale", ma["msg_id"], False, prim="ch")[0],
                           ch("ack", "stale", mb["msg_id"], who=s0),
                           ch("depth", "stale")]

        # ---- context and capabilities -------------------------------------------------
        out["ctx"] = node.ask(s, "ctx", **ACME)
        out["ctx_forwarded"] = node.ask(s0, "forward_ctx", {"to": "store"}, **GLOBEX)
        out["ctx_default"] = node.ask(s, "ctx")
        out["bad_ctx"] = type(err(lambda: node.ask(s, "ctx", tenant=""))).__name__
        out["caps"] = [kv("put", "x", 1, who=kvonly),
                       fails("write", ["t"], prim="ts", who=kvonly),
                       fails("send", "q", "t", prim="ch", who=kvonly),
                       fails("", prim="spawn", who=kvonly)]
        out["caps_more"] = [
            fails("send_after", 10, "x", prim="host", who=kvonly),
            fails("create_pool", "p", "state_actors:Store", prim="host", who=kvonly),
            node.ask(node.spawn("state_actors:SpawnOnly", rank=last), "spawn_and_use_kv")]
        out["reserved"] = [fails("send", s, "__EXIT__", {"exit_from": "x", "exit_reason": "f"},
                                 prim="host", who=other),
                           type(err(lambda: node.send(s, "__DOWN__", {}))).__name__]
        out["bad_timeouts"] = [fails("read", ["x"], prim="ts", timeout_ms=float("inf")),
                               fails("take", ["x"], prim="ts", timeout_ms=float("nan")),
                               fails("send_after", -1, "x", prim="host")]
        # the context reaches shards and fan-outs too; shards get no more capabilities
        so = node.spawn("state_actors:ShardsOnly", rank=last)
        node.ask(so, "group", {"call": "create_shard_group", "spec": {
            "group_id": "g-caps", "actor_type": "state_actors:Store", "shard_count": 2}},
            **ACME)
        out["shard_ctx"] = [
            node.ask(so, "group", {"call": "route", "args": ["g-caps", "k", "ctx", {}]},
                     **ACME),
            node.ask(so, "group", {"call": "scatter_gather", "spec": {
                "group_id": "g-caps", "query": {"op": "ctx"}}}, **ACME)["result"][0],
            node.ask(s, "ctx_many", {"to": [s0]}, **ACME)[0]]
        out["shard_caps"] = node.ask(so, "group", {"call": "route", "args": [
            "g-caps", "k", "err", {"op": "put", "args": ["x", 1]}]}, **ACME)
        # (acting for acme, whose group it is: the system would name it g-caps@acme)
        out["shard_reserved"] = [
            node.ask(so, "group", {"call": "scatter_gather", "spec": {
                "group_id": "g-caps", "query": {"op": "__EXIT__"}}}, **ACME)[0],
            node.ask(so, "group", {"call": "broadcast_shard_group", "spec": {
                "group_id": "g-caps", "message": {"op": "__DOWN__"}}}, **ACME)[0],
            node.ask(so, "group", {"call": "route", "args": ["g-caps", "k", "__EXIT__",
                                                              {}]}, **ACME)[0]]
        # acting for one tenant, an actor cannot stop or link to another tenant's actor
        mine = node.ask(s, "spawn_probe", **ACME)          # an acme actor
        node.ask(s, "err", {"op": "stop", "args": [mine], "prim": "host"}, **GLOBEX)
        time.sleep(0.2)
        out["stop_other_tenant"] = node.ask(mine, "ctx")  # still alive
        node.ask(s, "pg_join", {"group": "workers"}, **ACME)
        node.ask(s0, "pg_join", {"group": "svc"})  # default context: shared services
        out["pg"] = [node.ask(s, "pg_members", {"group": "workers"}, **ACME),
                     node.ask(s, "pg_members", {"group": "workers"}, **GLOBEX),
                     node.ask(s, "pg_members", {"group": "svc"}, **GLOBEX)]

        # ---- monitors and links -----------------------------------------------------
        w = node.spawn("state_actors:Watcher", name="watcher", rank=0)
        v = node.spawn("state_actors:Victim", name="victim", rank=last, restart="permanent")
        ref = node.ask(w, "monitor", {"target": v})
        ref2 = node.ask(w, "monitor", {"target": v})
        node.ask(w, "demonitor", {"ref": ref2})
        node.ask(w, "link", {"target": v})
        err(lambda: node.ask(v, "crash"))
        time.sleep(0.3)
        seen = node.ask(w, "seen")
        out["down"] = [[d[0] == v, d[1] == ref, d[2].startswith("crashed")]
                       for d in seen["downs"]]
        out["exit"] = [[e[0] == v, "boom" in e[1]] for e in seen["exits"]]
        out["victim_restarted"] = node.ask(v, "ping")
        ref3 = node.ask(w, "monitor", {"target": v})
        node.stop(v)
        time.sleep(0.3)
        seen = node.ask(w, "seen")
        out["down_on_stop"] = [d[2] for d in seen["downs"] if d[1] == ref3]
        out["exits_after_stop"] = len(seen["exits"])  # a normal stop is not an exit
        out["monitor_noproc"] = None
        ref4 = node.ask(w, "monitor", {"target": v})
        time.sleep(0.2)
        out["monitor_noproc"] = [d[2] for d in node.ask(w, "seen")["downs"] if d[1] == ref4]
        e = err(lambda: node.ask(w, "link", {"target": w}))
        out["link_self"] = [type(e).__name__, "cannot link to itself" in str(e)]
        ref6 = node.ask(w, "monitor", {"target": "no-such-name"})
        time.sleep(0.2)
        out["monitor_unknown_name"] = [d[2] for d in node.ask(w, "seen")["downs"]
                                       if d[1] == ref6]
        out["demonitor_fired"] = node.ask(w, "demonitor", {"ref": ref6})
        # a non-config actor that exits abnormally signals its links too
        v5 = node.spawn("state_actors:Victim", name="victim5", rank=last)
        node.ask(w, "link", {"target": v5})
        n_exits = len(node.ask(w, "seen")["exits"])
        node.ask(v5, "exit", {"reason": "boom"})
        time.sleep(0.3)
        out["exit_boom_signals"] = [e[1] for e in node.ask(w, "seen")["exits"][n_exits:]]
        # after unlink, a crash sends no __EXIT__
        v4 = node.spawn("state_actors:Victim", name="victim4", rank=last)
        node.ask(w, "link", {"target": v4})
        node.ask(w, "unlink", {"target": v4})
        exits_before = len(node.ask(w, "seen")["exits"])
        err(lambda: node.ask(v4, "crash"))
        time.sleep(0.3)
        out["exits_after_unlinked_crash"] = len(node.ask(w, "seen")["exits"]) - exits_before
        # a linked actor without an __EXIT__ handler goes down with its peer
        v2 = node.spawn("state_actors:Victim", name="victim2", rank=last)
        v3 = node.spawn("state_actors:Victim", name="victim3", rank=0)
        node.ask(v2, "link", {"target": v3})
        ref5 = node.ask(w, "monitor", {"target": v3})
        err(lambda: node.ask(v2, "crash"))
        time.sleep(0.3)
        out["linked_crash"] = [d[2] for d in node.ask(w, "seen")["downs"] if d[1] == ref5]

        # ---- behaviors ----------------------------------------------------------------
        a = node.spawn("state_actors:Audit", name="audit", rank=last)
        lis = node.spawn("state_actors:Listener", name="listener", rank=0)
        node.ask(a, "subscribe", {"subscriber": lis, "events": ["event"]})
        for k in ("x", "y"):
            node.send(a, "event", {"kind": k})
        time.sleep(0.2)
        out["event"] = [node.ask(a, "stats"), node.ask(lis, "got")]
        j = node.spawn("state_actors:Job", name="job", rank=last)
        out["fsm"] = [node.ask(j, "get_state")["state"],
                      node.ask(j, "jump"),                 # idle -> done: illegal
                      node.ask(j, "transition", {"to": "done"}),
                      node.ask(j, "start"),
                      node.ask(j, "start"),                # not accepted in busy
                      node.ask(j, "jump"),                 # busy -> done: legal
                      node.ask(j, "get_state")]
        p = node.spawn("state_actors:Pipeline", name="pipe", rank=last)
        res = {}

        def runner():
            res["r"] = node.ask(p, "workflow_run", {"steps": 2, "gate": "go"},
                                timeout_ms=20000)
        th = threading.Thread(target=runner)
        th.start()
        time.sleep(0.3)
        # the system may query the run; another tenant is refused and changes nothing
        out["wf_query_during_run"] = node.ask(p, "workflow_query:status")
        out["wf_query_other_tenant"] = type(err(lambda: node.ask(
            p, "workflow_query:status", **GLOBEX))).__name__
        out["wf_signal_other_tenant"] = type(err(lambda: node.ask(
            p, "workflow_signal:note", {"text": "from globex"}, **GLOBEX))).__name__
        out["wf_second_run"] = type(err(lambda: node.ask(p, "workflow_run"))).__name__
        node.send(p, "workflow_run", {"steps": 1})  # a cast: refused, nothing recorded
        ts("write", ["go", 0], who=s0, ctx={})
        ts("write", ["go", 1], who=s0, ctx={})
        th.join(15)
        out["wf_result"] = res.get("r")
        # crash after step 1 of 3: the restarted actor resumes at step 2, steps 0-1 ran once
        out["wf_crash"] = type(err(lambda: node.ask(p, "workflow_run",
                                                    {"steps": 3, "crash_at": 1},
                                                    timeout_ms=10000))).__name__
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            st = node.ask(p, "workflow_query:status")
            if st["status"] == "completed":
                break
            time.sleep(0.1)
        out["wf_resumed"] = [st, node.ask(p, "ran", {"steps": 3})]
        # a signal received during a run is seen again when the run is replayed
        res2 = {}

        def runner2():
            res2["e"] = type(err(lambda: node.ask(p, "workflow_run", {
                "steps": 2, "gate": "g2", "run_id": "r2"}, timeout_ms=20000))).__name__
        th = threading.Thread(target=runner2)
        th.start()
        time.sleep(0.3)  # at the gate after step 0
        node.ask(p, "workflow_signal:note", {"text": "hello"})
        t0 = time.monotonic()
        err(lambda: node.ask(p, "crash"))
        th.join(10)
        out["wf_interrupted_caller"] = [res2.get("e"), time.monotonic() - t0 < 5]
        ts("write", ["g2", 0], who=s0, ctx={})
        ts("write", ["g2", 1], who=s0, ctx={})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            st2 = node.ask(p, "workflow_status", {"run_id": "r2"})
            if st2["status"] == "completed":
                break
            time.sleep(0.1)
        out["wf_signal_replayed"] = st2
        out["wf_run_id_reused"] = type(err(lambda: node.ask(p, "workflow_run", {
            "steps": 1, "run_id": "r2"}, **GLOBEX))).__name__
        out["wf_alive_after_reuse"] = node.ask(p, "workflow_status")["status"]
    print("RESULT " + json.dumps(out, default=str), flush=True)


if __name__ == "__main__":
    main()
