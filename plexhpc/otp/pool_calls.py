"""The pool calls, one implementation for ``host.*`` (inside handlers) and ``node.*``
(drivers): a mixin over the caller's own ``ask`` and ``spawn``. Kept apart from
:mod:`plexhpc.otp.pool` (the manager actor) so that ``host`` can use it without an import
cycle.

Pools belong to the tenant whose context created them, and their names are scoped per
tenant: tenant A's pool ``"p"`` and tenant B's ``"p"`` are two pools, with two managers.
A caller acting for a tenant names only that tenant's pools (another tenant's pool gets
the very error of a pool that does not exist). The system (a driver, a tenant-less
service) names its own pools by name and a tenant's with ``tenant="acme"``. The manager
checks every request again itself (:func:`~plexhpc.context.may_act_on`), so a caller
that asks it directly, by a guessed name, is refused the same way.
"""

from __future__ import annotations

from urllib.parse import quote

from .. import errors as E
from ..context import SYSTEM_TENANT, tenant_of
from ..runtime.routing import tenant_actor_id

__all__ = ["PoolCalls", "pool_actor_name", "pool_args", "check_pool_args", "POOL_MANAGER",
           "check_checkout_timeout", "no_pool", "MAX_POOL_MS", "tenant_manager_id"]

#: the manager actor's class, by path (the pool module builds on ``host``, which builds
#: on these calls: naming it keeps the layers free of a cycle)
POOL_MANAGER = "plexhpc.otp.pool:PoolManager"

#: the longest checkout wait (a week, in ms)
MAX_POOL_MS = 7 * 24 * 3600 * 1000.0


def pool_actor_name(name: str, tenant: str | None = None) -> str:
    """The name the manager of pool ``name`` of ``tenant`` (None: the system) is
    registered under: ``pool:<name>`` for the system's, ``pool[<tenant>]:<name>`` for a
    tenant's (the tenant percent-encoded, so no two owners' names can meet)."""
    if tenant is None or tenant == SYSTEM_TENANT:
        return f"pool:{name}"
    return f"pool[{quote(tenant, safe='')}]:{name}"


def tenant_manager_id(name: str, tenant: str) -> str:
    """The actor id of a tenant's pool manager where tenants' names live in their own
    namespace (the router's ``$<tenant>/<name>@<rank>``; tenant managers run on rank 0):
    how the system, which sees only the global names, reaches it."""
    return tenant_actor_id(tenant, pool_actor_name(name, tenant), 0)


def no_pool(name, tenant=None) -> E.ActorNotFound:
    """The one error for a pool a caller cannot reach: it does not exist, was destroyed,
    or belongs to another tenant (the same words for all three: names do not leak)."""
    return E.ActorNotFound(f"no pool {name!r}: it does not exist or was destroyed",
                           actor=pool_actor_name(name, tenant))


def check_checkout_timeout(timeout_ms) -> float:
    """A checkout's wait in ms: a number > 0 and at most a week (raises ValueError)."""
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, float)) or not (
            0 < timeout_ms <= MAX_POOL_MS):
        raise ValueError(f"timeout_ms must be a number of milliseconds > 0 and at most a "
                         f"week, got {timeout_ms!r}")
    return float(timeout_ms)


