"""The node: one per MPI rank, hosting that rank's actors and moving their messages.

One loop per rank (the *hub*, on the main greenlet of its thread) does everything:
receives batches from other ranks, runs actors whose mailboxes have messages, fires
timers, flushes outgoing batches, and sleeps when there is nothing to do. Each message
runs on a pooled worker greenlet, so a handler that asks another actor simply parks its
greenlet until the hub resumes it with the reply; the hub never blocks.

An actor processes one message at a time (its state is never touched concurrently): while
its handler waits in an ask, later messages stay in its mailbox. Hence a call cycle
(A asks B asks A) ends in a timeout, never a deadlock of the whole rank.

Envelopes are tuples ``(kind, to, from, op, payload, corr, reply_rank, ctx)``.
Same-rank messages go straight to the target's mailbox (payloads pass by reference: do
not mutate a payload after sending it); other-rank messages go through the
:class:`~plexhpc.runtime.transport.Transport`.
"""

from __future__ import annotations

import heapq
import itertools
import os
import signal
import threading
import time
import traceback
import uuid
from collections import deque
from queue import Empty, SimpleQueue
from typing import Any

from greenlet import getcurrent, greenlet
from mpi4py import MPI

from .. import errors as E
from ..actors.spec import spec_of
from .allocator import tune_allocator
from .cell import (ASK, BLOCKED, DONE, ERROR, INIT, P_DONE, P_DRAINING, P_FINAL,
                   P_RUNNING, P_STARTING, REPLY, RUNNING, SEND, STARTING, STOPPED, STOPPING,
                   SYS, TERM, ActorCell, rank_of)
from .cell import check_message as _check_payload
from ..otp.lifecycle import LifecycleMixin
from ..otp.lifecycle import kill as _kill
from ..otp.links import LinksMixin, same_tenant
from ..config import AppConfig, resolve_class
from ..context import DEFAULT_CTX, make_context
from .doorbell import Doorbell
from ..storage.durable import LocalState
from ..actors.facets import FacetState, parse_facets
from ..actors import facets as _facets
from ..storage.service import StateService
from ..otp.process_groups import GroupRegistry
from ..otp.pool_calls import PoolCalls
from ..shards.groups import ShardGroups
from ..shards.reduce import GroupReductions
from ..otp.supervision import SupervisionTree
from ..otp.supervisor import ESCALATE, RESTART, RankSupervisor
from ..log import configure as configure_logging
from ..log import get_logger
from .transport import Transport

__all__ = ["Node", "current_node", "rank_of"]

log = get_logger("node")
actor_log = get_logger("actor")

# node phases

_DONE = DONE
_BLOCKED = BLOCKED

_T_SEND, _T_CALL = 1, 2

#: messages one actor may handle per turn before the loop polls MPI again
_BUDGET = 64
#: greenlet resumptions and actor turns per loop turn before polling MPI again
_TURN_CAP = 256

_monotonic = time.monotonic

_current: "Node | None" = None


def current_node() -> "Node | None":
    """The node running in this process, if any."""
    return _current


