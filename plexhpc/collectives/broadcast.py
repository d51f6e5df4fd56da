"""``broadcast``: root's value on every rank.

Root first broadcasts a small fixed-size header (what is coming: kind, structure, dtypes,
shapes). Values that fit in the header's spare room (up to ~900 bytes) travel inside it,
so a small broadcast is one MPI call; larger arrays follow as one ``Ibcast`` each (a
pytree: one per dtype, packed by the numba kernel and unpacked into views).
"""

from __future__ import annotations

import pickle
import struct

import numpy as np

from ..errors import CollectiveAborted
from . import kernels as K
from .comm import get_comm
from .values import OBJECT, Flat, flatten, unflatten

__all__ = ["broadcast"]

_HEADER = 1024
_FIXED = struct.Struct("<IIQ")  # meta length, flags, data length
_INLINE, _FAILED, _LONG_META, _SMALL, _ARRAY = 1, 2, 4, 8, 16


def broadcast(value=None, root: int = 0, *, comm=None, out=None, timeout: float | None = None):
    """Return root's ``value`` on every rank (root gets its own ``value`` back).

    Other ranks' ``value`` is ignored. ``out=`` (non-root ranks): arrays (or a pytree of
    them) of the right shape and dtype to receive into, for loops that reuse buffers.
    """
    cc = get_comm(comm, timeout)
    what = cc.begin("broadcast", root)
    head = cc.scratch("_bcast_head", _HEADER)
    if cc.rank == root:
        if type(value) is np.ndarray and value.dtype.kind in "biufc" and value.ndim <= 8:
            return _send_array(cc, what, value, root, head, timeout)
        return _send(cc, what, value, root, head, timeout)
    return _receive(cc, what, root, head, out, timeout)


_FAST = struct.Struct("<IIQ8sB")  # 0, flags (_SMALL), nbytes, dtype str, ndim; then shape


def _send_array(cc, what, value, root, head, timeout):
    """One array: the header packed by struct (no pickle); the data inside the header
    when it fits (one MPI call), else one more Ibcast straight from the array."""
    a = value if value.flags.c_contiguous else np.ascontiguousarray(value)
    inline = a.nbytes <= _HEADER - _FAST.size - 8 * a.ndim
    _FAST.pack_into(head, 0, 0, _SMALL if inline else _ARRAY, a.nbytes,
                    a.dtype.str.encode(), a.ndim)
    pos = _FAST.size
    if a.ndim:
        struct.pack_into(f"<{a.ndim}q", head, pos, *a.shape)
        pos += 8 * a.ndim
    if inline:
        head[pos:pos + a.nbytes] = a.reshape(-1).view(np.uint8)
    cc.wait(cc.comm.Ibcast(head, root), what, timeout)
    if not inline:
        cc.wait(cc.comm.Ibcast(a, root), what, timeout)
    return value


def _receive_array(cc, what, root, head, out, timeout):
    flags, nbytes, dts, ndim = _FAST.unpack_from(head, 0)[1:]
    pos = _FAST.size
    shape = struct.unpack_from(f"<{ndim}q", head, pos) if ndim else ()
    pos += 8 * ndim
    dt = np.dtype(dts.rstrip(b"\0").decode())
    if out is not None and not (isinstance(out, np.ndarray) and out.shape == shape
                                and out.dtype == dt and out.flags.writeable
                                and out.flags.c_contiguous):
        err = ValueError(f"out= does not fit the broadcast value: expected a writable "
                         f"C-contiguous {dt.name}{list(shape)}")
        if not flags & _SMALL:  # take part anyway, so root is not left waiting
            cc.wait(cc.comm.Ibcast(np.empty(shape, dt), root), what, timeout)
        raise err
    arr = out if out is not None else cc.result_array(shape, dt)
    if flags & _SMALL:
        arr.reshape(-1).view(np.uint8)[:] = head[pos:pos + nbytes]
    else:
        cc.wait(cc.comm.Ibcast(arr, root), what, timeout)
    return arr


