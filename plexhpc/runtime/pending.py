"""Calls in flight from this rank: who waits for which reply, and until when.

Every ask (from a handler, a driver, a shard call, a group reduction, a system ask)
registers here under a fresh correlation number ``corr`` and is completed exactly once:
by its reply, its error, its deadline or the node's shutdown. A waiter is either a
parked greenlet (resumed from the hub) or a callback ``done(ok, value)``.

Deadlines: asks with the same timeout expire in the order they were made, so one FIFO per
timeout value replaces a heap, and answered asks at the head are dropped when seen.
"""

from __future__ import annotations

import itertools
import time
from collections import deque

from greenlet import greenlet

from .. import errors as E
from .cell import MAX_MS, check_ms

__all__ = ["PendingCalls"]

_monotonic = time.monotonic


class PendingCalls:
    """The table of asks waiting for a reply on this rank.

    ``waiting`` maps ``corr -> (waiter, to, op, timeout_ms)``; ``deadlines`` maps a
    timeout value to its FIFO of ``(deadline, corr)``. Both are public so that the hot
    ask path can register inline; everything else goes through the methods."""

    def __init__(self, resume: deque):
        self.waiting: dict = {}
        self.deadlines: dict = {}
        self.next_corr = itertools.count(1).__next__
        self._resume = resume  # the hub's queue of greenlets to switch back into

    def add(self, waiter, to, op, timeout_ms: float) -> int:
        """Register a call; returns its ``corr``. It fails with AskTimeout after
        ``timeout_ms`` unless completed first."""
        if (timeout_ms.__class__ is not int and timeout_ms.__class__ is not float) or not (
                0 < timeout_ms <= MAX_MS):  # NaN fails this too: it would never expire
            check_ms(timeout_ms)
        corr = self.next_corr()
        self.waiting[corr] = (waiter, to, op, timeout_ms)
        dq = self.deadlines.get(timeout_ms)
        if dq is None:
            dq = self.deadlines[timeout_ms] = deque()
        dq.append((_monotonic() + timeout_ms / 1000.0, corr))
        return corr

    def take(self, corr: int):
        """Remove and return the entry of ``corr`` (None: answered or expired already)."""
        return self.waiting.pop(corr, None)

    def complete(self, corr: int, ok: bool, value) -> None:
        """Hand the outcome to the waiter; an error tuple from the wire is rebuilt into
        its exception first. A call completed already (a late reply) is ignored."""
        w = self.waiting.pop(corr, None)
        if w is None:
            return
        if not ok and isinstance(value, tuple):
            value = E.from_wire(value)
        target = w[0]
        if type(target) is greenlet:
            self._resume.append((target, (ok, value)))
        else:
            target(ok, value)

    def expire(self, now: float) -> None:
        """Fail every call whose deadline has passed with AskTimeout."""
        waiting = self.waiting
        empty = None
        for key, dq in self.deadlines.items():
            while dq:
                deadline, corr = dq[0]
                w = waiting.get(corr)
                if w is None:
                    dq.popleft()
                    continue
                if deadline > now:
                    break
                dq.popleft()
                self.complete(corr, False, E.AskTimeout(
                    f"no reply from {w[1]!r} to {w[2]!r} within {w[3]:g} ms",
                    to=w[1], op=w[2], timeout_ms=w[3]))
            if not dq:
                empty = empty or []
                empty.append(key)
        for key in empty or ():
            if not self.deadlines[key]:
                del self.deadlines[key]

    def next_deadline(self) -> float | None:
        best = None
        for dq in self.deadlines.values():
            if dq and (best is None or dq[0][0] < best):
                best = dq[0][0]
        return best

    def fail_all(self, rank: int) -> None:
        """The node shuts down: every call still waiting fails with NodeClosed."""
        for corr, w in list(self.waiting.items()):
            self.complete(corr, False, E.NodeClosed(
                f"rank {rank} shut down before {w[1]!r} answered {w[2]!r}"))
