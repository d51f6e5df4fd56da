"""Decoding a batch that ``pickle.loads`` refused, one envelope at a time.

Why: a payload can pickle on its sender and still fail to unpickle on its receiver (an
exception class whose ``__init__`` takes other arguments than its ``args``, a class the
receiver cannot import, a ``__setstate__`` that raises). ``pickle.loads`` then raises
for the whole batch, and a batch holds many envelopes: asks whose askers would wait for
their timeout, replies, casts, system messages. The fast path stays ``pickle.loads``;
only when it fails does the transport hand the same bytes to :func:`salvage`, which
runs the pickle machine itself (over :func:`pickletools.genops`, public API) and puts an
:class:`Undecodable` marker where an object could not be rebuilt. Envelopes without a
marker are delivered as usual; those with one are answered with a clear error.

Only data from ranks of the same job reaches this code (as for ``pickle.loads``):
it rebuilds objects just as pickle does, it is not a sandbox.
"""

from __future__ import annotations

import importlib
import pickletools
import sys

__all__ = ["Undecodable", "salvage", "tolerant_loads", "find_undecodable"]


class Undecodable:
    """Stands in for an object that could not be rebuilt; ``reason`` says why."""

    __slots__ = ("what", "reason")

    def __init__(self, what: str, reason: str):
        self.what = what
        self.reason = reason

    def __repr__(self) -> str:
        return f"<undecodable {self.what}: {self.reason}>"


class _Mark:
    """The MARK opcode's frame boundary (never part of a result)."""


def _failed(what: str, exc: BaseException) -> Undecodable:
    return Undecodable(what, f"rebuilding {what} raised {type(exc).__name__}: {exc}")


def _find_class(module: str, name: str):
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _build(inst, state) -> None:
    """pickle's BUILD: ``__setstate__`` if there is one, else the instance dict/slots."""
    setstate = getattr(inst, "__setstate__", None)
    if setstate is not None:
        setstate(state)
        return
    slotstate = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slotstate = state
    if state:
        d = inst.__dict__
        for k, v in state.items():
            d[sys.intern(k) if type(k) is str else k] = v
    if slotstate:
        for k, v in slotstate.items():
            setattr(inst, k, v)


def _extend(target, items) -> None:
    if isinstance(target, list):
        target.extend(items)
        return
    extend = getattr(target, "extend", None)
    if extend is not None:
        extend(items)
    else:
        for x in items:
            target.append(x)


# opcodes whose argument is the value to push
_LITERALS = frozenset((
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
    "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"))
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}


