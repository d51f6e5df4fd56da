"""Drives tests/scenarios/sup_tree.toml; rank 0 prints one RESULT line of JSON."""

import json
import os
import threading
import time

import plexhpc
from plexhpc import actor, handler, host
from scenario_util import err

HERE = os.path.dirname(os.path.abspath(__file__))


@actor
class Reader:
    @handler("count")
    def count(self, pattern: list):
        return len(host.ts.read_all(pattern))

    @handler("stops")
    def stops(self):
        return [list(t[1:]) for t in host.ts.read_all(["stop", None, None])]

    @handler("write")
    def write(self, tup: list):
        host.ts.write(tup)
        return True


def main():
    out = {}
    with plexhpc.start(os.path.join(HERE, "sup_tree.toml")) as node:
        if not node.is_driver:
            return
        rd = node.spawn(Reader, rank=0)

        def starts():
            return {n: node.ask(rd, "count", {"pattern": ["start", n]})
                    for n in ("a", "p1", "p2", "p3", "t1", "t2", "temp", "trans", "perm")}

        def settle(check, seconds=10):
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if check():
                    return True
                time.sleep(0.05)
            return False

        out["initial"] = starts()
        err(lambda: node.ask("a", "crash"))  # one_for_one: a alone
        settle(lambda: starts()["a"] == 2)
        out["one_for_one"] = starts()
        # p3 waits in a blocking take, and a watcher is linked to it, when p2 crashes
        w = node.spawn("state_actors:Watcher", rank=0)
        node.ask(w, "link", {"target": "p3"})
        waited = {}

        def waiter():
            t0 = time.monotonic()
            waited["err"] = type(err(lambda: node.ask("p3", "wait_take",
                                                      {"pattern": ["g3"]},
                                                      timeout_ms=15000))).__name__
            waited["s"] = time.monotonic() - t0
        th = threading.Thread(target=waiter)
        th.start()
        time.sleep(0.3)
        err(lambda: node.ask("p2", "crash"))  # rest_for_one: p2 and p3, not p1
        settle(lambda: starts()["p3"] == 2)
        out["rest_for_one"] = starts()
        th.join(20)
        out["killed_waiter"] = [waited.get("err"), waited.get("s", 99) < 5]
        node.ask(rd, "write", {"tup": ["g3"]})  # the dead taker's waiter must not eat it
        time.sleep(0.2)
        out["tuple_kept"] = node.ask(rd, "count", {"pattern": ["g3"]})
        out["linked_exit_on_shutdown"] = [e[1] for e in node.ask(w, "seen")["exits"]]
        out["rest_for_one_stops"] = node.ask(rd, "stops")  # p3 stopped (terminate ran)
        t0 = time.monotonic()
        node.send("t1", "crash_cast")  # both crash at once: one one_for_all restart
        node.send("t2", "crash_cast")
        settle(lambda: starts()["t2"] == 2 and starts()["t1"] == 2)
        time.sleep(0.5)  # a second (wrong) restart would show up here
        out["one_for_all"] = starts()
        out["backoff_s"] = round(time.monotonic() - t0, 2)
        out["messages_after_restart"] = [node.ask(n, "ping") for n in ("a", "p2", "t1")]
        # restart types
        node.ask("trans", "exit", {"reason": "normal"})
        node.ask("perm", "exit", {"reason": "normal"})
        err(lambda: node.ask("temp", "crash"))
        time.sleep(0.5)
        out["types"] = [type(err(lambda: node.ask("trans", "ping", timeout_ms=500))).__name__,
                        node.ask("perm", "ping"),
                        type(err(lambda: node.ask("temp", "ping", timeout_ms=500))).__name__]
        out["types_starts"] = starts()
        # the team's intensity is 1 in 30 s: a second crash escalates to the root, which
        # restarts the whole team (one_for_one at the root) with a fresh intensity
        err(lambda: node.ask("t2", "crash"))
        settle(lambda: starts()["t1"] == 3)
        out["escalated"] = starts()
        out["alive_after_escalation"] = node.ask("t1", "ping")
        out["exit_ran_terminate"] = ["perm", "normal"] in node.ask(rd, "stops")
        # stopped from outside its supervisor: out of the tree, and its siblings' restarts
        # and the shutdown leave it alone
        node.stop("t1")
        time.sleep(0.2)
        err(lambda: node.ask("t2", "crash"))  # one_for_all, but t1 stays stopped
        settle(lambda: starts()["t2"] == 4)
        time.sleep(0.3)
        out["after_terminate_child"] = [starts()["t1"], starts()["t2"],
                                        type(err(lambda: node.ask("t1", "ping",
                                                                  timeout_ms=500))).__name__]
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
