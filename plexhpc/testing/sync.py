"""Keeping the ranks of a pytest-mpi run in step, with every wait bounded.

Under ``mpiexec -n N python -m pytest --with-mpi`` every rank runs the same session. A
plexhpc test runs its body on the driver rank while the other ranks serve actors, so
the ranks meet twice per test: before the job starts (is everyone at the same test?)
and after it ends (how did it go on the driver, and did the job fail anywhere?).

Each meeting is a nonblocking barrier polled against a deadline, then one small
``allgather``: a rank that never arrives (stuck, or at another test) becomes an
:class:`OutOfStep` error on the ranks that wait, never a hang. Once that happened the
ranks cannot be trusted to meet again, so every later meeting fails at once.
"""

from __future__ import annotations

import time

__all__ = ["RankSync", "OutOfStep"]


class OutOfStep(Exception):
    """The ranks did not meet within the timeout, or met at different tests."""


class RankSync:
    """Timed meetings of every rank of ``MPI.COMM_WORLD`` on a private duplicate.

    The duplicate keeps these meetings apart from any collective a test makes on
    ``COMM_WORLD`` itself; it is created at the first meeting (after a timed barrier, so
    creating it cannot hang)."""

    def __init__(self, timeout_s: float = 120.0):
        from mpi4py import MPI

        self.timeout_s = float(timeout_s)
        self._world = MPI.COMM_WORLD
        self._comm = None
        self.rank = self._world.Get_rank()
        self.size = self._world.Get_size()
        #: why the ranks are out of step (None while they are in step)
        self.broken: str | None = None

    def _wait(self, req, what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pause = 1e-5
        done = False
        try:
            while not req.Test():
                if time.monotonic() > deadline:
                    raise OutOfStep(
                        f"{what}: not every one of the {self.size} ranks arrived within "
                        f"{timeout_s:g} s (a rank is stuck, died, or runs another test)")
                time.sleep(pause)
                pause = min(pause * 2, 0.01)
            done = True
        finally:
            if not done and self.broken is None:  # a timeout, or pytest-timeout's signal
                self.broken = f"rank {self.rank} stopped waiting at {what}"

    def agree(self, phase: str, nodeid: str, value, *, timeout_s: float | None = None) -> list:
        """Meet every rank at (``phase``, ``nodeid``) and return each rank's ``value``,
        indexed by rank. Raises :class:`OutOfStep` when a rank does not arrive in time
        or arrives at another phase or test."""
        if self.broken:
            raise OutOfStep(f"the ranks are out of step ({self.broken}); later plexhpc "
                            "tests of this session cannot run")
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        what = f"{phase} of {nodeid}"
        if self._comm is None:
            self._wait(self._world.Ibarrier(), what, timeout_s)
            self._comm = self._world.Dup()
            self._comm.Set_name("plexhpc-testing")
        self._wait(self._comm.Ibarrier(), what, timeout_s)
        got = self._comm.allgather((phase, nodeid, value))
        elsewhere = {r: f"{p} of {n}" for r, (p, n, _) in enumerate(got)
                     if (p, n) != (phase, nodeid)}
        if elsewhere:
            self.broken = f"rank {self.rank} was at {what}, other ranks at {elsewhere}"
            raise OutOfStep(f"the ranks met at different places: {self.broken}")
        return [v for _, _, v in got]
