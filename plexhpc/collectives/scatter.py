"""``scatter``: root hands out one part to each rank.

Root passes either an array whose first axis has one entry per rank (each rank gets
``values[i]``: one ``Iscatter`` of equal chunks) or a sequence with one item per rank
(arrays of one dtype go in one ``Iscatterv``, whatever their shapes; anything else is
pickled). A small header from root says which, so a mistake at root (wrong length)
is reported on every rank instead of leaving them waiting.
"""

from __future__ import annotations

import pickle
import struct

import numpy as np
from mpi4py import MPI

from ..errors import CollectiveAborted
from .comm import get_comm
from .values import ARRAY, SCALAR, flatten

__all__ = ["scatter"]

_HEAD = 512
_FAST = struct.Struct("<IIQ8sB")  # mode (1: split array), inline, part bytes, dtype, ndim


def _plan(values, size):
    """Root's header: ("split", dtype, shape) | ("arrays", dtype, shapes, kinds) |
    ("pickled",) | ("error", message)."""
    if isinstance(values, np.ndarray):
        if values.ndim == 0 or values.shape[0] != size:
            return ("error", f"an array to scatter needs its first axis to have one entry "
                             f"per rank ({size}), got shape {values.shape}"), None
        if values.dtype.kind not in "biufc":
            return ("pickled",), list(values)
        arr = np.ascontiguousarray(values)
        return ("split", arr.dtype.str, arr.shape[1:]), arr
    if not isinstance(values, (list, tuple)):
        return ("error", f"scatter needs an array or a list with one item per rank at root, "
                         f"got {type(values).__name__}"), None
    if len(values) != size:
        return ("error", f"scatter needs one item per rank ({size}), got {len(values)}"), None
    flats = [flatten(v) for v in values]
    kinds = {f.kind for f in flats}
    if kinds <= {ARRAY, SCALAR} and len({f.leaves[0].dtype.str for f in flats}) == 1 \
            and len(kinds) == 1:
        leaves = [f.leaves[0] for f in flats]
        scalar_types = [type(v).__name__ if flats[0].kind == SCALAR and not isinstance(
            v, np.generic) else None for v in values]
        return ("arrays", leaves[0].dtype.str, [a.shape for a in leaves], scalar_types), leaves
    return ("pickled",), list(values)


def scatter(values=None, root: int = 0, *, comm=None, timeout: float | None = None):
    """Return this rank's part of root's ``values`` (ignored on other ranks)."""
    cc = get_comm(comm, timeout)
    what = cc.begin("scatter", root)
    # a fixed-size first header: an array split along its first axis is described by
    # struct (and, when small, carried whole); anything else says "pickled header next"
    head = cc.scratch("_scatter_head", _HEAD)
    if cc.rank == root:
        fast = (isinstance(values, np.ndarray) and values.ndim >= 1
                and values.shape[0] == cc.size and values.dtype.kind in "biufc"
                and values.ndim - 1 <= 8)
        if fast:
            arr = np.ascontiguousarray(values)
            part = arr.nbytes // cc.size
            inline = arr.nbytes <= _HEAD - _FAST.size - 8 * (arr.ndim - 1)
            _FAST.pack_into(head, 0, 1, int(inline), part, arr.dtype.str.encode(),
                            arr.ndim - 1)
            pos = _FAST.size
            if arr.ndim > 1:
                struct.pack_into(f"<{arr.ndim - 1}q", head, pos, *arr.shape[1:])
                pos += 8 * (arr.ndim - 1)
            if inline:
                head[pos:pos + arr.nbytes] = arr.reshape(-1).view(np.uint8)
        else:
            _FAST.pack_into(head, 0, 0, 0, 0, b"", 0)
    cc.wait(cc.comm.Ibcast(head, root), what, timeout)
    mode, inline, part, dts, ndim = _FAST.unpack_from(head, 0)
    if mode == 1:
        pos = _FAST.size
        shape = struct.unpack_from(f"<{ndim}q", head, pos) if ndim else ()
        pos += 8 * ndim
        out = cc.result_array(shape, np.dtype(dts.rstrip(b"\0").decode()))
        if inline:
            start = pos + cc.rank * part
            out.reshape(-1).view(np.uint8)[:] = head[start:start + part]
        else:
            cc.wait(cc.comm.Iscatter(arr if cc.rank == root else None, out, root), what,
                    timeout)
        return out
    header, data = _plan(values, cc.size) if cc.rank == root else (None, None)
    header = cc.bcast_obj(header, root, what, timeout)
    kind = header[0]
    if kind == "error":
        if cc.rank == root:
            raise ValueError(header[1])
        raise CollectiveAborted(f"{what}: root rank {root} passed bad input: {header[1]}",
                                rank=root)
    if kind == "split":
        dt, shape = np.dtype(header[1]), tuple(header[2])
        out = np.empty(shape, dt)
        send = data if cc.rank == root else None
        cc.wait(cc.comm.Iscatter(send, out, root), what, timeout)
        return out
    if kind == "arrays":
        dt, shapes, scalar_types = np.dtype(header[1]), header[2], header[3]
        counts = np.array([int(np.prod(s, dtype=np.int64)) for s in shapes], np.int64)
        displs = np.zeros(cc.size, np.int64)
        np.cumsum(counts[:-1], out=displs[1:])
        out = np.empty(tuple(shapes[cc.rank]), dt)
        if cc.rank == root:
            send = np.concatenate([a.reshape(-1) for a in data]) if data else np.empty(0, dt)
            sspec = [send, (counts, displs), MPI.Datatype.fromcode(dt.char)]
        else:
            sspec = None
        cc.wait(cc.comm.Iscatterv(sspec, out, root), what, timeout)
        st = scalar_types[cc.rank]
        if st is not None:
            return {"bool": bool, "int": int, "float": float, "complex": complex}[st](
                out[()].item())
        return out
    # pickled: sizes first, then the bytes
    blobs = [pickle.dumps(v, 5) for v in data] if cc.rank == root else None
    counts = np.array([len(b) for b in blobs] if blobs else [0] * cc.size, np.int64)
    mine = np.empty(1, np.int64)
    cc.wait(cc.comm.Iscatter(counts if cc.rank == root else None, mine, root), what, timeout)
    buf = bytearray(int(mine[0]))
    if cc.rank == root:
        displs = np.zeros(cc.size, np.int64)
        np.cumsum(counts[:-1], out=displs[1:])
        sspec = [b"".join(blobs), (counts, displs), MPI.BYTE]
    else:
        sspec = None
    cc.wait(cc.comm.Iscatterv(sspec, [buf, MPI.BYTE], root), what, timeout)
    return pickle.loads(buf)
