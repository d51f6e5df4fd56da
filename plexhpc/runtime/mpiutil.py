"""Small MPI helpers the runtime needs: detecting a launch, bounded collectives.

Every collective the runtime itself makes outside the node's loop goes through
:func:`allreduce_timed`, so a rank that never arrives becomes an error, not a hang.
"""

from __future__ import annotations

import os
import time
from array import array

from mpi4py import MPI

from ..errors import StartError

__all__ = ["launched_by_mpi", "allreduce_timed"]

_LAUNCH_VARS = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE",
                "MPI_LOCALRANKID", "HYDRA_CONTROL_FD")


def launched_by_mpi() -> bool:
    """True when this process was started by mpiexec/srun (so it is one rank of a job)."""
    return any(v in os.environ for v in _LAUNCH_VARS)


def allreduce_timed(comm: MPI.Comm, value: int, op=MPI.MAX, *, timeout_s: float = 60.0,
                    what: str = "collective") -> int:
    """Allreduce one integer, raising :class:`StartError` if not every rank arrives in
    ``timeout_s``."""
    send = array("q", [int(value)])
    recv = array("q", [0])
    req = comm.Iallreduce([send, MPI.INT64_T], [recv, MPI.INT64_T], op)
    deadline = time.monotonic() + timeout_s
    pause = 1e-5
    while not req.Test():
        if time.monotonic() > deadline:
            raise StartError(f"{what}: not every rank of {comm.Get_size()} arrived within "
                             f"{timeout_s:g} s (a rank died or is stuck)")
        time.sleep(pause)
        pause = min(pause * 2, 0.01)
    return recv[0]
