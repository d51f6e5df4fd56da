"""``gather``: every rank's value, in rank order, on ``root``."""

from __future__ import annotations

from ._gathering import run_gather

__all__ = ["gather"]


def gather(value, root: int = 0, *, comm=None, timeout: float | None = None):
    """Return ``[value of rank 0, value of rank 1, ...]`` on ``root``, None elsewhere.

    Arrays (shapes may differ between ranks, dtypes may not) and scalars move as raw
    bytes in one MPI call; the arrays returned are views of one receive buffer. Pytrees
    and other objects are pickled (slow path)."""
    return run_gather("gather", value, root, comm, timeout)
