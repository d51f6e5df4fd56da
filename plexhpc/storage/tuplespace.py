"""A Linda-style tuple space: write tuples, read or take them by pattern.

A pattern is a tuple of the same length whose fields are either None (matches anything)
or a value the field must equal (:func:`match`). Tuples live in memory, grouped by
scope (a tuple of str, see :mod:`plexhpc.storage.scope`) and then by length; with a SQLite
connection they are also persisted (writes and takes) and reloaded in write order when
the space is built again.

Blocking reads and takes are for a single-threaded event loop: :meth:`TupleSpace.add_waiter`
registers a callback that a later :meth:`~TupleSpace.write` of a matching tuple calls.
Every waiting reader sees the tuple, then the longest-waiting taker consumes it (it is
then never stored); without a taker it is stored.

Reads scan the scope's tuples of the pattern's length, oldest first. Tuples are handed
back as stored, not copied: treat them as read-only.

A persisted row that cannot be decoded when the space is rebuilt (a damaged file, a
row written by hand) is skipped with a warning naming its seq, and left in the file
for inspection; new tuples get seqs above it. Skipping, not failing, because the space
is shared: one tenant's unreadable tuple must not take KV, channels and every other
tenant's tuples down with it, and the row could not be handed to anyone anyway.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections import deque
from typing import Callable

import numpy as np

from ..errors import InvalidMessage
from ..log import get_logger
from .codec import decode, encode
from .db import ensure_schema
from .scope import scope_from_key, scope_key

__all__ = ["match", "TupleSpace"]

log = get_logger("state")

_SEQ = (list, tuple)
_BOOLS = (bool, np.bool_)


def _eq(p, v) -> bool:
    """Field equality for patterns: Python equality, except that a bool equals only a
    bool (``1`` does not match ``True``), lists and tuples compare element-wise with
    each other, dicts value by value and arrays by dtype kind, shape and contents."""
    tp, tv = type(p), type(v)
    if tp in _BOOLS or tv in _BOOLS:
        return tp in _BOOLS and tv in _BOOLS and bool(p) == bool(v)
    if tp in _SEQ or tv in _SEQ:
        return (tp in _SEQ and tv in _SEQ and len(p) == len(v)
                and all(_eq(a, b) for a, b in zip(p, v)))
    if tp is dict or tv is dict:
        return (tp is dict and tv is dict and p.keys() == v.keys()
                and all(_eq(p[k], v[k]) for k in p))
    if tp is np.ndarray or tv is np.ndarray:
        return (tp is tv and p.shape == v.shape and p.dtype.kind == v.dtype.kind
                and bool(np.array_equal(p, v)))
    try:
        return bool(p == v)
    except (TypeError, ValueError):
        return False


def match(pattern, tup) -> bool:
    """True if ``tup`` has the pattern's length and every non-None pattern field equals
    the tuple's field (see :func:`_eq` for what equal means)."""
    if len(pattern) != len(tup):
        return False
    for p, v in zip(pattern, tup):
        if p is not None and not _eq(p, v):
            return False
    return True


def _as_tuple(value, what: str) -> tuple:
    if type(value) not in _SEQ or not value:
        raise InvalidMessage(f"{what} must be a non-empty tuple or list, got {value!r}")
    return tuple(value)


class _Waiter:
    __slots__ = ("handle", "scope", "pattern", "take", "callback")

    def __init__(self, handle, scope, pattern, take, callback):
        self.handle = handle
        self.scope = scope
        self.pattern = pattern
        self.take = take
        self.callback = callback


