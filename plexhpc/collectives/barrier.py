"""``barrier``: wait until every rank has arrived (or fail after the timeout)."""

from __future__ import annotations

from .comm import get_comm

__all__ = ["barrier"]


def barrier(*, comm=None, timeout: float | None = None) -> None:
    """Return once every rank of ``comm`` has called ``barrier``; raise
    :class:`~plexhpc.errors.CollectiveTimeout` if one has not within ``timeout`` seconds,
    or :class:`~plexhpc.errors.CollectiveAborted` if one announced a failure."""
    cc = get_comm(comm, timeout)
    what = cc.begin("barrier")
    cc.wait(cc.comm.Ibarrier(), what, timeout)
