"""Actors that raise on request, for the cross-rank error tests."""

from plexhpc import actor, errors, handler, host


@actor
class Raiser:
    @handler("raise")
    def raise_(self, cls: str, shard_id: int = 0) -> dict:
        """Raise the plexhpc error class named ``cls`` (``KeyError``: a foreign one)."""
        if cls == "KeyError":
            raise KeyError("no such key")
        raise errors.REGISTRY[cls](f"{cls} raised on purpose")

    @handler("ack_bogus")
    def ack_bogus(self) -> dict:
        """A state call the state rank refuses (no such lease)."""
        host.channel.ack("jobs", "no-such-message")
        return {}

    @handler("value")
    def value(self) -> int:
        return 1
