"""Helpers for a test body on the driver rank: size-agnostic spawning, bounded waiting.

A test written against these runs unchanged on 1, 2 or 4 ranks: it spawns "one actor
per rank" or "one on the last rank" (rank 0 itself on a single rank) instead of naming
ranks, and waits for eventually consistent facts (a process group's membership, a
cast's effect) with :func:`wait_until`, whose deadline turns a fact that never holds
into a failure instead of a hang.
"""

from __future__ import annotations

import time
from typing import Any, Callable

__all__ = ["PlexKit", "WaitTimeout", "wait_until"]


class WaitTimeout(AssertionError):
    """:func:`wait_until`'s condition did not hold in time (an assertion failure)."""


def wait_until(predicate: Callable[[], Any], *, timeout_s: float = 5.0,
               interval_s: float = 0.01, what: str | None = None) -> Any:
    """Call ``predicate`` until it returns something truthy and return that value.

    Raises :class:`WaitTimeout` naming ``what`` (or the predicate) and its last value
    once ``timeout_s`` has passed: a condition that never holds fails the test."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"waited {timeout_s:g} s for {what or predicate!r}; the last "
                              f"value was {value!r}")
        time.sleep(interval_s)


class PlexKit:
    """The ``plex`` fixture: the driver's handle plus helpers that do not depend on the
    number of ranks. ``driver`` is the handle itself; the helpers use only its public
    driver calls (``spawn``, ``stop``, ``ask``)."""

    def __init__(self, driver):
        self.driver = driver

    @property
    def size(self) -> int:
        """How many ranks the job has."""
        return self.driver.size

    @property
    def ranks(self) -> range:
        """Every rank, ``range(size)``."""
        return range(self.driver.size)

    @property
    def last_rank(self) -> int:
        """The highest rank: another process than the driver whenever there are two or
        more ranks, the driver itself on one."""
        return self.driver.size - 1

    def spawn(self, actor_class, **kwargs) -> str:
        """``driver.spawn(actor_class, **kwargs)``: a new actor's id once its init ran."""
        return self.driver.spawn(actor_class, **kwargs)

    def spawn_each(self, actor_class, *, name: str | None = None, args: dict | None = None,
                   **kwargs) -> list:
        """Spawn one ``actor_class`` on every rank (rank ``r`` named ``f"{name}{r}"``
        when ``name`` is given) and return their ids in rank order."""
        return [self.driver.spawn(actor_class, rank=r, args=args,
                                name=None if name is None else f"{name}{r}", **kwargs)
                for r in self.ranks]

    def stop_each(self, actors, timeout_ms: float = 10000) -> None:
        """Stop the given actors, last first (their terminate handlers run)."""
        for aid in reversed(list(actors)):
            self.driver.stop(aid, timeout_ms=timeout_ms)

    def ask_each(self, actors, op: str, payload: dict | None = None,
                 timeout_ms: float = 5000) -> list:
        """Ask every actor in ``actors`` the same ``op``; the replies, in order."""
        return [self.driver.ask(aid, op, payload, timeout_ms) for aid in actors]

    def wait_until(self, predicate, **kwargs):
        """:func:`wait_until`, for convenience."""
        return wait_until(predicate, **kwargs)
