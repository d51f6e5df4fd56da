"""Running actors: mailboxes, the ready queue, worker greenlets and the one path by which
every message is handled.

A message to an actor on this rank goes into its mailbox (created on the first message);
an actor with messages and no running turn is put on the ready queue once. The hub
takes actors off the queue and runs each on a pooled worker greenlet for up to
``BUDGET`` messages: one greenlet switch per turn, not per message. A handler that asks
another actor parks its greenlet (``BLOCKED``) and is resumed with the reply; the
actor's later messages wait in its mailbox meanwhile, as in a GenServer.

Every message, with facets or without, runs through :meth:`Executor.execute`: built-in
ops, payload binding (a bad payload is refused before any handler runs), the handler,
and then exactly one of: the reply, a refusal (``Rejected``: no restart), or a crash
(the error goes to the caller, then the actor's supervisor decides).
"""

from __future__ import annotations

import time
import traceback
from collections import deque

from greenlet import greenlet

from .. import errors as E
from ..actors import facets as facets_
from ..context import SYSTEM_TENANT
from ..log import get_logger
from .cell import BLOCKED, DONE, RUNNING, STARTING, STOPPED, STOPPING
from .envelope import ASK, REPLY, TERM, CORR, CTX, FRM, KIND, OP, PAYLOAD, REPLY_RANK, TO
from . import envelope as env_

__all__ = ["Executor", "ReplyToken", "LinkedExit", "BUDGET", "run_terminate", "kill"]

log = get_logger("node")
actor_log = get_logger("actor")

#: messages one actor may handle per turn before the loop polls MPI again
BUDGET = 64

_perf = time.perf_counter


class LinkedExit(Exception):
    """Why an actor without an ``__EXIT__`` handler stopped: a linked actor crashed."""


class ReplyToken:
    """What :meth:`Executor.defer_reply` hands out: which ask to answer later. Opaque to
    actors, checked by :meth:`Executor.reply_to` (made here, answered once)."""

    __slots__ = ("corr", "reply_rank", "actor", "op", "answered")

    def __init__(self, corr: int, reply_rank: int, actor: str, op: str):
        self.corr = corr
        self.reply_rank = reply_rank
        self.actor = actor
        self.op = op
        self.answered = False

    def __repr__(self):
        return f"<reply token for {self.op!r} to {self.actor}>"


