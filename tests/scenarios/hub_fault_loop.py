"""Faults inside the hub loop of one rank (issue 10), injected from a handler on rank 1.

``python hub_fault_loop.py MODE``:

- ``loop``: the handler patches a method the loop calls every turn to raise; rank 1's
  loop fails. Every rank must end, nonzero, with a message naming rank 1 and the cause.
  Rank 0 (the driver) prints ``RESULT`` with what its calls got before the job ended.
- ``loop0``: the same on rank 0, the driver's rank (its loop runs on a thread).
- ``hang``: as ``loop``, and closing rank 1's node hangs too: the watchdog must end
  that process (``PLEXHPC_FATAL_EXIT_S`` bounds it).
- ``run``: the same under ``run_app`` (``plexhpc run``): the main call arms the fault.
- ``deliver``: the handler makes delivery of op ``poison`` raise on rank 1; a batch
  mixing ``poison`` with good messages must lose only the poisoned one, the job stays up.
"""

import json
import sys
import time

import plexhpc
from plexhpc import actor, handler, host, state
from plexhpc.runtime.current import current_node
from plexhpc.runtime.transport import Transport
from scenario_util import err

CAUSE = "fault injected into the hub loop on purpose"


def what(e):
    return None if e is None else [type(e).__name__, str(e)]


@actor
class Target:
    seen: list = state(default_factory=list)

    @handler("arm_loop")
    def arm_loop(self):
        def broken(self, limit=64):
            raise RuntimeError(CAUSE)
        Transport.progress_if_backlogged = broken  # called by the loop every turn
        return "armed"

    @handler("arm_hang")
    def arm_hang(self):
        from plexhpc.runtime.doorbell import Doorbell

        def close(self, clean=True):
            time.sleep(3600)  # the node never finishes closing
        Doorbell.close = close
        return self.arm_loop()

    @handler("arm_deliver")
    def arm_deliver(self):
        ex = current_node().executor
        real = ex.deliver

        def deliver(env):
            if env[3] == "poison":
                raise RuntimeError("delivery fault injected on purpose")
            real(env)
        ex.deliver = deliver
        return "armed"

    @handler("rec", "cast")
    def rec(self, i: int):
        self.seen.append(i)

    @handler("poison")
    def poison(self, i: int = 0):
        self.seen.append(-1)
        return "poison handled?"

    @handler("seen")
    def get_seen(self):
        return list(self.seen)


@actor
class Front:
    """On rank 0: one batch to rank 1 mixing a poisoned ask with good casts."""

    @handler("mix")
    def mix(self, to: str):
        host.send(to, "rec", {"i": 1})
        host.send(to, "poison", {"i": 2})
        host.send(to, "rec", {"i": 3})
        out = {"poison_ask": what(err(lambda: host.ask(to, "poison", {"i": 4}, 5000)))}
        out["seen"] = host.ask(to, "seen", timeout_ms=5000)
        return out

    @handler("main")
    def main(self):
        host.ask("target", "arm_loop", timeout_ms=5000)
        return host.ask("target", "seen", timeout_ms=20000)


CFG = {"supervisor": {"children": [
    {"name": "front", "class": "hub_fault_loop:Front", "rank": 0},
    {"name": "target", "class": "hub_fault_loop:Target", "rank": 1},
    {"name": "target0", "class": "hub_fault_loop:Target", "rank": 0}]}}


def loop_mode(target="target", arm="arm_loop"):
    out = {}
    t0 = time.monotonic()
    try:
        with plexhpc.start(CFG) as job:
            if not job.is_driver:
                return
            out["armed"] = job.ask(target, arm, timeout_ms=5000)
            out["after"] = what(err(lambda: job.ask("target", "seen", timeout_ms=20000)))
            out["seconds"] = time.monotonic() - t0
            print("RESULT " + json.dumps(out), flush=True)
    finally:
        print(f"ENDED rank {current_rank()} after {time.monotonic() - t0:.1f} s",
              file=sys.stderr, flush=True)


def deliver_mode():
    out = {}
    with plexhpc.start(CFG) as job:
        if not job.is_driver:
            return
        out["armed"] = job.ask("target", "arm_deliver", timeout_ms=5000)
        out["mix"] = job.ask("front", "mix", {"to": "target"}, 20000)
        out["still_up"] = job.ask("target", "seen", timeout_ms=5000)
    print("RESULT " + json.dumps(out), flush=True)


def run_mode():
    from plexhpc.runtime.job import run_app
    cfg = dict(CFG, app={"main": {"actor": "front", "op": "main", "timeout_ms": 30000}})
    sys.exit(run_app(cfg))


def current_rank():
    from mpi4py import MPI
    return MPI.COMM_WORLD.Get_rank()


if __name__ == "__main__":
    {"loop": loop_mode, "deliver": deliver_mode, "run": run_mode,
     "loop0": lambda: loop_mode("target0"),
     "hang": lambda: loop_mode("target", "arm_hang")}[sys.argv[1]]()
