"""SPMD collectives over MPI, for arrays, scalars and pytrees, with timeouts.

Every rank calls the same collective in the same order (SPMD), as with mpi4py::

    from plexhpc import collectives as C

    grads = {"w1": w1_grad, "b1": b1_grad}
    C.allreduce(grads, op="mean", inplace=True)   # one MPI call for the whole tree
    total = C.reduce(local_loss, "sum", root=0)   # a float on rank 0, None elsewhere
    params = C.broadcast(params if rank == 0 else None, root=0)

``comm=None`` is the library's own clone of COMM_WORLD (user messages never collide
with it). Every call waits at most ``timeout`` seconds (``PLEXHPC_COLLECTIVE_TIMEOUT_S``,
60 by default) and checks that the ranks passed matching values; a failure on one rank
is reported on all of them. See ``docs/COLLECTIVES.md``.
"""

from ..errors import (CollectiveAborted, CollectiveError, CollectiveMismatch,
                      CollectiveTimeout)
from .allgather import allgather
from .allreduce import allreduce
from .barrier import barrier
from .broadcast import broadcast
from .comm import CollComm, default_timeout, get_comm, reset, set_default_timeout
from .gather import gather
from .kernels import compile_all
from .ops import OP_NAMES, Reduction, reduction
from .reduce import reduce
from .region import region
from .scatter import scatter
from .scatter_gather import scatter_gather

__all__ = [
    "broadcast", "barrier", "reduce", "allreduce", "scatter", "gather", "allgather",
    "scatter_gather", "reduction", "Reduction", "region", "OP_NAMES",
    "CollComm", "get_comm", "reset", "default_timeout", "set_default_timeout",
    "compile_all",
    "CollectiveError", "CollectiveMismatch", "CollectiveTimeout", "CollectiveAborted",
]
