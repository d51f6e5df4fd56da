"""Names and routes: from what a caller writes (``"counter"`` or ``"counter@1"``) to an
actor id and the rank it lives on.

An actor id is ``label@rank``: the rank is in the id, so routing an id needs no lookup.
Names are registered on every rank (config children at start-up, named spawns when they
start), so resolving a name is a dict lookup on the caller's rank. Resolved routes are
cached; the cache is bounded.
"""

from __future__ import annotations

from .. import errors as E

__all__ = ["Router", "rank_of"]

_CACHE_MAX = 100_000


def rank_of(actor_id: str) -> int:
    """The rank encoded in an actor id (``name@rank``)."""
    head, sep, tail = actor_id.rpartition("@")
    if not sep or not tail.isdigit():
        raise E.ActorNotFound(f"{actor_id!r} is not an actor id (expected name@rank)",
                              actor=actor_id)
    return int(tail)


class Router:
    """This rank's view of the job's names; ``static`` are the config children's."""

    def __init__(self, size: int, static: dict):
        self.size = size
        self.names: dict = dict(static)
        self.static = frozenset(static)
        self.cache: dict = {}

    def resolve(self, to) -> tuple:
        """``(actor id, rank)`` for a name or id; ActorNotFound if there is none."""
        hit = self.cache.get(to)
        if hit is not None:
            return hit
        if not isinstance(to, str) or not to:
            raise E.ActorNotFound(f"expected an actor name or id (str), got {to!r}", actor=to)
        if "@" in to:
            aid = to
        else:
            aid = self.names.get(to)
            if aid is None:
                raise E.ActorNotFound(f"no actor named {to!r} (known names: "
                                      f"{sorted(self.names)[:20]})", actor=to)
        r = rank_of(aid)
        if not 0 <= r < self.size:
            raise E.ActorNotFound(f"{aid!r} names rank {r}, but the job has ranks "
                                  f"0..{self.size - 1}", actor=aid)
        hit = (aid, r)
        if len(self.cache) > _CACHE_MAX:
            self.cache.clear()
        self.cache[to] = hit
        return hit

    def holder(self, name: str) -> str | None:
        """The id registered under ``name``, if any."""
        return self.names.get(name)

    def register(self, name: str, aid: str) -> None:
        self.names[name] = aid
        self.cache.pop(name, None)

    def unregister(self, name: str, aid: str) -> None:
        """Forget ``name`` if it still names ``aid`` (config children's names stay)."""
        if self.names.get(name) == aid and name not in self.static:
            del self.names[name]
            self.cache.pop(name, None)

    def forget(self, aid: str) -> None:
        """Drop the cached route of an actor that stopped."""
        self.cache.pop(aid, None)
