"""Durable state across a crash and across a relaunch of the app. Run with "first",
then again with "second" on the same PLEXHPC_STATE_DIR; rank 0 prints a RESULT line."""

import json
import os
import sys
import threading
import time

import plexhpc
from plexhpc import actor, handler, host
from scenario_util import err

HERE = os.path.dirname(os.path.abspath(__file__))


@actor
class Reader:
    @handler("starts")
    def starts(self, name: str):
        return len(host.ts.read_all(["started", name]))

    @handler("write")
    def write(self, tup: list):
        host.ts.write(tup)
        return True


def main(phase):
    out = {}
    with plexhpc.start(os.path.join(HERE, "durable_app.toml")) as node:
        if not node.is_driver:
            return
        rd = node.spawn(Reader, rank=0)
        if phase == "first":
            for i in range(5):
                node.ask("counter", "add", {"n": i + 1})
            for _ in range(3):
                node.ask("batched", "add")
            err(lambda: node.ask("counter", "crash"))
            out["after_crash"] = node.ask("counter", "get")
            err(lambda: node.ask("batched", "crash"))
            out["batched_after_crash"] = node.ask("batched", "get")["value"]
            for _ in range(4):
                node.ask("batched", "add")
            node.ask("fragile", "add", {"n": 7})
            out["prometheus"] = [line for line in node.metrics_text().splitlines()
                                 if "fragile" in line and not line.startswith("#")]
            node.ask("counter", "arm", {"delay_ms": 1500})  # fires after the relaunch
            # virtual actor: not started until its first message, deactivated when idle
            out["lazy_starts_before"] = node.ask(rd, "starts", {"name": "lazy"})
            node.ask("lazy", "add", {"n": 3})
            out["lazy_starts_after_msg"] = node.ask(rd, "starts", {"name": "lazy"})
            time.sleep(0.9)
            out["lazy_value_after_idle"] = node.ask("lazy", "get")["value"]
            out["lazy_starts_after_idle"] = node.ask(rd, "starts", {"name": "lazy"})
            # a workflow run left waiting at its gate when the app stops
            got = {}
            th = threading.Thread(target=lambda: got.update(e=err(lambda: node.ask(
                "flow", "workflow_run", {"steps": 3, "gate_at": 1}, timeout_ms=30000))))
            th.start()
            time.sleep(0.5)
            out["flow_progress_before_stop"] = node.ask("flow", "workflow_query:progress")
            m = node.ask("counter", "__metrics__")
            out["metrics"] = [m["messages"], m["errors"], m["by_op"]["add"]["messages"],
                              m["checkpoints"] >= 5]
        else:
            # the run resumed after the relaunch: it waits at the gate again
            time.sleep(0.3)
            out["flow_status_after_relaunch"] = node.ask("flow", "workflow_status")["status"]
            node.ask(rd, "write", {"tup": ["gate"]})
            deadline = time.monotonic() + 10
            while (time.monotonic() < deadline
                   and node.ask("flow", "workflow_status")["status"] == "running"):
                time.sleep(0.05)
            out["flow_after_relaunch"] = [node.ask("flow", "workflow_query:progress"),
                                          node.ask("flow", "ran")]
            out["counter"] = node.ask("counter", "get")
            out["batched"] = node.ask("batched", "get")["value"]
            out["fragile"] = node.ask("fragile", "get")["value"]
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and node.ask("counter", "get")["ticks"] < 1:
                time.sleep(0.05)
            out["timer_fired_after_relaunch"] = node.ask("counter", "get")["ticks"]
    if phase == "first" and node.is_driver:
        th.join(10)
        out["flow_caller_told"] = type(got.get("e")).__name__
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
