"""The pool calls, one implementation for ``host.*`` (inside handlers) and ``node.*``
(drivers): a mixin over the caller's own ``ask`` and ``spawn``. Kept apart from
:mod:`plexhpc.otp.pool` (the manager actor) so that ``host`` can use it without an import
cycle."""

from __future__ import annotations

__all__ = ["PoolCalls", "pool_actor_name", "pool_args", "check_pool_args", "POOL_MANAGER"]

#: the manager actor's class, by path (the pool module builds on ``host``, which builds
#: on these calls: naming it keeps the layers free of a cycle)
POOL_MANAGER = "plexhpc.otp.pool:PoolManager"


def pool_actor_name(name: str) -> str:
    """The name the pool's manager actor is registered under (any rank can reach it)."""
    return f"pool:{name}"


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
    if not isinstance(idle_timeout_ms, (int, float)) or idle_timeout_ms <= 0:
        raise ValueError(f"idle_timeout_ms must be > 0, got {idle_timeout_ms!r}")
    return max_size


def pool_args(name, actor_type, size, max_size, idle_timeout_ms, worker_args=None) -> dict:
    max_size = check_pool_args(name, actor_type, size, max_size, idle_timeout_ms)
    if worker_args is not None and not isinstance(worker_args, dict):
        raise ValueError(f"worker_args must be a dict, got {type(worker_args).__name__}")
    return {"name": name, "actor_type": actor_type, "size": size, "max_size": max_size,
            "idle_timeout_ms": idle_timeout_ms, "worker_args": dict(worker_args or {})}


class PoolCalls:
    """Mixin giving ``create_pool``, ``pool_checkout``, ``pool_checkin``, ``pool_stats`` and
    ``destroy_pool`` to anything with ``ask(to, op, payload, timeout_ms)``,
    ``spawn(cls, name=, args=, timeout_ms=)``, ``_check_actor_class(path)`` and
    ``_require_pools()`` (:class:`~plexhpc.actors.calls.Calls` gives them)."""

    def _require_pools(self) -> None:
        """Refuse pool calls the caller may not make (the host checks capabilities)."""

    def create_pool(self, name: str, actor_type: str, size: int = 2,
                    max_size: int | None = None, idle_timeout_ms: float = 30_000,
                    worker_args: dict | None = None) -> dict:
        """Start a pool of ``size`` workers of ``actor_type`` (``"module:Class"``) that
        grows to ``max_size`` under load (``worker_args`` go to each worker's init);
        returns its stats."""
        self._require_pools()
        args = pool_args(name, actor_type, size, max_size, idle_timeout_ms, worker_args)
        self._check_actor_class(actor_type)
        aid = self.spawn(POOL_MANAGER, name=pool_actor_name(name), args=args,
                         timeout_ms=120_000)
        return self.ask(aid, "stats", None, 5000)

    def pool_checkout(self, name: str, timeout_ms: float = 5000) -> dict:
        """Lease a worker: ``{actor_id, checkout_id}``, or AskTimeout after
        ``timeout_ms`` if none came free."""
        self._require_pools()
        return self.ask(pool_actor_name(name), "checkout", {"timeout_ms": timeout_ms},
                        timeout_ms + 2000)

    def pool_checkin(self, name: str, actor_id: str, checkout_id: str,
                     healthy: bool = True) -> dict:
        """Return a lease; an unhealthy worker is replaced."""
        self._require_pools()
        return self.ask(pool_actor_name(name), "checkin", {
            "actor_id": actor_id, "checkout_id": checkout_id, "healthy": healthy}, 5000)

    def pool_stats(self, name: str) -> dict:
        """size, idle, busy, waiting, utilization, avg_wait_ms, avg_exec_ms, counters."""
        self._require_pools()
        return self.ask(pool_actor_name(name), "stats", None, 5000)

    def destroy_pool(self, name: str) -> dict:
        """Stop the pool's workers and its manager."""
        self._require_pools()
        return self.ask(pool_actor_name(name), "destroy", None, 30_000)
