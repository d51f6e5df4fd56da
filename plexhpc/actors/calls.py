"""The calls that exist both inside handlers (``host.*``) and in driver scripts (the
handle from :func:`plexhpc.start`), written once over a *caller*.

A caller says who is calling and how to wait:

- :class:`HandlerCaller` (a handler): acts as its actor, in the request's context, within
  the actor's capabilities; waiting parks the handler's greenlet (the rank goes on).
- :class:`DriverCaller` (a driver thread): acts as ``$driver@R`` in the default context,
  with every capability; waiting blocks the thread.

One timeout rule for every call: the deadline is the call's own timeout (``timeout_ms``
or the spec's ``timeout_ms``), enforced on the hub, which answers with the error that
names what timed out. A driver also stops waiting ``GRACE_MS`` after it (AskTimeout), so
a handler that blocks its rank cannot make the driver wait forever; a handler needs no
such backstop (if its rank is blocked, it is not running either).
"""

from __future__ import annotations

import time
from queue import Empty, SimpleQueue

from greenlet import getcurrent

from .. import errors as E
from ..context import require
from ..otp.pool_calls import PoolCalls
from ..runtime.cell import check_message, check_ms
from ..shards import api as shard_api
from .host_state import current_ctx, scoped_group

__all__ = ["Calls", "HandlerCaller", "DriverCaller", "GRACE_MS", "spec_timeout"]

#: how long a driver waits beyond a call's own deadline before giving up by itself
GRACE_MS = 2000.0

_monotonic = time.monotonic


def spec_timeout(spec, default: float) -> float:
    """The ``timeout_ms`` a shard call's spec gives (the spec is checked elsewhere)."""
    t = spec.get("timeout_ms", default) if isinstance(spec, dict) else default
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0 \
        else default


class HandlerCaller:
    """The running handler of actor ``cell`` on ``node``."""

    __slots__ = ("node", "cell", "frm", "ctx", "caps")

    def __init__(self, node, cell):
        self.node = node
        self.cell = cell
        self.frm = cell.id
        self.ctx = current_ctx(cell)
        self.caps = cell.caps

    def require(self, capability: str) -> None:
        require(self.cell, capability)

    def wait(self, start, timeout_ms: float):
        return self.node.wait_from_actor(start)


class DriverCaller:
    """The driver script's thread of ``node`` (``ctx``: the context it acts in)."""

    __slots__ = ("node", "frm", "ctx", "caps")

    def __init__(self, node, ctx=None):
        self.node = node
        self.frm = f"$driver@{node.rank}"
        self.ctx = ctx
        self.caps = None

    def require(self, capability: str) -> None:
        return None  # the driver is the job's owner

    def wait(self, start, timeout_ms: float):
        """Run ``start(done)`` on the hub and block this thread until ``done``."""
        node = self.node
        if node.hub.on_thread():
            if getattr(getcurrent(), "cell", None) is not None:
                raise E.HostUsageError("inside a handler use host.*, not the driver handle")
            raise E.NodeClosed(
                f"rank {node.rank} is not the driver or its node has shut down: only rank "
                f"{node.driver_rank} drives the job (guard driver code with "
                "`if job.is_driver:`)")
        if node.lifecycle.finished.is_set():
            raise E.NodeClosed(f"the node on rank {node.rank} has shut down: "
                               f"{node.lifecycle.reason}")
        check_ms(timeout_ms)
        q: SimpleQueue = SimpleQueue()

        def put(ok, value):
            q.put((ok, value))

        def begin():
            # what the call does on the hub must never take the hub down: an error
            # there (a bad argument found late) is this caller's answer
            try:
                start(put)
            except E.PlexError as exc:
                put(False, exc)
            except Exception as exc:  # noqa: BLE001
                put(False, E.InvalidMessage(f"the call failed on rank {node.rank}: "
                                            f"{type(exc).__name__}: {exc}"))
        node.hub.call_soon(begin)
        deadline = _monotonic() + (timeout_ms + GRACE_MS) / 1000.0
        while True:
            try:
                ok, value = q.get(timeout=max(0.0, min(0.25, deadline - _monotonic())))
                break
            except Empty:
                if node.lifecycle.finished.is_set():
                    raise E.NodeClosed(f"the node on rank {node.rank} shut down: "
                                       f"{node.lifecycle.reason}") from None
                if _monotonic() >= deadline:
                    raise E.AskTimeout(
                        f"no answer within {timeout_ms:g} ms (+{GRACE_MS:g} ms grace): the "
                        "rank's loop may be blocked by a handler that does not return",
                        timeout_ms=timeout_ms) from None
        if ok:
            return value
        raise value


