"""Elastic pools: stateless workers leased one caller at a time, grown under load and
shrunk when idle.

A pool is a ``PoolManager`` actor (named ``pool:<name>``, or ``pool[<tenant>]:<name>``
for a tenant's pool, so any rank can reach it) that owns the workers, spread over the
ranks. ``pool_checkout`` leases an idle worker, spawns one more if the pool is below
``max_size``, or waits — the manager defers the reply and keeps serving check-ins
meanwhile — until a worker comes back or ``timeout_ms`` passes (then
:class:`~plexhpc.errors.AskTimeout` says so). ``pool_checkin`` returns the lease; an
unhealthy worker is stopped and replaced. Workers above ``size`` that stay idle for
``idle_timeout_ms`` are stopped. ``pool_stats`` reports waits, execution times and
utilization.

Tenants. A pool belongs to the tenant of the context that created it: the manager's
home context. Every request is checked against it with
:func:`~plexhpc.context.may_act_on` (the owner and the system pass; anyone else gets the
error of a pool that does not exist, as a deferred reply, so the manager is not
restarted). Checkout ids are random (``secrets.token_urlsafe``) and bound to the tenant
that checked out. Workers are always spawned in the manager's home context — never in
the context of the caller whose checkout made the pool grow — so they are homed in the
owner's tenant.

Restarts. Workers are linked to the manager and spawned ``temporary``: when the manager
crashes its workers go down with it (a restarted manager starts a fresh set; no worker
of its last life is left running, unleased and unowned). The manager handles its
workers' ``__EXIT__`` (a crashed worker is dropped and replaced up to ``size``); an exit
of anything else it is linked to takes it down, as a link should.
"""

from __future__ import annotations

import secrets
import time
from collections import deque

from .. import errors as E
from ..actors.spec import actor, handler, init_handler, state
from ..actors.host import host
from ..context import may_act_on, require, tenant_of
from ..runtime.current import here
from .pool_calls import check_checkout_timeout, no_pool

__all__ = ["PoolManager"]


def _reject(message: str):
    """A wrong request: refused, the manager keeps its state (no restart)."""
    return E.Rejected(message)


