"""Names and routes: from what a caller writes (``"counter"`` or ``"counter@1"``) to an
actor id and the rank it lives on.

An actor id is ``label@rank``: the rank is in the id, so routing an id needs no lookup.
Names are registered on every rank (config children at start-up, named spawns when they
start), so resolving a name is a dict lookup on the caller's rank. Resolved routes are
cached; the cache is bounded.

Names belong to a tenant. The job's own names (config children, spawns made by the
driver or by the system's actors) are global; a name registered by a spawn acting for a
tenant lives in that tenant's namespace, so tenants cannot take each other's names, nor
a name the system will register later. A caller acting for a tenant looks in its own
namespace first, then in the global one; the system sees the global names only (it
reaches a tenant's actor by its id). The id of a tenant's named actor is
``$<tenant>/<name>@<rank>`` (no global name starts with ``$``).
"""

from __future__ import annotations

from .. import errors as E

__all__ = ["Router", "rank_of", "tenant_actor_id"]

_CACHE_MAX = 100_000


def rank_of(actor_id: str) -> int:
    """The rank encoded in an actor id (``name@rank``)."""
    head, sep, tail = actor_id.rpartition("@")
    if not sep or not tail.isdigit():
        raise E.ActorNotFound(f"{actor_id!r} is not an actor id (expected name@rank)",
                              actor=actor_id)
    return int(tail)


def tenant_actor_id(tenant: str, name: str, rank: int) -> str:
    """The id of tenant ``tenant``'s actor named ``name`` on ``rank``: how the system,
    which sees only the global names, reaches it."""
    return f"${tenant}/{name}@{rank}"


class Router:
    """This rank's view of the job's names; ``static`` are the config children's.

    ``names`` maps a global name to its actor id, and ``(tenant, name)`` to the id of a
    tenant's named actor; ``cache`` maps what a system caller wrote to its route."""

    def __init__(self, size: int, static: dict):
        self.size = size
        self.names: dict = dict(static)
        self.static = frozenset(static)
        self.cache: dict = {}
        self._tenant_cache: dict = {}

    def resolve(self, to, tenant: str | None = None) -> tuple:
        """``(actor id, rank)`` for a name or id, as a caller acting for ``tenant``
        (None: the system) sees it; ActorNotFound if there is none."""
        if tenant is None:
            hit = self.cache.get(to)
            if hit is not None:
                return hit
        else:
            per = self._tenant_cache.get(to)
            if per is not None:
                hit = per.get(tenant)
                if hit is not None:
                    return hit
        if not isinstance(to, str) or not to:
            raise E.ActorNotFound(f"expected an actor name or id (str), got {to!r}", actor=to)
        if "@" in to:
            aid = to
        else:
            aid = None
            if tenant is not None:
                aid = self.names.get((tenant, to))
            if aid is None:
                aid = self.names.get(to)
            if aid is None:
                known = sorted(k for k in self.names if type(k) is str)[:20]
                raise E.ActorNotFound(f"no actor named {to!r} (known names: {known})",
                                      actor=to)
        r = rank_of(aid)
        if not 0 <= r < self.size:
            raise E.ActorNotFound(f"{aid!r} names rank {r}, but the job has ranks "
                                  f"0..{self.size - 1}", actor=aid)
        hit = (aid, r)
        if tenant is None:
            if len(self.cache) > _CACHE_MAX:
                self.cache.clear()
            self.cache[to] = hit
        else:
            if len(self._tenant_cache) > _CACHE_MAX:
                self._tenant_cache.clear()
            self._tenant_cache.setdefault(to, {})[tenant] = hit
        return hit

    def holder(self, name: str, tenant: str | None = None) -> str | None:
        """The id registered under ``name`` in ``tenant``'s namespace (None: the global
        one), if any."""
        return self.names.get(name if tenant is None else (tenant, name))

    def register(self, name: str, aid: str, tenant: str | None = None) -> None:
        self.names[name if tenant is None else (tenant, name)] = aid
        self._forget_name(name)

    def unregister(self, name: str, aid: str, tenant: str | None = None) -> None:
        """Forget ``name`` if it still names ``aid`` (config children's names stay)."""
        key = name if tenant is None else (tenant, name)
        if self.names.get(key) == aid and key not in self.static:
            del self.names[key]
            self._forget_name(name)

    def _forget_name(self, name: str) -> None:
        self.cache.pop(name, None)
        self._tenant_cache.pop(name, None)  # tenants fall back to global names too

    def forget(self, aid: str) -> None:
        """Drop the cached route of an actor that stopped."""
        self.cache.pop(aid, None)
        self._tenant_cache.pop(aid, None)
