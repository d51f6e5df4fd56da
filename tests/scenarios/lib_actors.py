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


@actor
class KVShard:
    """A shard of a key-value store: knows its shard id, group and initial state."""

    shard_id: int = state(default=-1)
    group_id: str = state(default="")
    initial: dict = state(default_factory=dict)
    data: dict = state(default_factory=dict)
    hits: int = state(default=0)

    @init_handler
    def on_init(self, config):
        args = config["args"]
        self.shard_id = args["shard_id"]
        self.group_id = args["group_id"]
        self.initial = args.get("initial_state", {})

    @handler("whoami")
    def whoami(self):
        self.hits += 1
        return {"shard_id": self.shard_id, "rank": host.rank(), "group_id": self.group_id,
                "initial_state": self.initial, "id": host.self_id()}

    @handler("put")
    def put(self, key, value=None):
        self.data[str(key)] = value
        return {"shard_id": self.shard_id}

    @handler("get")
    def get(self, key):
        return {"shard_id": self.shard_id, "value": self.data.get(str(key))}

    @handler("count")
    def count(self):
        return len(self.data)

    @handler("stats")
    def stats(self):
        return {"keys": len(self.data), "hits": self.hits}

    @handler("vote")
    def vote(self):
        return "yes" if self.shard_id != 1 else "no"

    @handler("slow")
    def slow(self, ms: int = 0, only: int = -1):
        if only in (-1, self.shard_id):
            import time as _t
            _t.sleep(ms / 1000)
        return self.shard_id

    @handler("crash")
    def crash(self):
        raise RuntimeError(f"shard {self.shard_id} crashed on purpose")

    @handler("reset")
    def reset(self):
        self.data.clear()
        return True


@actor
class Coordinator:
    """Drives a shard group from inside a handler (host.* calls)."""

    @handler("run")
    def run(self, shards: int = 4):
        g = host.create_shard_group({"group_id": "coord-g", "actor_type": "lib_actors:KVShard",
                                     "shard_count": shards})
        for k in range(20):
            host.route("coord-g", f"k{k}", "put", {"key": f"k{k}", "value": k})
        total = host.scatter_gather({"group_id": "coord-g", "query": {"op": "count"},
                                     "aggregation": "sum"})
        got = host.route("coord-g", "k7", "get", {"key": "k7"})
        barrier = host.barrier_shard_group({"group_id": "coord-g"})
        host.destroy_shard_group("coord-g")
        return {"ranks": g["rank_of_shard"], "total": total["result"], "k7": got["value"],
                "arrived": barrier["arrived"]}


@actor
class MetricShard:
    """Answers numbers, arrays and dicts for group reductions; records what it receives."""

    shard_id: int = state(default=-1)
    received: list = state(default_factory=list)

    @init_handler
    def on_init(self, config):
        self.shard_id = config["args"]["shard_id"]

    @handler("metrics")
    def metrics(self):
        return {"served": self.shard_id + 1, "latency": float(self.shard_id)}

    @handler("vector")
    def vector(self, n: int = 4):
        import numpy as np
        return np.full(n, float(self.shard_id))

    @handler("flag")
    def flag(self):
        return self.shard_id % 2 == 0

    @handler("tag")
    def tag(self):
        return [f"s{self.shard_id}"]

    @handler("boom")
    def boom(self):
        raise RuntimeError("metric shard failed")

    @handler("reduced", "cast")
    def reduced(self, value=None, group_id: str = "", reduction: str = ""):
        self.received.append(value)

    @handler("last_received")
    def last_received(self):
        return self.received[-1] if self.received else None


@actor
class GroupUser:
    """Runs a group reduction from inside a handler."""

    @handler("go")
    def go(self, group_id: str):
        return host.reduce_shard_group({"group_id": group_id, "map_function": {"op": "metrics"},
                                        "reduction": "max"})["value"]