class Node(LinksMixin, LifecycleMixin, PoolCalls):
    """The actor host of one rank. Built by :func:`plexhpc.start` or ``plexhpc run``."""

    def _check_actor_class(self, path: str) -> None:
        self._class_ref(path)

    def __init__(self, config: AppConfig, *, comm: MPI.Comm | None = None,
                 driver_rank: int | None = 0, startup_timeout_s: float = 60.0,
                 spin_us: float = 200.0, max_sleep_s: float = 0.25,
                 remote_poll_s: float = 0.001, stop_timeout_s: float = 10.0):
        global _current
        tune_allocator()
        base = comm if comm is not None else MPI.COMM_WORLD
        self.comm = base.Dup()
        self.comm.Set_name("plexhpc-actors")
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        configure_logging(self.rank)
        self.config = config
        self.driver_rank = driver_rank
        self.is_driver = driver_rank == self.rank
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.spin_s = _env_float("PLEXHPC_SPIN_US", spin_us) * 1e-6
        self.max_sleep_s = max_sleep_s
        self.remote_poll_s = _env_float("PLEXHPC_REMOTE_POLL_US", remote_poll_s * 1e6) * 1e-6
        tag = uuid.uuid4().hex[:12] if self.rank == 0 else None
        self.job_tag = self.comm.bcast(tag, root=0)
        self.transport = Transport(self.comm)
        self.transport.on_unsendable = self._unsendable
        self.doorbell = Doorbell(self.comm, self.job_tag)
        self.transport.on_flushed = self.doorbell.ring_if_sleeping
        # Spinning ranks that share a core with a peer must yield it quickly, or the peer
        # loses whole scheduler ticks; with a core each, yielding only adds latency.
        local_ranks = len(self.doorbell.local_of_world)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
        self.oversubscribed = local_ranks > cores
        self.yield_after_s = _env_float("PLEXHPC_YIELD_AFTER_US",
                                        10 if self.oversubscribed else 100) * 1e-6
        # After a long handler (real compute), the next request usually follows within a
        # few ms; sleeping in between costs a wake-up (~0.4 ms) per request. So a rank
        # that just worked hard spins longer before sleeping (not when ranks outnumber
        # cores: then spinning takes a peer's core). Measured: core efficiency of the
        # 2-shard inference benchmark 86.7 -> 91.3 %.
        self.busy_spin_s = self.spin_s if self.oversubscribed else max(
            self.spin_s, _env_float("PLEXHPC_BUSY_SPIN_US", 3000) * 1e-6)
        self.groups = GroupRegistry(self)
        self.shards = ShardGroups(self)
        self.reductions = GroupReductions(self)
        # group reductions' own communicator: every rank, nonblocking collectives only
        self.group_comm = self.comm.Dup()
        self._bg: list = []
        self.local_state = LocalState(config.state, self.rank)
        self.state_service = StateService(self) if self.rank == config.state.rank else None

        self._cells: dict[str, ActorCell] = {}
        self._names: dict[str, str] = {c.name: f"{c.name}@{c.rank}" for c in config.children}
        self._route_cache: dict[str, tuple] = {}
        self._ready: deque = deque()
        self._resume: deque = deque()
        self._external: deque = deque()
        self._timers: list = []           # heap of (deadline, seq, kind, data)
        self._ask_deadlines: dict = {}    # timeout_ms -> deque of (deadline, corr)
        self._pending: dict[int, tuple] = {}
        self._pool: list = []
        self._corr = itertools.count(1)
        self._tseq = itertools.count()
        self._seq = itertools.count()
        self._spawn_seq = itertools.count(1)
        self._busy = 0
        self._hub = None
        self._thread = None
        self._phase = P_STARTING
        self._exit_code = 0
        self._shutdown_reason = ""
        self._signal = 0
        self._drain_deadline = 0.0
        self._final_deadline = 0.0
        self._stopped_peers: set = set()
        self.runs: dict = {}  # actor id -> its workflow run in progress
        self._stopping_actors = False
        self._metrics_server = None
        self._tree_wait = False
        self._tree_is_stopped = False
        self._ready_peers: set = set()
        self._local_inits = 0
        self._started = threading.Event()
        self._finished = threading.Event()
        self._start_error: str | None = None
        # dynamically spawned actors: one_for_one per rank, with the root's intensity
        self.supervisor = RankSupervisor(config.max_restarts, config.max_restart_window_seconds)
        # config children: the app's supervision tree, decided on rank 0
        self.tree = SupervisionTree(self, config.tree) if self.rank == 0 else None
        self._tree_names = frozenset(c.name for c in config.children)
        self._children_by_name = {c.name: c for c in config.children}
        self.on_started: list = []
        self.unclean = False
        self.messages_handled = 0
        _current = self

    # ------------------------------------------------------------------ public API --

    @property
    def actor_ids(self) -> list:
        """Ids of the actors on this rank, in start order."""
        return [c.id for c in sorted(self._cells.values(), key=lambda c: c.seq)]

    def resolve(self, name_or_id: str) -> str:
        """The actor id for a name or id (``ActorNotFound`` if the name is unknown)."""
        return self._resolve(name_or_id)[0]

    def ask(self, to: str, op: str, payload: dict | None = None, timeout_ms: float = 5000,
            *, tenant: str | None = None, namespace: str | None = None,
            principal: str | None = None) -> Any:
        """Send ``op`` to ``to`` and wait for the reply (from a driver thread).

        ``tenant``, ``namespace`` and ``principal`` set the request context the handler
        (and everything it asks in turn) runs in; without them the target runs in its
        own context. Raises :class:`~plexhpc.errors.AskTimeout`,
        :class:`~plexhpc.errors.ActorNotFound` or :class:`~plexhpc.errors.RemoteError`."""
        _check_payload(op, payload)
        ctx = make_context(tenant, namespace, principal)
        return self._call_and_wait(
            lambda done: self._start_ask(to, op, payload, timeout_ms, done, "$driver", ctx),
            timeout_ms)

    def send(self, to: str, op: str, payload: dict | None = None, *,
             tenant: str | None = None, namespace: str | None = None,
             principal: str | None = None) -> None:
        """Fire-and-forget ``op`` to ``to`` (from a driver thread), in the given context."""
        _check_payload(op, payload)
        ctx = make_context(tenant, namespace, principal)
        self._resolve(to)  # unknown names fail here, in the caller
        self._call_soon(lambda: self._send_quiet(to, op, payload, f"$driver@{self.rank}",
                                                 ctx))

    def spawn(self, actor_class, *, name: str | None = None, rank: int | None = None,
              args: dict | None = None, restart: str = "permanent",
              timeout_ms: float = 30000) -> str:
        """Start a new actor on ``rank`` (default: this one) and return its id once its
        init handler has run."""
        ref = self._class_ref(actor_class)
        return self._call_and_wait(
            lambda done: self._start_spawn(ref, name, rank, args, restart, done), timeout_ms)

    def stop(self, actor: str, timeout_ms: float = 10000) -> None:
        """Stop an actor normally (its terminate handler runs; it is not restarted)."""
        self._call_and_wait(lambda done: self._start_stop(actor, "normal", done), timeout_ms)

    # shard groups, from a driver (the same calls as host.*)
    def create_shard_group(self, spec: dict, timeout_ms: float = 120000) -> dict:
        from ..shards import api
        return self._call_and_wait(lambda done: api.create(self, "$driver", spec, done),
                                   timeout_ms)

    def destroy_shard_group(self, group_id: str, timeout_ms: float = 60000) -> dict:
        from ..shards import api
        return self._call_and_wait(lambda done: api.destroy(self, "$driver", group_id, done),
                                   timeout_ms)

    def route(self, group_id: str, key, op: str, payload: dict | None = None,
              timeout_ms: float = 5000):
        from ..shards import api
        _check_payload(op, payload)
        return self._call_and_wait(lambda done: api.route(
            self, f"$driver@{self.rank}", group_id, key, op, payload, timeout_ms, done),
            timeout_ms)

    def scatter_gather(self, spec: dict) -> dict:
        from ..shards import api
        wait = float(spec.get("timeout_ms", 30000)) if isinstance(spec, dict) else 30000
        return self._call_and_wait(lambda done: api.scatter_gather(
            self, f"$driver@{self.rank}", spec, done), wait + 2000)

    def broadcast_shard_group(self, spec: dict) -> dict:
        from ..shards import api
        wait = float(spec.get("timeout_ms", 10000)) if isinstance(spec, dict) else 10000
        return self._call_and_wait(lambda done: api.broadcast(
            self, f"$driver@{self.rank}", spec, done), wait + 2000)

    def barrier_shard_group(self, spec: dict) -> dict:
        from ..shards import api
        wait = float(spec.get("timeout_ms", 10000)) if isinstance(spec, dict) else 10000
        return self._call_and_wait(lambda done: api.barrier(
            self, f"$driver@{self.rank}", spec, done), wait + 2000)

    def reduce_shard_group(self, spec: dict) -> dict:
        """Every shard answers ``map_function``; the values are reduced (numba on each
        rank, then one MPI collective) and returned here."""
        wait = float(spec.get("timeout_ms", 10000)) if isinstance(spec, dict) else 10000
        return self._call_and_wait(lambda done: self.reductions.request(
            spec, "$driver", done), wait + 3000)

    def all_reduce_shard_group(self, spec: dict) -> dict:
        """As :meth:`reduce_shard_group`, and every shard also receives the value (cast
        ``target``, default ``"reduced"``, with ``{value, group_id, reduction}``)."""
        wait = float(spec.get("timeout_ms", 10000)) if isinstance(spec, dict) else 10000
        spec = dict(spec, all=True) if isinstance(spec, dict) else spec
        return self._call_and_wait(lambda done: self.reductions.request(
            spec, "$driver", done), wait + 3000)

    def members(self, group: str) -> list:
        """Members of a process group, cluster-wide, in a stable order."""
        from ..actors.host_state import scoped_group
        return self._call_and_wait(lambda done: done(True, self.groups.members(
            scoped_group(None, group))), 5000)

    def shutdown(self, reason: str = "requested", exit_code: int = 0) -> None:
        """Begin a job-wide shutdown (returns at once; every rank drains and stops)."""
        self._call_soon(lambda: self.request_shutdown(reason, exit_code))

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until the job has shut down on this rank (an actor's ``host.shutdown``,
        a signal, a failure); True if it did within ``timeout`` seconds."""
        return self._finished.wait(timeout)

    @property
    def closed(self) -> bool:
        return self._finished.is_set()

    @property
    def exit_code(self) -> int:
        return self._exit_code

    # ----------------------------------------------------------- driver plumbing --

    def _call_soon(self, fn) -> None:
        """Run ``fn`` on the hub (from any thread)."""
        if self._phase >= P_DONE:
            raise E.NodeClosed(f"the node on rank {self.rank} has shut down")
        self._external.append(fn)
        if self._thread is not None and threading.current_thread() is not self._thread:
            self.doorbell.ring_self()

    def _call_and_wait(self, start, timeout_ms):
        if self._thread is None or threading.current_thread() is self._thread:
            if getattr(getcurrent(), "cell", None) is not None:
                raise E.HostUsageError("inside a handler use host.ask/host.spawn, not node.*")
            raise E.NodeClosed(
                f"rank {self.rank} is not the driver or its node has shut down: only rank "
                f"{self.driver_rank} drives the job (guard driver code with "
                f"`if node.is_driver:`)")
        q: SimpleQueue = SimpleQueue()
        self._call_soon(lambda: start(lambda ok, value: q.put((ok, value))))
        # The hub enforces the deadline; the driver enforces it too (a little later), so
        # a handler that blocks this rank's thread cannot make the driver wait forever.
        deadline = _monotonic() + timeout_ms / 1000.0 + 0.05
        while True:
            try:
                ok, value = q.get(timeout=max(0.0, min(0.25, deadline - _monotonic())))
                break
            except Empty:
                if self._finished.is_set():
                    raise E.NodeClosed(f"the node on rank {self.rank} shut down: "
                                       f"{self._shutdown_reason}") from None
                if _monotonic() >= deadline:
                    raise E.AskTimeout(
                        f"no answer within {timeout_ms:g} ms (the rank's loop may be blocked "
                        "by a handler that does not return)", timeout_ms=timeout_ms) from None
        if ok:
            return value
        raise value

    # --------------------------------------------------------------- routing ------

    def _resolve(self, to: str) -> tuple:
        hit = self._route_cache.get(to)
        if hit is not None:
            return hit
        if not isinstance(to, str) or not to:
            raise E.ActorNotFound(f"expected an actor name or id (str), got {to!r}", actor=to)
        if "@" in to:
            aid = to
        else:
            aid = self._names.get(to)
            if aid is None:
                raise E.ActorNotFound(f"no actor named {to!r} (known names: "
                                      f"{sorted(self._names)[:20]})", actor=to)
        r = rank_of(aid)
        if not 0 <= r < self.size:
            raise E.ActorNotFound(f"{aid!r} names rank {r}, but the job has ranks "
                                  f"0..{self.size - 1}", actor=aid)
        hit = (aid, r)
        if len(self._route_cache) > 100_000:
            self._route_cache.clear()
        self._route_cache[to] = hit
        return hit

    def _post(self, env, dest: int) -> None:
        if dest == self.rank:
            self._deliver(env)
        else:
            self.transport.post(dest, env)

    def _deliver(self, env) -> None:
        """Put a message addressed to this rank into its actor's mailbox."""
        cell = self._cells.get(env[1])
        if cell is None or cell.status == STOPPED or self._phase >= P_FINAL:
            if env[0] == ASK:
                if self._phase >= P_FINAL:
                    self._reply_error(env, E.CLOSED, f"rank {self.rank} is shutting down; "
                                      f"{env[1]!r} no longer takes messages")
                else:
                    self._reply_error(env, E.NOT_FOUND, f"no actor {env[1]!r} on rank "
                                      f"{self.rank}")
            return
        mb = cell.mailbox
        if mb is None:
            cell.mailbox = mb = deque()
        mb.append(env)
        if cell.facets is not None and cell.facets.dormant and not cell.pending_init:
            cell.pending_init = True  # a virtual actor: activate it for this message
        if not cell.queued and cell.running is None:
            cell.queued = True
            self._ready.append(cell)

    def _reply(self, env, value) -> None:
        corr, rr = env[5], env[6]
        if rr == self.rank:
            self._complete(corr, True, value)
        elif rr >= 0:
            self.transport.post(rr, (REPLY, None, None, None, value, corr, -1, None))

    def _reply_error(self, env, code, message, **kw) -> None:
        corr, rr = env[5], env[6]
        wire = E.to_wire(code, message, rank=self.rank, actor=env[1], op=env[3], **kw)
        if rr == self.rank:
            self._complete(corr, False, wire)
        elif rr >= 0:
            self.transport.post(rr, (ERROR, None, None, None, wire, corr, -1, None))

    def _complete(self, corr: int, ok: bool, value) -> None:
        w = self._pending.pop(corr, None)
        if w is None:
            return  # timed out already: a late reply is dropped
        if not ok and isinstance(value, tuple):
            value = E.from_wire(value)
        target = w[0]
        if type(target) is greenlet:
            self._resume.append((target, (ok, value)))
        else:
            target(ok, value)

    def _unsendable(self, dest, env, exc) -> None:
        msg = (f"message {env[3]!r} to {env[1]!r} cannot be serialized for rank {dest}: "
               f"{type(exc).__name__}: {exc}")
        if env[0] in (ASK, SYS) and env[6] == self.rank and env[5]:
            self._complete(env[5], False, E.InvalidMessage(msg))
        else:
            log.warning(msg)

    # ------------------------------------------------------------ asks and sends --

    def _start_ask(self, to, op, payload, timeout_ms, waiter, frm, ctx=None) -> None:
        """Register a pending ask completed by ``waiter(ok, value)`` and route it."""
        try:
            aid, r = self._resolve(to)
        except E.PlexError as exc:
            waiter(False, exc)
            return
        corr = next(self._corr)
        self._pending[corr] = (waiter, aid, op, timeout_ms)
        self._arm_ask(corr, timeout_ms)
        self._post((ASK, aid, frm, op, payload, corr, self.rank, ctx), r)
        return corr

    def ask_from_actor(self, cell, to, op, payload, timeout_ms, ctx=None):
        """``host.ask``: park the calling greenlet until the reply or the timeout."""
        if self._phase >= P_FINAL:
            raise E.NodeClosed(f"rank {self.rank} is shutting down")
        hit = self._route_cache.get(to)
        aid, r = hit if hit is not None else self._resolve(to)
        if aid == cell.id:
            raise E.InvalidMessage(
                f"{aid} asked itself {op!r}: it would wait for its own reply forever (as "
                "Erlang's calling_self); call the method directly or use host.send")
        corr = next(self._corr)
        self._pending[corr] = (getcurrent(), aid, op, timeout_ms)
        # _arm_ask, inlined: this is the hottest path of a remote ask
        dq = self._ask_deadlines.get(timeout_ms)
        if dq is None:
            dq = self._ask_deadlines[timeout_ms] = deque()
        dq.append((_monotonic() + timeout_ms / 1000.0, corr))
        ctx = ctx or cell.ctx
        if ctx is DEFAULT_CTX:  # no tenant to carry: the target runs in its own context
            ctx = None
        env = (ASK, aid, cell.id, op, payload, corr, self.rank, ctx)
        if r == self.rank:
            self._deliver(env)
        else:
            self.transport.post(r, env)
        ok, value = self._hub.switch(_BLOCKED)
        if ok:
            return value
        raise value

    def _arm_ask(self, corr: int, timeout_ms: float) -> None:
        """Remember an ask's deadline. Asks with the same timeout expire in the order they
        were made, so one FIFO per timeout value replaces a heap, and answered asks at
        the head are discarded as soon as they are seen."""
        dq = self._ask_deadlines.get(timeout_ms)
        if dq is None:
            dq = self._ask_deadlines[timeout_ms] = deque()
        dq.append((_monotonic() + timeout_ms / 1000.0, corr))

    def _expire_asks(self, now) -> None:
        pending = self._pending
        empty = None
        for key, dq in self._ask_deadlines.items():
            while dq:
                deadline, corr = dq[0]
                w = pending.get(corr)
                if w is None:
                    dq.popleft()
                    continue
                if deadline > now:
                    break
                dq.popleft()
                self._complete(corr, False, E.AskTimeout(
                    f"no reply from {w[1]!r} to {w[2]!r} within {w[3]:g} ms",
                    to=w[1], op=w[2], timeout_ms=w[3]))
            if not dq:
                empty = empty or []
                empty.append(key)
        for key in empty or ():
            if not self._ask_deadlines[key]:
                del self._ask_deadlines[key]

    def _next_deadline(self):
        best = self._timers[0][0] if self._timers else None
        for dq in self._ask_deadlines.values():
            if dq and (best is None or dq[0][0] < best):
                best = dq[0][0]
        return best

    def start_ask_many(self, targets, op, payload, timeout_ms, min_success, frm, done,
                       ctx=None) -> None:
        """Ask every target at once; ``done(results)`` as soon as ``min_success`` replied
        successfully or every ask has ended (reply, error or timeout). ``results[i]`` is
        ``(ok, value, latency_ms, arrival)`` or None for an ask dropped after the early
        finish (its late reply is discarded)."""
        n = len(targets)
        results: list = [None] * n
        corrs: list = [None] * n
        state = {"ended": 0, "ok": 0, "finished": False, "arrival": 0}
        t0 = _monotonic()

        def finish():
            state["finished"] = True
            for c in corrs:
                if c is not None:
                    self._pending.pop(c, None)
            done(results)

        def waiter(i):
            def cb(ok, value):
                if state["finished"]:
                    return
                results[i] = (ok, value, (_monotonic() - t0) * 1000.0, state["arrival"])
                state["arrival"] += 1
                state["ended"] += 1
                state["ok"] += bool(ok)
                if state["ok"] >= min_success or state["ended"] == n:
                    finish()
            return cb

        if n == 0:
            done(results)
            return
        for i, target in enumerate(targets):
            if state["finished"]:
                break
            corrs[i] = self._start_ask(target, op, payload, timeout_ms, waiter(i), frm, ctx)

    def add_background(self, req, on_done, timeout_s: float, on_timeout) -> None:
        """Poll a nonblocking MPI request from the loop; ``on_done()`` when it completes,
        ``on_timeout()`` if it has not within ``timeout_s``."""
        self._bg.append((req, on_done, _monotonic() + timeout_s, on_timeout))

    def _poll_background(self, now) -> None:
        tasks, self._bg = self._bg, []
        for task in tasks:
            req, on_done, deadline, on_timeout = task
            if req.Test():
                on_done()
            elif now > deadline:
                on_timeout()
            else:
                self._bg.append(task)

    def broadcast_system(self, op: str, data) -> None:
        """Tell every other rank's node ``op`` (FIFO after this rank's earlier messages)."""
        for r in range(self.size):
            if r != self.rank:
                self.transport.post(r, (SYS, None, None, op, data, 0, -1, None))

    def send_from(self, frm: str, to: str, op: str, payload, ctx=None) -> None:
        aid, r = self._resolve(to)
        if ctx is DEFAULT_CTX:  # no tenant to carry (and less to pickle)
            ctx = None
        self._post((SEND, aid, frm, op, payload, 0, -1, ctx), r)

    def _send_quiet(self, to, op, payload, frm, ctx=None) -> None:
        try:
            self.send_from(frm, to, op, payload, ctx)
        except E.ActorNotFound as exc:
            log.debug("send dropped: %s", exc)

    def send_after(self, cell, delay_ms: float, op: str, payload) -> None:
        timer_id = None
        ctx = getattr(getcurrent(), "ctx", None) or cell.ctx
        if cell.facets is not None and cell.facets.timers:  # durable: survives restarts
            from ..storage.durable import now_ms
            timer_id = self.local_state.timers.add(
                cell.facets.key, now_ms() + int(delay_ms), op,
                {"payload": payload, "ctx": list(ctx)})
        self.arm_timer(cell, delay_ms, op, payload, ctx, timer_id)

    def arm_timer(self, cell, delay_ms, op, payload, ctx, timer_id=None) -> None:
        heapq.heappush(self._timers, (_monotonic() + delay_ms / 1000.0, next(self._tseq),
                                      _T_SEND, (cell.id, op, payload, ctx, timer_id)))

    def call_later(self, delay_s: float, fn) -> None:
        heapq.heappush(self._timers, (_monotonic() + delay_s, next(self._tseq), _T_CALL, fn))

    def state_request(self, req, done) -> None:
        """Send a KV/TupleSpace/channel request to the rank owning the stores."""
        if self.state_service is not None:
            self.state_service.handle(req, done)
        else:
            self._system_ask(self.config.state.rank, "state", req, done,
                             (req[4] or 0) + 30000, to="$state")

    def wait_from_actor(self, start):
        """Run ``start(done)`` on the hub and park the calling greenlet until ``done``."""
        g = getcurrent()
        slot: list = [False, None]  # [parked, early result]

        def done(ok, value):
            if slot[0]:
                self._resume.append((g, (ok, value)))
            else:
                slot[1] = (ok, value)

        start(done)
        if slot[1] is None:
            slot[0] = True
            ok, value = self._hub.switch(_BLOCKED)
        else:
            ok, value = slot[1]
        if ok:
            return value
        raise value

    # ------------------------------------------------------------------- actors --

    def _new_cell(self, aid, name, spec, args, restart, supervised, ctx=None,
                  caps=None, facets=None) -> ActorCell:
        cell = ActorCell(aid, name, spec, args, restart, next(self._seq), supervised)
        cell.home_ctx = cell.ctx = ctx if ctx is not None else DEFAULT_CTX
        cell.caps = caps if caps is not None else spec.capabilities
        fc = facets if facets is not None else (parse_facets(spec.facets, spec.type_name)
                                                if spec.facets else None)
        if fc:
            # the key names the class too: another class under the same name in a later
            # launch must not be handed this one's state
            cell.facets = FacetState(f"actor:{name or aid}:{spec.type_name}", fc)
            if fc.get("virtual_actor") and not cell.facets.eager:
                cell.facets.dormant = True
                self._cells[aid] = cell
                return cell  # no instance until the first message
        cell.inst = spec.new_instance(aid)
        self._cells[aid] = cell
        return cell

    def _queue_init(self, cell, waiter=None) -> None:
        """Run the init handler before any queued message (no mailbox needed for it)."""
        cell.status = STARTING
        cell.init_waiter = waiter
        cell.pending_init = True
        if not cell.queued and cell.running is None:
            cell.queued = True
            self._ready.append(cell)

    def _init_envelope(self, cell):
        config = {"actor_id": cell.id, "name": cell.name, "rank": self.rank,
                  "args": dict(cell.args or {}), "facets": list(cell.spec.facets)}
        return (INIT, cell.id, None, "__init__", config, 0, -1, None)

    def _start_children(self) -> None:
        mine = self.config.children_on(self.rank)
        self._local_inits = len(mine)
        for child in mine:
            cell = self._new_cell(f"{child.name}@{self.rank}", child.name, spec_of(child.cls),
                                  child.args, child.restart, True, child.context,
                                  child.capabilities, child.facet_config)
            if cell.facets is not None and cell.facets.dormant:
                self._startup_waiter(child.name)(True, cell.id)  # activated on demand
                continue
            self._queue_init(cell, self._startup_waiter(child.name))
        if not mine:
            self._local_ready()

    def _startup_waiter(self, name):
        def done(ok, value):
            if not ok:
                self._start_error = f"actor {name!r} on rank {self.rank} failed to start: {value}"
                log.error(self._start_error)
                self.request_shutdown(self._start_error, 1)
                return
            self._local_inits -= 1
            if self._local_inits == 0:
                self._local_ready()
        return done

    def _local_ready(self) -> None:
        for r in range(self.size):
            if r != self.rank:
                self.transport.post(r, (SYS, None, None, "ready", None, 0, -1, None))
        self._ready_peers.add(self.rank)
        self._check_started()

    def _check_started(self) -> None:
        if self._phase == P_STARTING and len(self._ready_peers) == self.size:
            self._phase = P_RUNNING
            self._started.set()
            log.info("rank %d: all %d ranks started", self.rank, self.size)
            for fn in self.on_started:
                fn()

    def _class_ref(self, cls_or_path):
        if isinstance(cls_or_path, str):
            cls = resolve_class(cls_or_path, where="spawn")
        else:
            cls = cls_or_path
            spec_of(cls)
        mod = getattr(cls, "__module__", "__main__")
        if mod != "__main__" and "<locals>" not in cls.__qualname__:
            return ("path", f"{mod}:{cls.__qualname__}", cls)
        import cloudpickle
        return ("pickled", cloudpickle.dumps(cls), cls)

    def _load_class(self, ref):
        kind, data = ref[0], ref[1]
        if kind == "path":
            return resolve_class(data, where="spawn")
        import cloudpickle
        return cloudpickle.loads(data)

    def _start_spawn(self, ref, name, rank, args, restart, done, ctx=None, caps=None,
                     timeout_ms=30000) -> None:
        target = self.rank if rank is None else rank
        if not isinstance(target, int) or not 0 <= target < self.size:
            done(False, ValueError(f"spawn: rank {rank!r} out of range 0..{self.size - 1}"))
            return
        if restart not in ("permanent", "transient", "temporary"):
            done(False, ValueError(f"spawn: restart must be permanent, transient or "
                                   f"temporary, got {restart!r}"))
            return
        if name is not None and (not isinstance(name, str) or not name or "@" in name
                                 or name.startswith("$")):
            done(False, ValueError(f"spawn: invalid name {name!r} (non-empty, no '@', "
                                   "not starting with '$')"))
            return
        if name is not None and name in self._names:
            done(False, ValueError(f"spawn: the name {name!r} is taken by "
                                   f"{self._names[name]}"))
            return
        if target == self.rank:
            self._spawn_local(ref[2] if len(ref) > 2 else self._load_class(ref), name, args,
                              restart, done, ctx, caps)
            return
        self._system_ask(target, "spawn", (ref[:2], name, args, restart, ctx, caps), done,
                         timeout_ms)

    def _spawn_local(self, cls, name, args, restart, done, ctx=None, caps=None) -> None:
        try:
            spec = spec_of(cls)
        except TypeError as exc:
            done(False, E.InvalidMessage(str(exc)))
            return
        if name is not None and name in self._names:
            done(False, ValueError(f"spawn: the name {name!r} is taken by {self._names[name]}"))
            return
        label = name or f"{cls.__name__}-{next(self._spawn_seq)}"
        aid = f"{label}@{self.rank}"
        try:
            cell = self._new_cell(aid, name, spec, args, restart, True, ctx,
                                  _narrow(spec.capabilities, caps))
        except Exception as exc:  # noqa: BLE001 - the class's own __init__ failed
            done(False, E.RemoteError(f"creating {aid} failed: {type(exc).__name__}: {exc}",
                                      remote_type=type(exc).__name__, remote_message=str(exc),
                                      rank=self.rank, actor=aid))
            return
        if name is not None:
            self._register_name(name, aid, broadcast=True)

        def after_init(ok, value):
            if ok:
                done(True, aid)
            else:
                self._finalize_stop(cell, "init failed")
                done(False, value)

        self._queue_init(cell, after_init)

    def _start_spawn_many(self, ref, count, rank, args, done, ctx=None, caps=None,
                          timeout_ms=600000) -> None:
        target = self.rank if rank is None else rank
        if not isinstance(target, int) or not 0 <= target < self.size:
            done(False, ValueError(f"spawn_many: rank {rank!r} out of range 0..{self.size - 1}"))
            return
        if not isinstance(count, int) or count < 0:
            done(False, ValueError(f"spawn_many: count must be an int >= 0, got {count!r}"))
            return
        if target == self.rank:
            self._spawn_many_local(ref[2] if len(ref) > 2 else self._load_class(ref), count,
                                   args, done, ctx, caps)
            return
        self._system_ask(target, "spawn_many", (ref[:2], count, args, ctx, caps), done,
                         timeout_ms)

    def _spawn_many_local(self, cls, count, args, done, ctx=None, caps=None) -> None:
        """Create ``count`` unnamed actors of one class; ``done(True, ids)`` after every
        init succeeded (the first failure is reported and the whole batch stopped)."""
        try:
            spec = spec_of(cls)
        except TypeError as exc:
            done(False, E.InvalidMessage(str(exc)))
            return
        if count == 0:
            done(True, [])
            return
        ids: list = []
        cells: list = []
        state = [count, None]  # [inits outstanding, first failure]

        def after_init(ok, value):
            if not ok and state[1] is None:
                state[1] = value
            state[0] -= 1
            if state[0] == 0:
                if state[1] is None:
                    done(True, ids)
                else:
                    for c in cells:
                        self.stop_actor(c, "spawn_many failed")
                    done(False, state[1])

        caps = _narrow(spec.capabilities, caps)
        base, rank, seq = cls.__name__, self.rank, self._spawn_seq
        new_cell, queue_init = self._new_cell, self._queue_init
        for _ in range(count):
            aid = f"{base}-{next(seq)}@{rank}"
            cell = new_cell(aid, None, spec, args, "permanent", True, ctx, caps)
            queue_init(cell, after_init)
            ids.append(aid)
            cells.append(cell)

    def _system_ask(self, rank, op, data, done, timeout_ms, to=None) -> None:
        """Ask another rank's node itself (not an actor); ``done(ok, value)`` gets the
        answer or an AskTimeout."""
        corr = next(self._corr)
        self._pending[corr] = (done, to or f"$node@{rank}", op, timeout_ms)
        self._arm_ask(corr, timeout_ms)
        self.transport.post(rank, (SYS, to, None, op, data, corr, self.rank, None))

    def _register_name(self, name, aid, broadcast) -> None:
        self._names[name] = aid
        self._route_cache.pop(name, None)
        if broadcast:
            for r in range(self.size):
                if r != self.rank:
                    self.transport.post(r, (SYS, None, None, "name", (name, aid), 0, -1, None))

    def _unregister_name(self, name, aid, broadcast) -> None:
        if self._names.get(name) == aid and name not in self._static_names():
            del self._names[name]
            self._route_cache.pop(name, None)
        if broadcast:
            for r in range(self.size):
                if r != self.rank:
                    self.transport.post(r, (SYS, None, None, "unname", (name, aid), 0, -1, None))

    def _static_names(self):
        return {c.name for c in self.config.children}

    def _start_stop(self, actor, reason, done, ctx=None) -> None:
        """Stop ``actor`` for a caller acting in ``ctx`` (None: the runtime or a driver).
        A caller acting for a tenant may stop only that tenant's actors."""
        try:
            aid, r = self._resolve(actor)
        except E.PlexError as exc:
            done(False, exc)
            return
        if r != self.rank:
            self._system_ask(r, "stop", (reason, ctx), done, 10000, to=aid)
            return
        cell = self._cells.get(aid)
        if cell is None or cell.status == STOPPED:
            done(False, E.ActorNotFound(f"no actor {aid!r} on rank {self.rank}", actor=aid))
            return
        if not same_tenant(ctx, cell):
            done(False, E.CapabilityDenied(
                f"a caller acting for tenant {ctx[0]!r} cannot stop {aid}, which belongs to "
                f"tenant {cell.home_ctx[0]!r}", capability="spawn"))
            return
        self.stop_actor(cell, reason, done)

    def stop_actor(self, cell, reason, done=None) -> None:
        """Stop ``cell`` after its current message: terminate handler, then gone."""
        if done is not None:
            if cell.stop_waiters is None:
                cell.stop_waiters = []
            cell.stop_waiters.append(done)
        if cell.status in (STOPPING, STOPPED):
            return
        cell.status = STOPPING
        cell.stop_reason = reason
        if cell.spec.terminate is not None and cell.inst is not None:
            mb = cell.mailbox
            if mb is None:
                cell.mailbox = mb = deque()
            mb.appendleft((TERM, cell.id, None, "__terminate__", reason, 0, -1, None))
            if not cell.queued and cell.running is None:
                cell.queued = True
                self._ready.append(cell)
        elif cell.running is None:
            self._finalize_stop(cell, reason)

    def _finalize_stop(self, cell, reason) -> None:
        if cell.status == STOPPED:
            return
        cell.status = STOPPED
        self._cells.pop(cell.id, None)
        self._route_cache.pop(cell.id, None)
        if cell.groups:
            self.groups.leave_all(cell)
        self._kill_run(cell)
        cell.watching = None
        if cell.facets is not None and cell.facets.durable:
            _facets.stopping(self, cell, cell.facets)
        if cell.monitors or cell.links:
            text = reason if isinstance(reason, str) else repr(reason)
            self._notify_down(cell, text, text != "normal")
        if (cell.name in self._tree_names and cell.id == f"{cell.name}@{self.rank}"
                and reason != "removed by its supervisor" and not self.shutting_down):
            # stopped from outside its supervisor (OTP's terminate_child): the tree
            # leaves it out of restarts until its supervisor itself is started again
            if self.tree is not None:
                self.tree.removed.add(cell.name)
            else:
                self.transport.post(0, (SYS, None, None, "sup_removed", cell.name, 0, -1,
                                        None))
        if cell.name is not None and cell.name not in self._static_names():
            self._unregister_name(cell.name, cell.id, broadcast=True)
        mb, cell.mailbox = cell.mailbox, None
        while mb:
            env = mb.popleft()
            if env[0] == ASK:
                self._reply_error(env, E.NOT_FOUND, f"actor {cell.id!r} stopped ({reason}) "
                                  f"before handling {env[3]!r}")
        cell.inst = None
        waiters, cell.stop_waiters = cell.stop_waiters, None
        for w in waiters or ():
            w(True, None)
        log.debug("stopped %s (%s)", cell.id, reason)

    # --------------------------------------------------------------- execution --

    def _dispatch(self, cell) -> None:
        if self._pool:
            g = self._pool.pop()
        else:
            g = greenlet(self._worker_main, self._hub)
            g.ctx = None  # so reading a run's own context never costs an AttributeError
        cell.running = g
        g.cell = cell
        self._busy += 1
        self._switch(g, cell)

    def _switch(self, g, value) -> None:
        """Run greenlet ``g`` until it finishes its turn (_DONE) or parks (_BLOCKED)."""
        r = g.switch(value)
        if r is _DONE:
            cell = g.cell
            g.cell = None
            self._pool.append(g)
            self._busy -= 1
            cell.running = None
            st = cell.status
            if st == STOPPING and not (cell.mailbox and cell.mailbox[0][0] == TERM):
                self._finalize_stop(cell, cell.stop_reason)
            elif st != STOPPED and (cell.pending_init or (cell.mailbox and st == RUNNING)) \
                    and not cell.queued:
                cell.queued = True
                self._ready.append(cell)

    def _worker_main(self, cell):
        """A pooled worker: runs up to ``_BUDGET`` messages of one actor per turn, so a
        busy mailbox costs one greenlet switch per turn, not one per message."""
        hub = self._hub
        execute = self._execute
        while True:
            budget = _BUDGET
            try:
                while budget:
                    budget -= 1
                    if cell.pending_init:
                        cell.pending_init = False
                        self._run_init(cell, self._init_envelope(cell))
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
            cell = hub.switch(_DONE)

    def _execute(self, cell, env) -> None:
        kind = env[0]
        self.messages_handled += 1
        if kind == TERM:
            self._run_terminate(cell, env)
            return
        op = env[3]
        if op == "__DOWN__":  # only for a live monitor of this actor, and only once
            ref = env[4].get("monitor_ref") if isinstance(env[4], dict) else None
            if cell.watching is None or cell.watching.pop(ref, None) is None:
                return
        h = cell.spec.handlers.get(op)
        if h is None:
            if op == "__EXIT__" and isinstance(env[4], dict):
                # a linked actor crashed and this one does not handle __EXIT__: it exits too
                p = env[4]
                self._crash(cell, LinkedExit(f"linked actor {p.get('exit_from')} exited: "
                                             f"{p.get('exit_reason')}"), "", "an exit signal")
                return
            if op == "__metrics__" and kind == ASK:
                self._reply(env, _facets.metrics_of(cell))
                return
            if op == "__ping__":  # built in: proves the actor has handled what came before
                if kind == ASK:
                    self._reply(env, {"ok": True, "actor_id": cell.id})
                return
            if kind == ASK:
                self._reply(env, {"error": f"Unknown message type: {op}"})
            else:
                actor_log.warning("%s: no handler for cast %r (dropped)", cell.id, op)
            return
        payload = env[4]
        try:
            if payload and (h.takes_all or payload.keys() <= h._param_set) and not (
                    h._required_set and not h._required_set <= payload.keys()):
                kwargs = payload  # the common case, without a call
            else:
                kwargs = h.bind(payload)
        except E.InvalidMessage as exc:
            # the caller's mistake: refused before the handler ran, state untouched
            if kind == ASK:
                self._reply_error(env, E.INVALID, f"{cell.id}: {exc}")
            else:
                actor_log.warning("%s: cast %r refused: %s", cell.id, op, exc)
            return
        if kind == ASK:
            cell.current = env
        ctx = env[7]
        cell.ctx = ctx if ctx is not None else cell.home_ctx
        fs = cell.facets
        if fs is not None:
            self._execute_with_facets(cell, env, h, kwargs, fs)
            return
        try:
            result = h.func(cell.inst, **kwargs)
        except E.Rejected as exc:  # the handler refused the request: no crash
            cell.current = None
            if kind == ASK:
                self._reply_error(env, E.INVALID, f"{cell.id}: {exc}")
            else:
                actor_log.warning("%s: cast %r refused: %s", cell.id, op, exc)
            return
        except Exception as exc:  # noqa: BLE001 - a crash: reply, then restart
            cell.current = None
            tb = traceback.format_exc()
            if kind == ASK:
                self._reply_error(
                    env, E.REMOTE,
                    f"handler {op!r} of actor {cell.id} on rank {self.rank} raised "
                    f"{type(exc).__name__}: {exc}",
                    remote_type=type(exc).__name__, tb=tb)
            self._crash(cell, exc, tb, f"handler {op!r}")
            return
        if kind == ASK and cell.current is not None:  # None: the handler deferred it
            cell.current = None
            rr = env[6]
            if rr == self.rank:
                self._complete(env[5], True, result)
            else:
                self.transport.post(rr, (REPLY, None, None, None, result, env[5], -1, None))

    def _execute_with_facets(self, cell, env, h, kwargs, fs) -> None:
        """_execute's tail for an actor with facets: the same, plus timing, counts and
        checkpoints (kept apart so actors without facets pay nothing for them)."""
        kind, op = env[0], env[3]
        t0 = time.perf_counter()
        try:
            result = h.func(cell.inst, **kwargs)
        except E.Rejected as exc:
            cell.current = None
            _facets.after_message(self, cell, fs, op, time.perf_counter() - t0, True)
            if kind == ASK:
                self._reply_error(env, E.INVALID, f"{cell.id}: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - a crash: reply, then restart
            cell.current = None
            _facets.after_message(self, cell, fs, op, time.perf_counter() - t0, False)
            tb = traceback.format_exc()
            if kind == ASK:
                self._reply_error(
                    env, E.REMOTE,
                    f"handler {op!r} of actor {cell.id} on rank {self.rank} raised "
                    f"{type(exc).__name__}: {exc}", remote_type=type(exc).__name__, tb=tb)
            self._crash(cell, exc, tb, f"handler {op!r}")
            return
        _facets.after_message(self, cell, fs, op, time.perf_counter() - t0, True)
        if kind == ASK and cell.current is not None:
            cell.current = None
            self._reply(env, result)

    def _start_metrics(self) -> None:
        port = self.config.metrics_port
        if port is None:
            return
        try:
            self._metrics_server = _facets.serve_metrics(self, port + self.rank,
                                                         self.config.metrics_addr)
        except OSError as exc:
            self._start_error = (f"rank {self.rank} cannot serve metrics on "
                                 f"{self.config.metrics_addr}:{port + self.rank}: {exc}; "
                                 "choose another [app] metrics_port")
            log.error(self._start_error)
            self.request_shutdown(self._start_error, 1)
            return
        log.info("rank %d: metrics at http://%s:%d/metrics", self.rank,
                 self.config.metrics_addr, port + self.rank)

    def metrics_text(self) -> str:
        """Prometheus text of this rank's actors that have the ``metrics`` facet."""
        return _facets.prometheus_text(list(self._cells.values()))

    def defer_reply(self, cell):
        """Take the reply of the ask ``cell`` is handling out of the handler's hands: the
        handler returns without answering and someone answers later with
        :meth:`reply_to` (OTP's ``{noreply, State}`` plus ``gen_server:reply``)."""
        env = cell.current
        if env is None:
            raise E.HostUsageError("defer_reply() works only while handling an ask "
                                   "(not a send, and only once per ask)")
        cell.current = None
        return (env[5], env[6], env[1], env[3])

    def reply_to(self, token, ok: bool, value) -> None:
        """Answer a deferred ask: ``value`` (ok) or an error (an exception or wire tuple)."""
        corr, rr, aid, op = token
        env = (ASK, aid, None, op, None, corr, rr, None)
        if ok:
            self._reply(env, value)
        elif isinstance(value, tuple):
            if rr == self.rank:
                self._complete(corr, False, value)
            else:
                self.transport.post(rr, (ERROR, None, None, None, value, corr, -1, None))
        else:
            code = E.TIMEOUT if isinstance(value, TimeoutError) else (
                E.NOT_FOUND if isinstance(value, LookupError) else (
                    E.INVALID if isinstance(value, ValueError) else E.REMOTE))
            self._reply_error(env, code, str(value), remote_type=type(value).__name__)

    def _run_init(self, cell, env) -> None:
        spec = cell.spec
        waiter, cell.init_waiter = cell.init_waiter, None
        try:
            if cell.inst is None:
                cell.inst = spec.new_instance(cell.id)
            cell.ctx = cell.home_ctx
            if spec.init is not None:
                spec.init(cell.inst, env[4])
        except Exception as exc:  # noqa: BLE001
            tb = traceback.format_exc()
            if waiter is not None:
                actor_log.error("%s: init failed: %s", cell.id, tb)
                cell.inst = None  # an instance whose init failed never runs, nor stops
                waiter(False, E.RemoteError(
                    f"init of actor {cell.id} on rank {self.rank} raised "
                    f"{type(exc).__name__}: {exc}", remote_type=type(exc).__name__,
                    remote_message=str(exc), rank=self.rank, actor=cell.id, op="__init__",
                    remote_traceback=tb))
                return
            self._crash(cell, exc, tb, "init")
            return
        if cell.facets is not None:
            try:
                _facets.on_started(self, cell, cell.facets, first=cell.restarts == 0)
            except E.CheckpointRejected as exc:  # on_corrupt = "escalate": a failed start
                if waiter is not None:
                    cell.inst = None
                    waiter(False, exc)
                else:
                    self._crash(cell, exc, traceback.format_exc(), "restoring its checkpoint")
                return
        if cell.status == STARTING:
            cell.status = RUNNING
        if spec.workflow is not None:
            from ..otp.workflow import resume_pending
            try:
                resume_pending(self, cell)
            except E.StateError as exc:
                actor_log.error("%s: cannot look for an unfinished run: %s", cell.id, exc)
        if waiter is not None:
            waiter(True, cell.id)

    def _run_terminate(self, cell, env) -> None:
        try:
            cell.spec.terminate(cell.inst, env[4])
        except Exception:  # noqa: BLE001
            actor_log.error("%s: terminate handler raised:\n%s", cell.id, traceback.format_exc())

    def _crash(self, cell, exc, tb, where) -> None:
        """A handler or init raised: restart the actor (one_for_one) within intensity."""
        actor_log.error("%s crashed in %s: %s: %s\n%s", cell.id, where, type(exc).__name__,
                        exc, tb)
        if cell.groups:
            self.groups.leave_all(cell)
        cell.inst = None
        cell.watching = None  # the monitors it held end with the instance
        self._kill_run(cell)
        if cell.monitors or cell.links:
            self._notify_down(cell, f"crashed: {type(exc).__name__}: {exc}", True)
        if cell.status == STOPPING:
            return  # being stopped anyway: _switch finalizes it
        if cell.name in self._tree_names and cell.id == f"{cell.name}@{self.rank}":
            # a config child: its supervisor (on rank 0) decides; messages wait meanwhile
            cell.status = STARTING
            self._report_exit(cell.name, True, f"crashed in {where}: {type(exc).__name__}: "
                                                f"{exc}")
            return
        decision = self.supervisor.on_crash(
            cell.restart if cell.supervised else "temporary", _monotonic())
        if decision == ESCALATE:
            reason = (f"{self.supervisor.escalation_reason(self.rank)}; last crash: "
                      f"{cell.id} in {where}: {type(exc).__name__}: {exc}")
            actor_log.critical(reason)
            cell.status = STOPPING
            cell.stop_reason = "restart intensity exceeded"
            self.request_shutdown(reason, 1)
            return
        if decision != RESTART:
            cell.status = STOPPING
            cell.stop_reason = f"crashed: {type(exc).__name__}: {exc}"
            return
        cell.restarts += 1
        self._queue_init(cell)
        actor_log.warning("%s restarted (restart %d)", cell.id, cell.restarts)

    # ------------------------------------------------------------ system messages --

    def _on_batch(self, src: int, batch) -> None:
        cells = self._cells
        single = len(batch) == 1
        for env in batch:
            k = env[0]
            if k <= SEND:
                cell = cells.get(env[1])
                if (single and cell is not None and cell.running is None
                        and cell.status == RUNNING and not cell.mailbox and not cell.queued
                        and self._phase < P_FINAL):
                    # fast path: an idle actor runs the message now, skipping the queue
                    mb = cell.mailbox
                    if mb is None:
                        cell.mailbox = mb = deque()
                    mb.append(env)
                    self._dispatch(cell)
                else:
                    self._deliver(env)
            elif k == REPLY:
                w = self._pending.pop(env[5], None)
                if w is not None:
                    target = w[0]
                    if type(target) is greenlet:
                        self._switch(target, (True, env[4]))  # resume the asker now
                    else:
                        target(True, env[4])
            elif k == ERROR:
                self._complete(env[5], False, env[4])
            else:
                self._system(src, env)

    def _system(self, src, env) -> None:
        op = env[3]
        if op == "pg":
            self.groups.apply_remote(env[4])
        elif op == "name":
            name, aid = env[4]
            self._register_name(name, aid, broadcast=False)
        elif op == "unname":
            name, aid = env[4]
            self._unregister_name(name, aid, broadcast=False)
        elif op == "shard_group":
            self.shards.install_remote(env[4])
        elif op == "shard_group_drop":
            self.shards.drop(env[4])
        elif op == "gred_req":
            self.reductions.on_request(env[4])
        elif op == "gred":
            self.reductions.receive(env[4])
        elif op == "ready":
            self._ready_peers.add(src)
            self._check_started()
        elif op == "shutdown":
            reason, code = env[4]
            self.request_shutdown(reason, code, broadcast=False)
        elif op == "stopped":
            self._stopped_peers.add(src)
        elif op in ("spawn", "spawn_many"):
            ref, *rest = env[4]
            done = self._remote_done(src, env)
            try:
                cls = self._load_class(ref)
            except Exception as exc:  # noqa: BLE001 - reported to the spawner
                done(False, E.InvalidMessage(f"{op} on rank {self.rank}: cannot load the "
                                             f"actor class: {exc}"))
                return
            if op == "spawn":
                name, args, restart, ctx, caps = rest
                self._spawn_local(cls, name, args, restart, done, ctx, caps)
            else:
                count, args, ctx, caps = rest
                self._spawn_many_local(cls, count, args, done, ctx, caps)
        elif op == "stop":
            reason, ctx = env[4]
            self._start_stop(env[1], reason, self._remote_done(src, env), ctx)
        elif op == "tree_stopped":
            self._tree_is_stopped = True  # (before this rank drained: used when it has)
            if self._tree_wait:
                self._tree_stopped()
        elif op == "sup_removed":
            if self.tree is not None:
                self.tree.removed.add(env[4])
        elif op == "sup_exit":
            if self.tree is not None:
                self.tree.report(*env[4])
        elif op == "sup_cmd":
            self.sup_command(*env[4], self._remote_done(src, env))
        elif op == "monitor":
            self._add_monitor(*env[4])
        elif op == "demonitor":
            self._drop_monitor(*env[4])
        elif op == "link":
            self._add_link(*env[4])
        elif op == "unlink":
            self._drop_link(*env[4])
        elif op == "exit_signal":
            self._exit_signal(*env[4])
        elif op == "state":
            if self.state_service is None:
                self._remote_done(src, env)(False, E.StateError(
                    f"rank {self.rank} does not own the state stores"))
            else:
                self.state_service.handle(env[4], self._remote_done(src, env))
        else:  # pragma: no cover
            log.error("unknown system message %r from rank %d", op, src)

    def _remote_done(self, src, env):
        corr = env[5]

        def done(ok, value):
            if ok:
                self.transport.post(src, (REPLY, None, None, None, value, corr, -1, None))
            else:
                if isinstance(value, (E.StateError, E.CapabilityDenied)):
                    wire = E.to_wire(E.STATE, str(value), remote_type=type(value).__name__,
                                     rank=self.rank)
                elif isinstance(value, E.ActorNotFound):
                    wire = E.to_wire(E.NOT_FOUND, str(value), rank=self.rank)
                elif isinstance(value, E.InvalidMessage):
                    wire = E.to_wire(E.INVALID, str(value), rank=self.rank)
                else:
                    wire = E.to_wire(E.REMOTE, str(value), remote_type=type(value).__name__,
                                     rank=self.rank, tb=getattr(value, "remote_traceback", ""))
                self.transport.post(src, (ERROR, None, None, None, wire, corr, -1, None))
        return done

    # ----------------------------------------------------------------- shutdown --

    def request_shutdown(self, reason: str = "requested", exit_code: int = 0,
                         broadcast: bool = True) -> None:
        """Begin draining this rank (and tell the others, unless they told us)."""
        if exit_code > self._exit_code:
            self._exit_code = exit_code
        if self._phase >= P_DRAINING:
            return
        log.info("rank %d: shutting down (%s)", self.rank, reason)
        self._shutdown_reason = reason
        self._phase = P_DRAINING
        self._drain_deadline = _monotonic() + self.config.drain_timeout_s
        self._started.set()
        if broadcast:
            for r in range(self.size):
                if r != self.rank:
                    self.transport.post(r, (SYS, None, None, "shutdown", (reason, exit_code),
                                            0, -1, None))

    def _drained(self, now) -> bool:
        if now >= self._drain_deadline:
            return True
        return not (self._ready or self._resume or self._busy or self.transport.outbox)

    def _kill_runs(self) -> None:
        """Abandon every workflow run in progress (they resume on the next launch)."""
        from ..otp.workflow import kill_run
        for aid in list(self.runs):
            cell = self._cells.get(aid)
            run = self.runs.get(aid)
            if cell is not None:
                kill_run(self, cell)  # tells the caller; the kill itself is queued
            if run is not None and run.g is not None and not run.g.dead:
                _kill(run.g)
        self.runs.clear()

    def _begin_stop(self) -> None:
        """Drained: stop the app's supervision tree first, on every rank in one order
        (rank 0 drives it: reverse start order, each child's terminate handler given its
        shutdown_timeout_ms), then each rank stops what is left (actors spawned at run
        time) in reverse start order. A rank that hears nothing from rank 0 in time
        goes on by itself."""
        if self.tree is not None:
            def tree_done():
                self.broadcast_system("tree_stopped", None)
                self._stop_in_order()
            self.tree.stop_all(tree_done)
            return
        if self._tree_is_stopped:
            self._stop_in_order()
            return
        budget = sum(c.shutdown_timeout_ms for c in self.config.children) / 1000.0 + 5.0
        self._tree_wait = True

        def give_up():
            if self._tree_wait:
                log.warning("rank %d: rank 0 did not finish stopping the supervision tree "
                            "within %.0f s; stopping this rank's actors now", self.rank,
                            budget)
                self._tree_stopped()
        self.call_later(budget, give_up)

    def _tree_stopped(self) -> None:
        if self._tree_wait:
            self._tree_wait = False
            self._stop_in_order()

    def _stop_in_order(self) -> None:
        """Graceful stop of every local actor, in reverse start order, one at a time:
        each terminate handler may still ask others (they are up until their turn) and
        gets its ``shutdown_timeout_ms`` before it is killed. Then the final phase."""
        self._kill_runs()
        cells = sorted(self._cells.values(), key=lambda c: c.seq, reverse=True)

        def go(i):
            while i < len(cells) and cells[i].status == STOPPED:
                i += 1
            if i == len(cells):
                self._enter_final()
                return
            cell = cells[i]

            def after():
                if cell.status != STOPPED:
                    cell.status = STOPPING
                    self._finalize_stop(cell, "shutdown")
                self._external.append(lambda: go(i + 1))
            self._halt(cell, "shutdown", after)
        go(0)

    def _stop_all(self) -> None:
        """Stop every local actor in reverse start order."""
        self._kill_runs()
        for cell in sorted(self._cells.values(), key=lambda c: c.seq, reverse=True):
            if cell.status == STOPPED:
                continue
            if cell.running is not None:
                g = cell.running
                cell.running = None
                self._busy -= 1
                _kill(g)
            if cell.status != STOPPING:
                cell.status = STOPPING
                cell.stop_reason = "shutdown"
                if cell.spec.terminate is not None and cell.inst is not None:
                    g = greenlet(self._terminate_main, self._hub)
                    g.cell = cell
                    g.ctx = None
                    r = g.switch(cell)
                    if r is _BLOCKED:
                        log.warning("%s: terminate handler waited on an ask during "
                                    "shutdown; abandoned", cell.id)
            self._finalize_stop(cell, "shutdown")
        for corr, w in list(self._pending.items()):
            self._complete(corr, False, E.NodeClosed(
                f"rank {self.rank} shut down before {w[1]!r} answered {w[2]!r}"))
        self._resume.clear()

    def _terminate_main(self, cell):
        try:
            cell.spec.terminate(cell.inst, "shutdown")
        except Exception:  # noqa: BLE001
            actor_log.error("%s: terminate handler raised:\n%s", cell.id,
                            traceback.format_exc())
        return _DONE

    def _enter_final(self) -> None:
        self._stop_all()
        self._phase = P_FINAL
        for r in range(self.size):
            if r != self.rank:
                self.transport.post(r, (SYS, None, None, "stopped", None, 0, -1, None))
        self._stopped_peers.add(self.rank)
        self._final_deadline = _monotonic() + self.stop_timeout_s

    # --------------------------------------------------------------- the loop --

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT start a graceful job-wide shutdown (main thread only)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: self._request_signal(signum))

    def _request_signal(self, signum) -> None:
        self._signal = signum
        self.doorbell.ring_self()

    def serve(self) -> int:
        """Run the hub on this thread until the job shuts down; returns the exit code."""
        self._hub = getcurrent()
        try:
            self._start_metrics()
            self._start_children()
            self._loop()
        finally:
            self._phase = P_DONE
            self._finished.set()
            self._started.set()
            self._close()
        return self._exit_code

    def serve_in_thread(self) -> None:
        """Run the hub on a background thread (the driver rank); wait until started."""
        def body():
            try:
                self.serve()
            except BaseException:  # noqa: BLE001
                log.exception("node loop failed")
                self._exit_code = max(self._exit_code, 1)
        self._thread = threading.Thread(target=body, name=f"plexhpc-hub-r{self.rank}",
                                        daemon=True)
        self._thread.start()
        self._started.wait()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        transport = self.transport
        doorbell = self.doorbell
        ready = self._ready
        resume = self._resume
        external = self._external
        timers = self._timers
        startup_deadline = _monotonic() + self.startup_timeout_s
        last_work = _monotonic()
        next_expiry = 0.0
        sched_yield = getattr(os, "sched_yield", lambda: None)
        poll = transport.poll
        on_batch = self._on_batch
        last_long = -1.0
        while True:
            worked = False
            turn_start = _monotonic()
            if poll(on_batch):
                worked = True
            while external:
                external.popleft()()
                worked = True
            if resume or ready:
                worked = True
                cap = _TURN_CAP
                while cap and (resume or ready):
                    cap -= 1
                    if resume:
                        g, outcome = resume.popleft()
                        if not g.dead:
                            self._switch(g, outcome)
                        continue
                    if transport.outbox:
                        # what earlier handlers sent leaves before the next one runs: a
                        # long handler must not hold other ranks' work back
                        for dest in transport.flush():
                            doorbell.ring_if_sleeping(dest)
                    cell = ready.popleft()
                    cell.queued = False
                    if (cell.running is None and cell.status != STOPPED
                            and (cell.pending_init or cell.mailbox)):
                        self._dispatch(cell)
            now = _monotonic()
            if timers and timers[0][0] <= now:
                self._fire_timers(now)
                worked = True
            if self._bg:  # nonblocking collectives in flight: progress them, keep spinning
                self._poll_background(now)
                worked = True
            if now >= next_expiry:
                # ask timeouts are checked every millisecond, not every turn
                next_expiry = now + 0.001
                if self._ask_deadlines:
                    self._expire_asks(now)
            if transport.outbox:
                for dest in transport.flush():
                    doorbell.ring_if_sleeping(dest)
                worked = True
            if len(transport._pending) > 64:
                transport.progress_sends()
            if self._signal:
                sig, self._signal = self._signal, 0
                self.request_shutdown(f"signal {signal.Signals(sig).name}", 0)
                worked = True
            phase = self._phase
            if phase != P_RUNNING:
                if phase == P_STARTING and now > startup_deadline:
                    missing = sorted(set(range(self.size)) - self._ready_peers)
                    self._start_error = (f"start-up timed out after {self.startup_timeout_s:g}"
                                         f" s: rank(s) {missing} never reported ready")
                    log.error(self._start_error)
                    self.request_shutdown(self._start_error, 1)
                elif phase == P_DRAINING and self._drained(now):
                    if not self._stopping_actors:
                        self._stopping_actors = True
                        self._begin_stop()
                    worked = True
                elif phase == P_FINAL:
                    if transport.outbox:
                        continue
                    if len(self._stopped_peers) >= self.size:
                        return
                    if now > self._final_deadline:
                        missing = sorted(set(range(self.size)) - self._stopped_peers)
                        log.error("rank %d: rank(s) %s did not finish shutting down within "
                                  "%g s", self.rank, missing, self.stop_timeout_s)
                        self._exit_code = max(self._exit_code, 1)
                        self.unclean = True
                        return
            if worked:
                last_work = now
                if now - turn_start > 0.001:  # real work ran (> 1 ms): a busy stretch
                    last_long = now
                continue
            if transport._pending:
                transport.progress_sends()
            idle = now - last_work
            # within 50 ms of real work, spin longer before sleeping
            if idle < (self.busy_spin_s if now - last_long < 0.05 else self.spin_s):
                if idle > self.yield_after_s:
                    sched_yield()
                else:
                    transport.spin_probe(32)  # tight probing: notice a reply sooner
                continue
            self._sleep(now)

    def _sleep(self, now) -> None:
        db = self.doorbell
        db.announce_sleep()
        # re-check after announcing: after a sleep MPICH's first Iprobe only runs progress
        if (self.transport._held is not None or self.transport.probe()
                or self.transport.probe() or self._external
                or self._signal or self._ready or self._resume):
            db.wake()
            return
        timeout = self.max_sleep_s
        nxt = self._next_deadline()
        if nxt is not None:
            timeout = min(timeout, max(0.0, nxt - now))
        if self.transport._pending or not db.shared or db.has_remote_peers:
            timeout = min(timeout, self.remote_poll_s)
        if self._phase != P_RUNNING:
            timeout = min(timeout, 0.05)
        db.sleep(timeout)

    def _fire_timers(self, now) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, kind, data = heapq.heappop(timers)
            if kind == _T_SEND:
                aid, op, payload, ctx, timer_id = data
                if aid in self._cells:
                    self._deliver((SEND, aid, aid, op, payload, 0, -1, ctx))
                if timer_id is not None:
                    self.local_state.timers.remove(timer_id)
            else:
                data()

    def _close(self) -> None:
        global _current
        deadline = _monotonic() + 2.0
        while self.transport._pending and _monotonic() < deadline:
            self.transport.progress_sends()
        self.doorbell.close()
        self.local_state.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        if self.state_service is not None:
            self.state_service.close()
        if _current is self:
            _current = None




def _narrow(declared, parent):
    """The capabilities of a spawned actor: what its class declares, never more than its
    parent has (None: unrestricted)."""
    if parent is None:
        return declared
    if declared is None:
        return parent
    return declared & parent




class LinkedExit(Exception):
    """Why an actor without an ``__EXIT__`` handler stopped: a linked actor crashed."""


def _env_float(name: str, default: float) -> float:
    """A tuning knob from the environment, with a clear error if it is not a number."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return float(default)
    try:
        value = float(raw)
    except ValueError:
        raise E.ConfigError(f"expected a number (microseconds), got {raw!r}", key=name) from None
    if value < 0:
        raise E.ConfigError(f"expected a number >= 0, got {raw!r}", key=name)
    return value
