"""Actors the state, tenant, monitor and behavior scenarios run."""

from plexhpc import (actor, event_actor, fsm_actor, handler, host, init_handler, query_handler,
                     run_handler, signal_handler, state, workflow_actor)
from plexhpc.errors import StateTimeout


@actor
class Store:
    """Does whatever a test asks of host.kv / host.ts / host.channel, and reports."""

    @handler("kv")
    def kv(self, op: str, args: list = (), kw: dict = None):
        return getattr(host, f"kv_{op}")(*args, **(kw or {}))

    @handler("ts")
    def ts(self, op: str, args: list = (), kw: dict = None):
        r = getattr(host.ts, op)(*args, **(kw or {}))
        return list(r) if isinstance(r, tuple) else r

    @handler("ch")
    def ch(self, op: str, args: list = (), kw: dict = None):
        return getattr(host.channel, op)(*args, **(kw or {}))

    @handler("ctx")
    def ctx(self):
        return list(host.context())

    @handler("ctx_many")
    def ctx_many(self, to: list):
        return [r if isinstance(r, list) else repr(r) for r in host.ask_many(to, "ctx")]

    @handler("group")
    def group(self, call: str, spec: dict = None, args: list = ()):
        try:
            r = getattr(host, call)(spec, *args) if spec is not None else getattr(
                host, call)(*args)
        except Exception as exc:  # noqa: BLE001 - the test wants the type and text
            return [type(exc).__name__, str(exc)]
        return r

    @handler("forward_ctx")
    def forward_ctx(self, to: str):
        return host.ask(to, "ctx")

    @handler("pg_join")
    def pg_join(self, group: str):
        host.process_groups.join(group)
        return True

    @handler("pg_members")
    def pg_members(self, group: str):
        return host.process_groups.members(group)

    @handler("spawn_probe")
    def spawn_probe(self):
        return host.spawn(Store)

    @handler("err")
    def err(self, op: str, args: list = (), kw: dict = None, prim: str = "kv"):
        try:
            if prim == "kv":
                getattr(host, f"kv_{op}")(*args, **(kw or {}))
            elif prim == "ts":
                getattr(host.ts, op)(*args, **(kw or {}))
            elif prim == "spawn":
                host.spawn(Store)
            elif prim == "host":  # any other host call, by name
                getattr(host, op)(*args, **(kw or {}))
            else:
                getattr(host.channel, op)(*args, **(kw or {}))
        except Exception as exc:  # noqa: BLE001 - the test wants the type and text
            return [type(exc).__name__, str(exc)]
        return None


@actor(capabilities=["kv"])
class KvOnly(Store):
    """Declares kv only: ts, channel and spawn must be refused."""


@actor(capabilities=["shards"])
class ShardsOnly(Store):
    """May create shard groups; its shards get no more than it has."""


@actor(capabilities=["spawn"])
class SpawnOnly(Store):
    """May spawn, nothing else: what it spawns gets no more than it has."""

    @handler("spawn_and_use_kv")
    def spawn_and_use_kv(self):
        child = host.spawn(Store)
        return host.ask(child, "err", {"op": "put", "args": ["k", 1]})


@actor
class OtherType(Store):
    """Another actor type: cannot read Store's private KV."""


@actor
class Watcher:
    downs: list = state(default_factory=list)
    exits: list = state(default_factory=list)

    @handler("monitor")
    def monitor(self, target: str):
        return host.monitor(target)

    @handler("demonitor")
    def demonitor(self, ref: str):
        return host.demonitor(ref)

    @handler("link")
    def link(self, target: str):
        host.link(target)
        return True

    @handler("unlink")
    def unlink(self, target: str):
        host.unlink(target)
        return True

    @handler("__DOWN__", "cast")
    def on_down(self, down_from: str = "", monitor_ref: str = "", down_reason: str = ""):
        self.downs.append([down_from, monitor_ref, down_reason])

    @handler("__EXIT__", "cast")
    def on_exit(self, exit_from: str = "", exit_reason: str = ""):
        self.exits.append([exit_from, exit_reason])

    @handler("seen")
    def seen(self):
        return {"downs": self.downs, "exits": self.exits}