@actor
class PoolManager:
    """Owns one pool's workers and leases."""

    name: str = state(default="")
    owner: str = state(default=None)                # the owning tenant (None: the system)
    actor_type: str = state(default="")
    size: int = state(default=1)
    max_size: int = state(default=1)
    idle_timeout_ms: float = state(default=30_000.0)
    worker_args: dict = state(default_factory=dict)
    idle: list = state(default_factory=list)        # [(actor_id, idle_since)]
    leases: dict = state(default_factory=dict)      # checkout_id -> (actor_id, t_out, tenant)
    waiters: deque = state(default_factory=deque)   # (token, deadline, t_asked, tenant)
    workers: list = state(default_factory=list)
    stopped: set = state(default_factory=set)       # workers this manager stopped itself
    stats: dict = state(default_factory=lambda: {
        "checkouts": 0, "checkins": 0, "timeouts": 0, "grown": 0, "shrunk": 0,
        "replaced": 0, "wait_ms_total": 0.0, "exec_ms_total": 0.0})

    @init_handler
    def on_init(self, config: dict) -> None:
        a = config["args"]
        self.name = a["name"]
        # the owner is the manager's home context, never an argument a caller could set
        self.owner = tenant_of(here()[1].home_ctx)
        self.actor_type = a["actor_type"]
        self.size = int(a["size"])
        self.max_size = int(a["max_size"])
        self.idle_timeout_ms = float(a.get("idle_timeout_ms", 30_000))
        self.worker_args = dict(a.get("worker_args") or {})
        for _ in range(self.size):
            self.idle.append((self._spawn(), time.monotonic()))
        host.send_after(min(1000.0, self.idle_timeout_ms / 2), "tick")

    # ---- who may ask ---------------------------------------------------------------

    def _foreign(self) -> bool:
        """True (and the request answered as if the pool did not exist) when the caller
        acts for a tenant other than the owner."""
        if may_act_on(tuple(host.context()), self.owner):
            return False
        host.reply(host.defer_reply(), error=no_pool(self.name, self.owner))
        return True

    def _spawn(self) -> str:
        """One more worker, homed in the pool owner's context (whoever's checkout made
        the pool grow), linked to this manager so it cannot outlive it."""
        node, cell = here()
        require(cell, "spawn")
        rank = len(self.workers) % node.size
        ref = node.actors.class_ref(self.actor_type)
        args = {**self.worker_args, "pool": self.name}
        aid = node.wait_from_actor(lambda done: node.actors.start_spawn(
            ref, None, rank, args, "temporary", done, cell.home_ctx, cell.caps, 30000))
        host.link(aid)
        self.workers.append(aid)
        return aid

    def _stop_worker(self, aid: str, reason: str) -> None:
        """Stop a worker this manager no longer keeps (its exit signal is expected)."""
        self.stopped.add(aid)
        host.stop(aid, reason)

    def _lease(self, aid: str, tenant) -> dict:
        cid = secrets.token_urlsafe(18)
        self.leases[cid] = (aid, time.monotonic(), tenant)
        self.stats["checkouts"] += 1
        return {"actor_id": aid, "checkout_id": cid, "pool": self.name}

    @handler("checkout")
    def checkout(self, timeout_ms=5000):
        if self._foreign():
            return None
        try:
            timeout_ms = check_checkout_timeout(timeout_ms)
        except ValueError as exc:
            raise _reject(f"pool {self.name!r} checkout: {exc}") from None
        tenant = tenant_of(tuple(host.context()))
        asked = time.monotonic()
        if self.idle:
            aid, _ = self.idle.pop(0)  # FIFO: spread work over every worker (and rank)
            return self._lease(aid, tenant)
        if len(self.workers) < self.max_size:
            self.stats["grown"] += 1
            return self._lease(self._spawn(), tenant)
        token = host.defer_reply()
        self.waiters.append((token, asked + timeout_ms / 1000.0, asked, tenant))
        host.send_after(timeout_ms, "expire")
        return None

    @handler("checkin")
    def checkin(self, actor_id=None, checkout_id=None, healthy=True):
        if self._foreign():
            return None
        if not isinstance(actor_id, str) or not isinstance(checkout_id, str):
            raise _reject(f"pool {self.name!r} checkin: actor_id and checkout_id must be "
                          f"str, got {actor_id!r} and {checkout_id!r}")
        if not isinstance(healthy, bool):
            raise _reject(f"pool {self.name!r} checkin: healthy must be a bool, got "
                          f"{healthy!r}")
        lease = self.leases.get(checkout_id)
        # only whoever took a lease (or the system) returns it; the same words as for an
        # unknown lease, so a foreign caller learns nothing
        if lease is None or lease[0] != actor_id or not may_act_on(
                tuple(host.context()), lease[2]):
            raise _reject(f"pool {self.name!r}: that checkout id is not an open lease of "
                          f"{actor_id!r}")
        del self.leases[checkout_id]
        self.stats["checkins"] += 1
        self.stats["exec_ms_total"] += (time.monotonic() - lease[1]) * 1000.0
        if actor_id not in self.workers:  # it crashed while leased: dropped already
            self._refill()
            return {"status": "ok", "replaced": True}
        if not healthy:
            self.workers.remove(actor_id)
            self._stop_worker(actor_id, "checked in unhealthy")
            actor_id = self._spawn()
            self.stats["replaced"] += 1
        self._hand_over(actor_id)
        return {"status": "ok", "replaced": not healthy}

    def _hand_over(self, aid: str) -> None:
        now = time.monotonic()
        while self.waiters:
            token, deadline, asked, tenant = self.waiters.popleft()
            if deadline >= now:
                self.stats["wait_ms_total"] += (now - asked) * 1000.0
                host.reply(token, self._lease(aid, tenant))
                return
            self._time_out(token)
        self.idle.append((aid, now))

    def _refill(self) -> None:
        """Back up to ``size`` workers (or serve a waiter) after one was lost."""
        if self.waiters or len(self.workers) < self.size:
            self.stats["replaced"] += 1
            self._hand_over(self._spawn())

    def _time_out(self, token) -> None:
        self.stats["timeouts"] += 1
        host.reply(token, error=E.AskTimeout(
            f"pool {self.name!r}: no worker free within the checkout timeout (all "
            f"{len(self.workers)} of max_size {self.max_size} leased)"))

    @handler("__EXIT__", "cast")
    def on_exit(self, exit_from: str = "", exit_reason=None) -> None:
        """A linked actor exited abnormally. One of the workers (it crashed, or was
        stopped by this manager): forget it, replace it if the pool is short. Anything
        else this manager is linked to: go down with it, as a link means."""
        if exit_from in self.workers:
            self.workers.remove(exit_from)
            self.idle = [(a, t) for a, t in self.idle if a != exit_from]
            self._refill()
            return
        if exit_from in self.stopped:  # stopped by this manager: expected
            self.stopped.discard(exit_from)
            return
        raise E.RemoteError(f"pool {self.name!r}: linked actor {exit_from} exited: "
                            f"{exit_reason}")

    @handler("expire", "cast")
    def expire(self) -> None:
        if not may_act_on(tuple(host.context()), self.owner):
            return
        now = time.monotonic()
        keep = deque()
        for w in self.waiters:
            if w[1] < now:
                self._time_out(w[0])
            else:
                keep.append(w)
        self.waiters = keep

    @handler("tick", "cast")
    def tick(self) -> None:
        """Shrink: stop workers above ``size`` that stayed idle for idle_timeout_ms."""
        if not may_act_on(tuple(host.context()), self.owner):
            return  # a foreign caller cannot start another timer chain
        now = time.monotonic()
        while len(self.workers) > self.size and self.idle:
            aid, since = self.idle[0]
            if (now - since) * 1000.0 < self.idle_timeout_ms:
                break
            self.idle.pop(0)
            self.workers.remove(aid)
            self._stop_worker(aid, "pool shrink: idle")
            self.stats["shrunk"] += 1
        host.send_after(min(1000.0, self.idle_timeout_ms / 2), "tick")

    @handler("destroy")
    def destroy(self):
        if self._foreign():
            return None
        workers, self.workers = self.workers, []
        for aid in workers:
            host.stop(aid, f"pool {self.name} destroyed")
        for token, *_ in self.waiters:
            host.reply(token, error=no_pool(self.name, self.owner))
        self.idle, self.leases, self.waiters = [], {}, deque()
        host.stop()
        return {"pool": self.name, "destroyed": True, "workers_stopped": len(workers)}

    @handler("stats")
    def get_stats(self):
        if self._foreign():
            return None
        s = self.stats
        busy = len(self.leases)
        return {"pool": self.name, "size": len(self.workers), "min_size": self.size,
                "max_size": self.max_size, "idle": len(self.idle), "busy": busy,
                "waiting": len(self.waiters),
                "utilization": busy / len(self.workers) if self.workers else 0.0,
                "avg_wait_ms": s["wait_ms_total"] / s["checkouts"] if s["checkouts"] else 0.0,
                "avg_exec_ms": s["exec_ms_total"] / s["checkins"] if s["checkins"] else 0.0,
                **{k: s[k] for k in ("checkouts", "checkins", "timeouts", "grown", "shrunk",
                                     "replaced")}}
