"""``allgather``: every rank's value, in rank order, on every rank."""

from __future__ import annotations

from ._gathering import run_gather

__all__ = ["allgather"]


def allgather(value, *, comm=None, timeout: float | None = None):
    """Return ``[value of rank 0, value of rank 1, ...]`` on every rank (see
    :func:`~plexhpc.collectives.gather` for what moves how)."""
    return run_gather("allgather", value, None, comm, timeout)
