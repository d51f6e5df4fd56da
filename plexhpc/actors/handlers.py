"""What an actor class declares, record by record: its state fields (:func:`state`) and
how each op is handled (:class:`HandlerSpec`: the function, call or cast, the arguments
it takes from a payload). Kept apart from the decorators in :mod:`plexhpc.actors.spec`
so that the behaviours (:mod:`plexhpc.otp.behaviors`) can build handlers too.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import InvalidMessage

__all__ = ["CALL", "CAST", "KIND_ALIASES", "MISSING", "StateField", "state", "HandlerSpec",
           "signature_facts"]

CALL = "call"
CAST = "cast"
KIND_ALIASES = {"call": CALL, "ask": CALL, "request": CALL, "cast": CAST, "send": CAST}

MISSING = object()


class StateField:
    """A declared piece of actor state: a default value or a factory for one."""

    __slots__ = ("default", "default_factory", "name")

    def __init__(self, default: Any = MISSING, default_factory: Callable[[], Any] | None = None):
        if default is not MISSING and default_factory is not None:
            raise TypeError("state() takes default or default_factory, not both")
        if default is MISSING and default_factory is None:
            default = None
        if default_factory is not None and not callable(default_factory):
            raise TypeError(f"state(default_factory=...) must be callable, got {default_factory!r}")
        if isinstance(default, (list, dict, set)):
            raise TypeError(
                f"state(default={default!r}) would share one mutable object between all "
                "instances; use state(default_factory=list) (or dict, set) instead")
        self.default = default
        self.default_factory = default_factory
        self.name = ""

    def initial(self) -> Any:
        return self.default_factory() if self.default_factory is not None else self.default

    def __set_name__(self, owner, name):
        self.name = name

    def __repr__(self):
        if self.default_factory is not None:
            return f"state(default_factory={self.default_factory!r})"
        return f"state(default={self.default!r})"


def state(default: Any = MISSING, *, default_factory: Callable[[], Any] | None = None) -> Any:
    """Declare a field of actor state, as ``messages: list = state(default_factory=list)``.

    Each instance (and each restart) gets a fresh value. Mutable defaults must use
    ``default_factory`` so instances never share them.
    """
    return StateField(default, default_factory)


@dataclass
class HandlerSpec:
    """How one op is handled: the function, call or cast, and its argument names."""

    op: str
    func: Callable
    kind: str
    params: tuple = ()
    required: tuple = ()
    takes_all: bool = False
    states: tuple | None = None   # GenFSM: the states this op is accepted in (None: all)

    def __post_init__(self):
        self.param_set = frozenset(self.params)
        self.required_set = frozenset(self.required)
        self.receiver = _receiver_name(self.func)

    def bind(self, payload: dict | None) -> dict:
        """The keyword arguments for this payload, checked before the handler runs:
        :class:`InvalidMessage` if it is not a dict, a required key is missing, or (for a
        handler that takes ``**kwargs``) a key is not a str or names the instance
        parameter (``self``), which would crash the call instead of reaching the handler.
        Extra keys are dropped unless the handler takes ``**kwargs``."""
        if not payload:
            if self.required:
                raise InvalidMessage(
                    f"op {self.op!r} requires payload keys {list(self.required)}; got none")
            return {}
        if not isinstance(payload, dict):
            raise InvalidMessage(
                f"op {self.op!r} takes its arguments as a payload dict (keyword arguments); "
                f"got a {type(payload).__name__}")
        if self.required_set and not self.required_set <= payload.keys():
            missing = [k for k in self.required if k not in payload]
            raise InvalidMessage(
                f"op {self.op!r} requires payload keys {missing}; got {_keys(payload)}")
        if self.takes_all:
            for k in payload:
                if type(k) is not str:
                    raise InvalidMessage(
                        f"op {self.op!r}: payload keys must be str (they become keyword "
                        f"arguments), got {k!r}")
            if self.receiver in payload:
                raise InvalidMessage(
                    f"op {self.op!r}: payload key {self.receiver!r} is reserved (it names "
                    f"the actor instance); rename it")
            return payload
        if payload.keys() <= self.param_set:
            return payload
        return {k: payload[k] for k in self.params if k in payload}

    def invoke(self, instance: Any, payload: dict | None) -> Any:
        """Call the handler with the payload's keys as keyword arguments."""
        return self.func(instance, **self.bind(payload))


def _keys(payload: dict) -> list:
    """The payload's keys for an error message (sortable or not)."""
    return sorted(map(repr, payload)) if not all(type(k) is str for k in payload) \
        else sorted(payload)


def _receiver_name(fn: Callable) -> str:
    """The name of a handler's first parameter (the instance: ``self``)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return "self"
    if params and params[0].kind in (inspect.Parameter.POSITIONAL_ONLY,
                                     inspect.Parameter.POSITIONAL_OR_KEYWORD):
        return params[0].name
    return "self"


def signature_facts(fn: Callable, op: str) -> tuple[tuple, tuple, bool]:
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())[1:]  # drop self
    names, required, takes_all = [], [], False
    for p in params:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            takes_all = True
        elif p.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        elif p.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise TypeError(f"handler for {op!r}: positional-only argument {p.name!r} "
                            "cannot be filled from a payload")
        else:
            names.append(p.name)
            if p.default is inspect.Parameter.empty:
                required.append(p.name)
    return tuple(names), tuple(required), takes_all
