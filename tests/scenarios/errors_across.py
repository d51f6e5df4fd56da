"""Errors raised on another rank arrive as themselves, on every reply path.

Rank 0 drives; the raiser lives on the last rank, the state stores on rank 0. Rank 0
prints one RESULT line of JSON: for each path, [class name, rank, actor, op, has a
remote traceback]."""

import json

import plexhpc
from plexhpc import errors
from scenario_util import err


def where(e):
    return [type(e).__name__, e.rank, e.actor, e.op, bool(e.remote_traceback)]


def main():
    from mpi4py import MPI
    size = MPI.COMM_WORLD.Get_size()
    last = size - 1
    cfg = {"supervisor": {"max_restarts": 1000, "max_restart_window_seconds": 1,
                          "children": [{"name": "raiser", "class": "error_actors:Raiser",
                                        "rank": last}]}}
    out = {}
    with plexhpc.start(cfg) as job:
        if not job.is_driver:
            return
        # ask (driver -> handler on another rank): every plexhpc class, and a foreign one
        out["ask"] = {name: where(err(lambda: job.ask("raiser", "raise", {"cls": name})))
                      for name in sorted(errors.REGISTRY)}
        out["ask_foreign"] = where(err(lambda: job.ask("raiser", "raise",
                                                       {"cls": "KeyError"})))
        e = err(lambda: job.ask("raiser", "raise", {"cls": "KeyError"}))
        out["foreign_type"] = e.remote_type
        # shard call: route to a shard on the last rank
        job.create_shard_group({"group_id": "g", "actor_type": "error_actors:Raiser",
                                "shard_count": size, "placement": {"strategy": "spread"}})
        out["route"] = where(err(lambda: job.route("g", 0, "raise", {"cls": "StateError"})))
        # group reduction: a shard that raises fails the reduction as ShardFailure
        e = err(lambda: job.reduce_shard_group({"group_id": "g", "map_function": {
            "op": "raise", "cls": "StateError"}, "timeout_ms": 5000}))
        out["reduction"] = [type(e).__name__, "raised on purpose" in str(e)
                            or "did not answer" in str(e)]
        # state call: the state rank (0) refuses an ack of a lease nobody holds
        out["state"] = where(err(lambda: job.ask("raiser", "ack_bogus")))
        # system ask: stopping an actor that does not exist on the last rank
        out["system"] = where(err(lambda: job.stop(f"ghost@{last}")))
        out["still_up"] = job.ask("raiser", "value")
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
