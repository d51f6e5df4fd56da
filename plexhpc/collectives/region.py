"""``region``: a block of SPMD code whose failure on one rank stops the others.

The classic MPI hang: one rank raises between collectives, its peers wait forever in the
next one. Inside ``with region():`` an exception on one rank is announced on the control
channel before it propagates, and every other rank's current or next collective on that
communicator raises :class:`~plexhpc.errors.CollectiveAborted` naming the failed rank.
(An uncaught exception does the same for every communicator in use, through
``sys.excepthook``.)
"""

from __future__ import annotations

from contextlib import contextmanager

from .comm import get_comm

__all__ = ["region"]


@contextmanager
def region(*, comm=None):
    cc = get_comm(comm)
    try:
        yield cc
    except BaseException as exc:
        if cc.broken is None:
            cc.notify_abort(exc)
        raise