def _send(cc, what, value, root, head, timeout):
    flat = flatten(value)
    try:
        if flat.kind == OBJECT:
            meta = (OBJECT, None, None)
            payload = pickle.dumps(value, 5)
            data_len = len(payload)
        else:
            meta = (flat.kind, flat.treedef, [(a.dtype.str, a.shape) for a in flat.leaves])
            payload = None
            data_len = sum(a.nbytes for a in flat.leaves)
        mbytes = pickle.dumps(meta, 5)
        err = None
    except Exception as exc:  # noqa: BLE001 - reported to every rank, then raised here
        err = exc
        mbytes = pickle.dumps(f"{type(exc).__name__}: {exc}")
        data_len = 0
    mbytes_long = None
    if len(mbytes) > _HEADER - _FIXED.size:  # a big pytree's structure: sent after
        mbytes_long, mbytes = mbytes, b""
    room = _HEADER - _FIXED.size - len(mbytes)
    inline = err is None and mbytes_long is None and data_len <= room
    flags = ((_INLINE if inline else 0) | (_FAILED if err is not None else 0)
             | (_LONG_META if mbytes_long is not None else 0))
    _FIXED.pack_into(head, 0, len(mbytes), flags, data_len)
    pos = _FIXED.size
    head[pos:pos + len(mbytes)] = np.frombuffer(mbytes, np.uint8)
    pos += len(mbytes)
    if inline:
        if payload is not None:
            head[pos:pos + data_len] = np.frombuffer(payload, np.uint8)
        else:
            for a in flat.leaves:
                n = a.nbytes
                head[pos:pos + n] = a.reshape(-1).view(np.uint8)
                pos += n
    cc.wait(cc.comm.Ibcast(head, root), what, timeout)
    if err is not None:
        raise err
    if mbytes_long is not None:
        cc.bcast_obj(mbytes_long, root, what, timeout)
    if not inline:
        if payload is not None:
            cc.wait(cc.comm.Ibcast(np.frombuffer(payload, np.uint8), root), what, timeout)
        else:
            _bcast_leaves(cc, what, flat, root, timeout, send=True)
    return value


def _receive(cc, what, root, head, out, timeout):
    cc.wait(cc.comm.Ibcast(head, root), what, timeout)
    mlen, flags, data_len = _FIXED.unpack_from(head, 0)
    if flags & (_SMALL | _ARRAY):
        return _receive_array(cc, what, root, head, out, timeout)
    pos = _FIXED.size
    if flags & _FAILED:
        message = pickle.loads(head[pos:pos + mlen].tobytes())
        raise CollectiveAborted(f"{what}: root rank {root} could not send its value: "
                                f"{message}", rank=root)
    if flags & _LONG_META:
        meta = pickle.loads(cc.bcast_obj(None, root, what, timeout))
    else:
        meta = pickle.loads(head[pos:pos + mlen].tobytes())
        pos += mlen
    kind, treedef, leaf_meta = meta
    inline = bool(flags & _INLINE)
    if kind == OBJECT:
        if inline:
            return pickle.loads(head[pos:pos + data_len].tobytes())
        buf = np.empty(data_len, np.uint8)
        cc.wait(cc.comm.Ibcast(buf, root), what, timeout)
        return pickle.loads(buf.tobytes())
    flat = Flat(kind, treedef, [])
    targets = _targets(out, leaf_meta, kind, treedef)
    if inline:
        for (dt, shape), t in zip(leaf_meta, targets):
            n = t.nbytes
            t.reshape(-1).view(np.uint8)[:] = head[pos:pos + n]
            pos += n
        flat.leaves = targets
    else:
        flat.leaves = targets
        _bcast_leaves(cc, what, flat, root, timeout, send=False)
    if out is not None:
        return out
    return unflatten(flat, flat.leaves)


def _targets(out, leaf_meta, kind, treedef) -> list:
    if out is None:
        return [np.empty(shape, np.dtype(dt)) for dt, shape in leaf_meta]
    oflat = flatten(out)
    ok = (oflat.kind == kind and oflat.treedef == treedef and not oflat.copied and
          [(a.dtype.str, a.shape) for a in oflat.leaves] == [(d, tuple(s)) for d, s in leaf_meta])
    if not ok:
        raise ValueError(f"out= does not fit the broadcast value: expected leaves "
                         f"{leaf_meta}, got {[(a.dtype.str, a.shape) for a in oflat.leaves]}")
    return oflat.leaves


def _bcast_leaves(cc, what, flat, root, timeout, *, send: bool) -> None:
    """One Ibcast for a single array; one per dtype (packed) for a pytree."""
    leaves = flat.leaves
    if len(leaves) == 1:
        cc.wait(cc.comm.Ibcast(leaves[0], root), what, timeout)
        return
    groups: dict = {}
    for a in leaves:
        groups.setdefault(a.dtype.str, []).append(a)
    bufs = {}
    for key, members in groups.items():
        buf = np.empty(sum(a.size for a in members), np.dtype(key))
        if send:
            off = 0
            for a in members:
                off = K.pack_into(buf, off, a.reshape(-1))
        bufs[key] = buf
    cc.wait([cc.comm.Ibcast(b, root) for b in bufs.values()], what, timeout)
    if not send:
        for key, members in groups.items():
            off = 0
            for a in members:
                off = K.unpack_from(bufs[key], off, a.reshape(-1))
