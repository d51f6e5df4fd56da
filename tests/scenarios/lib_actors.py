"""Actor classes the multi-rank test scenarios use."""

import os
import time

from plexhpc import actor, handler, host, init_handler, state, terminate_handler


@actor
class Probe:
    """Answers questions about where it runs and forwards asks to other actors."""

    hits: int = state(default=0)
    ticks: list = state(default_factory=list)
    notes: int = state(default=0)

    @init_handler
    def on_init(self, config):
        host.process_groups.join("probes")
        host.process_groups.join(f"rank:{host.rank()}")

    @handler("whoami")
    def whoami(self):
        self.hits += 1
        return {"id": host.self_id(), "rank": host.rank(), "hits": self.hits,
                "pid": os.getpid()}

    @handler("relay")
    def relay(self, to: str, op: str = "whoami", payload: dict = None, timeout_ms: int = 5000):
        return host.ask(to, op, payload or {}, timeout_ms)

    @handler("members")
    def members(self, group: str = "probes"):
        return host.process_groups.members(group)

    @handler("first")
    def first(self, group: str = "probes"):
        return host.process_groups.first(group)

    @handler("pg_broadcast")
    def pg_broadcast(self, group: str = "probes"):
        return host.process_groups.broadcast(group, "note", {})

    @handler("note", "cast")
    def note(self):
        self.notes += 1

    @handler("notes")
    def get_notes(self):
        return self.notes

    @handler("arm_timers")
    def arm_timers(self, delays: list):
        self.ticks = []
        for d in delays:
            host.send_after(d, "tick", {"delay": d})
        return len(delays)

    @handler("tick", "cast")
    def tick(self, delay: int):
        self.ticks.append(delay)

    @handler("ticks")
    def get_ticks(self):
        return list(self.ticks)

    @handler("boom")
    def boom(self, message: str = "boom"):
        raise ValueError(message)

    @handler("echo")
    def echo(self, data=None):
        return data

    @handler("needs")
    def needs(self, x: int, y: int = 2):
        return x * y

    @handler("spawn_on")
    def spawn_on(self, rank: int, name: str = None):
        aid = host.spawn(Counter, name=name, rank=rank, args={"start": 10})
        return aid

    @handler("sleep_ms")
    def sleep_ms(self, ms: int = 100):
        time.sleep(ms / 1000)
        return ms

    @handler("stop_self", "cast")
    def stop_self(self):
        host.stop()

    @handler("shutdown_job", "cast")
    def shutdown_job(self):
        host.shutdown("test asked")


@actor
class Cycler:
    """A asks B asks A: must end in a timeout, never a hang."""

    @handler("ping")
    def ping(self, peer: str, depth: int = 0, timeout_ms: int = 500):
        if depth >= 2:
            return "leaf"
        return host.ask(peer, "ping", {"peer": host.self_id(), "depth": depth + 1,
                                       "timeout_ms": timeout_ms}, timeout_ms)


@actor
class Counter:
    """Counts; its state resets on restart."""

    count: int = state(default=0)

    @init_handler
    def on_init(self, config):
        self.count = config["args"].get("start", 0)

    @handler("add")
    def add(self, n: int = 1):
        self.count += n
        return self.count

    @handler("get")
    def get(self):
        return self.count

    @handler("crash")
    def crash(self):
        raise RuntimeError("counter crashed on purpose")


@actor
class Sink:
    """Counts casts; at shutdown writes the count to a file (to prove draining)."""

    received: int = state(default=0)
    out: str = state(default="")

    @init_handler
    def on_init(self, config):
        self.out = config["args"].get("out", "")

    @handler("note", "cast")
    def note(self, i: int = 0):
        self.received += 1

    @handler("count")
    def count(self):
        return self.received

    @terminate_handler
    def on_stop(self, reason):
        if self.out:
            with open(self.out, "a") as fh:
                fh.write(f"{self.actor_id} {self.received} {reason}\n")


@actor
class BadInit:
    @init_handler
    def on_init(self, config):
        raise RuntimeError("init refuses on purpose")


@actor
class Flaky:
    """Crashes on every message: exceeds any restart intensity quickly."""

    @handler("crash", "cast")
    def crash(self):
        raise RuntimeError("flaky")


@actor
class Marker:
    """Writes '<rank> <pid>' to a file when it starts, so a test knows the job is up."""

    @init_handler
    def on_init(self, config):
        path = os.path.join(config["args"]["dir"], f"rank{host.rank()}.ready")
        with open(path, "w") as fh:
            fh.write(f"{host.rank()} {os.getpid()}\n")

    @handler("ping")
    def ping(self):
        return "pong"

    @handler("shutdown_job", "cast")
    def shutdown_job(self):
        host.shutdown("a test actor asked for it")
