"""Workflow runs: a run proceeds beside the actor's mailbox, and every completed step is
recorded so a run cut short by a crash or a relaunch resumes without repeating work.

The model is replay, as in Temporal: the run handler is ordinary code that puts each
piece of work worth keeping behind ``host.step(name, fn, ...)``. The first time a step
runs, its result is written to this rank's checkpoint file; when the run is started
again (after the actor restarts, or on the next launch of the app), the handler runs
from the top and each step already recorded returns its recorded result instead of
running. Code between steps must therefore be deterministic; a step that is not the
one recorded at that position is reported, not guessed at.

While a run waits (in an ask, or a step that asks), the actor keeps handling its other
messages, so ``workflow_query:<name>`` answers during the run and
``workflow_signal:<name>`` can change what the run does next.
"""

from __future__ import annotations

import traceback
import uuid

from greenlet import GreenletExit, getcurrent, greenlet

from .. import errors as E
from ..context import is_system
from ..log import get_logger
from ..runtime.current import here as _here
from ..runtime.executor import kill

__all__ = ["WorkflowRuns", "start_run", "status", "step", "resume_pending", "kill_run",
           "recorded_signal", "guarded_query"]

log = get_logger("actor")


class WorkflowRuns:
    """The workflow runs in progress on one rank (actor id -> run), and what the runtime
    does with them: abandon one when its actor ends, all at shutdown (they resume on the
    next launch), and look for an unfinished one when a workflow actor starts."""

    def __init__(self, rt):
        self.rt = rt
        self.runs: dict = {}

    def kill_run(self, cell) -> None:
        if self.runs:
            kill_run(self.rt, cell)

    def kill_all(self) -> None:
        for aid in list(self.runs):
            cell = self.rt.actors.cells.get(aid)
            run = self.runs.get(aid)
            if cell is not None:
                kill_run(self.rt, cell)  # tells the caller; the kill itself is queued
            if run is not None and run.g is not None and not run.g.dead:
                kill(run.g)
        self.runs.clear()

    def on_started(self, cell) -> None:
        """A workflow actor (re)started: continue its unfinished run, if any."""
        try:
            resume_pending(self.rt, cell)
        except E.StateError as exc:
            log.error("%s: cannot look for an unfinished run: %s", cell.id, exc)


class Run:
    __slots__ = ("run_id", "payload", "g", "token", "next_step", "done_steps", "resumed",
                 "signals", "n_signals")

    def __init__(self, run_id, payload, token, done_steps):
        self.run_id = run_id
        self.payload = payload
        self.g = None
        self.token = token
        self.next_step = 0
        # steps are recorded under 0, 1, 2...; signals received during the run under
        # -1, -2, ... with the step they came before, so a replay re-applies them there
        self.done_steps = {k: v for k, v in done_steps.items() if k >= 0}
        self.signals = sorted((v for k, v in done_steps.items() if k < 0),
                              key=lambda rec: rec["seq"])
        self.n_signals = len(self.signals)
        self.resumed = bool(done_steps)


def _check_caller(cell, run, what: str) -> None:
    """A run acts for whoever started it: only that tenant and namespace (or the system)
    may signal or query it while it is in progress (``workflow_status`` hides it from
    the others in the same way)."""
    if run is None or run.g is None or is_system(cell.ctx):
        return
    if tuple(cell.ctx[:2]) != tuple(run.g.ctx[:2]):
        raise E.Rejected(f"{what}: workflow {cell.id} has no run in progress for tenant "
                         f"{cell.ctx[0]!r}, namespace {cell.ctx[1]!r}")


def _bind(h, payload, what: str) -> dict:
    """The handler's arguments, or Rejected saying what is wrong (never a crash)."""
    try:
        return h.bind(payload)
    except E.InvalidMessage as exc:
        raise E.Rejected(f"{what}: {exc}") from None


def recorded_signal(name: str, h):
    """The handler of ``workflow_signal:<name>``: during a run, the signal is recorded
    (with the step it arrived before) and then handled, so a run replayed after a
    crash sees it again at the same point. Only the run's own tenant may signal it."""
    def handle(self, **payload):
        node, cell = _here()
        run = node.runs.get(cell.id)
        _check_caller(cell, run, f"workflow_signal:{name}")
        kwargs = _bind(h, payload, f"workflow_signal:{name}")
        before = run.next_step if run is not None else 0
        result = h.func(self, **kwargs)  # a signal that raises is not recorded
        run = node.runs.get(cell.id)
        if run is not None:
            run.n_signals += 1
            try:
                node.local_state.checkpoints.record_step(
                    _wf_key(cell), run.run_id, -run.n_signals,
                    {"signal": name, "payload": payload, "before": before,
                     "seq": run.n_signals})
            except (TypeError, E.PlexError) as exc:
                log.error("%s: signal %r could not be recorded for replay: %s", cell.id,
                          name, exc)
        return result
    handle.__name__ = f"signal:{name}"
    return handle


