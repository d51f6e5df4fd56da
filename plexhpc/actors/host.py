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
from ..context import DEFAULT_CTX, RequestContext, is_system, require
from ..log import get_logger
from ..otp.workflow import step as workflow_step
from ..runtime import current as current_
from ..runtime.cell import MAX_MS, RESERVED_OPS, check_message, check_ms
from .calls import Calls, HandlerCaller
from .host_state import ChannelCalls, KVCalls, TupleSpaceCalls, current_ctx, scoped_group

__all__ = ["host", "Host"]

_log = get_logger("actor")

DEFAULT_TIMEOUT_MS = 5000

_here = current_.here
_check = check_message


def log_refusal(cell, actor, ok, value) -> None:
    if not ok:
        _log.warning("%s: stop of %s refused: %s", cell.id, actor, value)




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


class Host(Calls, KVCalls):
    """The runtime API of the actor whose handler is running. The calls a driver has
    too (spawn, shard groups, pools, ask_many) come from
    :class:`~plexhpc.actors.calls.Calls`, acting as this actor."""

    ts = TupleSpaceCalls()
    channel = ChannelCalls()
    process_groups = ProcessGroups()

    @staticmethod
    def _caller():
        return HandlerCaller(*_here())

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
        if timeout_ms.__class__ is not int or not 0 < timeout_ms <= MAX_MS:
            check_ms(timeout_ms)
        g = getcurrent()
        cell = getattr(g, "cell", None)
        if cell is None:
            _here()  # raises the usage error
        if op == "__metrics__":
            require(cell, "metrics")
        return current_.current_node().ask_from_actor(cell, to, op, payload, timeout_ms,
                                                       g.ctx or cell.ctx)

    def defer_reply(self):
        """Answer the current ask later: returns a token for :meth:`reply`; the handler's
        own return value is then not sent. For servers that must keep taking messages
        while a caller waits (a pool handing out workers as they come back)."""
        node, cell = _here()
        return node.defer_reply(cell)

    def reply(self, token, value=None, *, error: BaseException | None = None) -> None:
        """Answer a deferred ask with ``value``, or make the caller raise ``error``
        (a plexhpc error arrives as its own class, any other exception as RemoteError
        naming its type; a TimeoutError as RemoteTimeout)."""
        node, cell = _here()
        node.reply_to(token, error is None, value if error is None else error, cell.id)

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
        current_.current_node().send_from(cell.id, to, op, payload, g.ctx or cell.ctx)

    def send_after(self, delay_ms: float, op: str, payload: dict | None = None) -> None:
        """Deliver ``op`` to this actor itself after ``delay_ms`` (a timer)."""
        _check(op, payload)
        check_ms(delay_ms, "delay_ms", zero=True)
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
        require(cell, "monitor")
        return node.links.monitor(cell, actor)

    def demonitor(self, ref: str) -> bool:
        """Stop watching; False if the ref is unknown or already fired."""
        node, cell = _here()
        return node.links.demonitor(cell, ref)

    def link(self, actor: str) -> None:
        """Share fate with ``actor`` (any rank): if either crashes, the other gets an
        ``__EXIT__`` cast ``{exit_from, exit_reason}``, or crashes too if it has no
        ``__EXIT__`` handler. Normal stops are not propagated."""
        node, cell = _here()
        require(cell, "monitor")
        node.links.link(cell, actor)

    def unlink(self, actor: str) -> None:
        node, cell = _here()
        node.links.unlink(cell, actor)

    def step(self, name: str, fn, *args, **kwargs):
        """In a workflow's run handler: run ``fn`` as a checkpointed step, or return its
        recorded result when a resumed run reaches a step it completed before."""
        return workflow_step(name, fn, *args, **kwargs)

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

    def stop(self, actor: str | None = None, reason: str = "normal") -> None:
        """Stop an actor (default: this one) after its current message. It is not
        restarted. Returns at once."""
        node, cell = _here()
        if actor is None or actor == cell.id:
            node.stop_actor(cell, reason)
            return
        require(cell, "spawn")  # lifecycle control of other actors
        node.actors.start_stop(actor, reason,
                               lambda ok, value: log_refusal(cell, actor, ok, value),
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
        """Shut the whole job down gracefully (every rank drains and stops). Needs the
        ``lifecycle`` capability, and acting for the system: a handler serving a tenant's
        request cannot end everyone's job."""
        node, cell = _here()
        require(cell, "lifecycle")
        ctx = current_ctx(cell)
        if not is_system(ctx):
            raise E.CapabilityDenied(
                f"{cell.id} is handling a request of tenant {ctx[0]!r}: a tenant's request "
                f"cannot shut the job down", capability="lifecycle")
        if not isinstance(reason, str) or exit_code.__class__ is not int or not (
                0 <= exit_code <= 255):
            raise E.InvalidMessage(f"shutdown takes a reason (str) and an exit code 0..255, "
                                   f"got {reason!r}, {exit_code!r}")
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
