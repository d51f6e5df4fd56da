"""Elastic pools across ranks; rank 0 prints one RESULT line of JSON."""

import json
import threading
import time

import plexhpc
from scenario_util import err




def main():
    out = {}
    with plexhpc.start({"supervisor": {"children": []}}) as node:
        if not node.is_driver:
            return
        s = node.create_pool("p", "lib_actors:Probe", size=2, max_size=3,
                             idle_timeout_ms=300)
        out["created"] = {k: s[k] for k in ("size", "idle", "busy", "max_size")}
        a = node.pool_checkout("p")
        b = node.pool_checkout("p")
        out["two"] = [a["actor_id"] != b["actor_id"], node.ask(a["actor_id"], "whoami")["rank"]
                      in (0, 1)]
        c = node.pool_checkout("p")  # grows to max_size
        out["grown"] = node.pool_stats("p")["grown"]
        t0 = time.monotonic()
        e = err(lambda: node.pool_checkout("p", timeout_ms=300))  # exhausted: times out
        out["exhausted"] = [type(e).__name__, round(time.monotonic() - t0, 1),
                            "no worker free" in str(e)]
        # a waiter is served when a worker comes back
        got = {}

        def wait():
            got["lease"] = node.pool_checkout("p", timeout_ms=3000)
        th = threading.Thread(target=wait)
        th.start()
        time.sleep(0.3)
        node.pool_checkin("p", c["actor_id"], c["checkout_id"])
        th.join(5)
        out["waiter_served"] = got.get("lease", {}).get("actor_id") == c["actor_id"]
        d = got["lease"]
        # an unhealthy worker is replaced
        r = node.pool_checkin("p", d["actor_id"], d["checkout_id"], healthy=False)
        out["replaced"] = [r["replaced"], node.pool_stats("p")["replaced"],
                           type(err(lambda: node.ask(d["actor_id"], "whoami"))).__name__]
        e = err(lambda: node.pool_checkin("p", a["actor_id"], "bogus"))
        out["bad_checkin"] = type(e).__name__
        node.pool_checkin("p", a["actor_id"], a["checkout_id"])
        node.pool_checkin("p", b["actor_id"], b["checkout_id"])
        st = node.pool_stats("p")
        out["stats_keys"] = sorted(st)
        out["utilization_idle"] = st["utilization"]
        out["avg_wait_ms_positive"] = st["avg_wait_ms"] > 0
        out["avg_exec_ms_positive"] = st["avg_exec_ms"] > 0
        time.sleep(1.5)  # idle above min size: shrinks back to 2
        st = node.pool_stats("p")
        out["shrunk"] = [st["size"], st["shrunk"]]
        out["errors"] = {
            "unknown_pool": type(err(lambda: node.pool_checkout("nope"))).__name__,
            "bad_size": str(err(lambda: node.create_pool("q", "lib_actors:Probe", size=-1))),
            "bad_max": str(err(lambda: node.create_pool("q", "lib_actors:Probe", size=3,
                                                        max_size=2))),
            "bad_class": type(err(lambda: node.create_pool("q", "nowhere:X"))).__name__,
        }
        out["destroy"] = node.destroy_pool("p")
        out["after_destroy"] = type(err(lambda: node.pool_stats("p"))).__name__
    print("RESULT " + json.dumps(out, default=str), flush=True)


if __name__ == "__main__":
    main()
