"""Multi-rank messaging checks; rank 0 prints one RESULT line of JSON."""

import json
import sys
import time

import numpy as np

import plexhpc
from scenario_util import err


def config(size):
    children = [{"name": f"p{r}", "class": "lib_actors:Probe", "rank": r} for r in range(size)]
    children += [{"name": "cyc_a", "class": "lib_actors:Cycler", "rank": 0},
                 {"name": "cyc_b", "class": "lib_actors:Cycler", "rank": size - 1},
                 {"name": "counter", "class": "lib_actors:Counter", "rank": size - 1,
                  "args": {"start": 5}}]
    return {"supervisor": {"max_restarts": 5, "max_restart_window_seconds": 10,
                           "children": children}}




def main():
    from mpi4py import MPI
    size = MPI.COMM_WORLD.Get_size()
    out = {}
    with plexhpc.start(config(size)) as node:
        if not node.is_driver:
            return
        # driver -> every rank
        out["whoami"] = [node.ask(f"p{r}", "whoami") for r in range(size)]
        # every rank -> every rank (both directions), through handlers
        out["relay"] = {f"{a}->{b}": node.ask(f"p{a}", "relay", {"to": f"p{b}"})["rank"]
                        for a in range(size) for b in range(size) if a != b}
        e = err(lambda: node.ask("p0", "relay", {"to": "p0"}))
        out["self_ask"] = [type(e).__name__, getattr(e, "remote_type", "")]
        # ids work as well as names
        out["by_id"] = node.ask(f"p{size - 1}@{size - 1}", "whoami")["id"]
        # process groups seen identically from every rank
        out["members"] = [node.ask(f"p{r}", "members") for r in range(size)]
        out["first"] = [node.ask(f"p{r}", "first") for r in range(size)]
        out["rank_group"] = node.ask("p0", "members", {"group": f"rank:{size - 1}"})
        out["pg_broadcast"] = node.ask("p0", "pg_broadcast")
        out["notes_after_broadcast"] = [node.ask(f"p{r}", "notes") for r in range(size)]
        # send_after order
        node.ask(f"p{size - 1}", "arm_timers", {"delays": [60, 20, 40, 0]})
        time.sleep(0.3)
        out["ticks"] = node.ask(f"p{size - 1}", "ticks")
        # casts from the driver arrive in order before a later ask
        for _ in range(50):
            node.send(f"p{size - 1}", "note")
        out["notes_after_sends"] = node.ask(f"p{size - 1}", "notes")
        # unknown op
        out["unknown"] = node.ask("p0", "no_such_op")
        # handler exception: remote error with type, message, rank; actor restarted
        node.ask("counter", "add", {"n": 3})
        e = err(lambda: node.ask("counter", "crash"))
        out["crash"] = {"type": type(e).__name__, "remote_type": e.remote_type,
                        "rank": e.rank, "msg": str(e), "is_runtime": isinstance(e, RuntimeError)}
        out["after_restart"] = node.ask("counter", "get")
        e = err(lambda: node.ask("p1" if size > 1 else "p0", "boom", {"message": "kaboom"}))
        out["boom"] = {"type": type(e).__name__, "remote_type": e.remote_type, "msg": str(e)}
        # missing actor, bad rank, unknown name
        out["missing_name"] = type(err(lambda: node.ask("nobody", "x"))).__name__
        e = err(lambda: node.ask(f"ghost@{size - 1}", "x"))
        out["missing_id"] = [type(e).__name__, str(e)]
        out["bad_rank"] = type(err(lambda: node.ask(f"p0@{size + 3}", "x"))).__name__
        # timeouts
        e = err(lambda: node.ask(f"p{size - 1}", "sleep_ms", {"ms": 400}, timeout_ms=100))
        out["timeout"] = {"type": type(e).__name__, "op": e.op, "timeout_ms": e.timeout_ms,
                          "is_timeout": isinstance(e, TimeoutError), "msg": str(e)}
        time.sleep(0.4)
        # call cycle: A asks B asks A
        t0 = time.monotonic()
        e = err(lambda: node.ask("cyc_a", "ping", {"peer": "cyc_b", "timeout_ms": 500},
                                 timeout_ms=3000))
        out["cycle"] = {"type": type(e).__name__, "is_timeout": isinstance(e, TimeoutError),
                        "seconds": round(time.monotonic() - t0, 2)}
        time.sleep(0.6)
        out["cycle_actors_alive"] = [node.ask("cyc_a", "ping", {"peer": "x", "depth": 2}),
                                     node.ask("cyc_b", "ping", {"peer": "x", "depth": 2})]
        # bad input
        out["payload_not_dict"] = type(err(lambda: node.ask("p0", "echo", [1, 2]))).__name__
        e = err(lambda: node.ask("p0", "needs", {"y": 3}))
        out["missing_arg"] = [type(e).__name__, str(e)]
        out["needs_ok"] = node.ask("p0", "needs", {"x": 4, "extra": "ignored"})
        # large arrays cross ranks intact, out of band
        arr = np.arange(256 * 1024 // 8, dtype=np.float64)
        back = node.ask(f"p{size - 1}", "relay", {"to": "p0", "op": "echo",
                                                  "payload": {"data": arr}})
        out["array_ok"] = bool(np.array_equal(back, arr)) and back.dtype == arr.dtype
        # spawn on a chosen rank, from a handler and from the driver; stop
        aid = node.ask("p0", "spawn_on", {"rank": size - 1, "name": "spawned"})
        out["spawned"] = aid
        out["spawned_by_name_from_other_rank"] = node.ask(
            f"p{size - 1}", "relay", {"to": "spawned", "op": "get"})
        aid2 = node.spawn("lib_actors:Counter", rank=0, args={"start": 7})
        out["driver_spawn"] = [aid2, node.ask(aid2, "add")]
        node.stop(aid2)
        out["after_stop"] = type(err(lambda: node.ask(aid2, "get"))).__name__
        out["dup_name"] = type(err(lambda: node.spawn("lib_actors:Counter",
                                                      name="spawned"))).__name__
        out["spawn_bad_init"] = [type(err(lambda: node.spawn("lib_actors:BadInit",
                                                             rank=size - 1))).__name__]
    print("RESULT " + json.dumps(out, default=str), flush=True)


if __name__ == "__main__":
    sys.exit(main())
