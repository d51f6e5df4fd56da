"""The app's supervision tree, as in OTP, over children that live on different ranks.

The tree comes from the app config (nested ``type = "supervisor"`` children allowed) and
is the same on every rank; its decisions are made on rank 0, one at a time, so restart
intensity is counted per supervisor for the whole job. When a config child exits:

- ``temporary`` children are never restarted; ``transient`` ones only after a crash;
  ``permanent`` ones always.
- A restart is recorded against the child's supervisor; more than ``max_restarts``
  within ``max_restart_window_seconds`` means restarting is not helping: the supervisor
  stops all its children (reverse start order) and exits, and its parent handles that
  as the crash of one child. At the root, the job stops with status 1.
- Otherwise the strategy picks what restarts with the child: ``one_for_one`` the child
  alone, ``rest_for_one`` it and the children started after it, ``one_for_all`` every
  child of the supervisor. The others are stopped in reverse start order (terminate
  handlers run), then all are started again in start order, each one's init awaited
  before the next, after an optional exponential ``restart_backoff_ms``.

A stopped or restarting child keeps its mailbox (messages wait for the new instance),
as the id of a config child never changes. The commands to other ranks are system
asks with a timeout: a rank that does not answer fails the job instead of hanging it.
"""

from __future__ import annotations

import time
from collections import deque

from ..config import ChildSpec, SupervisorSpec
from ..log import get_logger

__all__ = ["SupervisionTree", "RestartIntensity", "DynamicSupervisor", "RESTART", "STOP",
           "ESCALATE"]

log = get_logger("actor")
_CMD_TIMEOUT_MS = 60_000

RESTART = "restart"
STOP = "stop"
ESCALATE = "escalate"


class RestartIntensity:
    """OTP's restart intensity of one supervisor: more than ``max_restarts`` restarts
    within ``window_s`` seconds means restarting is not helping."""

    def __init__(self, max_restarts: int, window_s: float):
        self.max_restarts = max_restarts
        self.window_s = window_s
        self._times: deque = deque()

    def record(self, now: float) -> bool:
        """Count one restart at ``now``; True if the intensity is now exceeded."""
        times = self._times
        times.append(now)
        while times and times[0] < now - self.window_s:
            times.popleft()
        return len(times) > self.max_restarts

    @property
    def recent(self) -> int:
        """Restarts within the window (as of the last one recorded)."""
        return len(self._times)

    def clear(self) -> None:
        self._times.clear()

    def describe(self) -> str:
        return (f"{len(self._times)} restarts within {self.window_s:g} s, "
                f"max_restarts={self.max_restarts}")


class DynamicSupervisor:
    """The supervisor of the actors spawned at run time on one rank: OTP's
    ``simple_one_for_one`` under the root of the app's tree, with the root's intensity
    counted *per child*.

    A crashed ``permanent`` or ``transient`` child is restarted alone, a ``temporary`` one
    is not. Each child has its own restart budget (``max_restarts`` within the window):
    the actors of one tenant, or one actor fed bad requests by one caller, cannot use up
    a budget that others share. A child that exceeds its budget is stopped (its monitors
    and links hear "restart intensity exceeded ...") and the job goes on; it is not a
    significant child. Budgets are made at a child's first crash and dropped when it
    stops, so the actors that never crash cost nothing here."""

    strategy = "simple_one_for_one"

    def __init__(self, rank: int, max_restarts: int, window_s: float):
        self.name = f"$dynamic@{rank}"
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.budgets: dict = {}   # actor id -> RestartIntensity, for those that crashed
        self.gave_up = 0          # children stopped for exceeding their budget

    def on_crash(self, actor_id: str, restart_type: str, now: float) -> str:
        """RESTART, or STOP (a temporary child, or one past its restart budget: then
        :meth:`give_up_reason` says why)."""
        if restart_type == "temporary":
            return STOP
        budget = self.budgets.get(actor_id)
        if budget is None:
            budget = self.budgets[actor_id] = RestartIntensity(self.max_restarts,
                                                               self.window_s)
        if budget.record(now):
            self.gave_up += 1
            return ESCALATE
        return RESTART

    def give_up_reason(self, actor_id: str) -> str:
        budget = self.budgets.get(actor_id)
        what = budget.describe() if budget is not None else "budget exceeded"
        return (f"supervisor {self.name!r} ({self.strategy}) stopped {actor_id}: restart "
                f"intensity exceeded ({what})")

    def forget(self, actor_id: str) -> None:
        """The child stopped for good: drop its budget."""
        self.budgets.pop(actor_id, None)


