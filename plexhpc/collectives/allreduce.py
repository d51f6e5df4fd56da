"""``allreduce``: combine every rank's value with an op; every rank gets the result."""

from __future__ import annotations

from ._reduction import run_reduction

__all__ = ["allreduce"]


def allreduce(value, op="sum", *, comm=None, out=None, inplace: bool = False,
              local: bool = False, check: bool | None = None, timeout: float | None = None):
    """Combine ``value`` from every rank with ``op`` and return the result on every rank.

    Same arguments as :func:`~plexhpc.collectives.reduce` without ``root``. A contiguous
    array with a built-in op goes straight to ``MPI_Iallreduce``; a pytree is packed into
    one buffer per dtype and reduced in one call; ``inplace=True`` reuses the caller's
    arrays (a training loop then allocates nothing per step).
    """
    return run_reduction("allreduce", value, op, None, comm, out=out, inplace=inplace,
                         check=check, timeout=timeout, local=local)
