"""``host``: what an actor may ask of the runtime, from inside its handlers.

``from plexhpc import host`` gives one object; each call finds the actor it runs for from
the current greenlet, so handlers need no reference to a node. Calls outside a handler
raise :class:`~plexhpc.errors.HostUsageError` (a driver uses its node instead).

Remote boundaries stay visible: ``host.ask`` blocks the calling handler (and only it)
until the reply or the timeout, and raises on failure; nothing is a hidden proxy.
"""

from __future__ import annotations

import time
from typing import Any

from greenlet import getcurrent

from .. import errors as E
from ..runtime import node as _node_mod
from ..runtime.cell import RESERVED_OPS, check_message
from ..otp.pool_calls import PoolCalls
from ..shards import api as _shard_api
from ..context import DEFAULT_CTX, RequestContext, require
from .host_state import ChannelCalls, KVCalls, TupleSpaceCalls, current_ctx, scoped_group
from ..log import get_logger

__all__ = ["host", "Host"]

_log = get_logger("actor")

DEFAULT_TIMEOUT_MS = 5000


def log_refusal(cell, actor, ok, value) -> None:
    if not ok:
        _log.warning("%s: stop of %s refused: %s", cell.id, actor, value)


def _finite(value, what: str) -> float:
    """A timeout or delay in ms: a finite number >= 0, at most a week."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 <= value <= _MAX_TIMEOUT_MS):
        raise ValueError(f"{what} must be a number of milliseconds between 0 and "
                         f"{_MAX_TIMEOUT_MS:.0f} (a week), got {value!r}")
    return float(value)


def _here():
    cell = getattr(getcurrent(), "cell", None)
    if cell is None:
        raise E.HostUsageError(
            "host.* works only inside an actor's handler; from a driver script use the "
            "node returned by plexhpc.start()")
    return _node_mod._current, cell


_MAX_TIMEOUT_MS = 7 * 24 * 3600 * 1000.0


_check = check_message


class ProcessGroups:
    """``host.process_groups``: cluster-wide named groups of actors, scoped by the
    request's tenant and namespace. Lookups also see the groups of the default context,
    where shared (tenant-less) services register; never another tenant's."""

    @staticmethod
    def _lookup(node, cell, group, fn):
        ctx = current_ctx(cell)
        out = fn(scoped_group(ctx, group))
        if ctx[:2] != DEFAULT_CTX[:2]:
            seen = set(out)
            out += [a for a in fn(scoped_group(DEFAULT_CTX, group)) if a not in seen]
        return out

    def join(self, group: str) -> None:
        """Add the calling actor to ``group`` (idempotent)."""
        node, cell = _here()
        node.groups.join(cell, scoped_group(current_ctx(cell), group))

    def leave(self, group: str) -> bool:
        """Remove the calling actor from ``group``; False if it was not a member."""
        node, cell = _here()
        return node.groups.leave(cell, scoped_group(current_ctx(cell), group))

    def members(self, group: str) -> list:
        """Member ids on every rank, in a stable order."""
        node, cell = _here()
        return self._lookup(node, cell, group, node.groups.members)

    def local_members(self, group: str) -> list:
        """Members on this rank only (asking them never leaves the process)."""
        node, cell = _here()
        return self._lookup(node, cell, group, node.groups.local_members)

    def first(self, group: str) -> str | None:
        """The first member, or None if nobody has joined."""
        m = self.members(group)
        return m[0] if m else None

    def broadcast(self, group: str, op: str, payload: dict | None = None) -> int:
        """Send ``op`` (fire-and-forget) to every member; returns how many were sent."""
        _check(op, payload)
        node, cell = _here()
        members = self._lookup(node, cell, group, node.groups.members)
        for aid in members:
            node.send_from(cell.id, aid, op, payload, current_ctx(cell))
        return len(members)


