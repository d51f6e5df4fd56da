"""Timers of one rank: callbacks that the hub runs once their time has come.

One heap of ``(deadline, seq, fn)``; ``seq`` keeps equal deadlines in the order they were
armed. ``host.send_after``, supervisor backoff, idle checks of virtual actors, blocking
state calls' timeouts and the shutdown sequence's give-ups all land here.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time

from .. import errors as E

__all__ = ["Timers"]

_monotonic = time.monotonic


class Timers:
    """A heap of callbacks by deadline (monotonic seconds)."""

    def __init__(self):
        self.heap: list = []
        self._seq = itertools.count()

    def after(self, delay_s: float, fn) -> None:
        """Run ``fn()`` on the hub once ``delay_s`` seconds have passed (a negative delay
        is due now). A delay that is not a finite number is refused here, whoever asked:
        a NaN deadline would compare false with every other one and stall the whole heap,
        and with it every timer of the rank."""
        if delay_s.__class__ is not float and (
                delay_s.__class__ is bool or not isinstance(delay_s, (int, float))):
            raise E.InvalidMessage(f"a timer delay must be a number of seconds, got "
                                   f"{delay_s!r}")
        if not math.isfinite(delay_s):
            raise E.InvalidMessage(f"a timer delay must be finite, got {delay_s!r}")
        heapq.heappush(self.heap, (_monotonic() + delay_s, next(self._seq), fn))

    def next_deadline(self) -> float | None:
        return self.heap[0][0] if self.heap else None

    def fire(self, now: float) -> None:
        """Run every callback that is due."""
        heap = self.heap
        while heap and heap[0][0] <= now:
            heapq.heappop(heap)[2]()
