"""Actors for the tenant-wall scenarios of shard groups and pools (tenant_shards.py,
tenant_pools.py): a client that makes host calls in whatever context it is asked in, a
worker that reports its home context, and a saboteur that crashes a linked actor."""

from plexhpc import actor, handler, host


def _outcome(fn):
    """``["ok", value]`` or ``["err", type name, message]``: the scenario compares them."""
    try:
        return ["ok", fn()]
    except Exception as exc:  # noqa: BLE001 - the test wants the type and the text
        return ["err", type(exc).__name__, str(exc)]


@actor
class Client:
    """Calls ``host.<call>(*args, **kwargs)`` in the context it is asked in (the driver
    asks it with ``tenant=...``), so a test can act as any tenant."""

    @handler("do")
    def do(self, call: str, args: list = (), kwargs: dict = None):
        return _outcome(lambda: getattr(host, call)(*args, **(kwargs or {})))

    @handler("ask")
    def ask(self, to: str, op: str, payload: dict = None, timeout_ms: float = 5000):
        """A raw ask, as an attacker who guessed an actor's name would make it."""
        return _outcome(lambda: host.ask(to, op, payload, timeout_ms))

    @handler("context")
    def context(self):
        return list(host.context())


@actor
class HomeWorker:
    """A pool worker that says which context it was started in (asked without a
    context, a handler runs in its actor's home context)."""

    @handler("home")
    def home(self):
        return [list(host.context()), host.self_id()]


@actor
class Saboteur:
    """Links to an actor and crashes, taking the linked actor down with it unless the
    actor handles ``__EXIT__``: a crash path for an actor that has none of its own."""

    @handler("link_and_crash")
    def link_and_crash(self, target: str):
        host.link(target)
        raise RuntimeError(f"saboteur crashes to take {target} down")
