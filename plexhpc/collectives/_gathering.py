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
from .comm import get_comm
from .values import ARRAY, SCALAR, flatten

__all__ = ["run_gather"]

_MAXDIM = 8
_REC_BYTES = 8 * (3 + _MAXDIM)
_SLOT = 512  # bytes per rank in the first exchange: the record plus up to 424 data bytes
_CODES = {ARRAY: 1, SCALAR: 2}


_RECORDS: dict = {}
_LAYOUTS: dict = {}


def _record(value):
    """(flat or None, this rank's 11-int64 record); plain arrays skip Flat."""
    if type(value) is np.ndarray and value.dtype.kind in "biufc" and value.ndim <= _MAXDIM:
        key = (1, value.dtype.str, value.shape)
        a = value
        flat = None
    else:
        flat = flatten(value)
        if flat.kind in _CODES and flat.leaves[0].ndim <= _MAXDIM:
            a = flat.leaves[0]
            key = (_CODES[flat.kind], a.dtype.str, a.shape)
        else:
            rec = np.zeros(3 + _MAXDIM, np.int64)
            rec[0] = 3  # pickled
            return flat, rec
    rec = _RECORDS.get(key)
    if rec is None:
        rec = np.zeros(3 + _MAXDIM, np.int64)
        rec[0] = key[0]
        rec[1] = _dtype_code(a.dtype)
        rec[2] = a.ndim
        rec[3:3 + a.ndim] = a.shape
        if len(_RECORDS) > 1024:
            _RECORDS.clear()
        _RECORDS[key] = rec
    return flat, rec


_PLANS: dict = {}


def _plan(key, size) -> tuple:
    """What every rank's record says: ("pickled",) | ("mismatch", detail) |
    ("ok", dtype, shapes, counts, displs, inline)."""
    if isinstance(key, tuple):
        recs = np.frombuffer(key[1], np.int64).reshape(1, -1).repeat(size, 0)
    else:
        recs = np.frombuffer(key, np.int64).reshape(size, -1)
    codes = recs[:, 0].tolist()
    if 3 in codes:
        return ("pickled",)
    dcodes = recs[:, 1].tolist()
    if len(set(codes)) != 1 or len(set(dcodes)) != 1:
        groups: dict = {}
        for r in range(size):
            label = (f"{'an array' if codes[r] == 1 else 'a scalar'} of "
                     f"{np.dtype(_dtype_from_code(int(dcodes[r]))).name}")
            groups.setdefault(label, []).append(r)
        return ("mismatch", "; ".join(f"rank(s) {rs} passed {k}" for k, rs in groups.items()))
    dt = np.dtype(_dtype_from_code(int(dcodes[0])))
    shapes, counts, displs = _layout(recs, dt.itemsize)
    return ("ok", dt, shapes, counts, displs, max(counts) <= _SLOT - _REC_BYTES)


def _layout(recs: np.ndarray, itemsize: int) -> tuple:
    """(shapes, counts, displs) in bytes for every rank's record (cached)."""
    key = recs.tobytes()
    hit = _LAYOUTS.get(key)
    if hit is None:
        shapes = [tuple(int(x) for x in r[3:3 + r[2]]) for r in recs]
        counts = [int(np.prod(sh, dtype=np.int64)) * itemsize for sh in shapes]
        displs = [0] * len(counts)
        for i in range(1, len(counts)):
            displs[i] = displs[i - 1] + counts[i - 1]
        hit = (shapes, counts, displs)
        if len(_LAYOUTS) > 1024:
            _LAYOUTS.clear()
        _LAYOUTS[key] = hit
    return hit


def run_gather(name: str, value, root, comm, timeout):
    cc = get_comm(comm, timeout)
    what = cc.begin(name, root)
    flat, mine = _record(value)
    a = None
    if mine[0] != 3:
        a = value if flat is None else flat.leaves[0]
        if not a.flags.c_contiguous:
            a = np.ascontiguousarray(a)
    # one fixed-size slot per rank: the record, then the data if it fits (small values
    # then take a single MPI call; larger ones follow in a second, sized by the records)
    size = cc.size
    bufs = cc.__dict__.get("_gather_bufs")
    if bufs is None:
        bufs = cc.__dict__["_gather_bufs"] = (bytearray(_SLOT), bytearray(_SLOT * size))
    my_slot, slots = bufs
    mv = memoryview(my_slot)
    mv[:_REC_BYTES] = mine.data.cast("B")
    if a is not None and a.nbytes <= _SLOT - _REC_BYTES:
        mv[_REC_BYTES:_REC_BYTES + a.nbytes] = a.data.cast("B")
    cc.wait(cc.comm.Iallgather([my_slot, MPI.BYTE], [slots, MPI.BYTE]), what, timeout)
    smv = memoryview(slots)
    first = smv[:_REC_BYTES]
    if all(smv[r * _SLOT:r * _SLOT + _REC_BYTES] == first for r in range(1, size)):
        key = (size, first.tobytes())
    else:
        key = b"".join(smv[r * _SLOT:r * _SLOT + _REC_BYTES] for r in range(size))
    plan = _PLANS.get(key)
    if plan is None:
        plan = _plan(key, size)
        if len(_PLANS) > 1024:
            _PLANS.clear()
        _PLANS[key] = plan
    is_root = root is None or cc.rank == root
    kind = plan[0]
    if kind == "pickled":  # some rank holds a pytree or an object: everyone pickles
        return _gather_pickled(cc, what, value, root, timeout, is_root)
    if kind == "mismatch":
        raise CollectiveMismatch(f"{what}: every rank must pass the same kind and dtype: "
                                 f"{plan[1]}")
    _, dt, shapes, counts, displs, inline = plan
    if inline:  # everything came with the records
        if not is_root:
            return None
        data = bytes(slots)  # one copy; the parts are views of it
        parts = [np.frombuffer(data, dt, c // dt.itemsize, r * _SLOT + _REC_BYTES).reshape(sh)
                 for r, (c, sh) in enumerate(zip(counts, shapes))]
        return _as_scalars(parts, flat, value)
    send = a.reshape(-1).view(np.uint8)
    buf = cc.result_array(displs[-1] + counts[-1], np.uint8) if is_root else None
    rspec = [buf, (counts, displs), MPI.BYTE] if is_root else None
    if counts.count(counts[0]) == len(counts):  # equal parts: the plain (faster) call
        rspec = [buf, MPI.BYTE] if is_root else None
        if root is None:
            req = cc.comm.Iallgather(send, rspec)
        else:
            req = cc.comm.Igather(send, rspec, root)
    elif root is None:
        req = cc.comm.Iallgatherv(send, rspec)
    else:
        req = cc.comm.Igatherv(send, rspec, root)
    cc.wait(req, what, timeout)
    if not is_root:
        return None
    parts = [buf[d:d + c].view(dt).reshape(sh) for d, c, sh in zip(displs, counts, shapes)]
    return _as_scalars(parts, flat, value)


def _as_scalars(parts, flat, value):
    if flat is not None and flat.kind == SCALAR:
        if isinstance(value, np.generic):
            return [p[()] for p in parts]
        return [type(value)(p[()].item()) for p in parts]
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
