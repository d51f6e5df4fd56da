"""Elastic pools: stateless workers leased one caller at a time, grown under load and
shrunk when idle.

A pool is a ``PoolManager`` actor (named ``pool:<name>``, so any rank can reach it) that
owns the workers, spread over the ranks. ``pool_checkout`` leases an idle worker, spawns
one more if the pool is below ``max_size``, or waits — the manager defers the reply and
keeps serving check-ins meanwhile — until a worker comes back or ``timeout_ms`` passes
(then :class:`~plexhpc.errors.AskTimeout` says so). ``pool_checkin`` returns the lease; an
unhealthy worker is stopped and replaced. Workers above ``size`` that stay idle for
``idle_timeout_ms`` are stopped. ``pool_stats`` reports waits, execution times and
utilization.
"""

from __future__ import annotations

import itertools
import time
from collections import deque

from .. import errors as E
from ..actors.spec import actor, handler, init_handler, state
from ..actors.host import host

__all__ = ["PoolManager"]


@actor
class PoolManager:
    """Owns one pool's workers and leases."""

    name: str = state(default="")
    actor_type: str = state(default="")
    size: int = state(default=1)
    max_size: int = state(default=1)
    idle_timeout_ms: float = state(default=30_000.0)
    worker_args: dict = state(default_factory=dict)
    idle: list = state(default_factory=list)        # [(actor_id, idle_since)]
    leases: dict = state(default_factory=dict)      # checkout_id -> (actor_id, t_out)
    waiters: deque = state(default_factory=deque)   # (token, deadline, t_asked)
    workers: list = state(default_factory=list)
    stats: dict = state(default_factory=lambda: {
        "checkouts": 0, "checkins": 0, "timeouts": 0, "grown": 0, "shrunk": 0,
        "replaced": 0, "wait_ms_total": 0.0, "exec_ms_total": 0.0})
    _ids = None

    @init_handler
    def on_init(self, config: dict) -> None:
        a = config["args"]
        self.name = a["name"]
        self.actor_type = a["actor_type"]
        self.size = int(a["size"])
        self.max_size = int(a["max_size"])
        self.idle_timeout_ms = float(a.get("idle_timeout_ms", 30_000))
        self.worker_args = dict(a.get("worker_args") or {})
        self._ids = itertools.count(1)
        for _ in range(self.size):
            self.idle.append((self._spawn(), time.monotonic()))
        host.send_after(min(1000.0, self.idle_timeout_ms / 2), "tick")

    def _spawn(self) -> str:
        rank = len(self.workers) % host.world_size()
        aid = host.spawn(self.actor_type, rank=rank, args={**self.worker_args,
                                                           "pool": self.name})
        self.workers.append(aid)
        return aid

    def _lease(self, aid: str) -> dict:
        cid = f"{self.name}-{next(self._ids)}"
        self.leases[cid] = (aid, time.monotonic())
        self.stats["checkouts"] += 1
        return {"actor_id": aid, "checkout_id": cid, "pool": self.name}

    @handler("checkout")
    def checkout(self, timeout_ms: float = 5000):
        asked = time.monotonic()
        if self.idle:
            aid, _ = self.idle.pop(0)  # FIFO: spread work over every worker (and rank)
            return self._lease(aid)
        if len(self.workers) < self.max_size:
            self.stats["grown"] += 1
            return self._lease(self._spawn())
        token = host.defer_reply()
        self.waiters.append((token, asked + timeout_ms / 1000.0, asked))
        host.send_after(timeout_ms, "expire")
        return None

    @handler("checkin")
    def checkin(self, actor_id: str, checkout_id: str, healthy: bool = True) -> dict:
        lease = self.leases.pop(checkout_id, None)
        if lease is None or lease[0] != actor_id:
            raise E.Rejected(f"pool {self.name!r}: {checkout_id!r} is not an open lease of "
                             f"{actor_id!r}")
        self.stats["checkins"] += 1
        self.stats["exec_ms_total"] += (time.monotonic() - lease[1]) * 1000.0
        if not healthy:
            host.stop(actor_id, "checked in unhealthy")
            self.workers.remove(actor_id)
            actor_id = self._spawn()
            self.stats["replaced"] += 1
        self._hand_over(actor_id)
        return {"status": "ok", "replaced": not healthy}

    def _hand_over(self, aid: str) -> None:
        now = time.monotonic()
        while self.waiters:
            token, deadline, asked = self.waiters.popleft()
            if deadline >= now:
                self.stats["wait_ms_total"] += (now - asked) * 1000.0
                host.reply(token, self._lease(aid))
                return
            self._time_out(token)
        self.idle.append((aid, now))

    def _time_out(self, token) -> None:
        self.stats["timeouts"] += 1
        host.reply(token, error=E.AskTimeout(
            f"pool {self.name!r}: no worker free within the checkout timeout (all "
            f"{len(self.workers)} of max_size {self.max_size} leased)"))

    @handler("expire", "cast")
    def expire(self) -> None:
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
        now = time.monotonic()
        while len(self.workers) > self.size and self.idle:
            aid, since = self.idle[0]
            if (now - since) * 1000.0 < self.idle_timeout_ms:
                break
            self.idle.pop(0)
            self.workers.remove(aid)
            host.stop(aid, "pool shrink: idle")
            self.stats["shrunk"] += 1
        host.send_after(min(1000.0, self.idle_timeout_ms / 2), "tick")

    @handler("destroy")
    def destroy(self) -> dict:
        for aid in self.workers:
            host.stop(aid, f"pool {self.name} destroyed")
        for token, _, _ in self.waiters:
            host.reply(token, error=E.ActorNotFound(f"pool {self.name!r} was destroyed",
                                                      actor=f"pool:{self.name}"))
        stopped = len(self.workers)
        self.workers, self.idle, self.leases, self.waiters = [], [], {}, deque()
        host.stop()
        return {"pool": self.name, "destroyed": True, "workers_stopped": stopped}

    @handler("stats")
    def get_stats(self) -> dict:
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