def guarded_query(name: str, h):
    """The handler of ``workflow_query:<name>``: while a run is in progress, only the
    tenant it runs for (or the system) may query it; bad arguments are refused."""
    def handle(self, **payload):
        node, cell = _here()
        _check_caller(cell, node.runs.get(cell.id), f"workflow_query:{name}")
        return h.func(self, **_bind(h, payload, f"workflow_query:{name}"))
    handle.__name__ = f"query:{name}"
    return handle


def _replay_signals(cell, run, before: int) -> None:
    """Apply the recorded signals that arrived before step ``before``."""
    sigs = cell.spec.workflow.signals
    while run.signals and run.signals[0]["before"] <= before:
        rec = run.signals.pop(0)
        h = sigs.get(rec["signal"])
        if h is not None:
            h.invoke(cell.inst, rec["payload"])


def _wf_key(cell) -> str:
    return f"wf:{cell.name or cell.id}:{cell.spec.type_name}"


def _active_key(cell) -> str:
    return _wf_key(cell) + "#active"


def start_run(self, **payload):
    """Built-in ``workflow_run``: start a run (``run_id`` optional) and answer the ask
    with its result when it finishes."""
    node, cell = _here()
    if cell.current is None:
        raise E.Rejected("workflow_run must be asked (it answers with the run's result), "
                         "not sent")
    run = node.runs.get(cell.id)
    if run is not None:
        raise E.Rejected(f"workflow {cell.id} is already running {run.run_id!r}; query or "
                         "signal it, or wait for it to finish")
    run_id = payload.pop("run_id", None) or f"run-{uuid.uuid4().hex[:12]}"
    if not isinstance(run_id, str) or len(run_id) > 200 or not run_id.isprintable():
        raise E.Rejected(f"run_id must be a printable str of at most 200 characters, got "
                         f"{run_id!r}")
    # the run handler's arguments are checked now, so a bad request is refused here
    # instead of crashing the run (and counting against the actor's restart budget)
    _bind(cell.spec.workflow.run, payload, "workflow_run")
    store = node.local_state.checkpoints
    if store.run_finished(_wf_key(cell), run_id) or store.steps(_wf_key(cell), run_id):
        raise E.Rejected(f"run_id {run_id!r} has been used already; give a new one (or "
                         "none: one is made up)")
    try:
        store.save(_active_key(cell), {"run_id": run_id, "payload": payload,
                                       "ctx": list(cell.ctx)}, 0)
    except TypeError as exc:
        raise E.Rejected(f"workflow_run payload cannot be recorded: {exc}") from None
    token = node.defer_reply(cell)
    _launch(node, cell, Run(run_id, payload, token, store.steps(_wf_key(cell), run_id)),
            cell.ctx)


def resume_pending(node, cell) -> bool:
    """After (re)start: continue a run that was recorded as started but not finished."""
    if cell.id in node.runs:
        return False
    store = node.local_state.checkpoints
    try:
        found = store.load(_active_key(cell))
    except E.CheckpointRejected as exc:
        log.error("%s: the record of its unfinished run was refused (%s); not resuming",
                  cell.id, exc)
        return False
    if found is None:
        return False
    rec = found[0]
    steps = store.steps(_wf_key(cell), rec["run_id"])
    log.info("%s: resuming run %s after %d recorded step(s)", cell.id, rec["run_id"],
             len(steps))
    ctx = tuple(rec["ctx"]) if rec.get("ctx") else cell.home_ctx
    _launch(node, cell, Run(rec["run_id"], dict(rec["payload"]), None, steps), ctx)
    return True


def _launch(node, cell, run: Run, ctx) -> None:
    g = greenlet(_body, node.executor.hub)
    g.cell = cell
    g.ctx = ctx  # the run acts for whoever started it, whatever else the actor handles
    run.g = g
    node.runs[cell.id] = run
    node.executor.resume.append((g, (node, cell, run)))