class Executor:
    """Mailboxes and turns of this rank's actors.

    ``cells`` is the actor table's dict (id -> ActorCell), shared, not copied. ``ready``
    and ``resume`` are the hub's queues: actors with messages, and parked greenlets with
    their outcome. ``on_crash(cell, exc, tb, where)`` is the supervisor's decision, and
    ``on_stopped(cell, reason)`` the actor table's teardown once a stopping actor's turn
    is over."""

    def __init__(self, rt, cells: dict, pending, transport, resume: deque):
        self.rt = rt                  # the node, handed to facet hooks
        self.rank = rt.rank
        self.cells = cells
        self.pending = pending
        self.transport = transport
        self.ready: deque = deque()
        self.resume = resume
        self.hub = None               # the hub's greenlet, set when the loop starts
        self.closed = False           # the final shutdown phase: no new messages
        self.busy = 0                 # worker greenlets in a turn (running or parked)
        self.messages_handled = 0
        self.on_crash = None
        self.on_stopped = None
        self.on_started = None        # (cell) -> None: after a workflow actor's init
        self._pool: list = []

    # ---- mailboxes -----------------------------------------------------------------

    def deliver(self, env) -> None:
        """Put a message addressed to this rank into its actor's mailbox."""
        cell = self.cells.get(env[TO])
        if cell is None or cell.status == STOPPED or self.closed:
            if env[KIND] == ASK:
                if self.closed:
                    self.reply_error(env, E.NodeClosed(
                        f"rank {self.rank} is shutting down; {env[TO]!r} no longer takes "
                        "messages"))
                else:
                    self.reply_error(env, E.ActorNotFound(
                        f"no actor {env[TO]!r} on rank {self.rank}", actor=env[TO]))
            return
        mb = cell.mailbox
        if mb is None:
            cell.mailbox = mb = deque()
        mb.append(env)
        if cell.facets is not None and cell.facets.dormant and not cell.pending_init:
            cell.pending_init = True  # a virtual actor: activate it for this message
        if not cell.queued and cell.running is None:
            cell.queued = True
            self.ready.append(cell)

    def schedule(self, cell) -> None:
        """Put ``cell`` on the ready queue if it is not queued or running."""
        if not cell.queued and cell.running is None:
            cell.queued = True
            self.ready.append(cell)

    def queue_init(self, cell, waiter=None) -> None:
        """Run the init handler before any queued message (no mailbox needed for it)."""
        cell.status = STARTING
        cell.init_waiter = waiter
        cell.pending_init = True
        self.schedule(cell)

    def queue_terminate(self, cell, reason) -> None:
        """Run the terminate handler ahead of every queued message."""
        mb = cell.mailbox
        if mb is None:
            cell.mailbox = mb = deque()
        mb.appendleft(env_.terminate(cell.id, reason))
        self.schedule(cell)

    # ---- replies -------------------------------------------------------------------

    def reply(self, env, value) -> None:
        corr, rr = env[CORR], env[REPLY_RANK]
        if rr == self.rank:
            self.pending.complete(corr, True, value)
        elif rr >= 0:
            self.transport.post(rr, env_.reply(corr, value))

    def reply_error(self, env, exc, tb: str | None = None) -> None:
        """Answer ask ``env`` with ``exc``, in the one error wire format (class, message,
        rank, actor, op, traceback), on this rank or another."""
        corr, rr = env[CORR], env[REPLY_RANK]
        wire = E.to_wire(exc, rank=self.rank, actor=env[TO], op=env[OP], tb=tb)
        if rr == self.rank:
            self.pending.complete(corr, False, wire)
        elif rr >= 0:
            self.transport.post(rr, env_.error(corr, wire))

    def defer_reply(self, cell):
        """Take the reply of the ask ``cell`` is handling out of the handler's hands: the
        handler returns without answering and someone answers later with
        :meth:`reply_to` (OTP's ``{noreply, State}`` plus ``gen_server:reply``)."""
        env = cell.current
        if env is None:
            raise E.HostUsageError("defer_reply() works only while handling an ask "
                                   "(not a send, and only once per ask)")
        cell.current = None
        return ReplyToken(env[CORR], env[REPLY_RANK], env[TO], env[OP])

    def reply_to(self, token, ok: bool, value, owner: str | None = None) -> None:
        """Answer a deferred ask: ``value`` (ok) or an error (any exception; it arrives as
        its own class if it is a plexhpc error, else as RemoteError naming its type).

        Only a token that :meth:`defer_reply` made answers, and only once; with
        ``owner`` (an actor's ``host.reply``), only a token of that actor: no actor can
        answer another's pending ask by making up a token or reusing one."""
        if token.__class__ is not ReplyToken:
            raise E.InvalidMessage(f"reply() takes the token defer_reply() returned, got "
                                   f"{type(token).__name__}")
        if owner is not None and token.actor != owner:
            raise E.InvalidMessage(f"{owner} cannot answer an ask made to {token.actor}: "
                                   f"reply() takes only this actor's own tokens")
        if token.answered:
            raise E.InvalidMessage(f"the ask {token.op!r} to {token.actor} has been answered "
                                   f"already: a deferred ask is answered once")
        token.answered = True
        env = env_.ask(token.actor, None, token.op, None, token.corr, token.reply_rank)
        if ok:
            self.reply(env, value)
        else:
            self.reply_error(env, value)

    # ---- turns ---------------------------------------------------------------------

    def dispatch(self, cell) -> None:
        """Start a turn of ``cell`` on a pooled worker greenlet."""
        if self._pool:
            g = self._pool.pop()
        else:
            g = greenlet(self._worker_main, self.hub)
            g.ctx = None  # so reading a run's own context never costs an AttributeError
        cell.running = g
        g.cell = cell
        self.busy += 1
        self.switch(g, cell)

    def switch(self, g, value) -> None:
        """Run greenlet ``g`` until it finishes its turn (DONE) or parks (BLOCKED)."""
        r = g.switch(value)
        if r is DONE:
            cell = g.cell
            g.cell = None
            self._pool.append(g)
            self.busy -= 1
            cell.running = None
            st = cell.status
            if st == STOPPING and not (cell.mailbox and cell.mailbox[0][0] == TERM):
                self.on_stopped(cell, cell.stop_reason)
            elif st != STOPPED and (cell.pending_init or (cell.mailbox and st == RUNNING)) \
                    and not cell.queued:
                cell.queued = True
                self.ready.append(cell)

    def abandon(self, cell) -> None:
        """Forget ``cell``'s turn: its greenlet has been killed (stop, shutdown)."""
        if cell.running is not None:
            cell.running = None
            self.busy -= 1

    def _worker_main(self, cell):
        """A pooled worker: runs up to ``BUDGET`` messages of one actor per turn."""
        hub = self.hub
        execute = self.execute
        while True:
            budget = BUDGET
            try:
                while budget:
                    budget -= 1
                    if cell.pending_init:
                        cell.pending_init = False
                        self.run_init(cell)
                        continue
                    mb = cell.mailbox
                    if not mb:
                        break
                    st = cell.status
                    if st != RUNNING and not (st == STOPPING and mb[0][0] == TERM):
                        break
                    execute(cell, mb.popleft())
            except greenlet.GreenletExit:
                raise
            except BaseException:  # noqa: BLE001 - never let a worker die
                log.exception("internal error while running %s", cell.id)
            cell = hub.switch(DONE)

    def execute(self, cell, env) -> None:
        """Handle one message of ``cell``: the one path, facets or not."""
        kind, _to, _frm, op, payload, corr, rr, ctx = env
        self.messages_handled += 1
        if kind == TERM:
            run_terminate(cell, payload)
            return
        if ctx is not None and ctx[0] != SYSTEM_TENANT:
            # the tenant wall, where every message to an actor passes: acting for a
            # tenant, a message reaches only that tenant's actors and the system's
            # (shared services, which then act in the caller's context)
            home = cell.home_ctx[0]
            if home != ctx[0] and home != SYSTEM_TENANT:
                self._foreign(cell, env, home)
                return
        if op == "__DOWN__":  # only for a live monitor of this actor, and only once
            ref = payload.get("monitor_ref") if isinstance(payload, dict) else None
            if cell.watching is None or cell.watching.pop(ref, None) is None:
                return
        h = cell.spec.handlers.get(op)
        if h is None:
            self._builtin(cell, env)
            return
        try:
            if payload.__class__ is dict and payload.keys() <= h.param_set and not (
                    h.required_set and not h.required_set <= payload.keys()):
                kwargs = payload  # the common case, without a call: keys the handler names
            else:
                kwargs = h.bind(payload)
        except E.InvalidMessage as exc:
            # the caller's mistake: refused before the handler ran, state untouched
            self._refuse(cell, env, E.InvalidMessage(f"{cell.id}: {exc}"))
            return
        if kind == ASK:
            cell.current = env
        cell.ctx = ctx if ctx is not None else cell.home_ctx
        fs = cell.facets
        t0 = _perf() if fs is not None else 0.0
        try:
            result = h.func(cell.inst, **kwargs)
        except E.Rejected as exc:  # the handler refused the request: no crash
            cell.current = None
            if fs is not None:
                facets_.after_message(self.rt, cell, fs, op, _perf() - t0, True)
            self._refuse(cell, env, exc)
            return
        except Exception as exc:  # noqa: BLE001 - a crash: reply, then the supervisor
            cell.current = None
            if fs is not None:
                facets_.after_message(self.rt, cell, fs, op, _perf() - t0, False)
            tb = traceback.format_exc()
            if kind == ASK:
                self.reply_error(env, self._crash_error(cell, op, exc), tb)
            self.on_crash(cell, exc, tb, f"handler {op!r}")
            return
        if fs is not None:
            facets_.after_message(self.rt, cell, fs, op, _perf() - t0, True)
        if kind == ASK and cell.current is not None:  # None: the handler deferred it
            cell.current = None
            if rr == self.rank:
                self.pending.complete(corr, True, result)
            else:
                # envelope.reply, inlined on the hot path
                self.transport.post(rr, (REPLY, None, None, None, result, corr, -1, None))

    def _crash_error(self, cell, op, exc):
        """What the caller of a crashed handler gets: a plexhpc error as itself (it says
        what went wrong), anything else as RemoteError naming the type."""
        if isinstance(exc, E.PlexError):
            return exc
        cls = E.RemoteTimeout if isinstance(exc, TimeoutError) else E.RemoteError
        return cls(f"handler {op!r} of actor {cell.id} on rank {self.rank} raised "
                   f"{type(exc).__name__}: {exc}", remote_type=type(exc).__name__,
                   remote_message=str(exc))

    def _foreign(self, cell, env, home) -> None:
        """A message for another tenant's actor: to its sender the actor does not exist
        (the same error as for a missing one, so ids and names do not leak)."""
        log.warning("refused %r from %r to %s: it acts for tenant %r, the actor belongs to "
                    "tenant %r", env[OP], env[FRM], cell.id, env[CTX][0], home)
        if env[KIND] == ASK:
            self.reply_error(env, E.ActorNotFound(f"no actor {cell.id!r} on rank {self.rank}",
                                                  actor=cell.id))

    def _refuse(self, cell, env, exc) -> None:
        """A refused request: the asker gets the error; a cast's refusal is logged."""
        if env[KIND] == ASK:
            self.reply_error(env, exc)
        else:
            actor_log.warning("%s: cast %r refused: %s", cell.id, env[OP], exc)

    def _builtin(self, cell, env) -> None:
        """Ops every actor answers without a handler of its own."""
        kind, op, payload = env[KIND], env[OP], env[PAYLOAD]
        if op == "__EXIT__" and isinstance(payload, dict):
            # a linked actor crashed and this one does not handle __EXIT__: it exits too
            self.on_crash(cell, LinkedExit(f"linked actor {payload.get('exit_from')} "
                                           f"exited: {payload.get('exit_reason')}"), "",
                          "an exit signal")
        elif op == "__metrics__" and kind == ASK:
            self.reply(env, facets_.metrics_of(cell))
        elif op == "__ping__":  # built in: proves the actor has handled what came before
            if kind == ASK:
                self.reply(env, {"ok": True, "actor_id": cell.id})
        elif kind == ASK:
            self.reply(env, {"error": f"Unknown message type: {op}"})
        else:
            actor_log.warning("%s: no handler for cast %r (dropped)", cell.id, op)

    def run_init(self, cell) -> None:
        """Create the instance if needed and run its init handler; the waiter (a spawn,
        the start-up, a supervisor) hears the outcome, a restart's failure is a crash."""
        spec = cell.spec
        waiter, cell.init_waiter = cell.init_waiter, None
        config = {"actor_id": cell.id, "name": cell.name, "rank": self.rank,
                  "args": dict(cell.args or {}), "facets": list(spec.facets)}
        try:
            if cell.inst is None:
                cell.inst = spec.new_instance(cell.id)
            cell.ctx = cell.home_ctx
            if spec.init is not None:
                spec.init(cell.inst, config)
        except Exception as exc:  # noqa: BLE001
            tb = traceback.format_exc()
            if waiter is not None:
                actor_log.error("%s: init failed: %s", cell.id, tb)
                cell.inst = None  # an instance whose init failed never runs, nor stops
                err = exc if isinstance(exc, E.PlexError) else E.RemoteError(
                    f"init of actor {cell.id} on rank {self.rank} raised "
                    f"{type(exc).__name__}: {exc}", remote_type=type(exc).__name__,
                    remote_message=str(exc))
                err.rank, err.actor, err.op, err.remote_traceback = (
                    self.rank, cell.id, "__init__", tb)
                waiter(False, err)
                return
            self.on_crash(cell, exc, tb, "init")
            return
        if cell.facets is not None:
            try:
                facets_.on_started(self.rt, cell, cell.facets, first=cell.restarts == 0)
            except Exception as exc:  # noqa: BLE001 - a checkpoint refused (on_corrupt =
                # "escalate"), a state file or key that cannot be used, or a bug: the start
                # failed, and whoever waits for it is told (never left hanging)
                if not isinstance(exc, E.PlexError):
                    exc = E.StateError(f"{cell.id}: restoring its durable state raised "
                                       f"{type(exc).__name__}: {exc}")
                if waiter is not None:
                    cell.inst = None
                    waiter(False, exc)
                else:
                    self.on_crash(cell, exc, traceback.format_exc(),
                                  "restoring its checkpoint")
                return
        if cell.status == STARTING:
            cell.status = RUNNING
        if self.on_started is not None and spec.workflow is not None:
            self.on_started(cell)
        if waiter is not None:
            waiter(True, cell.id)

    def terminate_now(self, cell, reason) -> bool:
        """Run ``cell``'s terminate handler right away on a fresh greenlet (shutdown);
        False if the handler parked on an ask, which is then abandoned."""
        g = greenlet(_terminate_main, self.hub)
        g.cell = cell
        g.ctx = None
        return g.switch((cell, reason)) is not BLOCKED


def run_terminate(cell, reason) -> None:
    """The one terminate runner: call the handler, log (never raise) what it raised."""
    try:
        cell.spec.terminate(cell.inst, reason)
    except Exception:  # noqa: BLE001
        actor_log.error("%s: terminate handler raised:\n%s", cell.id, traceback.format_exc())


def _terminate_main(args):
    cell, reason = args
    run_terminate(cell, reason)
    return DONE



def kill(g) -> None:
    """End a parked greenlet (from the hub): GreenletExit is thrown into it."""
    try:
        g.throw(greenlet.GreenletExit)
    except BaseException:  # noqa: BLE001 - whatever it raised on the way out
        pass
