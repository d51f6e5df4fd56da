"""Malformed requests are refused before any handler runs, built-ins validate their
input, and one actor's crashes use up only its own restart budget.

Rank 0 drives, the actors live on the last rank; prints one RESULT line."""

import json
import time

import plexhpc
from scenario_util import err


def name(e):
    return type(e).__name__


def main():
    cfg = {"supervisor": {"max_restarts": 3, "max_restart_window_seconds": 30}}
    out = {}
    with plexhpc.start(cfg) as job:
        if not job.is_driver:
            return
        last = job.size - 1
        kw = job.spawn("iso_actors:Kw", rank=last)
        out["kw_self"] = name(err(lambda: job.ask(kw, "kw", {"self": 1})))
        out["kw_intkey"] = name(err(lambda: job.ask(kw, "kw", {1: 2})))
        out["kw_list"] = name(err(lambda: job.ask(kw, "kw", [1, 2])))
        out["kw_good"] = job.ask(kw, "kw", {"a": 1, "b": 2})
        out["kw_inits"] = job.ask(kw, "inits")  # 1: never crashed, never restarted
        out["handler_bad_timeout"] = name(err(lambda: job.ask(
            kw, "ask_with", {"to": kw, "timeout_ms": "soon"})))
        out["driver_bad_timeouts"] = [name(err(lambda t=t: job.ask(kw, "inits", timeout_ms=t)))
                                      for t in (float("nan"), float("inf"), True, "soon", -5)]
        # built-in behaviours
        bus = job.spawn("iso_actors:Bus", rank=last)
        for bad in ({"self": 1}, {1: 2}, {}, {"kind": "a", "self": 2}):
            job.send(bus, "evt", bad)
        job.send(bus, "evt", {"kind": "good"})
        out["bus_count"] = job.ask(bus, "stats")  # only the good event; handler kept
        out["bus_subscribe_bad"] = name(err(lambda: job.ask(bus, "subscribe",
                                                            {"subscriber": "x", "events": 5})))
        flow = job.spawn("iso_actors:Flow", rank=last)
        out["wf_run_self"] = name(err(lambda: job.ask(flow, "workflow_run", {"self": 1})))
        out["wf_run_intkey"] = name(err(lambda: job.ask(flow, "workflow_run", {3: 1})))
        out["wf_run_bad_id"] = name(err(lambda: job.ask(flow, "workflow_run",
                                                        {"run_id": ["x"]})))
        out["wf_signal_missing"] = name(err(lambda: job.ask(flow, "workflow_signal:note", {})))
        out["wf_signal_self"] = name(err(lambda: job.ask(flow, "workflow_signal:note",
                                                         {"self": 1, "text": "t"})))
        out["wf_status_bad"] = name(err(lambda: job.ask(flow, "workflow_status",
                                                        {"run_id": [1]})))
        out["wf_run_good"] = job.ask(flow, "workflow_run", {"n": 2})
        out["wf_notes"] = job.ask(flow, "workflow_query:notes")
        # restart budgets are per actor: crash one past its budget
        a = job.spawn("iso_actors:Crashy", rank=last)
        b = job.spawn("iso_actors:Crashy", rank=last)
        crashes = []
        for _ in range(6):
            crashes.append(name(err(lambda: job.ask(a, "crash"))))
            time.sleep(0.05)
        out["a_crashes"] = crashes
        out["a_after"] = name(err(lambda: job.ask(a, "ping")))
        out["b_after"] = job.ask(b, "ping")
        out["b_crash_then_ping"] = [name(err(lambda: job.ask(b, "crash"))),
                                    job.ask(b, "ping")]
        out["kw_still"] = job.ask(kw, "inits")
    out["exit_code"] = job.exit_code
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