class Calls(PoolCalls):
    """Spawning, shard groups, process groups, fan-out asks and pools, for any caller.
    Subclasses give :meth:`_caller`."""

    def _caller(self):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    # ---- hooks of PoolCalls ----------------------------------------------------------

    def _check_actor_class(self, path: str) -> None:
        self._caller().node.actors.class_ref(path)

    def _require_pools(self) -> None:
        self._caller().require("pools")

    # ---- fan-out ---------------------------------------------------------------------

    def ask_many(self, targets: list, op: str, payload: dict | None = None,
                 timeout_ms: float = 5000) -> list:
        """Ask every target ``op`` at once and wait for all of them (each within
        ``timeout_ms``); returns one entry per target, in order: the reply, or the
        exception that ask ended with (AskTimeout, RemoteError...)."""
        check_message(op, payload)
        check_ms(timeout_ms)
        c = self._caller()
        targets = list(targets)
        results = c.wait(lambda done: c.node.start_ask_many(
            targets, op, payload, timeout_ms, len(targets), c.frm,
            lambda res: done(True, res), c.ctx), timeout_ms)
        return [r[1] if r is not None else E.AskTimeout(f"{t}: not waited for", to=t, op=op)
                for t, r in zip(targets, results)]

    # ---- lifecycle -------------------------------------------------------------------

    def spawn(self, actor_class, *, name: str | None = None, rank: int | None = None,
              args: dict | None = None, restart: str = "permanent",
              timeout_ms: float = 30000) -> str:
        """Start a new actor (on ``rank``, default the caller's); returns its id once its
        init handler has succeeded, raises if init failed."""
        c = self._caller()
        c.require("spawn")
        check_ms(timeout_ms)
        ref = c.node.actors.class_ref(actor_class)
        return c.wait(lambda done: c.node.actors.start_spawn(
            ref, name, rank, args, restart, done, c.ctx, c.caps, timeout_ms), timeout_ms)

    def spawn_many(self, actor_class, count: int, *, rank: int | None = None,
                   args: dict | None = None, timeout_ms: float = 600000) -> list:
        """Start ``count`` unnamed actors of one class on ``rank`` at once; returns their
        ids when every init has succeeded (cheaper than ``count`` spawns)."""
        c = self._caller()
        c.require("spawn")
        check_ms(timeout_ms)
        ref = c.node.actors.class_ref(actor_class)
        return c.wait(lambda done: c.node.actors.start_spawn_many(
            ref, count, rank, args, done, c.ctx, c.caps, timeout_ms), timeout_ms)

    # ---- process groups --------------------------------------------------------------

    def members(self, group: str) -> list:
        """Members of a process group, cluster-wide, in a stable order (as seen in the
        caller's context)."""
        c = self._caller()
        return c.wait(lambda done: done(True, c.node.groups.members(
            scoped_group(c.ctx, group))), 5000)

    # ---- shard groups ----------------------------------------------------------------

    def create_shard_group(self, spec: dict) -> dict:
        """Create ``shard_count`` actors of ``actor_type`` over the ranks; returns
        ``{group_id, shard_count, shard_actor_ids, rank_of_shard, ...}`` once every shard's
        init succeeded. Keys: group_id, actor_type ("module:Class" or a config child's
        name), shard_count, partition_strategy (hash|range|round_robin), placement
        ({"strategy": spread|pack|ranks}), initial_state, args, key_range."""
        c = self._shard_caller()
        return c.wait(lambda done: shard_api.create(c.node, c.frm, spec, done, c.ctx,
                                                    c.caps), 120000)

    def destroy_shard_group(self, group_id: str) -> dict:
        """Stop every shard of the group and forget it on every rank."""
        c = self._shard_caller()
        return c.wait(lambda done: shard_api.destroy(c.node, c.frm, group_id, done, c.ctx), 60000)

    def route(self, group_id: str, key, op: str, payload: dict | None = None,
              timeout_ms: float = 5000):
        """Ask the shard that owns ``key`` (by the group's partition strategy)."""
        check_message(op, payload)
        c = self._shard_caller()
        return c.wait(lambda done: shard_api.route(
            c.node, c.frm, group_id, key, op, payload, timeout_ms, done, c.ctx), timeout_ms)

    def scatter_gather(self, spec: dict) -> dict:
        """Ask every shard ``query`` at once; returns ``{result, shard_responses, stats}``
        as soon as ``min_responses`` answered (default: all), or raises
        :class:`~plexhpc.errors.ScatterGatherIncomplete` listing the missing shards."""
        c = self._shard_caller()
        return c.wait(lambda done: shard_api.scatter_gather(c.node, c.frm, spec, done, c.ctx),
                      spec_timeout(spec, 30000))

    def broadcast_shard_group(self, spec: dict) -> dict:
        """Deliver ``message`` to every shard and count the acks (``min_acks``)."""
        c = self._shard_caller()
        return c.wait(lambda done: shard_api.broadcast(c.node, c.frm, spec, done, c.ctx),
                      spec_timeout(spec, 10000))

    def barrier_shard_group(self, spec: dict) -> dict:
        """Return once every shard has handled everything sent to it before."""
        c = self._shard_caller()
        return c.wait(lambda done: shard_api.barrier(c.node, c.frm, spec, done, c.ctx),
                      spec_timeout(spec, 10000))

    def reduce_shard_group(self, spec: dict) -> dict:
        """Every shard answers ``map_function`` (``{op, ...}``); the answers are reduced
        (``reduction``: sum|min|max|product|concat|bool_and|bool_or) by numba kernels on
        each rank and one MPI collective across ranks; returns ``{value, shards_answered,
        ranks, elapsed_ms, ...}``."""
        c = self._shard_caller()
        return c.wait(lambda done: c.node.reductions.request(spec, c.frm, done, c.ctx),
                      spec_timeout(spec, 10000) + 1000)

    def all_reduce_shard_group(self, spec: dict) -> dict:
        """As :meth:`reduce_shard_group`, and every shard receives the value too (a cast
        of ``target``, default ``"reduced"``, with ``{value, group_id, reduction}``)."""
        spec = dict(spec, all=True) if isinstance(spec, dict) else spec
        return self.reduce_shard_group(spec)

    def _shard_caller(self):
        c = self._caller()
        c.require("shards")
        return c
