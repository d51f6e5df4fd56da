"""``scatter_gather``: root splits work, every rank applies ``fn`` to its part, root
collects the results in rank order."""

from __future__ import annotations

from ..errors import CollectiveAborted
from ._gathering import run_gather
from .scatter import scatter

__all__ = ["scatter_gather"]


def scatter_gather(fn, parts=None, root: int = 0, *, comm=None, timeout: float | None = None):
    """Scatter root's ``parts`` (one per rank), run ``fn(part)`` on every rank, and return
    the list of results on root (None elsewhere).

    If ``fn`` raises on some rank, every rank still finishes the exchange (nobody hangs);
    that rank then re-raises its own exception and root raises
    :class:`~plexhpc.errors.CollectiveAborted` naming the failed ranks."""
    if not callable(fn):
        raise TypeError(f"scatter_gather needs a callable fn, got {fn!r}")
    part = scatter(parts, root, comm=comm, timeout=timeout)
    error = None
    try:
        result = (True, fn(part))
    except Exception as exc:  # noqa: BLE001 - reported to root, then re-raised here
        error = exc
        result = (False, f"{type(exc).__name__}: {exc}")
    gathered = run_gather("scatter_gather", result, root, comm, timeout)
    if error is not None:
        raise error
    if gathered is None:
        return None
    failed = [(r, msg) for r, (ok, msg) in enumerate(gathered) if not ok]
    if failed:
        detail = "; ".join(f"rank {r}: {m}" for r, m in failed)
        raise CollectiveAborted(f"scatter_gather: fn failed on {len(failed)} rank(s): {detail}",
                                rank=failed[0][0])
    return [value for _, value in gathered]
