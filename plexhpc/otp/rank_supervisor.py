"""Each rank's side of supervision: what happens here when an actor crashes or exits, and
the commands of the app's supervision tree carried out here.

- A *config child* that crashes or exits is reported to the tree on rank 0
  (:mod:`plexhpc.otp.supervision`), which decides; meanwhile its messages wait. The
  tree's commands come back here: ``halt`` (stop the instance, keep the cell and
  mailbox, so the id never changes), ``start`` (a new instance in the same cell) and
  ``remove``.
- An actor *spawned at run time* is a child of this rank's
  :class:`~plexhpc.otp.supervision.DynamicSupervisor` (``simple_one_for_one``).

A terminate handler that waits (on an ask) gets the child's ``shutdown_timeout_ms`` and
is then killed.
"""

from __future__ import annotations

import time

from greenlet import getcurrent, greenlet

from .. import errors as E
from ..log import get_logger
from ..runtime.cell import BLOCKED, STARTING, STOPPED, STOPPING
from ..runtime.envelope import OP
from ..runtime.executor import kill, run_terminate
from .supervision import ESCALATE, RESTART, DynamicSupervisor

__all__ = ["RankSupervision"]

actor_log = get_logger("actor")


class RankSupervision:
    """Crash and exit handling, and the tree's commands, on one rank. ``rt`` is the
    node; ``tree`` is the SupervisionTree on rank 0 (None elsewhere)."""

    def __init__(self, rt, tree):
        self.rt = rt
        self.rank = rt.rank
        self.tree = tree
        cfg = rt.config
        self.tree_names = frozenset(c.name for c in cfg.children)
        self.children_by_name = {c.name: c for c in cfg.children}
        self.dynamic = DynamicSupervisor(rt.rank, cfg.max_restarts,
                                         cfg.max_restart_window_seconds)
        ops = rt.system
        ops.register("sup_removed", self._on_removed, owner="supervision",
                     payload="child name: stopped from outside its supervisor")
        ops.register("sup_exit", self._on_exit, owner="supervision",
                     payload="(child name, abnormal, reason, generation): for rank 0's tree")
        ops.register("sup_cmd", lambda src, d, done, to: self.command(*d, done), asks=True,
                     owner="supervision", payload="(halt|start|remove, child name) -> None")

    def is_config_child(self, cell) -> bool:
        return cell.name in self.tree_names and cell.id == f"{cell.name}@{self.rank}"

    # ---- reports to the tree -------------------------------------------------------

    def _report_exit(self, name, abnormal, reason) -> None:
        gen = self.rt.actors.cells[f"{name}@{self.rank}"].restarts
        if self.tree is not None:
            self.tree.report(name, abnormal, reason, gen)
        else:
            self.rt.system.post(0, "sup_exit", (name, abnormal, reason, gen))

    def _on_exit(self, _src, data) -> None:
        if self.tree is not None:
            self.tree.report(*data)

    def _on_removed(self, _src, name) -> None:
        if self.tree is not None:
            self.tree.removed.add(name)

    def stopped_from_outside(self, cell, reason) -> None:
        """A config child stopped other than by its supervisor (OTP's terminate_child):
        the tree leaves it out of restarts until its supervisor itself starts again.
        Any other actor that stopped leaves the dynamic supervisor."""
        self.dynamic.forget(cell.id)
        if (self.is_config_child(cell) and reason != "removed by its supervisor"
                and not self.rt.lifecycle.shutting_down):
            if self.tree is not None:
                self.tree.removed.add(cell.name)
            else:
                self.rt.system.post(0, "sup_removed", cell.name)

    # ---- crashes and exits ---------------------------------------------------------

    def crash(self, cell, exc, tb, where) -> None:
        """A handler, init or workflow run raised: tear the instance down and let the
        actor's supervisor decide (the tree for a config child, else this rank's
        dynamic supervisor)."""
        actor_log.error("%s crashed in %s: %s: %s\n%s", cell.id, where, type(exc).__name__,
                        exc, tb)
        rt = self.rt
        rt.actors.teardown(cell, f"crashed: {type(exc).__name__}: {exc}", True,
                           checkpoint=False)
        if cell.status == STOPPING:
            return  # being stopped anyway: the executor finalizes it
        if self.is_config_child(cell):
            # a config child: its supervisor (on rank 0) decides; messages wait meanwhile
            cell.status = STARTING
            self._report_exit(cell.name, True, f"crashed in {where}: {type(exc).__name__}: "
                                               f"{exc}")
            return
        decision = self.dynamic.on_crash(cell.id, cell.restart if cell.supervised
                                         else "temporary", time.monotonic())
        if decision == ESCALATE:
            # past its own restart budget: this actor stops, the job goes on
            reason = self.dynamic.give_up_reason(cell.id)
            actor_log.error("%s; last crash in %s: %s: %s", reason, where,
                            type(exc).__name__, exc)
            cell.status = STOPPING
            cell.stop_reason = (f"restart intensity exceeded "
                                f"({self.dynamic.budgets[cell.id].describe()})")
            return
        if decision != RESTART:
            cell.status = STOPPING
            cell.stop_reason = f"crashed: {type(exc).__name__}: {exc}"
            return
        cell.restarts += 1
        rt.executor.queue_init(cell)
        actor_log.warning("%s restarted (restart %d)", cell.id, cell.restarts)

    def exit_actor(self, cell, reason: str) -> None:
        """An actor ends itself: a config child is handed to its supervisor (a normal
        exit restarts only permanent children); any other actor simply stops."""
        if self.is_config_child(cell):
            if cell.inst is not None and cell.spec.terminate is not None:
                run_terminate(cell, reason)  # it ends itself, in its own turn
            self.halt(cell, reason)
            self._report_exit(cell.name, reason not in ("normal", "shutdown"), reason)
        else:
            self.rt.actors.stop_actor(cell, reason)

    # ---- the tree's commands -------------------------------------------------------

    def command(self, cmd, name, done) -> None:
        """Carry out the supervisor's ``halt`` / ``start`` / ``remove`` of a config child
        on this rank; ``done`` when finished (for start: when its init finished)."""
        rt = self.rt
        cell = rt.actors.cells.get(f"{name}@{self.rank}")
        child = self.children_by_name.get(name)
        if cell is None and cmd == "start" and child is not None and child.rank == self.rank:
            # removed earlier (temporary, or stopped): its supervisor starts it afresh
            cell = rt.actors.new_config_child(child)
            cell.status = STARTING
        if cell is None:
            if cmd in ("halt", "remove"):
                done(True, None)  # gone already: nothing to stop
            else:
                done(False, E.ActorNotFound(f"no config child {name!r} on rank {self.rank}",
                                            actor=name))
            return
        if cmd == "halt":
            self.halt(cell, "shutdown", lambda: done(True, None))
        elif cmd == "start":
            def start():
                cell.restarts += 1
                rt.executor.queue_init(cell, done)
            self.halt(cell, "shutdown", start)
        elif cmd == "remove":
            def remove():
                if cell.status != STOPPED:
                    cell.status = STOPPING
                    rt.actors.finalize_stop(cell, "removed by its supervisor")
                done(True, None)
            self.halt(cell, "removed", remove)
        else:
            done(False, E.InvalidMessage(f"unknown supervisor command {cmd!r}"))

    def halt(self, cell, reason, done=None) -> None:
        """Stop the instance (terminate handler, monitors told) but keep the cell and its
        mailbox, so the actor can be started again under the same id. A terminate
        handler that waits (on an ask) gets the child's ``shutdown_timeout_ms``, then is
        killed; ``done()`` runs when the actor is down."""
        rt = self.rt
        g = cell.running
        here = getcurrent()
        if g is not None and g is not here:
            rt.executor.abandon(cell)
            env, cell.current = cell.current, None
            kill(g)
            if env is not None:  # the caller of the killed handler hears why at once
                rt.executor.reply_error(env, E.ActorNotFound(
                    f"actor {cell.id} was stopped ({reason}) while handling {env[OP]!r}",
                    actor=cell.id))
        if cell.status != STOPPED:
            cell.status = STARTING  # no messages run while it stops; they wait for it
        if cell.inst is None or cell.spec.terminate is None or g is here:
            self._halt_finish(cell, reason, done)
            return
        once = [False]

        def cont():
            if not once[0]:
                once[0] = True
                self._halt_finish(cell, reason, done)

        t = greenlet(_halt_terminate, rt.executor.hub)
        t.cell = cell
        t.ctx = None
        if t.switch((rt, cell, reason, cont)) is not BLOCKED:
            cont()
            return
        child = self.children_by_name.get(cell.name)
        timeout_s = (child.shutdown_timeout_ms if child is not None else 5000) / 1000.0

        def give_up():
            if not t.dead:
                actor_log.warning("%s: terminate handler still running after %.0f ms; "
                                  "killed", cell.id, timeout_s * 1000)
                kill(t)
            cont()
        rt.timers.after(timeout_s, give_up)

    def _halt_finish(self, cell, reason, done) -> None:
        self.rt.actors.teardown(cell, reason, reason != "normal", checkpoint=True)
        cell.pending_init = False
        if cell.status != STOPPED:
            cell.status = STARTING
        if done is not None:
            done()


def _halt_terminate(args):
    rt, cell, reason, cont = args
    run_terminate(cell, reason)
    rt.run_soon(cont)
    return None

