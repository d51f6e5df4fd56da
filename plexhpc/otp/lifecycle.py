"""The supervision tree's side on each rank: stopping ("halting") and starting a config
child in place for its supervisor, reporting exits to it, and an actor ending itself.

A halted child keeps its cell and mailbox, so messages wait for the next instance and
its id never changes. A terminate handler that waits (on an ask) gets the child's
``shutdown_timeout_ms`` and is then killed. Decisions are made by the tree on rank 0
(:mod:`plexhpc.otp.supervision`); these are the commands it sends.
"""

from __future__ import annotations

import traceback

from greenlet import getcurrent, greenlet

from .. import errors as E
from ..actors import facets as _facets
from ..actors.spec import spec_of
from ..runtime.cell import BLOCKED, P_DRAINING, STARTING, STOPPED, STOPPING, SYS
from ..log import get_logger

__all__ = ["LifecycleMixin", "kill"]

actor_log = get_logger("actor")


class LifecycleMixin:
    """Supervision commands and exits of :class:`~plexhpc.runtime.node.Node`."""

    @property
    def shutting_down(self) -> bool:
        return self._phase >= P_DRAINING

    def _report_exit(self, name, abnormal, reason) -> None:
        gen = self._cells[f"{name}@{self.rank}"].restarts
        if self.tree is not None:
            self.tree.report(name, abnormal, reason, gen)
        else:
            self.transport.post(0, (SYS, None, None, "sup_exit", (name, abnormal, reason, gen),
                                    0, -1, None))

    def exit_actor(self, cell, reason: str) -> None:
        """An actor ends itself: a config child is handed to its supervisor (a normal
        exit restarts only permanent children); any other actor simply stops."""
        if cell.name in self._tree_names and cell.id == f"{cell.name}@{self.rank}":
            if cell.inst is not None and cell.spec.terminate is not None:
                try:  # it ends itself: its terminate handler runs here, in its own turn
                    cell.spec.terminate(cell.inst, reason)
                except Exception:  # noqa: BLE001
                    actor_log.error("%s: terminate handler raised:\n%s", cell.id,
                                    traceback.format_exc())
            self._halt(cell, reason)
            self._report_exit(cell.name, reason not in ("normal", "shutdown"), reason)
        else:
            self.stop_actor(cell, reason)

    def sup_command(self, cmd, name, done) -> None:
        """Carry out the supervisor's ``halt`` / ``start`` / ``remove`` of a config child
        on this rank; ``done`` when finished (for start: when its init finished)."""
        cell = self._cells.get(f"{name}@{self.rank}")
        child = self._children_by_name.get(name)
        if cell is None and cmd == "start" and child is not None and child.rank == self.rank:
            # removed earlier (temporary, or stopped): its supervisor starts it afresh
            cell = self._new_cell(f"{name}@{self.rank}", name, spec_of(child.cls),
                                  child.args, child.restart, True, child.context,
                                  child.capabilities, child.facet_config)
            cell.status = STARTING
        if cell is None:
            if cmd in ("halt", "remove"):
                done(True, None)  # gone already: nothing to stop
            else:
                done(False, E.ActorNotFound(f"no config child {name!r} on rank {self.rank}"))
            return
        if cmd == "halt":
            self._halt(cell, "shutdown", lambda: done(True, None))
        elif cmd == "start":
            def start():
                cell.restarts += 1
                self._queue_init(cell, done)
            self._halt(cell, "shutdown", start)
        elif cmd == "remove":
            def remove():
                if cell.status != STOPPED:
                    cell.status = STOPPING
                    self._finalize_stop(cell, "removed by its supervisor")
                done(True, None)
            self._halt(cell, "removed", remove)
        else:
            done(False, ValueError(f"unknown supervisor command {cmd!r}"))

    def _halt(self, cell, reason, done=None) -> None:
        """Stop the instance (terminate handler, monitors told) but keep the cell and its
        mailbox, so the actor can be started again under the same id. A terminate
        handler that waits (on an ask) gets the child's ``shutdown_timeout_ms``, then is
        killed; ``done()`` runs when the actor is down."""
        g = cell.running
        here = getcurrent()
        if g is not None and g is not here:
            cell.running = None
            self._busy -= 1
            env, cell.current = cell.current, None
            kill(g)
            if env is not None:  # the caller of the killed handler hears why at once
                self._reply_error(env, E.NOT_FOUND, f"actor {cell.id} was stopped ({reason}) "
                                  f"while handling {env[3]!r}")
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

        t = greenlet(self._halt_terminate, self._hub)
        t.cell = cell
        t.ctx = None
        if t.switch((cell, reason, cont)) is not BLOCKED:
            cont()
            return
        child = self._children_by_name.get(cell.name)
        timeout_s = (child.shutdown_timeout_ms if child is not None else 5000) / 1000.0

        def give_up():
            if not t.dead:
                actor_log.warning("%s: terminate handler still running after %.0f ms; "
                                  "killed", cell.id, timeout_s * 1000)
                kill(t)
            cont()
        self.call_later(timeout_s, give_up)

    def _halt_terminate(self, args):
        cell, reason, cont = args
        try:
            cell.spec.terminate(cell.inst, reason)
        except Exception:  # noqa: BLE001
            actor_log.error("%s: terminate handler raised:\n%s", cell.id,
                            traceback.format_exc())
        self._external.append(cont)
        return None

    def _halt_finish(self, cell, reason, done) -> None:
        if cell.inst is not None and cell.facets is not None and cell.facets.durable:
            _facets.stopping(self, cell, cell.facets)
        if cell.groups:
            self.groups.leave_all(cell)
        self._kill_run(cell)
        cell.watching = None
        if cell.monitors or cell.links:
            self._notify_down(cell, reason, reason != "normal")
        cell.inst = None
        cell.pending_init = False
        if cell.status != STOPPED:
            cell.status = STARTING
        if done is not None:
            done()

    def _kill_run(self, cell) -> None:
        if self.runs:
            from .workflow import kill_run
            kill_run(self, cell)



def kill(g) -> None:
    """End a parked greenlet (from the hub): GreenletExit is thrown into it."""
    try:
        g.throw(greenlet.GreenletExit)
    except BaseException:  # noqa: BLE001 - whatever it raised on the way out
        pass