class SupervisionTree:
    """Rank 0's supervisor decisions (other ranks only report exits to it)."""

    def __init__(self, node, root: SupervisorSpec):
        self.node = node
        self.root = root
        self.owner: dict = {}   # child or supervisor name -> its parent SupervisorSpec
        self.specs: dict = {}   # name -> ChildSpec | SupervisorSpec
        self.log: dict = {}     # supervisor name -> its RestartIntensity
        self._index(root)
        self._queue: deque = deque()
        self._busy = False
        self.restarts = 0
        # instance generation of each child: an exit reported by an instance that has
        # been replaced since (it crashed while its sibling's restart replaced it) is old
        # news, as in OTP, and must not restart anything again
        self.gen = {c.name: 0 for c in root.leaves()}
        # children that are not running and not to be restarted with their siblings:
        # temporary ones that exited, and any stopped from outside (terminate_child)
        self.removed: set = set()

    def _index(self, sup: SupervisorSpec) -> None:
        self.log[sup.name] = RestartIntensity(sup.max_restarts, sup.window_s)
        self.specs[sup.name] = sup
        for c in sup.children:
            self.owner[c.name] = sup
            self.specs[c.name] = c
            if isinstance(c, SupervisorSpec):
                self._index(c)

    def is_child(self, name) -> bool:
        return isinstance(self.specs.get(name), ChildSpec)

    # ---- reports ------------------------------------------------------------------

    def report(self, name: str, abnormal: bool, reason: str, gen: int | None = None) -> None:
        """A config child exited (on any rank); ``gen`` is the generation of the instance
        that exited. Handled later, from the loop; ignored once the job shuts down."""
        if self.node.lifecycle.shutting_down:
            return
        if gen is not None and gen < self.gen.get(name, 0):
            log.debug("supervisor: ignoring the exit of an old instance of %s", name)
            return
        self._queue.append((name, abnormal, reason, gen))
        self.node.run_soon(self._next)

    def _next(self) -> None:
        if self._busy or not self._queue:
            return
        self._busy = True
        name, abnormal, reason, gen = self._queue.popleft()
        if self.node.lifecycle.shutting_down or (gen is not None and gen < self.gen.get(name, 0)):
            self._done()
            return
        try:
            self._handle(name, abnormal, reason)
        except Exception:  # noqa: BLE001 - a bug here must not wedge supervision
            log.exception("supervision of %s failed", name)
            self._done()

    def _done(self) -> None:
        self._busy = False
        if self._queue:
            self.node.run_soon(self._next)

    # ---- decisions ----------------------------------------------------------------

    def _handle(self, name, abnormal, reason) -> None:
        spec = self.specs[name]
        sup = self.owner[name]
        restart = spec.restart if isinstance(spec, ChildSpec) else "permanent"
        if restart == "temporary" or (restart == "transient" and not abnormal):
            log.info("%s exited (%s); %s child, not restarted", name, reason, restart)
            self.removed.update(c.name for c in _leaves(spec))
            self._run([("remove", c) for c in _leaves(spec)], self._done)
            return
        intensity = self.log[sup.name]
        if intensity.record(time.monotonic()):
            self._escalate(sup, name, reason, intensity.recent)
            return
        units = sup.children
        i = next(k for k, c in enumerate(units) if c.name == name)
        if sup.strategy == "one_for_one":
            chosen = [units[i]]
        elif sup.strategy == "rest_for_one":
            chosen = units[i:]
        else:
            chosen = list(units)
        if isinstance(spec, SupervisorSpec):  # a supervisor starts its whole spec again
            self.removed.difference_update(c.name for c in spec.leaves())
        gone = self.removed
        halt = [c for u in reversed(chosen) if u is not spec
                for c in reversed(_leaves(u)) if c.name not in gone]
        start = [c for u in chosen for c in _leaves(u)
                 if c.name not in gone and (u is spec or c.restart != "temporary")]
        removed = [c for u in chosen if u is not spec for c in _leaves(u)
                   if c.restart == "temporary" and c.name not in gone]
        gone.update(c.name for c in removed)
        delay = 0.0
        if sup.backoff_ms > 0:
            delay = min(sup.backoff_max_ms,
                        sup.backoff_ms * 2 ** (intensity.recent - 1)) / 1000.0
        self.restarts += 1
        log.warning("supervisor %r (%s): %s exited (%s); restarting %s%s", sup.name,
                    sup.strategy, name, reason, [c.name for c in start],
                    f" after {delay * 1000:.0f} ms" if delay else "")
        steps = [("halt", c) for c in halt] + [("remove", c) for c in removed]
        failed: list = []

        def after_halt():
            if delay:
                self.node.timers.after(delay, lambda: self._run(
                    [("start", c) for c in start], finish, failed))
            else:
                self._run([("start", c) for c in start], finish, failed)

        def finish():
            for c, err in failed:  # an init that failed is another crash of that child
                self._queue.appendleft((c.name, True, f"init failed on restart: {err}",
                                        None))
            self._done()

        self._run(steps, after_halt)

    def _escalate(self, sup, name, reason, n) -> None:
        text = (f"supervisor {sup.name!r}: restart intensity exceeded ({n} restarts within "
                f"{sup.window_s:g} s, max_restarts={sup.max_restarts}); last exit: {name}: "
                f"{reason}")
        log.critical(text)
        self.log[sup.name].clear()
        halt = [("halt", c) for c in reversed(sup.leaves())]
        if sup is self.root:
            def stop_job():
                self.node.lifecycle.request_shutdown(text, 1)
                self._done()
            self._run(halt, stop_job)
            return

        def up():  # the supervisor gave up: its parent sees one child crash
            self._queue.appendleft((sup.name, True, f"supervisor gave up: {text}", None))
            self._done()
        self._run(halt, up)

    def stop_all(self, then) -> None:
        """Job shutdown: every config child, in reverse start order across all ranks,
        each given its shutdown_timeout_ms; ``then()`` when all are down. Waits for a
        restart in progress to finish first."""
        if self._busy:
            self.node.timers.after(0.005, lambda: self.stop_all(then))
            return
        self._busy = True
        self._queue.clear()
        self._run([("halt", c) for c in reversed(self.root.leaves())
                   if c.name not in self.removed], then)

    # ---- commands to the ranks ----------------------------------------------------

    def _run(self, steps, then, failed=None) -> None:
        """Run (cmd, child) steps one after another on the children's ranks."""
        steps = list(steps)
        node = self.node

        def go(i):
            if i == len(steps):
                then()
                return
            cmd, child = steps[i]
            if cmd == "start":
                self.gen[child.name] = self.gen.get(child.name, 0) + 1

            def done(ok, value):
                if not ok:
                    if cmd == "start" and failed is not None:
                        failed.append((child, value))
                    elif isinstance(value, TimeoutError):
                        # a rank that does not answer its supervisor: the job cannot be
                        # trusted to be supervised any more
                        node.lifecycle.request_shutdown(f"supervisor: {cmd} of {child.name} on rank "
                                              f"{child.rank} got no answer: {value}", 1)
                    else:
                        log.error("supervisor: %s of %s failed: %s", cmd, child.name, value)
                node.run_soon(lambda: go(i + 1))  # on from the loop, not here
            if child.rank == node.rank:
                node.supervision.command(cmd, child.name, done)
            else:
                node.system.ask(child.rank, "sup_cmd", (cmd, child.name), done,
                                _CMD_TIMEOUT_MS)
        go(0)


def _leaves(unit) -> list:
    return unit.leaves() if isinstance(unit, SupervisorSpec) else [unit]