def tolerant_loads(data, buffers=None):
    """``pickle.loads(data, buffers=buffers)`` that never fails on one object: what
    cannot be rebuilt becomes an :class:`Undecodable`. Raises (ValueError, KeyError...)
    only if the stream itself is broken or uses what this machine does not support
    (persistent ids, the copyreg extension registry)."""
    if not isinstance(data, (bytes, bytearray)):
        data = bytes(data)
    stack: list = []
    memo: dict = {}
    bufs = iter(buffers or ())

    def pop_mark():
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is _Mark:
                items = stack[i + 1:]
                del stack[i:]
                return items
        raise ValueError("pickle stream: no MARK on the stack")

    push = stack.append
    for op, arg, _pos in pickletools.genops(data):
        name = op.name
        if name in _LITERALS:
            push(arg)
        elif name in _CONSTANTS:
            push(_CONSTANTS[name])
        elif name in ("PROTO", "FRAME"):
            continue
        elif name == "STOP":
            break
        elif name == "MARK":
            push(_Mark)
        elif name == "POP_MARK":
            pop_mark()
        elif name == "POP":
            stack.pop()
        elif name == "DUP":
            push(stack[-1])
        elif name == "EMPTY_LIST":
            push([])
        elif name == "EMPTY_DICT":
            push({})
        elif name == "EMPTY_TUPLE":
            push(())
        elif name == "EMPTY_SET":
            push(set())
        elif name == "BYTEARRAY8":
            push(bytearray(arg))
        elif name == "LIST":
            push(list(pop_mark()))
        elif name == "TUPLE":
            push(tuple(pop_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = tuple(stack[-n:])
            del stack[-n:]
            push(items)
        elif name == "DICT":
            items = pop_mark()
            push({items[i]: items[i + 1] for i in range(0, len(items), 2)})
        elif name == "FROZENSET":
            items = pop_mark()
            try:
                push(frozenset(items))
            except Exception as exc:  # noqa: BLE001
                push(_failed("a frozenset", exc))
        elif name in ("APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS"):
            if name in ("APPEND", "SETITEM"):
                n = 1 if name == "APPEND" else 2
                items = stack[-n:]
                del stack[-n:]
            else:
                items = pop_mark()
            target = stack[-1]
            if type(target) is Undecodable:
                continue
            try:
                if name in ("APPEND", "APPENDS"):
                    _extend(target, items)
                elif name == "ADDITEMS":
                    for x in items:
                        target.add(x)
                else:
                    for i in range(0, len(items), 2):
                        target[items[i]] = items[i + 1]
            except Exception as exc:  # noqa: BLE001
                stack[-1] = _failed(f"a {type(target).__name__}", exc)
        elif name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
            memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            push(memo[arg])
        elif name in ("GLOBAL", "STACK_GLOBAL", "INST"):
            if name == "STACK_GLOBAL":
                qual = stack.pop()
                module = stack.pop()
            else:
                module, qual = arg.split(" ", 1)
            try:
                cls = _find_class(module, qual)
            except Exception as exc:  # noqa: BLE001
                cls = _failed(f"{module}.{qual}", exc)
            if name != "INST":
                push(cls)
                continue
            args = pop_mark()
            if type(cls) is Undecodable:
                push(cls)
                continue
            try:
                push(cls(*args))
            except Exception as exc:  # noqa: BLE001
                push(_failed(f"{module}.{qual}", exc))
        elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ"):
            kwargs = {}
            if name == "OBJ":
                items = pop_mark()
                func, args = items[0], tuple(items[1:])
            else:
                if name == "NEWOBJ_EX":
                    kwargs = stack.pop()
                args = stack.pop()
                func = stack.pop()
            if type(func) is Undecodable:
                push(func)
                continue
            what = getattr(func, "__qualname__", None) or repr(func)
            what = f"{getattr(func, '__module__', '?')}.{what}"
            try:
                if name == "REDUCE":
                    push(func(*args))
                elif name == "OBJ" and not args:
                    push(func.__new__(func))
                elif name == "OBJ":
                    push(func(*args))
                else:
                    push(func.__new__(func, *args, **kwargs))
            except Exception as exc:  # noqa: BLE001
                push(_failed(what, exc))
        elif name == "BUILD":
            state = stack.pop()
            inst = stack[-1]
            if type(inst) is Undecodable:
                continue
            try:
                _build(inst, state)
            except Exception as exc:  # noqa: BLE001
                stack[-1] = _failed(f"the state of a {type(inst).__name__}", exc)
        elif name == "NEXT_BUFFER":
            push(next(bufs))
        elif name == "READONLY_BUFFER":
            with memoryview(stack[-1]) as m:
                if not m.readonly:
                    stack[-1] = m.toreadonly()
        else:
            raise ValueError(f"pickle opcode {name} is not supported when salvaging")
    if len(stack) != 1:
        raise ValueError("pickle stream: the stack does not end with one value")
    return stack[0]


def find_undecodable(obj, limit: int = 200_000):
    """The first :class:`Undecodable` inside ``obj`` (containers and instance dicts,
    at most ``limit`` objects looked at), or None."""
    todo = [obj]
    seen: set = set()
    atoms = (str, bytes, int, float, bool, type(None))
    while todo and limit > 0:
        o = todo.pop()
        limit -= 1
        t = type(o)
        if t is Undecodable:
            return o
        if t in atoms or id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, dict):
            todo.extend(o.keys())
            todo.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            todo.extend(o)
        else:
            try:
                d = getattr(o, "__dict__", None)
            except Exception:  # noqa: BLE001
                d = None
            if isinstance(d, dict):
                todo.extend(d.values())
    return None


def salvage(data, buffers, first_error: BaseException):
    """Decode a batch envelope by envelope after ``pickle.loads`` failed with
    ``first_error``. Returns ``[(envelope, reason or None)]`` in batch order; an
    envelope with a reason holds something that could not be rebuilt. A stream that
    cannot be decoded at all gives ``[(None, reason)]``: its envelopes are lost."""
    first = f"{type(first_error).__name__}: {first_error}"
    try:
        batch = tolerant_loads(data, buffers)
    except Exception as exc:  # noqa: BLE001
        return [(None, f"{first} (and decoding it message by message failed too: "
                       f"{type(exc).__name__}: {exc})")]
    if not isinstance(batch, list):
        return [(None, f"{first} (the batch is a {type(batch).__name__}, not a list)")]
    out = []
    for env in batch:
        if type(env) is not tuple or len(env) != 8 or type(env[0]) is not int:
            out.append((None, f"{first} (a malformed envelope: {type(env).__name__})"))
            continue
        bad = find_undecodable(env)
        out.append((env, None if bad is None else bad.reason))
    return out
