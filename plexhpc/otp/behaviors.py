"""The behaviors beyond GenServer, as extra facts and built-in ops on an actor's spec.

- GenEvent: several cast handlers may take one event (run in definition order), and
  subscribers registered with ``subscribe`` get each event as a cast afterwards.
- GenFSM: the state field ``fsm_state``, a transition table, per-op state guards, and
  the built-in ops ``transition`` and ``get_state``. Every handler is checked after it
  ran: a move the table forbids is undone and the caller told so, with the state.
- Workflow: ``workflow_run`` / ``workflow_signal:<name>`` / ``workflow_query:<name>``;
  the run itself is driven by :mod:`plexhpc.otp.workflow`.

The decorators in :mod:`plexhpc.actors.spec` call :func:`complete_spec`; nothing here runs
at message time except the small wrappers it installs.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field

from ..actors.handlers import CALL, CAST, HandlerSpec, StateField, signature_facts
from ..actors.host_state import current_ctx
from ..errors import InvalidMessage, Rejected
from ..log import get_logger
from ..runtime.current import here
from . import workflow as _wf

log = get_logger("actor")

__all__ = ["FsmSpec", "WorkflowSpec", "complete_spec", "fsm_rejection"]


@dataclass
class FsmSpec:
    states: tuple
    initial: str
    transitions: dict | None  # state -> frozenset of next states; None: any state

    def allowed(self, frm: str, to: str) -> bool:
        if to not in self.states:
            return False
        if self.transitions is None:
            return True
        return to in self.transitions.get(frm, ())


@dataclass
class WorkflowSpec:
    run: object = None                              # HandlerSpec
    signals: dict = field(default_factory=dict)     # name -> HandlerSpec
    queries: dict = field(default_factory=dict)     # name -> HandlerSpec


def complete_spec(spec, event_fns: dict, options: dict) -> None:
    if spec.kind == "GenEvent":
        _complete_event(spec, event_fns)
    elif spec.kind == "GenFSM":
        _complete_fsm(spec, options)
    elif spec.kind == "Workflow":
        _complete_workflow(spec)


# ---- GenEvent ----------------------------------------------------------------------

def _complete_event(spec, event_fns: dict) -> None:

    spec.fields.setdefault("event_subscribers", StateField(default_factory=dict))
    spec.fields.setdefault("event_handlers_removed", StateField(default_factory=list))
    for op, handlers in event_fns.items():
        spec.handlers[op] = HandlerSpec(op, _fan_in(op, tuple(handlers)), CAST, (), (), True)
    if "subscribe" not in spec.handlers:
        spec.handlers["subscribe"] = HandlerSpec("subscribe", _subscribe, CALL,
                                                 ("subscriber", "events"), ("subscriber",))
    if "unsubscribe" not in spec.handlers:
        spec.handlers["unsubscribe"] = HandlerSpec("unsubscribe", _unsubscribe, CALL,
                                                   ("subscriber",), ("subscriber",))


def _fan_in(op, handlers):
    def run_all(self, **payload):
        removed = self.event_handlers_removed
        for h in handlers:
            name = h.func.__name__
            if name in removed:
                continue
            try:
                kwargs = h.bind(payload)
            except InvalidMessage as exc:  # the sender's mistake: not the handler's fault
                log.warning("event %r refused by handler %s: %s", op, name, exc)
                continue
            try:
                h.func(self, **kwargs)
            except Exception:  # noqa: BLE001 - OTP gen_event: drop the handler, go on
                removed.append(name)
                log.exception("event handler %s for %r raised; it is removed (the other "
                              "handlers keep running)", name, op)
        subs = self.__dict__.get("event_subscribers")
        if subs:
            node, cell = here()
            for sub, events in list(subs.items()):
                if events is None or op in events:
                    try:
                        node.send_from(cell.id, sub, op, payload, current_ctx(cell))
                    except LookupError:
                        subs.pop(sub, None)  # a subscriber that is gone
        return None
    run_all.__name__ = f"event:{op}"
    return run_all


def _subscribe(self, subscriber: str, events=None) -> dict:
    if not isinstance(subscriber, str) or not subscriber:
        raise Rejected(f"subscribe: subscriber must be an actor id or name, got "
                       f"{subscriber!r}")
    if events is not None and (not isinstance(events, (list, tuple)) or not all(
            isinstance(e, str) for e in events)):
        raise Rejected(f"subscribe: events must be a list of event names, got {events!r}")
    self.event_subscribers[subscriber] = None if events is None else sorted(set(events))
    return {"status": "ok", "subscribers": len(self.event_subscribers)}


def _unsubscribe(self, subscriber: str) -> dict:
    if not isinstance(subscriber, str):
        raise Rejected(f"unsubscribe: subscriber must be an actor id or name, got "
                       f"{subscriber!r}")
    removed = self.event_subscribers.pop(subscriber, "missing") != "missing"
    return {"status": "ok", "removed": removed, "subscribers": len(self.event_subscribers)}


# ---- GenFSM ------------------------------------------------------------------------

def _complete_fsm(spec, options: dict) -> None:

    states, initial = options.get("states"), options.get("initial")
    transitions = options.get("transitions")
    name = spec.cls.__qualname__
    if isinstance(states, str) or not states or not all(isinstance(s, str) for s in states):
        raise TypeError(f"@fsm_actor on {name}: states must be a non-empty list of names, "
                        f"got {states!r}")
    states = tuple(states)
    if len(set(states)) != len(states):
        raise TypeError(f"@fsm_actor on {name}: duplicate state names in {list(states)}")
    if initial not in states:
        raise TypeError(f"@fsm_actor on {name}: initial state {initial!r} is not one of "
                        f"{list(states)}")
    table = None
    if transitions is not None:
        if not isinstance(transitions, dict):
            raise TypeError(f"@fsm_actor on {name}: transitions must be a dict "
                            "state -> [next states]")
        table = {}
        for frm, tos in transitions.items():
            tos = [tos] if isinstance(tos, str) else list(tos)
            bad = [x for x in [frm, *tos] if x not in states]
            if bad:
                raise TypeError(f"@fsm_actor on {name}: transitions name unknown states "
                                f"{bad}; states are {list(states)}")
            table[frm] = frozenset(tos)
    fsm = spec.fsm = FsmSpec(states, initial, table)
    spec.fields["fsm_state"] = StateField(initial)
    spec.fields["fsm_transitions"] = StateField(0)
    for op, h in list(spec.handlers.items()):
        bad = [s for s in (h.states or ()) if s not in states]
        if bad:
            raise TypeError(f"{name}: handler {op!r} lists unknown states {bad}")
        h.func = _guarded(fsm, h, tuple(spec.fields))
    if "transition" not in spec.handlers:
        spec.handlers["transition"] = HandlerSpec("transition", _transition(fsm), CALL,
                                                  ("to",), ("to",))
    if "get_state" not in spec.handlers:
        spec.handlers["get_state"] = HandlerSpec("get_state", _get_state, CALL)


def fsm_rejection(state: str, message: str, **extra) -> dict:
    """The reply of a message a GenFSM refused: the current state and why."""
    return {"status": "rejected", "state": state, "error": message, **extra}


def _guarded(fsm: FsmSpec, h, fields: tuple):
    fn = h.func
    allowed_in = h.states

    @functools.wraps(fn)
    def run(self, **kwargs):
        before = self.fsm_state
        if allowed_in is not None and before not in allowed_in:
            return fsm_rejection(before, f"op {h.op!r} is not accepted in state {before!r} "
                                         f"(only in {list(allowed_in)})")
        d = self.__dict__
        # what the handler may change, so a refused transition leaves no trace at all
        saved = copy.deepcopy({k: d[k] for k in fields if k in d})
        result = fn(self, **kwargs)
        after = self.fsm_state
        if after != before and not fsm.allowed(before, after):
            d.update(saved)
            return fsm_rejection(before, f"illegal transition {before!r} -> {after!r} by op "
                                         f"{h.op!r}; state stays {before!r}",
                                 **{"from": before, "to": after})
        if after != before:
            self.fsm_transitions += 1
        return result
    return run


def _transition(fsm: FsmSpec):
    def transition(self, to: str) -> dict:
        frm = self.fsm_state
        if not isinstance(to, str) or not fsm.allowed(frm, to):
            nxt = sorted(fsm.transitions.get(frm, ())) if fsm.transitions is not None else list(
                fsm.states)
            return fsm_rejection(frm, f"illegal transition {frm!r} -> {to!r}; from {frm!r} "
                                      f"the allowed states are {nxt}", **{"from": frm, "to": to})
        self.fsm_state = to
        self.fsm_transitions += 1
        return {"status": "ok", "from": frm, "to": to, "state": to}
    return transition


def _get_state(self) -> dict:
    return {"status": "ok", "state": self.fsm_state, "transitions": self.fsm_transitions}


# ---- Workflow ----------------------------------------------------------------------

def _complete_workflow(spec) -> None:

    wf = spec.workflow = WorkflowSpec()
    for klass in reversed(spec.cls.__mro__):
        for value in vars(klass).values():
            if not callable(value):
                continue
            if getattr(value, "__plex_run__", False):
                wf.run = HandlerSpec("workflow_run", value, CALL,
                                     *signature_facts(value, "workflow_run"))
            sig = getattr(value, "__plex_signal__", None)
            if sig:
                op = f"workflow_signal:{sig}"
                facts = signature_facts(value, op)
                wf.signals[sig] = HandlerSpec(op, value, CALL, *facts)
                spec.handlers[op] = HandlerSpec(op, _wf.recorded_signal(sig, wf.signals[sig]),
                                                CALL, (), (), True)
            q = getattr(value, "__plex_query__", None)
            if q:
                op = f"workflow_query:{q}"
                wf.queries[q] = HandlerSpec(op, value, CALL, *signature_facts(value, op))
                spec.handlers[op] = HandlerSpec(op, _wf.guarded_query(q, wf.queries[q]),
                                                CALL, (), (), True)
    if wf.run is None:
        raise TypeError(f"@workflow_actor {spec.cls.__qualname__} needs a @run_handler method")
    spec.handlers["workflow_run"] = HandlerSpec("workflow_run", _wf.start_run, CALL, (), (),
                                                True)
    spec.handlers["workflow_status"] = HandlerSpec("workflow_status", _wf.status, CALL,
                                                   ("run_id",))