def check_pool_args(name, actor_type, size, max_size, idle_timeout_ms) -> int:
    """Validate create_pool's arguments; returns the effective max_size."""
    if not isinstance(name, str) or not name or "@" in name:
        raise ValueError(f"pool name must be a non-empty str without '@', got {name!r}")
    if not isinstance(actor_type, str) or ":" not in actor_type:
        raise ValueError(f"actor_type must be 'module:Class', got {actor_type!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"size must be an int >= 0, got {size!r}")
    max_size = max(size, 1) if max_size is None else max_size
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < max(size, 1):
        raise ValueError(f"max_size must be an int >= max(size, 1) = {max(size, 1)}, got "
                         f"{max_size!r}")
    if isinstance(idle_timeout_ms, bool) or not isinstance(idle_timeout_ms, (int, float)) \
            or not 0 < idle_timeout_ms <= MAX_POOL_MS:
        raise ValueError(f"idle_timeout_ms must be > 0 and at most a week, got "
                         f"{idle_timeout_ms!r}")
    return max_size


def pool_args(name, actor_type, size, max_size, idle_timeout_ms, worker_args=None) -> dict:
    max_size = check_pool_args(name, actor_type, size, max_size, idle_timeout_ms)
    if worker_args is not None and not isinstance(worker_args, dict):
        raise ValueError(f"worker_args must be a dict, got {type(worker_args).__name__}")
    return {"name": name, "actor_type": actor_type, "size": size, "max_size": max_size,
            "idle_timeout_ms": idle_timeout_ms, "worker_args": dict(worker_args or {})}


def _name(name) -> str:
    if not isinstance(name, str) or not name or "@" in name:
        raise E.InvalidMessage(f"pool name must be a non-empty str without '@', got "
                               f"{name!r}")
    return name


class PoolCalls:
    """Mixin giving ``create_pool``, ``pool_checkout``, ``pool_checkin``, ``pool_stats`` and
    ``destroy_pool`` to anything with ``ask(to, op, payload, timeout_ms)``,
    ``spawn(cls, name=, args=, rank=, timeout_ms=)``, ``_check_actor_class(path)``,
    ``_require_pools()`` and ``_caller()`` (whose ``ctx`` is the caller's context)
    (:class:`~plexhpc.actors.calls.Calls` gives them)."""

    def _require_pools(self) -> None:
        """Refuse pool calls the caller may not make (the host checks capabilities)."""

    def _pool_tenant(self, tenant):
        """The owner of the pool a caller means: a tenant caller's own tenant; for the
        system, ``tenant`` (None: the system's own pools). False when a tenant caller
        names another tenant: that pool is unreachable for it."""
        mine = tenant_of(self._caller().ctx)
        if tenant is not None:
            if not isinstance(tenant, str) or not tenant:
                raise E.InvalidMessage(f"tenant must be a non-empty str, got {tenant!r}")
            if tenant == SYSTEM_TENANT:
                tenant = None
        if mine is None:
            return tenant
        return mine if tenant is None or tenant == mine else False

    def _pool_ask(self, name, tenant, op, payload, timeout_ms):
        self._require_pools()
        _name(name)
        owner = self._pool_tenant(tenant)
        if owner is False:  # another tenant's pool: as if there were none
            raise no_pool(name, tenant)
        try:
            return self.ask(pool_actor_name(name, owner), op, payload, timeout_ms)
        except E.ActorNotFound:
            if owner is None or owner == tenant_of(self._caller().ctx):
                raise no_pool(name, owner) from None
        # the system naming a tenant's pool whose name it cannot see: by the id
        try:
            return self.ask(tenant_manager_id(name, owner), op, payload, timeout_ms)
        except E.ActorNotFound:
            raise no_pool(name, owner) from None

    def create_pool(self, name: str, actor_type: str, size: int = 2,
                    max_size: int | None = None, idle_timeout_ms: float = 30_000,
                    worker_args: dict | None = None) -> dict:
        """Start a pool of ``size`` workers of ``actor_type`` (``"module:Class"``) that
        grows to ``max_size`` under load (``worker_args`` go to each worker's init);
        returns its stats. The pool, its manager and its workers belong to the caller's
        tenant; the name is the caller's tenant's."""
        self._require_pools()
        try:
            args = pool_args(name, actor_type, size, max_size, idle_timeout_ms, worker_args)
        except ValueError as exc:
            raise E.InvalidMessage(f"create_pool: {exc}") from None
        self._check_actor_class(actor_type)
        owner = self._pool_tenant(None)
        # a tenant's manager runs on rank 0, so the system can reach it by its id too
        aid = self.spawn(POOL_MANAGER, name=pool_actor_name(name, owner), args=args,
                         rank=0 if owner is not None else None, timeout_ms=120_000)
        return self.ask(aid, "stats", None, 5000)

    def pool_checkout(self, name: str, timeout_ms: float = 5000, *,
                      tenant: str | None = None) -> dict:
        """Lease a worker: ``{actor_id, checkout_id}``, or AskTimeout after
        ``timeout_ms`` if none came free. ``tenant``: a system caller's way to name a
        tenant's pool."""
        try:
            timeout_ms = check_checkout_timeout(timeout_ms)
        except ValueError as exc:
            raise E.InvalidMessage(f"pool_checkout: {exc}") from None
        return self._pool_ask(name, tenant, "checkout", {"timeout_ms": timeout_ms},
                              timeout_ms + 2000)

    def pool_checkin(self, name: str, actor_id: str, checkout_id: str,
                     healthy: bool = True, *, tenant: str | None = None) -> dict:
        """Return a lease (only its taker can); an unhealthy worker is replaced."""
        if not isinstance(actor_id, str) or not isinstance(checkout_id, str) or \
                not isinstance(healthy, bool):
            raise E.InvalidMessage(
                f"pool_checkin: actor_id and checkout_id must be str and healthy a bool, "
                f"got {actor_id!r}, {checkout_id!r}, {healthy!r}")
        return self._pool_ask(name, tenant, "checkin", {
            "actor_id": actor_id, "checkout_id": checkout_id, "healthy": healthy}, 5000)

    def pool_stats(self, name: str, *, tenant: str | None = None) -> dict:
        """size, idle, busy, waiting, utilization, avg_wait_ms, avg_exec_ms, counters."""
        return self._pool_ask(name, tenant, "stats", None, 5000)

    def destroy_pool(self, name: str, *, tenant: str | None = None) -> dict:
        """Stop the pool's workers and its manager."""
        return self._pool_ask(name, tenant, "destroy", None, 30_000)