@actor
class Victim:
    @handler("crash")
    def crash(self):
        raise RuntimeError("boom")

    @handler("link")
    def link(self, target: str):
        host.link(target)
        return True

    @handler("ping")
    def ping(self):
        return "pong"

    @handler("exit")
    def exit_(self, reason: str = "normal"):
        host.exit(reason)
        return True


@event_actor
class Audit:
    count: int = state(default=0)
    log: list = state(default_factory=list)

    @handler("event", "cast")
    def count_it(self, kind: str = ""):
        self.count += 1

    @handler("event", "cast")
    def record_it(self, kind: str = ""):
        self.log.append(kind)

    @handler("stats")
    def stats(self):
        return {"count": self.count, "log": self.log}


@actor
class Listener:
    got: list = state(default_factory=list)

    @handler("event", "cast")
    def event(self, kind: str = ""):
        self.got.append(kind)

    @handler("got")
    def got_(self):
        return self.got


@fsm_actor(states=["idle", "busy", "done"], initial="idle",
           transitions={"idle": ["busy"], "busy": ["idle", "done"]})
class Job:
    work: int = state(default=0)

    @handler("start", states=["idle"])
    def start(self):
        self.fsm_state = "busy"
        return {"status": "ok", "state": self.fsm_state}

    @handler("jump")
    def jump(self):
        self.fsm_state = "done"  # legal only from busy
        return {"status": "ok"}


@workflow_actor
class Pipeline:
    status: str = state(default="idle")
    progress: int = state(default=0)
    cancelled: bool = state(default=False)
    notes: list = state(default_factory=list)

    @init_handler
    def on_init(self, config):
        host.process_groups.join("pipelines")

    @run_handler
    def run(self, steps: int = 3, crash_at: int = -1, gate: str = ""):
        self.status = "running"
        out = []
        for i in range(steps):
            if self.cancelled:
                self.status = "cancelled"
                return {"status": "cancelled", "done": out}
            # each step's side effect is counted in KV: a replayed step must not re-run
            out.append(host.step(f"s{i}", self._work, i))
            self.progress = i + 1
            if gate:  # wait on the tuple space so a query can come in meanwhile
                try:
                    host.ts.take([gate, i], timeout_ms=3000)
                except StateTimeout:
                    pass
            if i == crash_at and host.kv_get("crashed") is None:
                host.kv_put("crashed", True)
                raise RuntimeError(f"crash after step {i}")
        self.status = "completed"
        return {"status": "completed", "done": out, "tenant": host.context().tenant,
                "notes": self.notes}

    def _work(self, i):
        return host.kv_increment(f"ran:{i}")

    @signal_handler("cancel")
    def cancel(self):
        self.cancelled = True
        return {"status": "ok"}

    @signal_handler("note")
    def note(self, text: str):
        self.notes.append(text)
        return {"status": "ok"}

    @handler("crash")
    def crash(self):
        raise RuntimeError("crash requested")

    @query_handler("status")
    def q_status(self):
        return {"status": self.status, "progress": self.progress}

    @handler("ran")
    def ran(self, steps: int = 3):
        return [host.kv_get(f"ran:{i}", 0) for i in range(steps)]


@actor
class Consumer:
    """Takes tasks from a channel; crashes (before acking) on each task it is told to
    crash on, the first time that task is delivered."""

    @handler("drain")
    def drain(self, channel: str, crash_on: list = (), visibility_ms: int = 300):
        handled = 0
        while True:
            msg = host.channel.receive(channel, timeout_ms=100, visibility_ms=visibility_ms)
            if msg is None:
                return handled
            n = msg["payload"]["n"]
            host.ts.write(["processed", n, msg["delivery_count"]])
            if n in crash_on and msg["delivery_count"] == 1:
                raise RuntimeError(f"consumer crashed on task {n}")
            host.channel.ack(channel, msg["msg_id"])
            host.ts.write(["acked", n])
            handled += 1
