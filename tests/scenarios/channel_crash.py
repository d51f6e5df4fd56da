"""At-least-once under consumer crashes: two consumers on different ranks drain a
channel; some tasks crash their consumer before the ack. In the end every task is
acked exactly once and none is lost. Rank 0 prints one RESULT line of JSON."""

import json
import time

import plexhpc
from plexhpc import actor, handler, host
from scenario_util import err

N = 40
CRASH_ON = [3, 11, 12, 25]


@actor
class Producer:
    @handler("fill")
    def fill(self, n: int):
        return [host.channel.send("tasks", "task", {"n": i}) for i in range(n)]

    @handler("report")
    def report(self):
        return {"acked": [t[1] for t in host.ts.read_all(["acked", None])],
                "processed": [list(t[1:]) for t in host.ts.read_all(["processed", None, None])],
                "depth": host.channel.depth("tasks")}


def main():
    out = {}
    with plexhpc.start({"supervisor": {"max_restarts": 50, "children": []}}) as node:
        if not node.is_driver:
            return
        last = node.size - 1
        p = node.spawn(Producer, rank=0)
        consumers = [node.spawn("state_actors:Consumer", rank=0),
                     node.spawn("state_actors:Consumer", rank=last)]
        ids = node.ask(p, "fill", {"n": N})
        out["unique_ids"] = len(set(ids)) == N
        crashes = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for c in consumers:
                e = err(lambda: node.ask(c, "drain", {"channel": "tasks", "crash_on": CRASH_ON},
                                         timeout_ms=20000))
                crashes += e is not None
            d = node.ask(p, "report")["depth"]
            if d["ready"] == 0 and d["leased"] == 0:
                break
            time.sleep(0.35)  # let expired leases come back
        rep = node.ask(p, "report")
        out["crashes"] = crashes
        out["acked_sorted"] = sorted(rep["acked"])
        out["redelivered"] = sorted(n for n, count in rep["processed"] if count > 1)
        out["depth"] = rep["depth"]
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
