"""Actors with facets, for the durable-state scenario."""

from plexhpc import actor, handler, host, init_handler, state


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
