"""The node: one per MPI rank, built from parts that each own their state.

===================  =========================================================
part                 owns
===================  =========================================================
``transport``        batches of envelopes to other ranks (MPI point-to-point)
``doorbell``         waking a sleeping rank
``system``           the system-op table; posting, broadcasting, system asks
``pending``          asks in flight and their deadlines
``timers``           callbacks by deadline
``router``           names and routes (name or id -> id, rank)
``actors``           the actor table: create, spawn, stop, teardown
``executor``         mailboxes, the ready queue, worker greenlets, the one execution path
``lifecycle``        phases, start-up and the shutdown sequence
``hub``              the loop and its idle policy, background MPI requests, signals
``supervision``      this rank's side of supervision (crashes, exits, tree commands)
``links``            monitors and links
``groups``           process groups (replicated)
``shards``           shard groups; ``reductions``: group reductions
``workflows``        workflow runs in progress
``local_state``      this rank's checkpoint file; ``state_service`` the shared stores
===================  =========================================================

The node itself is the *runtime interface* the parts and the subsystems above them
(shard groups, pools, workflows, supervision, ``host``) call: the public methods and
parts below, nothing else. Driver scripts get a narrower handle,
:class:`~plexhpc.runtime.driver.Driver`, from :func:`plexhpc.start`.

One loop per rank (the hub, on the main greenlet of its thread) does everything; each
message runs on a pooled worker greenlet, so a handler that asks another actor parks its
greenlet until the hub resumes it with the reply; the hub never blocks. An actor
processes one message at a time; a call cycle (A asks B asks A) ends in a timeout, never
a deadlock of the rank. Same-rank messages go straight to the target's mailbox
(payloads pass by reference: do not mutate a payload after sending it).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import deque

from greenlet import getcurrent
from mpi4py import MPI

from .. import errors as E
from ..config import AppConfig
from ..context import DEFAULT_CTX, tenant_of
from ..log import configure as configure_logging
from ..log import get_logger
from ..actors import facets as facets_
from ..otp.links import Links
from ..otp.process_groups import GroupRegistry
from ..otp.rank_supervisor import RankSupervision
from ..otp.supervision import SupervisionTree
from ..otp.workflow import WorkflowRuns
from ..shards.groups import ShardGroups
from ..shards.reduce import GroupReductions
from ..storage.durable import LocalState
from ..storage.service import StateService
from .actor_table import ActorTable
from .allocator import tune_allocator
from .cell import BLOCKED
from .current import current_node, set_current_node
from .doorbell import Doorbell
from .envelope import ASK, SEND, SYS, CORR, KIND, OP, REPLY_RANK, TO
from . import envelope as env_
from .executor import Executor
from .hub import Hub, IdlePolicy
from .lifecycle import DRAINING, RUNNING, Lifecycle
from .pending import PendingCalls
from .routing import Router
from .sysops import SystemOps
from .timers import Timers
from .transport import Transport

__all__ = ["Node", "current_node"]

log = get_logger("node")

_monotonic = time.monotonic

class Node:
    """The actor host of one rank. Built by :func:`plexhpc.start` or ``plexhpc run``.

    Tuning (seconds unless named ``_us``): ``spin_us`` how long an idle rank spins
    before sleeping, ``max_sleep_s`` its longest sleep, ``remote_poll_s`` how often a
    rank with peers on other hosts polls. An argument given wins; otherwise the
    ``PLEXHPC_SPIN_US``, ``PLEXHPC_REMOTE_POLL_US``, ``PLEXHPC_YIELD_AFTER_US`` and
    ``PLEXHPC_BUSY_SPIN_US`` environment variables, then the defaults."""

    def __init__(self, config: AppConfig, *, comm: MPI.Comm | None = None,
                 driver_rank: int | None = 0, startup_timeout_s: float = 60.0,
                 spin_us: float | None = None, max_sleep_s: float = 0.25,
                 remote_poll_s: float | None = None, stop_timeout_s: float = 10.0):
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
        tag = uuid.uuid4().hex[:12] if self.rank == 0 else None
        self.job_tag = self.comm.bcast(tag, root=0)

        # the wire
        self.transport = Transport(self.comm)
        self.transport.on_unsendable = self._unsendable
        self.doorbell = Doorbell(self.comm, self.job_tag)
        self.transport.on_flushed = self.doorbell.ring_if_sleeping
        # group reductions' own communicator: every rank, nonblocking collectives only
        self.group_comm = self.comm.Dup()

        # the runtime's parts
        self.timers = Timers()
        self.router = Router(self.size, {c.name: f"{c.name}@{c.rank}"
                                         for c in config.children})
        resume: deque = deque()  # parked greenlets to switch back into (the hub's)
        self.pending = PendingCalls(resume)
        self.system = SystemOps(self.rank, self.size, self.transport, self.pending)
        self.actors = ActorTable(self)
        self.executor = Executor(self, self.actors.cells, self.pending, self.transport,
                                 resume)
        self.lifecycle = Lifecycle(self, startup_timeout_s=startup_timeout_s,
                                   stop_timeout_s=stop_timeout_s)
        self.hub = Hub(self, IdlePolicy.for_rank(self.doorbell, spin_us, max_sleep_s,
                                                 remote_poll_s))

        # services and the OTP layer
        self.local_state = LocalState(config.state, self.rank)
        self.state_service = StateService(self) if self.rank == config.state.rank else None
        self.system.register("state", self._on_state, asks=True, owner="state service",
                             payload="(primitive, op, scope, args, timeout_ms, who)")
        self.workflows = WorkflowRuns(self)
        self.runs = self.workflows.runs  # actor id -> its workflow run in progress
        self.groups = GroupRegistry(self.rank, self.system)
        self.links = Links(self)
        # config children: the app's supervision tree, decided on rank 0
        self.tree = SupervisionTree(self, config.tree) if self.rank == 0 else None
        self.supervision = RankSupervision(self, self.tree)
        self.shards = ShardGroups(self)
        self.reductions = GroupReductions(self)

        ex = self.executor
        ex.on_crash = self.supervision.crash
        ex.on_stopped = self.actors.finalize_stop
        ex.on_started = self.workflows.on_started
        self._metrics_server = None
        # the hottest calls, bound once
        self.deliver = ex.deliver
        self.call_later = self.timers.after
        self.run_soon = self.hub.external.append
        set_current_node(self)

    # ---- the runtime interface: identity and state --------------------------------

    @property
    def actor_ids(self) -> list:
        """Ids of the actors on this rank, in start order."""
        return [c.id for c in self.actors.in_start_order()]

    def actor_cells(self) -> list:
        """The cells of this rank's actors (a snapshot)."""
        return list(self.actors.cells.values())

    def resolve(self, name_or_id: str) -> str:
        """The actor id for a name or id (``ActorNotFound`` if the name is unknown)."""
        return self.router.resolve(name_or_id)[0]

    @property
    def shutting_down(self) -> bool:
        return self.lifecycle.phase >= DRAINING

    @property
    def running(self) -> bool:
        """Every rank has started and no shutdown has begun."""
        return self.lifecycle.phase == RUNNING

    @property
    def closed(self) -> bool:
        return self.lifecycle.finished.is_set()

    @property
    def exit_code(self) -> int:
        return self.lifecycle.exit_code

    @property
    def messages_handled(self) -> int:
        return self.executor.messages_handled

    # ---- asks and sends -----------------------------------------------------------

    def start_ask(self, to, op, payload, timeout_ms, done, frm, ctx=None):
        """Ask ``to`` on behalf of ``frm``; ``done(ok, value)`` gets the reply, the error
        or an AskTimeout. Returns the call's ``corr`` (None if ``to`` is unknown)."""
        try:
            aid, r = self.router.resolve(to, tenant_of(ctx))
        except E.PlexError as exc:
            done(False, exc)
            return None
        corr = self.pending.add(done, aid, op, timeout_ms)
        env = env_.ask(aid, frm, op, payload, corr, self.rank, ctx)
        if r == self.rank:
            self.deliver(env)
        else:
            self.transport.post(r, env)
        return corr

    def ask_from_actor(self, cell, to, op, payload, timeout_ms, ctx=None):
        """``host.ask``: park the calling greenlet until the reply or the timeout."""
        if self.executor.closed:
            raise E.NodeClosed(f"rank {self.rank} is shutting down")
        ctx = ctx or cell.ctx
        if ctx is DEFAULT_CTX:  # no tenant to carry: the target runs in its own context
            ctx = None
            hit = self.router.cache.get(to)
            aid, r = hit if hit is not None else self.router.resolve(to)
        else:
            aid, r = self.router.resolve(to, tenant_of(ctx))
        if aid == cell.id:
            raise E.InvalidMessage(
                f"{aid} asked itself {op!r}: it would wait for its own reply forever (as "
                "Erlang's calling_self); call the method directly or use host.send")
        pending = self.pending
        corr = pending.next_corr()
        pending.waiting[corr] = (getcurrent(), aid, op, timeout_ms)
        # pending.add's deadline, inlined: this is the hottest path of a remote ask
        dq = pending.deadlines.get(timeout_ms)
        if dq is None:
            dq = pending.deadlines[timeout_ms] = deque()
        dq.append((_monotonic() + timeout_ms / 1000.0, corr))
        env = (ASK, aid, cell.id, op, payload, corr, self.rank, ctx)  # envelope.ask
        if r == self.rank:
            self.deliver(env)
        else:
            self.transport.post(r, env)
        ok, value = self.executor.hub.switch(BLOCKED)
        if ok:
            return value
        raise value

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
        pending = self.pending

        def finish():
            state["finished"] = True
            for c in corrs:
                if c is not None:
                    pending.take(c)
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
            corrs[i] = self.start_ask(target, op, payload, timeout_ms, waiter(i), frm, ctx)

    def send_from(self, frm: str, to: str, op: str, payload, ctx=None) -> None:
        """A cast from ``frm``; an unknown target raises ActorNotFound here."""
        if ctx is DEFAULT_CTX:  # no tenant to carry (and less to pickle)
            ctx = None
        aid, r = self.router.resolve(to, tenant_of(ctx))
        env = (SEND, aid, frm, op, payload, 0, -1, ctx)  # envelope.send
        if r == self.rank:
            self.deliver(env)
        else:
            self.transport.post(r, env)

    def send_quiet(self, to, op, payload, frm, ctx=None) -> None:
        """:meth:`send_from` that drops a message to an unknown actor (runtime notices)."""
        try:
            self.send_from(frm, to, op, payload, ctx)
        except E.ActorNotFound as exc:
            log.debug("send dropped: %s", exc)

    def wait_from_actor(self, start):
        """Run ``start(done)`` on the hub and park the calling greenlet until ``done``."""
        g = getcurrent()
        slot: list = [False, None]  # [parked, early result]
        resume = self.executor.resume

        def done(ok, value):
            if slot[0]:
                resume.append((g, (ok, value)))
            else:
                slot[1] = (ok, value)

        start(done)
        if slot[1] is None:
            slot[0] = True
            ok, value = self.executor.hub.switch(BLOCKED)
        else:
            ok, value = slot[1]
        if ok:
            return value
        raise value

    def defer_reply(self, cell):
        return self.executor.defer_reply(cell)

    def reply_to(self, token, ok: bool, value, owner: str | None = None) -> None:
        self.executor.reply_to(token, ok, value, owner)

    def flush_now(self) -> None:
        """Send what is batched for other ranks now, not at the end of this turn."""
        for dest in self.transport.flush():
            self.doorbell.ring_if_sleeping(dest)

    def add_background(self, req, on_done, timeout_s: float, on_timeout) -> None:
        self.hub.add_background(req, on_done, timeout_s, on_timeout)

    # ---- timers -------------------------------------------------------------------

    def send_after(self, cell, delay_ms: float, op: str, payload) -> None:
        """``host.send_after``: ``op`` to ``cell`` itself after ``delay_ms``; recorded
        (and re-armed after a restart or relaunch) if the actor has the timer facet."""
        timer_id = None
        ctx = getattr(getcurrent(), "ctx", None) or cell.ctx
        if cell.facets is not None and cell.facets.timers:  # durable: survives restarts
            from ..storage.durable import now_ms
            timer_id = self.local_state.timers.add(
                cell.facets.key, now_ms() + int(delay_ms), op,
                {"payload": payload, "ctx": list(ctx)})
        self.arm_timer(cell, delay_ms, op, payload, ctx, timer_id)

    def arm_timer(self, cell, delay_ms, op, payload, ctx, timer_id=None) -> None:
        aid = cell.id

        def fire():
            if aid in self.actors.cells:
                self.deliver(env_.send(aid, aid, op, payload, ctx))
            if timer_id is not None:
                self.local_state.timers.remove(timer_id)
        self.timers.after(delay_ms / 1000.0, fire)

    # ---- actors -------------------------------------------------------------------

    def stop_actor(self, cell, reason, done=None) -> None:
        self.actors.stop_actor(cell, reason, done)

    def exit_actor(self, cell, reason: str) -> None:
        self.supervision.exit_actor(cell, reason)

    def request_shutdown(self, reason: str = "requested", exit_code: int = 0) -> None:
        """Begin a job-wide shutdown from the hub (every rank drains and stops)."""
        self.lifecycle.request_shutdown(reason, exit_code)

    # ---- state --------------------------------------------------------------------

    def state_request(self, req, done) -> None:
        """Send a KV/TupleSpace/channel request to the rank owning the stores."""
        if self.state_service is not None:
            self.state_service.handle(req, done)
        else:
            self.system.ask(self.config.state.rank, "state", req, done,
                            (req[4] or 0) + 30000, to="$state")

    def _on_state(self, src, req, done, to) -> None:
        if self.state_service is None:
            done(False, E.StateError(f"rank {self.rank} does not own the state stores"))
        else:
            self.state_service.handle(req, done)

    def metrics_text(self) -> str:
        """Prometheus text of this rank's actors that have the ``metrics`` facet."""
        return facets_.prometheus_text(self.actor_cells())

    # ---- running ------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        self.hub.install_signal_handlers()

    def serve(self) -> int:
        """Run the hub on this thread until the job shuts down; returns the exit code."""
        self.executor.hub = getcurrent()
        try:
            self._start_metrics()
            self.lifecycle.start()
            self.hub.run()
        finally:
            self.lifecycle.closed()
            self._close()
        return self.lifecycle.exit_code

    def serve_in_thread(self) -> None:
        """Run the hub on a background thread (the driver rank); wait until started."""
        def body():
            try:
                self.serve()
            except BaseException:  # noqa: BLE001
                log.exception("node loop failed")
                self.lifecycle.exit_code = max(self.lifecycle.exit_code, 1)
        self.hub.thread = threading.Thread(target=body, name=f"plexhpc-hub-r{self.rank}",
                                           daemon=True)
        self.hub.thread.start()
        self.lifecycle.started.wait()

    def join(self, timeout: float | None = None) -> None:
        if self.hub.thread is not None:
            self.hub.thread.join(timeout)

    def _start_metrics(self) -> None:
        port = self.config.metrics_port
        if port is None:
            return
        try:
            self._metrics_server = facets_.serve_metrics(self, port + self.rank,
                                                         self.config.metrics_addr)
        except Exception as exc:  # noqa: BLE001 - OSError (port taken) or anything else
            self.lifecycle.fail_start(
                f"rank {self.rank} cannot serve metrics on {self.config.metrics_addr}:"
                f"{port + self.rank}: {exc}; choose another [app] metrics_port")
            return
        log.info("rank %d: metrics at http://%s:%d/metrics", self.rank,
                 self.config.metrics_addr, port + self.rank)

    def _unsendable(self, dest, env, exc) -> None:
        msg = (f"message {env[OP]!r} to {env[TO]!r} cannot be serialized for rank {dest}: "
               f"{type(exc).__name__}: {exc}")
        if env[KIND] in (ASK, SYS) and env[REPLY_RANK] == self.rank and env[CORR]:
            self.pending.complete(env[CORR], False, E.InvalidMessage(msg))
        else:
            log.warning(msg)

    def _close(self) -> None:
        deadline = _monotonic() + 2.0
        while self.transport.sends_in_flight and _monotonic() < deadline:
            self.transport.progress_sends()
        clean = not self.lifecycle.unclean
        self.doorbell.close(clean)
        # each job duplicates its communicators: free them, or a process that runs
        # many jobs (a test suite) runs out of MPI context ids after a few hundred.
        # Comm_free is local in effect (pending operations complete first).
        for comm in (self.group_comm, self.comm):
            try:
                comm.Free()
            except Exception:  # noqa: BLE001 - at shutdown a peer may be gone
                pass
        self.local_state.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        if self.state_service is not None:
            self.state_service.close()
        set_current_node(None, previous=self)

