"""Children of the supervision-tree scenarios: each counts its starts in the tuple space
(which outlives its instances) and can be told to crash or exit."""

from plexhpc import actor, handler, host, init_handler, state, terminate_handler


@actor
class Member:
    inits: int = state(default=0)

    @init_handler
    def on_init(self, config):
        host.ts.write(["start", config["name"]])

    @terminate_handler
    def on_terminate(self, reason):
        host.ts.write(["stop", host.self_id().split("@")[0], reason])

    @handler("crash")
    def crash(self):
        raise RuntimeError("crash requested")

    @handler("crash_cast", "cast")
    def crash_cast(self):
        raise RuntimeError("crash requested")

    @handler("wait_take")
    def wait_take(self, pattern: list):
        return list(host.ts.take(pattern, timeout_ms=20000))

    @handler("exit")
    def exit_(self, reason: str = "normal"):
        host.exit(reason)
        return True

    @handler("ping")
    def ping(self):
        return "pong"


@actor
class Orderly:
    """At shutdown asks the peer started before it (still up: stops go in reverse start
    order), then records that it stopped."""

    peer: str = state(default="")

    @init_handler
    def on_init(self, config):
        self.peer = config["args"].get("peer", "")

    @terminate_handler
    def on_terminate(self, reason):
        answered = host.ask(self.peer, "ping") if self.peer else None
        host.ts.write(["stopped", host.self_id().split("@")[0], reason, answered])

    @handler("ping")
    def ping(self):
        return "pong"


@actor
class Stubborn:
    """Its terminate handler would wait a minute: its shutdown timeout cuts it short."""

    @terminate_handler
    def on_terminate(self, reason):
        host.ts.write(["stubborn", "began"])
        host.ts.take(["never"], timeout_ms=60000)
        host.ts.write(["stubborn", "finished"])
