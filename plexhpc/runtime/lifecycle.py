"""Start-up and shutdown of one rank, in phases every rank goes through together.

``STARTING``: each rank starts its config children (init handlers run) and tells every
other rank ``ready``; once all have, the job is ``RUNNING`` (a rank missing after the
start-up timeout fails the job on every rank). A shutdown (asked by the driver, an
actor, a signal or a failure) is broadcast and goes:

1. ``DRAINING``: no new work is refused yet; the rank waits until its queues are empty
   (or ``drain_timeout_s``).
2. The app's supervision tree is stopped first, on every rank in one order (rank 0
   drives it: reverse start order, each child's terminate handler given its
   ``shutdown_timeout_ms``); then each rank stops its other actors in reverse start
   order, one at a time, each still able to ask the ones stopped after it.
3. ``FINAL``: asks to this rank fail with NodeClosed; the rank tells the others
   ``stopped`` and waits for theirs (``stop_timeout_s``), so no rank leaves while a
   peer still sends to it.
4. ``DONE``: the loop has ended.

A rank whose loop fails (:mod:`plexhpc.runtime.fatal`) tells the others ``job_failed``:
each fails its calls to that rank at once, counts it as stopped, and shuts down with
status 1 and the message naming the rank and the cause; nothing more is sent to it.
"""

from __future__ import annotations

import threading
import time

from .. import errors as E
from ..log import get_logger
from .cell import STOPPED, STOPPING
from .executor import kill

__all__ = ["Lifecycle", "STARTING", "RUNNING", "DRAINING", "FINAL", "DONE", "JOB_FAILED"]

log = get_logger("node")

#: the phases, in order (compare with < and >=)
STARTING, RUNNING, DRAINING, FINAL, DONE = range(5)

_monotonic = time.monotonic

#: the system op by which a failing rank tells the others (payload: the message)
JOB_FAILED = "job_failed"


