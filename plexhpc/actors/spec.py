"""The actor programming model: ``@actor``, ``state()``, ``@handler``, ``@init_handler``.

An actor class declares its state as annotated fields made with :func:`state`, and its
message handlers with :func:`handler`. The decorators only record facts on the class (an
:class:`ActorSpec`); the node reads them to build instances and dispatch messages. The
class stays an ordinary class: it can be instantiated and its handlers called directly
in a unit test, without any node.

Payload keys map to handler arguments by name: extra keys are ignored, missing keys
take the argument's default, and a missing key without a default refuses the message
with :class:`~plexhpc.errors.InvalidMessage` before the handler runs.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..errors import InvalidMessage
from .handlers import (KIND_ALIASES as _KIND_ALIASES, CALL, CAST, MISSING as _MISSING,
                       HandlerSpec, StateField, signature_facts, state)

from ..otp import behaviors

if TYPE_CHECKING:
    from ..otp.behaviors import FsmSpec, WorkflowSpec

__all__ = [
    "actor",
    "event_actor",
    "fsm_actor",
    "workflow_actor",
    "run_handler",
    "signal_handler",
    "query_handler",
    "state",
    "handler",
    "init_handler",
    "terminate_handler",
    "ActorSpec",
    "HandlerSpec",
    "spec_of",
    "BEHAVIOR_KINDS",
]

#: behavior kinds an app config may name (``behavior_kind = ...``)
BEHAVIOR_KINDS = ("GenServer", "GenEvent", "GenFSM", "Workflow")

@dataclass
class ActorSpec:
    """What the decorators recorded about an actor class."""

    cls: type
    kind: str = "GenServer"
    fields: dict = field(default_factory=dict)
    handlers: dict = field(default_factory=dict)
    init: Callable | None = None
    terminate: Callable | None = None
    facets: tuple = ()
    capabilities: frozenset | None = None
    fsm: FsmSpec | None = None
    workflow: WorkflowSpec | None = None

    @property
    def type_name(self) -> str:
        return f"{self.cls.__module__}:{self.cls.__qualname__}"

    def new_instance(self, actor_id: str) -> Any:
        """A fresh instance with every state field at its initial value."""
        inst = self.cls.__new__(self.cls)
        inst.__dict__["actor_id"] = actor_id
        inst.__init__()
        return inst

    def fill_state(self, inst: Any) -> None:
        d = inst.__dict__
        for name, f in self.fields.items():
            if name not in d:
                d[name] = f.initial()


def handler(op: str, kind: str = CALL, *, states=None) -> Callable:
    """Mark a method as the handler of ``op``.

    ``kind`` is ``"call"`` (the default: an ask, whose return value is the reply) or
    ``"cast"`` (fire-and-forget: the return value is dropped). In a GenFSM actor,
    ``states`` lists the states the op is accepted in; in any other state the message is
    rejected (the reply names the current state) and the handler does not run.
    """
    if not isinstance(op, str) or not op:
        raise TypeError(f"@handler needs an op name (a non-empty str), got {op!r}")
    k = _KIND_ALIASES.get(kind)
    if k is None:
        raise ValueError(f"@handler({op!r}, {kind!r}): kind must be 'call' or 'cast'")
    if states is not None:
        if isinstance(states, str) or not all(isinstance(x, str) for x in states):
            raise TypeError(f"@handler({op!r}, states=...) expects a list of state names, "
                            f"got {states!r}")
        states = tuple(states)

    def mark(fn):
        ops = getattr(fn, "__plex_ops__", [])
        fn.__plex_ops__ = ops + [(op, k, states)]
        return fn

    return mark


def init_handler(fn: Callable | None = None) -> Callable:
    """Mark the method run once when the actor starts (and again after each restart),
    called with its config dict: ``actor_id``, ``name``, ``rank``, ``args``, ``facets``.
    Usable as ``@init_handler`` or ``@init_handler()``."""
    def mark(f):
        f.__plex_init__ = True
        return f
    return mark(fn) if fn is not None else mark


def terminate_handler(fn: Callable | None = None) -> Callable:
    """Mark the method run when the actor stops normally or at shutdown, called with
    the reason (a str). It is not run after a crash: a crashed actor's state is suspect."""
    def mark(f):
        f.__plex_terminate__ = True
        return f
    return mark(fn) if fn is not None else mark


def _build_spec(cls: type, kind: str, facets, capabilities=None, options=None) -> ActorSpec:
    from ..context import check_capabilities
    spec = ActorSpec(cls=cls, kind=kind, facets=tuple(facets or ()),
                     capabilities=check_capabilities(capabilities, f"{cls.__qualname__}"))
    event_fns: dict = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, StateField):
                spec.fields[name] = value
            fn = value
            if isinstance(fn, (staticmethod, classmethod)):
                continue
            if not callable(fn):
                continue
            for op, k, states in getattr(fn, "__plex_ops__", ()):
                params, required, takes_all = signature_facts(fn, op)
                h = HandlerSpec(op, fn, k, params, required, takes_all, states)
                if kind == "GenEvent" and k == CAST:
                    lst = event_fns.setdefault(op, [])
                    if all(x.func.__name__ != fn.__name__ for x in lst):
                        lst.append(h)  # several handlers may take one event
                    else:  # a subclass overriding a handler replaces it
                        lst[:] = [h if x.func.__name__ == fn.__name__ else x for x in lst]
                    continue
                spec.handlers[op] = h
            if getattr(fn, "__plex_init__", False):
                spec.init = fn
            if getattr(fn, "__plex_terminate__", False):
                spec.terminate = fn
    # a plain class attribute default on an annotated field counts as state too
    for klass in reversed(cls.__mro__):
        for name in getattr(klass, "__annotations__", {}):
            if name in spec.fields or name.startswith("__"):
                continue
            if name in vars(klass):
                value = vars(klass)[name]
                if callable(value) or isinstance(value, (property, classmethod, staticmethod)):
                    continue
                spec.fields[name] = StateField(value) if not isinstance(
                    value, (list, dict, set)) else StateField(default_factory=_copier(value))
    if kind in ("GenEvent", "GenFSM", "Workflow"):
        behaviors.complete_spec(spec, event_fns, options or {})
    return spec


