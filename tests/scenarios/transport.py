"""Transport properties across ranks: order of mixed small/large messages, batches larger
than one flush, an unpicklable payload failing only its own message."""

import json
import threading

import numpy as np

import plexhpc
from plexhpc import actor, handler, host, state


@actor
class Recorder:
    seen: list = state(default_factory=list)

    @handler("rec", "cast")
    def rec(self, i: int, data=None):
        self.seen.append((i, None if data is None else int(np.asarray(data).sum())))

    @handler("seen")
    def get_seen(self):
        return self.seen

    @handler("echo")
    def echo(self, data=None):
        return data


@actor
class Sender:
    @handler("mixed")
    def mixed(self, to: str, n: int = 200):
        big = np.ones(64 * 1024, np.int64)  # 512 KiB: out of band
        for i in range(n):
            host.send(to, "rec", {"i": i, "data": big if i % 3 == 0 else None})
        return n

    @handler("flood")
    def flood(self, to: str, n: int = 5000):
        for i in range(n):
            host.send(to, "rec", {"i": i})
        return n

    @handler("bad_then_good")
    def bad_then_good(self, to: str):
        out = {}
        try:
            host.ask(to, "echo", {"data": threading.Lock()}, 2000)
            out["bad"] = "no error"
        except plexhpc.InvalidMessage as exc:
            out["bad"] = ["InvalidMessage", str(exc)]
        out["good"] = host.ask(to, "echo", {"data": "fine"}, 2000)
        return out


def main():
    cfg = {"supervisor": {"children": [
        {"name": "sender", "class": "transport:Sender", "rank": 0},
        {"name": "rec1", "class": "transport:Recorder", "rank": 1},
        {"name": "rec2", "class": "transport:Recorder", "rank": 1}]}}
    with plexhpc.start(cfg) as node:
        if not node.is_driver:
            return
        out = {}
        node.ask("sender", "mixed", {"to": "rec1", "n": 200}, 60000)
        seen = node.ask("rec1", "seen", timeout_ms=60000)
        out["mixed_order"] = [i for i, _ in seen] == list(range(200))
        out["mixed_sums"] = all(s == (64 * 1024 if i % 3 == 0 else None) for i, s in seen)
        node.ask("sender", "flood", {"to": "rec2", "n": 5000}, 60000)
        seen = node.ask("rec2", "seen", timeout_ms=60000)
        out["flood_order"] = [i for i, _ in seen] == list(range(5000))
        out["unpicklable"] = node.ask("sender", "bad_then_good", {"to": "rec1"}, 10000)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
