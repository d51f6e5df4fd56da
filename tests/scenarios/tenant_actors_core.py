"""Actors for the tenant-wall tests of the core (delivery, names, capabilities,
monitors, reply tokens, durable keys). The attacker's tools are ordinary host calls."""

from plexhpc import actor, errors, handler, host, state

#: a token leaked on purpose (same rank: payloads pass by reference), for the forger
LEAKED = {}


def outcome(fn):
    try:
        return ["ok", fn()]
    except Exception as exc:  # noqa: BLE001 - the test compares error classes
        return ["err", type(exc).__name__]


@actor
class Spawner:
    """A shared (system) service: spawns what it is asked to, in the caller's context."""

    @handler("spawn")
    def spawn(self, cls: str, name: str = None):
        return host.spawn(cls, name=name)

    @handler("shutdown_for_caller")
    def shutdown_for_caller(self):
        return outcome(lambda: host.shutdown("a tenant asked"))


@actor(facets=["durability"])
class Wallet:
    balance: int = state(default=0)

    @handler("add")
    def add(self, n: int = 1):
        self.balance += n
        return self.balance

    @handler("get")
    def get(self):
        return self.balance


@actor
class Prober:
    downs: list = state(default_factory=list)

    @handler("ask")
    def ask(self, to: str, op: str, payload: dict = None):
        return outcome(lambda: host.ask(to, op, payload or {}, 3000))

    @handler("monitor")
    def monitor(self, target: str):
        return outcome(lambda: host.monitor(target))

    @handler("link")
    def link(self, target: str):
        return outcome(lambda: host.link(target))

    @handler("stop_other")
    def stop_other(self, target: str):
        return outcome(lambda: host.stop(target))

    @handler("shutdown")
    def shutdown(self):
        return outcome(lambda: host.shutdown("an actor without the capability"))

    @handler("metrics_of")
    def metrics_of(self, target: str):
        return outcome(lambda: host.ask(target, "__metrics__", {}, 3000))

    @handler("forge_reply")
    def forge_reply(self, corr: int, rank: int, to: str, op: str):
        return outcome(lambda: host.reply((corr, rank, to, op), "forged"))

    @handler("reply_with_leaked")
    def reply_with_leaked(self):
        return outcome(lambda: host.reply(LEAKED["token"], "forged"))

    @handler("__DOWN__", "cast")
    def on_down(self, down_from: str = "", monitor_ref: str = "", down_reason: str = ""):
        self.downs.append([down_from, down_reason])

    @handler("downs")
    def get_downs(self):
        return self.downs


@actor
class Deferrer:
    token = None

    @handler("wait")
    def wait(self):
        LEAKED["token"] = host.defer_reply()

    @handler("release")
    def release(self, value=None):
        return outcome(lambda: host.reply(LEAKED["token"], value))

    @handler("release_twice")
    def release_twice(self):
        return outcome(lambda: host.reply(LEAKED["token"], "again"))


def _unused():  # keep the import of errors meaningful for readers of the scenario
    return errors.CapabilityDenied