def _install_init(cls: type) -> None:
    """Give the class an ``__init__`` that sets every state field first, so the class
    also works when instantiated directly (in a unit test, say)."""
    own = cls.__dict__.get("__init__")
    if getattr(own, "__plex_init_wrapper__", False):
        return
    base_init = own if own is not None else None

    def __init__(self, *args, **kwargs):
        spec_of(type(self)).fill_state(self)
        if base_init is not None:
            base_init(self, *args, **kwargs)
        else:
            super(cls, self).__init__(*args, **kwargs)

    __init__.__plex_init_wrapper__ = True
    cls.__init__ = __init__


def _copier(value):
    import copy
    return lambda: copy.deepcopy(value)


def _decorator(kind: str):
    def deco(cls: type | None = None, *, facets=None, capabilities=None, **options):
        if options and kind != "GenFSM":
            raise TypeError(f"unexpected keyword(s) {sorted(options)} for a {kind} actor")

        def apply(c):
            if not isinstance(c, type):
                raise TypeError(f"@actor decorates a class, got {c!r}")
            c.__plex_spec__ = _build_spec(c, kind, facets, capabilities, options)
            c.__plex_options__ = (facets, capabilities, options)
            _install_init(c)
            return c
        return apply(cls) if cls is not None else apply
    return deco


actor = _decorator("GenServer")
actor.__doc__ = """Declare a GenServer actor class: ``@actor``, or
``@actor(facets=[...], capabilities=["kv", ...])`` (see :mod:`plexhpc.context`)."""
gen_server_actor = actor

event_actor = _decorator("GenEvent")
event_actor.__doc__ = """Declare a GenEvent actor: its ``cast`` handlers take events
(several methods may handle one event, in definition order), and other actors subscribe
with the ``subscribe`` op (``{"subscriber": id, "events": [...]}``) to receive each event
as a cast after the actor's own handlers ran. ``call`` handlers answer as usual."""

_fsm_decorator = _decorator("GenFSM")


def fsm_actor(cls=None, *, states, initial, transitions=None, facets=None,
              capabilities=None):
    """Declare a GenFSM actor: ``@fsm_actor(states=[...], initial="idle",
    transitions={"idle": ["busy"], ...})``. The current state is the state field
    ``fsm_state``; a handler that moves it somewhere ``transitions`` does not allow is
    rolled back and the caller gets ``{"status": "rejected", "state": <current>, ...}``.
    Built-in ops (unless the class defines them): ``transition {to}`` and ``get_state``."""
    return _fsm_decorator(cls, facets=facets, capabilities=capabilities, states=states,
                          initial=initial, transitions=transitions)


workflow_actor = _decorator("Workflow")
workflow_actor.__doc__ = """Declare a Workflow actor: one ``@run_handler`` (op
``workflow_run``), ``@signal_handler(name)`` (op ``workflow_signal:<name>``) and
``@query_handler(name)`` (op ``workflow_query:<name>``). A run proceeds in the
background, so queries and signals are answered while it waits; each ``host.step(...)``
result is checkpointed, and a run interrupted by a crash or a relaunch resumes after
its last completed step."""


def run_handler(fn: Callable | None = None) -> Callable:
    """Mark a Workflow actor's run method (op ``workflow_run``)."""
    def mark(f):
        f.__plex_run__ = True
        return f
    return mark(fn) if fn is not None else mark


def _named_marker(attr: str, what: str, name) -> Callable:
    if not isinstance(name, str) or not name:
        raise TypeError(f"@{what}_handler needs a {what} name, got {name!r}")

    def mark(f):
        setattr(f, attr, name)
        return f
    return mark


def signal_handler(name: str) -> Callable:
    """Mark a Workflow actor's handler of signal ``name`` (op ``workflow_signal:<name>``)."""
    return _named_marker("__plex_signal__", "signal", name)


def query_handler(name: str) -> Callable:
    """Mark a Workflow actor's handler of query ``name`` (op ``workflow_query:<name>``)."""
    return _named_marker("__plex_query__", "query", name)


def spec_of(cls: Any) -> ActorSpec:
    """The :class:`ActorSpec` of a decorated class; ``TypeError`` if it is not one."""
    spec = getattr(cls, "__plex_spec__", None)
    if spec is None or spec.cls is not cls:
        if isinstance(cls, type) and spec is not None:
            # a subclass of a decorated class: build its own spec
            facets, caps, options = getattr(cls, "__plex_options__", (spec.facets, None, {}))
            spec = _build_spec(cls, spec.kind, facets, caps, options)
            cls.__plex_spec__ = spec
            return spec
        raise TypeError(f"{cls!r} is not an actor class: decorate it with @actor")
    return spec