class Host(PoolCalls, KVCalls):
    """The runtime API of the actor whose handler is running."""

    ts = TupleSpaceCalls()
    channel = ChannelCalls()

    @staticmethod
    def _check_actor_class(path: str) -> None:
        _here()[0]._class_ref(path)

    @staticmethod
    def _require_pools() -> None:
        require(_here()[1], "pools")

    process_groups = ProcessGroups()

    # ---- messaging --------------------------------------------------------------------

    def ask(self, to: str, op: str, payload: dict | None = None,
            timeout_ms: float = DEFAULT_TIMEOUT_MS) -> Any:
        """Send ``op`` to ``to`` (a name or id, any rank) and wait for its reply.

        Only this handler waits; the rank keeps serving other actors. Raises
        :class:`~plexhpc.errors.AskTimeout`, :class:`~plexhpc.errors.ActorNotFound` or
        :class:`~plexhpc.errors.RemoteError` (the target's handler raised)."""
        if op.__class__ is not str or op in RESERVED_OPS or (
                payload is not None and payload.__class__ is not dict):
            _check(op, payload)
        if timeout_ms.__class__ is not int or not 0 < timeout_ms <= _MAX_TIMEOUT_MS:
            if not _finite(timeout_ms, "timeout_ms"):
                raise ValueError(f"timeout_ms must be > 0, got {timeout_ms!r}")
        g = getcurrent()
        cell = getattr(g, "cell", None)
        if cell is None:
            _here()  # raises the usage error
        return _node_mod._current.ask_from_actor(cell, to, op, payload, timeout_ms,
                                                  g.ctx or cell.ctx)

    def ask_many(self, targets: list, op: str, payload: dict | None = None,
                 timeout_ms: float = DEFAULT_TIMEOUT_MS) -> list:
        """Ask every target ``op`` at once and wait for all of them (each within
        ``timeout_ms``); returns one entry per target, in order: the reply, or the
        exception that ask ended with (AskTimeout, RemoteError...). Fan-out without
        asking one after another."""
        _check(op, payload)
        if not _finite(timeout_ms, "timeout_ms"):
            raise ValueError(f"timeout_ms must be > 0, got {timeout_ms!r}")
        node, cell = _here()
        targets = list(targets)
        ctx = current_ctx(cell)
        results = node.wait_from_actor(lambda done: node.start_ask_many(
            targets, op, payload, timeout_ms, len(targets), cell.id,
            lambda res: done(True, res), ctx))
        return [r[1] if r is not None else E.AskTimeout(f"{t}: not waited for")
                for t, r in zip(targets, results)]

    def defer_reply(self):
        """Answer the current ask later: returns a token for :meth:`reply`; the handler's
        own return value is then not sent. For servers that must keep taking messages
        while a caller waits (a pool handing out workers as they come back)."""
        node, cell = _here()
        return node.defer_reply(cell)

    def reply(self, token, value=None, *, error: BaseException | None = None) -> None:
        """Answer a deferred ask with ``value``, or make the caller raise ``error``
        (a TimeoutError arrives as AskTimeout, a LookupError as ActorNotFound, a
        ValueError as InvalidMessage, anything else as RemoteError)."""
        node, _ = _here()
        node.reply_to(token, error is None, value if error is None else error)

    def send(self, to: str, op: str, payload: dict | None = None) -> None:
        """Fire-and-forget ``op`` to ``to``. An unknown name raises; a message to an
        actor that has stopped is dropped, as in Erlang."""
        if op.__class__ is not str or op in RESERVED_OPS or (
                payload is not None and payload.__class__ is not dict):
            _check(op, payload)
        g = getcurrent()
        cell = getattr(g, "cell", None)
        if cell is None:
            _here()  # raises the usage error
        _node_mod._current.send_from(cell.id, to, op, payload, g.ctx or cell.ctx)

    def send_after(self, delay_ms: float, op: str, payload: dict | None = None) -> None:
        """Deliver ``op`` to this actor itself after ``delay_ms`` (a timer)."""
        _check(op, payload)
        _finite(delay_ms, "delay_ms")
        node, cell = _here()
        require(cell, "timers")
        node.send_after(cell, delay_ms, op, payload)

    # ---- identity and time ----------------------------------------------------------

    # ---- monitors, links, workflow steps ----------------------------------------------

    def monitor(self, actor: str) -> str:
        """Watch ``actor`` (any rank): this actor gets exactly one ``__DOWN__`` cast
        ``{down_from, monitor_ref, down_reason}`` when it stops for any reason. Returns
        the monitor ref."""
        node, cell = _here()
        return node.monitor(cell, actor)

    def demonitor(self, ref: str) -> bool:
        """Stop watching; False if the ref is unknown or already fired."""
        node, cell = _here()
        return node.demonitor(cell, ref)

    def link(self, actor: str) -> None:
        """Share fate with ``actor`` (any rank): if either crashes, the other gets an
        ``__EXIT__`` cast ``{exit_from, exit_reason}``, or crashes too if it has no
        ``__EXIT__`` handler. Normal stops are not propagated."""
        node, cell = _here()
        node.link(cell, actor)

    def unlink(self, actor: str) -> None:
        node, cell = _here()
        node.unlink(cell, actor)

    def step(self, name: str, fn, *args, **kwargs):
        """In a workflow's run handler: run ``fn`` as a checkpointed step, or return its
        recorded result when a resumed run reaches a step it completed before."""
        from ..otp.workflow import step
        return step(name, fn, *args, **kwargs)

    def context(self):
        """The request context this handler runs in (tenant, namespace, principal): the
        caller's, carried unchanged through every ask and send on the way here."""
        return RequestContext(*current_ctx(_here()[1]))

    def self_id(self) -> str:
        """This actor's id (``name@rank``)."""
        return _here()[1].id

    def rank(self) -> int:
        """The rank this actor runs on."""
        return _here()[0].rank

    def world_size(self) -> int:
        return _here()[0].size

    def now_ms(self) -> int:
        """Wall-clock time in milliseconds since the epoch."""
        return int(time.time() * 1000)

    # ---- lifecycle --------------------------------------------------------------------

    def spawn(self, actor_class, *, name: str | None = None, rank: int | None = None,
              args: dict | None = None, restart: str = "permanent",
              timeout_ms: float = 30000) -> str:
        """Start a new actor (on ``rank``, default this one); returns its id once its init
        handler has succeeded, raises if init failed."""
        node, cell = _here()
        require(cell, "spawn")
        ref = node._class_ref(actor_class)
        _finite(timeout_ms, "timeout_ms")
        return node.wait_from_actor(
            lambda done: node._start_spawn(ref, name, rank, args, restart, done,
                                           current_ctx(cell), cell.caps, timeout_ms))

    def spawn_many(self, actor_class, count: int, *, rank: int | None = None,
                   args: dict | None = None, timeout_ms: float = 600000) -> list:
        """Start ``count`` unnamed actors of one class on ``rank`` at once; returns their
        ids when every init has succeeded (cheaper than ``count`` spawns)."""
        node, cell = _here()
        require(cell, "spawn")
        ref = node._class_ref(actor_class)
        _finite(timeout_ms, "timeout_ms")
        return node.wait_from_actor(
            lambda done: node._start_spawn_many(ref, count, rank, args, done,
                                                current_ctx(cell), cell.caps, timeout_ms))

    # ---- shard groups ---------------------------------------------------------------

    def create_shard_group(self, spec: dict) -> dict:
        """Create ``shard_count`` actors of ``actor_type`` over the ranks; returns
        ``{group_id, shard_count, shard_actor_ids, rank_of_shard, ...}`` once every shard's
        init succeeded. Keys: group_id, actor_type ("module:Class" or a config child's
        name), shard_count, partition_strategy (hash|range|round_robin), placement
        ({"strategy": spread|pack|ranks}), initial_state, args, key_range."""
        return self._shard_call(lambda node, cell, done: _shard_api.create(
            node, cell.id, spec, done, current_ctx(cell), cell.caps))

    def destroy_shard_group(self, group_id: str) -> dict:
        """Stop every shard of the group and forget it on every rank."""
        return self._shard_call(lambda node, cell, done: _shard_api.destroy(
            node, cell.id, group_id, done))

    def route(self, group_id: str, key, op: str, payload: dict | None = None,
              timeout_ms: float = DEFAULT_TIMEOUT_MS):
        """Ask the shard that owns ``key`` (by the group's partition strategy)."""
        _check(op, payload)
        return self._shard_call(lambda node, cell, done: _shard_api.route(
            node, cell.id, group_id, key, op, payload, timeout_ms, done, current_ctx(cell)))

    def scatter_gather(self, spec: dict) -> dict:
        """Ask every shard ``query`` at once; returns ``{result, shard_responses, stats}``
        as soon as ``min_responses`` answered (default: all), or raises
        :class:`~plexhpc.errors.ScatterGatherIncomplete` listing the missing shards."""
        return self._shard_call(lambda node, cell, done: _shard_api.scatter_gather(
            node, cell.id, spec, done, current_ctx(cell)))

    def broadcast_shard_group(self, spec: dict) -> dict:
        """Deliver ``message`` to every shard and count the acks (``min_acks``)."""
        return self._shard_call(lambda node, cell, done: _shard_api.broadcast(
            node, cell.id, spec, done, current_ctx(cell)))

    def barrier_shard_group(self, spec: dict) -> dict:
        """Return once every shard has handled everything sent to it before."""
        return self._shard_call(lambda node, cell, done: _shard_api.barrier(
            node, cell.id, spec, done))

    def reduce_shard_group(self, spec: dict) -> dict:
        """Every shard answers ``map_function`` (``{op, ...}``); the answers are reduced
        (``reduction``: sum|min|max|product|concat|bool_and|bool_or) by numba kernels on
        each rank and one MPI collective across ranks; returns ``{value, shards_answered,
        ranks, elapsed_ms, ...}``."""
        return self._shard_call(lambda node, cell, done: node.reductions.request(
            spec, cell.id, done, current_ctx(cell)))

    def all_reduce_shard_group(self, spec: dict) -> dict:
        """As :meth:`reduce_shard_group`, and every shard receives the value too (a cast
        of ``target``, default ``"reduced"``, with ``{value, group_id, reduction}``)."""
        spec = dict(spec, all=True) if isinstance(spec, dict) else spec
        return self._shard_call(lambda node, cell, done: node.reductions.request(
            spec, cell.id, done, current_ctx(cell)))

    @staticmethod
    def _shard_call(start):
        node, cell = _here()
        require(cell, "shards")
        return node.wait_from_actor(lambda done: start(node, cell, done))

    def stop(self, actor: str | None = None, reason: str = "normal") -> None:
        """Stop an actor (default: this one) after its current message. It is not
        restarted. Returns at once."""
        node, cell = _here()
        if actor is None or actor == cell.id:
            node.stop_actor(cell, reason)
            return
        require(cell, "spawn")  # lifecycle control of other actors
        node._start_stop(actor, reason, lambda ok, value: log_refusal(cell, actor, ok, value),
                         current_ctx(cell))

    def exit(self, reason: str = "normal") -> None:
        """End this actor after the current message, as OTP's ``exit``: a config child
        goes to its supervisor, which restarts it if it is permanent (or, for any reason
        but ``"normal"``, transient); other actors stop."""
        if not isinstance(reason, str) or not reason:
            raise ValueError(f"reason must be a non-empty str, got {reason!r}")
        node, cell = _here()
        node.exit_actor(cell, reason)

    def shutdown(self, reason: str = "requested by an actor", exit_code: int = 0) -> None:
        """Shut the whole job down gracefully (every rank drains and stops)."""
        node, cell = _here()
        node.request_shutdown(f"{reason} ({cell.id})", exit_code)

    # ---- logging ----------------------------------------------------------------------

    def debug(self, msg: str) -> None:
        _log.debug("%s: %s", self._who(), msg)

    def info(self, msg: str) -> None:
        _log.info("%s: %s", self._who(), msg)

    def warn(self, msg: str) -> None:
        _log.warning("%s: %s", self._who(), msg)

    warning = warn

    def error(self, msg: str) -> None:
        _log.error("%s: %s", self._who(), msg)

    @staticmethod
    def _who() -> str:
        cell = getattr(getcurrent(), "cell", None)
        return cell.id if cell is not None else "?"


host = Host()
