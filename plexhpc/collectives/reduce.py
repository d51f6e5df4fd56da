"""``reduce``: combine every rank's value with an op; the result lands on ``root``."""

from __future__ import annotations

from ._reduction import run_reduction

__all__ = ["reduce"]


def reduce(value, op="sum", root: int = 0, *, comm=None, out=None, inplace: bool = False,
           local: bool = False, check: bool | None = None, timeout: float | None = None):
    """Combine ``value`` from every rank with ``op``; returns the result on ``root`` and
    None elsewhere.

    ``value``: an array, a scalar, a pytree of them, or (slow path) a picklable object.
    ``op``: a name (``sum``, ``prod``, ``min``, ``max``, ``mean``, ``land``, ``lor``,
    ``band``, ``bor``, ``bxor``, ``minloc``, ``maxloc``) or a :func:`reduction`.
    ``out=``: where root writes the result; ``inplace=True``: root overwrites ``value``.
    ``local=True``: ``value`` is a list of this rank's contributions (several shards per
    rank), combined locally first. ``check``: compare metadata across ranks first (default
    on). ``timeout``: seconds to wait for every rank (default 60).
    """
    return run_reduction("reduce", value, op, root, comm, out=out, inplace=inplace,
                         check=check, timeout=timeout, local=local)