def _body(args):
    node, cell, run = args
    spec = cell.spec.workflow.run
    try:
        result = spec.invoke(cell.inst, dict(run.payload))
    except GreenletExit:
        raise
    except Exception as exc:  # noqa: BLE001 - a crash of the run is the actor's crash
        tb = traceback.format_exc()
        if node.runs.get(cell.id) is run:
            del node.runs[cell.id]
        if run.token is not None:
            node.reply_to(run.token, False, E.RemoteError(
                f"workflow run {run.run_id} of {cell.id} raised {type(exc).__name__}: {exc}",
                remote_type=type(exc).__name__, remote_message=str(exc), rank=node.rank,
                actor=cell.id, op="workflow_run", remote_traceback=tb))
        node.supervision.crash(cell, exc, tb, f"workflow run {run.run_id}")
        return None
    if node.runs.get(cell.id) is run:
        del node.runs[cell.id]
    store = node.local_state.checkpoints
    try:
        scope = list(run.g.ctx[:2]) if run.g is not None else None
        store.finish_run(_wf_key(cell), run.run_id, {"result": result, "scope": scope})
        store.compact_runs(_wf_key(cell), keep=node.config.state.retention)
    except (TypeError, E.PlexError) as exc:
        log.error("%s: the result of run %s cannot be recorded: %s", cell.id, run.run_id, exc)
    try:
        store.delete(_active_key(cell))
    except E.PlexError as exc:  # never let a store problem take the loop down
        log.error("%s: cannot clear the record of run %s: %s", cell.id, run.run_id, exc)
    if run.token is not None:
        node.reply_to(run.token, True, result)
    return None


def kill_run(node, cell) -> None:
    """Abandon ``cell``'s run (the actor crashed or stops); its record stays, so it
    resumes on the next start. Runs from the hub, never inside the run itself."""
    run = node.runs.pop(cell.id, None)
    if run is None or run.g is None or run.g.dead or run.g is getcurrent():
        return
    run.g.killed = True  # what arrives for it from now on goes back (host_state)
    if run.token is not None:  # whoever started it hears now, not at its ask's timeout
        node.reply_to(run.token, False, E.RemoteError(
            f"workflow run {run.run_id} of {cell.id} was interrupted (the actor crashed or "
            "stopped); it resumes after its last completed step when the actor starts "
            "again: ask workflow_status for its result", remote_type="RunInterrupted",
            rank=node.rank, actor=cell.id, op="workflow_run"))
        run.token = None

    def kill():
        if not run.g.dead:
            try:
                run.g.throw(GreenletExit)
            except GreenletExit:
                pass
    node.run_soon(kill)


def step(name: str, fn, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` as step ``name`` of the current run, or return its
    recorded result if this run already completed that step before a restart."""
    node, cell = _here()
    run = node.runs.get(cell.id)
    if run is None or run.g is not getcurrent():
        raise E.HostUsageError("host.step() works only inside a workflow's run handler")
    if not isinstance(name, str) or not name:
        raise ValueError(f"a step needs a name (a non-empty str), got {name!r}")
    idx = run.next_step
    run.next_step += 1
    if run.signals:
        _replay_signals(cell, run, idx)
    rec = run.done_steps.get(idx)
    if rec is not None:
        if rec.get("name") != name:
            raise E.StateError(
                f"workflow {cell.id} run {run.run_id}: step {idx} was recorded as "
                f"{rec.get('name')!r} but the run now takes {name!r} there; a resumed run "
                "must take the same steps in the same order")
        return rec.get("value")
    value = fn(*args, **kwargs)
    node.local_state.checkpoints.record_step(_wf_key(cell), run.run_id, idx,
                                             {"name": name, "value": value})
    return value


def status(self, run_id: str | None = None) -> dict:
    """Built-in ``workflow_status``: the current run, or a finished run's result."""
    if run_id is not None and (not isinstance(run_id, str) or len(run_id) > 200):
        raise E.Rejected(f"workflow_status: run_id must be a str of at most 200 "
                         f"characters, got {run_id!r}")
    node, cell = _here()
    run = node.runs.get(cell.id)
    mine = list(cell.ctx[:2])  # runs of another tenant or namespace are not shown
    if run_id is None or (run is not None and run.run_id == run_id):
        if run is None or list(run.g.ctx[:2]) != mine:
            return {"status": "idle"} if run_id is None else {"status": "unknown",
                                                               "run_id": run_id}
        return {"status": "running", "run_id": run.run_id, "steps_done": run.next_step,
                "resumed": run.resumed}
    found = node.local_state.checkpoints.run_result(_wf_key(cell), run_id)
    if not isinstance(found, dict) or found.get("scope") != mine:
        return {"status": "unknown", "run_id": run_id}
    return {"status": "completed", "run_id": run_id, "result": found["result"]}
