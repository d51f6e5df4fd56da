"""The engine behind ``gather`` and ``allgather``.

Every rank first shares a fixed-size record of what it holds (kind, dtype, shape: one
``Iallgather`` of 11 int64), so every rank knows the sizes and any mismatch is reported
on every rank. Arrays and scalars of one dtype then move as raw bytes in one
``Igatherv``/``Iallgatherv`` into a single buffer, and each rank's piece comes back as a
view of it; shapes may differ between ranks. Pytrees and other objects are pickled (the
slow path).
"""

from __future__ import annotations

import pickle

import numpy as np
from mpi4py import MPI

from ..errors import CollectiveMismatch
from ._reduction import check_root
from .comm import get_comm
from .values import ARRAY, SCALAR, flatten

__all__ = ["run_gather"]

_MAXDIM = 8
_CODES = {ARRAY: 1, SCALAR: 2}


def _record(flat) -> np.ndarray:
    rec = np.zeros(3 + _MAXDIM, np.int64)
    if flat.kind in _CODES and flat.leaves[0].ndim <= _MAXDIM:
        a = flat.leaves[0]
        rec[0] = _CODES[flat.kind]
        rec[1] = _dtype_code(a.dtype)
        rec[2] = a.ndim
        rec[3:3 + a.ndim] = a.shape
    else:
        rec[0] = 3  # pickled
    return rec


def run_gather(name: str, value, root, comm, timeout):
    cc = get_comm(comm, timeout)
    cc.ensure_usable()
    if root is not None:
        check_root(root, cc.size)
    what = f"{name} #{cc.seq}"
    cc.seq += 1
    flat = flatten(value)
    mine = _record(flat)
    recs = np.empty((cc.size, mine.size), np.int64)
    cc.wait(cc.comm.Iallgather(mine, recs), what, timeout)
    codes = recs[:, 0].tolist()
    is_root = root is None or cc.rank == root
    if 3 in codes:  # some rank holds a pytree or an object: everyone pickles (consistent)
        return _gather_pickled(cc, what, value, root, timeout, is_root)
    if len(set(codes)) != 1 or len(set(recs[:, 1].tolist())) != 1:
        groups: dict = {}
        for r in range(cc.size):
            label = (f"{'an array' if codes[r] == 1 else 'a scalar'} of "
                     f"{np.dtype(_dtype_from_code(int(recs[r, 1]))).name}")
            groups.setdefault(label, []).append(r)
        detail = "; ".join(f"rank(s) {rs} passed {k}" for k, rs in groups.items())
        raise CollectiveMismatch(f"{what}: every rank must pass the same kind and dtype: "
                                 f"{detail}")
    dt = flat.leaves[0].dtype
    shapes = [tuple(int(x) for x in recs[r, 3:3 + recs[r, 2]]) for r in range(cc.size)]
    counts = np.array([int(np.prod(s, dtype=np.int64)) * dt.itemsize for s in shapes],
                      np.int64)
    displs = np.zeros(cc.size, np.int64)
    np.cumsum(counts[:-1], out=displs[1:])
    send = flat.leaves[0].reshape(-1).view(np.uint8)
    buf = np.empty(int(counts.sum()), np.uint8) if is_root else None
    rspec = [buf, (counts, displs), MPI.BYTE] if is_root else None
    if root is None:
        req = cc.comm.Iallgatherv(send, rspec)
    else:
        req = cc.comm.Igatherv(send, rspec, root)
    cc.wait(req, what, timeout)
    if not is_root:
        return None
    parts = [buf[d:d + c].view(dt).reshape(s) for d, c, s in zip(displs, counts, shapes)]
    if flat.kind == SCALAR:
        kind = type(value)
        return [p[()] if isinstance(value, np.generic) else kind(p[()].item()) for p in parts]
    return parts


def _dtype_code(dt: np.dtype) -> int:
    """A dtype as one int64 (its ``str``, e.g. '<f8', in 8 bytes): comparable across ranks."""
    return int.from_bytes(dt.str.encode().ljust(8, b" "), "little", signed=True)


def _dtype_from_code(code: int) -> str:
    return code.to_bytes(8, "little", signed=True).rstrip(b" ").decode()


def _gather_pickled(cc, what, value, root, timeout, is_root):
    data = pickle.dumps(value, 5)
    n = np.array([len(data)], np.int64)
    counts = np.empty(cc.size, np.int64)
    cc.wait(cc.comm.Iallgather(n, counts), what, timeout)
    displs = np.zeros(cc.size, np.int64)
    np.cumsum(counts[:-1], out=displs[1:])
    buf = bytearray(int(counts.sum())) if is_root else None
    rspec = [buf, (counts, displs), MPI.BYTE] if is_root else None
    if root is None:
        req = cc.comm.Iallgatherv([data, MPI.BYTE], rspec)
    else:
        req = cc.comm.Igatherv([data, MPI.BYTE], rspec, root)
    cc.wait(req, what, timeout)
    if not is_root:
        return None
    return [pickle.loads(buf[d:d + c]) for d, c in zip(displs, counts)]
