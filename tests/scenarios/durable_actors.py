"""Actors with facets, for the durable-state scenario."""

from plexhpc import (actor, handler, host, init_handler, query_handler, run_handler, state,
                     workflow_actor)


@actor
class Counter:
    value: int = state(default=0)
    ticks: int = state(default=0)
    history: list = state(default_factory=list)

    @init_handler
    def on_init(self, config):
        host.ts.write(["started", config["name"]])

    @handler("add")
    def add(self, n: int = 1):
        self.value += n
        self.history.append(n)
        return self.value

    @handler("get")
    def get(self):
        return {"value": self.value, "ticks": self.ticks, "history": self.history}

    @handler("crash")
    def crash(self):
        raise RuntimeError("crash requested")

    @handler("arm")
    def arm(self, delay_ms: int):
        host.send_after(delay_ms, "tick", {})
        return True

    @handler("tick", "cast")
    def tick(self):
        self.ticks += 1


@workflow_actor
class Flow:
    """A run that waits at a gate half way: stopping the app there and launching it
    again must resume it without repeating the steps before the gate."""

    progress: int = state(default=0)

    @run_handler
    def run(self, steps: int = 3, gate_at: int = 1):
        for i in range(steps):
            host.step(f"s{i}", lambda i=i: host.kv_increment(f"ran:{i}"))
            self.progress = i + 1
            if i == gate_at:
                host.ts.take(["gate"], timeout_ms=60000)
        return {"done": self.progress}

    @query_handler("progress")
    def q_progress(self):
        return self.progress

    @handler("ran")
    def ran(self, steps: int = 3):
        return [host.kv_get(f"ran:{i}", 0) for i in range(steps)]