class Lifecycle:
    """Phases of this rank and the start-up and shutdown sequences. ``rt`` is the node."""

    def __init__(self, rt, *, startup_timeout_s: float, stop_timeout_s: float):
        self.rt = rt
        self.rank = rt.rank
        self.size = rt.size
        self.phase = STARTING
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.exit_code = 0
        self.reason = ""              # why the job shuts down
        self.start_error: str | None = None
        self.unclean = False          # a peer did not finish shutting down in time
        self.failed_ranks: set = set()  # ranks whose loop failed (sent job_failed)
        self.started = threading.Event()
        self.finished = threading.Event()
        self.on_started: list = []    # callbacks once every rank is running
        self.startup_deadline = 0.0
        self.drain_deadline = 0.0
        self.final_deadline = 0.0
        self._ready_peers: set = set()
        self._stopped_peers: set = set()
        self._local_inits = 0
        self._stopping_actors = False
        self._tree_wait = False
        self._tree_is_stopped = False
        ops = rt.system
        ops.register("ready", self._on_ready, owner="lifecycle",
                     payload="None: the sender's config children have started")
        ops.register("shutdown", self._on_shutdown, owner="lifecycle",
                     payload="(reason, exit code): begin draining")
        ops.register("stopped", self._on_stopped, owner="lifecycle",
                     payload="None: the sender has stopped its actors (final phase)")
        ops.register("tree_stopped", self._on_tree_stopped, owner="lifecycle",
                     payload="None: rank 0 has stopped the supervision tree")
        ops.register(JOB_FAILED, self._on_job_failed, owner="lifecycle",
                     payload="message 'job failed: rank R: cause': the sender's loop "
                             "failed and it is exiting")

    @property
    def shutting_down(self) -> bool:
        return self.phase >= DRAINING

    # ---- start-up ------------------------------------------------------------------

    def start(self) -> None:
        """Start this rank's config children; ``ready`` is broadcast when all are up."""
        rt = self.rt
        self.startup_deadline = _monotonic() + self.startup_timeout_s
        mine = rt.config.children_on(self.rank)
        self._local_inits = len(mine)
        for child in mine:
            cell = rt.actors.new_config_child(child)
            if cell.facets is not None and cell.facets.dormant:
                self._startup_waiter(child.name)(True, cell.id)  # activated on demand
                continue
            rt.executor.queue_init(cell, self._startup_waiter(child.name))
        if not mine:
            self._local_ready()

    def _startup_waiter(self, name):
        def done(ok, value):
            if not ok:
                self.start_error = (f"actor {name!r} on rank {self.rank} failed to start: "
                                    f"{value}")
                log.error(self.start_error)
                self.request_shutdown(self.start_error, 1)
                return
            self._local_inits -= 1
            if self._local_inits == 0:
                self._local_ready()
        return done

    def _local_ready(self) -> None:
        self.rt.system.broadcast("ready")
        self._ready_peers.add(self.rank)
        self._check_started()

    def _on_ready(self, src, _data) -> None:
        self._ready_peers.add(src)
        self._check_started()

    def _check_started(self) -> None:
        if self.phase == STARTING and len(self._ready_peers) == self.size:
            self.phase = RUNNING
            self.started.set()
            log.info("rank %d: all %d ranks started", self.rank, self.size)
            for fn in self.on_started:
                fn()

    def fail_start(self, message: str) -> None:
        """Start-up cannot complete (a rank missing, a port taken): stop the job."""
        self.start_error = message
        log.error(message)
        self.request_shutdown(message, 1)

    def check_startup(self, now: float) -> None:
        if self.phase == STARTING and now > self.startup_deadline:
            missing = sorted(set(range(self.size)) - self._ready_peers)
            self.fail_start(f"start-up timed out after {self.startup_timeout_s:g} s: "
                            f"rank(s) {missing} never reported ready")

    # ---- shutdown ------------------------------------------------------------------

    def request_shutdown(self, reason: str = "requested", exit_code: int = 0,
                         broadcast: bool = True) -> None:
        """Begin draining this rank (and tell the others, unless they told us)."""
        if exit_code > self.exit_code:
            self.exit_code = exit_code
        if self.phase >= DRAINING:
            return
        log.info("rank %d: shutting down (%s)", self.rank, reason)
        self.reason = reason
        self.phase = DRAINING
        self.drain_deadline = _monotonic() + self.rt.config.drain_timeout_s
        self.started.set()
        if broadcast:
            self._tell_others("shutdown", (reason, exit_code))

    def _on_shutdown(self, _src, data) -> None:
        reason, code = data
        self.request_shutdown(reason, code, broadcast=False)

    def fail(self, message: str) -> None:
        """This rank's loop failed: the job ends with status 1 and ``message``, uncleanly
        (no collective clean-up: the peers may be gone)."""
        self.exit_code = max(self.exit_code, 1)
        self.reason = message
        self.unclean = True
        if self.phase == STARTING:
            self.start_error = message
        self.started.set()

    def _on_job_failed(self, src, data) -> None:
        """Rank ``src``'s loop failed and it is exiting: fail the calls waiting on it,
        stop waiting for it, and shut this rank down with status 1 and its message."""
        message = data if isinstance(data, str) else f"job failed: rank {src}: {data!r}"
        log.error("rank %d: %s; shutting down", self.rank, message)
        self.failed_ranks.add(src)
        self.unclean = True
        self._stopped_peers.add(src)  # it will never say stopped
        if self.phase == STARTING:
            self.start_error = message
        pending = self.rt.pending
        suffix = f"@{src}"
        state_there = self.rt.config.state.rank == src
        for corr, w in list(pending.waiting.items()):
            to = w[1]
            if isinstance(to, str) and (to.endswith(suffix) or (state_there
                                                                 and to == "$state")):
                pending.complete(corr, False, E.JobFailed(message, exit_code=1))
        if src == 0:
            self._on_tree_stopped(src, None)  # rank 0 will not stop the tree
        self.request_shutdown(message, 1, broadcast=False)

    def _tell_others(self, op: str, data=None) -> None:
        """A system cast to every other rank whose loop has not failed."""
        system = self.rt.system
        for r in range(self.size):
            if r != self.rank and r not in self.failed_ranks:
                system.post(r, op, data)

    def _on_stopped(self, src, _data) -> None:
        self._stopped_peers.add(src)

    def _on_tree_stopped(self, _src, _data) -> None:
        self._tree_is_stopped = True  # (may come before this rank drained: used when it has)
        if self._tree_wait:
            self._tree_stopped()

    def step(self, now: float, drained: bool) -> str:
        """Advance the shutdown from the loop: ``"work"`` if it did something,
        ``"exit"`` when the loop may end, else ``""``."""
        phase = self.phase
        if phase == STARTING:
            self.check_startup(now)
            return ""
        if phase == DRAINING and (drained or now >= self.drain_deadline):
            if not self._stopping_actors:
                self._stopping_actors = True
                self._begin_stop()
            return "work"
        if phase == FINAL:
            if len(self._stopped_peers) >= self.size:
                return "exit"
            if now > self.final_deadline:
                missing = sorted(set(range(self.size)) - self._stopped_peers)
                log.error("rank %d: rank(s) %s did not finish shutting down within %g s",
                          self.rank, missing, self.stop_timeout_s)
                self.exit_code = max(self.exit_code, 1)
                self.unclean = True
                return "exit"
        return ""

    def _begin_stop(self) -> None:
        """Drained: the supervision tree first (rank 0 drives it), then this rank's
        other actors. A rank that hears nothing from rank 0 in time goes on by itself.
        After a rank's loop failed there is no tree to stop together: each rank stops
        its own actors at once."""
        rt = self.rt
        if self.failed_ranks:
            self._stop_in_order()
            return
        if rt.tree is not None:
            def tree_done():
                rt.system.broadcast("tree_stopped")
                self._stop_in_order()
            rt.tree.stop_all(tree_done)
            return
        if self._tree_is_stopped:
            self._stop_in_order()
            return
        budget = sum(c.shutdown_timeout_ms for c in rt.config.children) / 1000.0 + 5.0
        self._tree_wait = True

        def give_up():
            if self._tree_wait:
                log.warning("rank %d: rank 0 did not finish stopping the supervision tree "
                            "within %.0f s; stopping this rank's actors now", self.rank,
                            budget)
                self._tree_stopped()
        rt.timers.after(budget, give_up)

    def _tree_stopped(self) -> None:
        if self._tree_wait:
            self._tree_wait = False
            self._stop_in_order()

    def _stop_in_order(self) -> None:
        """Graceful stop of every local actor, in reverse start order, one at a time:
        each terminate handler may still ask others (they are up until their turn) and
        gets its ``shutdown_timeout_ms`` before it is killed. Then the final phase."""
        rt = self.rt
        rt.workflows.kill_all()
        cells = rt.actors.in_start_order(reverse=True)

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
                    rt.actors.finalize_stop(cell, "shutdown")
                rt.run_soon(lambda: go(i + 1))
            rt.supervision.halt(cell, "shutdown", after)
        go(0)

    def _stop_all(self) -> None:
        """Whatever is still running stops now, without waiting for anything: in reverse
        start order, terminate handlers run but may not wait on an ask."""
        rt = self.rt
        rt.workflows.kill_all()
        for cell in rt.actors.in_start_order(reverse=True):
            if cell.status == STOPPED:
                continue
            if cell.running is not None:
                g = cell.running
                rt.executor.abandon(cell)
                kill(g)
            if cell.status != STOPPING:
                cell.status = STOPPING
                cell.stop_reason = "shutdown"
                if cell.spec.terminate is not None and cell.inst is not None:
                    if not rt.executor.terminate_now(cell, "shutdown"):
                        log.warning("%s: terminate handler waited on an ask during "
                                    "shutdown; abandoned", cell.id)
            rt.actors.finalize_stop(cell, "shutdown")
        rt.pending.fail_all(self.rank)
        rt.executor.resume.clear()

    def _enter_final(self) -> None:
        self._stop_all()
        self.phase = FINAL
        self.rt.executor.closed = True
        self._tell_others("stopped")
        self._stopped_peers.add(self.rank)
        self.final_deadline = _monotonic() + self.stop_timeout_s

    def closed(self) -> None:
        """The loop has ended."""
        self.phase = DONE
        self.finished.set()
        self.started.set()

    def raise_if_failed(self) -> None:
        """After the job: StartError if it never started, JobFailed if it stopped with a
        non-zero status (raised on every rank, so SPMD scripts fail together)."""
        if self.start_error:
            raise E.StartError(self.start_error)
        if self.exit_code:
            raise E.JobFailed(f"the job stopped with status {self.exit_code} on rank "
                              f"{self.rank}: {self.reason}", exit_code=self.exit_code)