class TupleSpace:
    """Scoped tuples in memory, optionally persisted to ``conn``
    (from :func:`plexhpc.storage.open_db`)."""

    def __init__(self, conn: sqlite3.Connection | None = None):
        self._conn = conn
        # scope -> arity -> {seq: tuple}, dicts keep write order
        self._tuples: dict[tuple, dict[int, dict[int, tuple]]] = {}
        # scope -> arity -> waiters in arrival order
        self._waiters: dict[tuple, dict[int, deque]] = {}
        self._by_handle: dict[int, _Waiter] = {}
        self._handles = itertools.count(1)
        self._seq = itertools.count(1)
        if conn is not None:
            ensure_schema(conn)
            last = 0
            for seq, s, blob in conn.execute("SELECT seq, scope, tup FROM ts_tuple ORDER BY seq"):
                last = max(last, seq)
                try:
                    scope = scope_from_key(s)
                    tup = decode(blob)
                    if type(tup) not in _SEQ or not tup:
                        raise ValueError(f"it holds a {type(tup).__name__}, not a tuple")
                except Exception as exc:  # noqa: BLE001 - skipped, see the module doc
                    log.warning("tuple space: persisted tuple %s cannot be read (%s: %s); "
                                "skipped, and left in the state file for inspection",
                                seq, type(exc).__name__, exc)
                    continue
                self._store(scope, tuple(tup), seq)
            self._seq = itertools.count(last + 1)

    # --- reads ------------------------------------------------------------------------

    def read(self, scope: tuple, pattern) -> tuple | None:
        """The oldest tuple matching ``pattern``, left in place; None if there is none."""
        found = self._find(scope, pattern)
        return None if found is None else found[1]

    def take(self, scope: tuple, pattern) -> tuple | None:
        """Remove and return the oldest tuple matching ``pattern``; None if there is none."""
        found = self._find(scope, pattern)
        if found is None:
            return None
        seq, tup = found
        self._remove(scope, len(tup), seq)
        return tup

    def read_all(self, scope: tuple, pattern) -> list[tuple]:
        """Every tuple matching ``pattern``, oldest first."""
        pattern = _as_tuple(pattern, "a pattern")
        scope_key(scope)
        bucket = self._tuples.get(scope, {}).get(len(pattern), {})
        return [t for t in bucket.values() if match(pattern, t)]

    def count(self, scope: tuple, pattern=None) -> int:
        """How many tuples of ``scope`` match ``pattern`` (all of them if None)."""
        scope_key(scope)
        by_arity = self._tuples.get(scope, {})
        if pattern is None:
            return sum(len(b) for b in by_arity.values())
        return len(self.read_all(scope, pattern))

    # --- writes -----------------------------------------------------------------------

    def write(self, scope: tuple, tup) -> None:
        """Add ``tup`` (a non-empty tuple or list of plain values, stored as a tuple).

        Waiting readers whose pattern matches are called with it, then the oldest
        matching taker consumes it; only if no taker waits is it stored."""
        s = scope_key(scope)
        tup = _as_tuple(tup, "a tuple")
        blob = encode(tup, name="tuple")  # also refuses what could not be persisted
        tup = decode(blob)  # a copy of its own: the writer may change its objects later
        readers, taker = self._matching(scope, tup)
        if taker is None:
            seq = next(self._seq)
            if self._conn is not None:  # first, so a failed write changes nothing
                self._conn.execute("INSERT INTO ts_tuple (seq, scope, tup) VALUES (?, ?, ?)",
                                   (seq, s, blob))
            self._store(scope, tup, seq)
        served = readers + ([taker] if taker else [])
        for waiter in served:
            self._drop(waiter)
        _notify(served, tup)

    # --- waiting ----------------------------------------------------------------------

    def add_waiter(self, scope: tuple, pattern, take: bool,
                   callback: Callable[[tuple], object]) -> int:
        """Call ``callback(tup)`` once with the first tuple matching ``pattern``; with
        ``take`` the tuple is also removed. Returns a handle for :meth:`cancel_waiter`.

        If a matching tuple is already stored the callback runs now (taking it if asked)
        and the handle is already spent."""
        scope_key(scope)
        pattern = _as_tuple(pattern, "a pattern")
        handle = next(self._handles)
        found = self._find(scope, pattern)
        if found is not None:
            seq, tup = found
            if take:
                self._remove(scope, len(tup), seq)
            callback(tup)
            return handle
        waiter = _Waiter(handle, scope, pattern, bool(take), callback)
        self._waiters.setdefault(scope, {}).setdefault(len(pattern), deque()).append(waiter)
        self._by_handle[handle] = waiter
        return handle

    def cancel_waiter(self, handle: int) -> bool:
        """Stop waiting; False if the waiter was already called or cancelled."""
        waiter = self._by_handle.pop(handle, None)
        if waiter is None:
            return False
        self._unlink(waiter)
        return True

    def waiting(self, scope: tuple | None = None) -> int:
        """How many waiters are registered (in ``scope``, or in all scopes)."""
        if scope is None:
            return len(self._by_handle)
        return sum(len(q) for q in self._waiters.get(scope, {}).values())

    # --- internals --------------------------------------------------------------------

    def _find(self, scope, pattern):
        pattern = _as_tuple(pattern, "a pattern")
        scope_key(scope)
        bucket = self._tuples.get(scope, {}).get(len(pattern))
        if bucket:
            for seq, tup in bucket.items():
                if match(pattern, tup):
                    return seq, tup
        return None

    def _store(self, scope, tup, seq) -> None:
        self._tuples.setdefault(scope, {}).setdefault(len(tup), {})[seq] = tup

    def _remove(self, scope, arity, seq) -> None:
        if self._conn is not None:  # first, so a failed write changes nothing
            self._conn.execute("DELETE FROM ts_tuple WHERE seq = ?", (seq,))
        by_arity = self._tuples[scope]
        bucket = by_arity[arity]
        del bucket[seq]
        if not bucket:
            del by_arity[arity]
            if not by_arity:
                del self._tuples[scope]

    def _matching(self, scope, tup):
        """The waiting readers that match ``tup``, and the first matching taker."""
        queue = self._waiters.get(scope, {}).get(len(tup))
        if not queue:
            return [], None
        readers, taker = [], None
        for waiter in queue:
            if not match(waiter.pattern, tup):
                continue
            if not waiter.take:
                readers.append(waiter)
            elif taker is None:
                taker = waiter
        return readers, taker

    def _drop(self, waiter) -> None:
        del self._by_handle[waiter.handle]
        self._unlink(waiter)

    def _unlink(self, waiter) -> None:
        by_arity = self._waiters[waiter.scope]
        queue = by_arity[len(waiter.pattern)]
        queue.remove(waiter)
        if not queue:
            del by_arity[len(waiter.pattern)]
            if not by_arity:
                del self._waiters[waiter.scope]


def _notify(waiters, tup) -> None:
    """Call every waiter's callback; the space is already consistent, so a callback may
    use it. The first exception is re-raised after all callbacks ran."""
    error = None
    for waiter in waiters:
        try:
            waiter.callback(tup)
        except Exception as exc:  # noqa: BLE001 - re-raised below
            if error is None:
                error = exc
    if error is not None:
        raise error
