"""The engine behind ``reduce`` and ``allreduce`` (one engine, two thin front doors).

Paths, fastest first:

1. one contiguous array, built-in op: straight into ``Iallreduce``/``Ireduce`` (no
   packing, no copy; ``inplace=True`` uses ``MPI.IN_PLACE``);
2. pytrees and several local contributions: leaves are packed by a numba kernel into one
   buffer per dtype (a cached buffer: a training loop allocates nothing for it per
   step), local contributions are combined into it by numba kernels, and each dtype's
   buffer is reduced by one MPI call; results come back as views of the result buffer;
3. user ops: the same buffers, reduced by an MPI user op that calls the numba kernel;
4. objects: pickled and combined in Python (slow path).

Before any data moves, one tiny ``Iallreduce`` checks that every rank passed the same
kind, structure, dtypes, shapes, op and root, and whether any rank failed to prepare its
part; a failure or mismatch is then reported on every rank (see :mod:`.comm`).
``check=False`` skips it (then a bad call may fail later or only on some ranks).
"""

from __future__ import annotations

import functools
import operator

import numpy as np
from mpi4py import MPI

from ..errors import CollectiveAborted, CollectiveMismatch
from . import kernels as K
from .comm import CollComm, check_root, get_comm
from .ops import OpSpec, local_combiner, mpi_op_for, resolve_op, work_dtype
from .values import OBJECT, Flat, describe, flatten, signature_of, unflatten

__all__ = ["run_reduction", "check_root", "DEFAULT_CHECK", "settle"]

#: whether collectives check metadata across ranks unless told otherwise
DEFAULT_CHECK = True
_BIG = np.iinfo(np.int64).max


def settle(cc: CollComm, what: str, err, sig: int, desc, check, timeout, agreed=None) -> None:
    """The agreement step every checked collective starts with.

    Raises on every rank if any rank failed to prepare (its own error there,
    CollectiveAborted naming it elsewhere) or if the ranks' signatures differ
    (CollectiveMismatch listing who passed what)."""
    if check is None:
        check = DEFAULT_CHECK
    if not check or cc.size == 1:
        if err is not None:
            raise err
        return
    if agreed is None:
        agreed = cc.agree(sig if err is None else 0, err is not None, what, timeout)
    same, bad = agreed
    if bad < 0 and same:
        return
    if callable(desc):
        desc = desc()  # described only when something went wrong
    mine = f"{type(err).__name__}: {err}" if err is not None else desc
    everyone = cc.allgather_obj((err is not None, mine), what + " (diagnosis)", timeout)
    if err is not None:
        raise err
    failed = [(r, m) for r, (f, m) in enumerate(everyone) if f]
    if failed:
        r, m = failed[0]
        raise CollectiveAborted(f"{what}: rank {r} could not take part: {m}", rank=r)
    groups: dict = {}
    for r, (_, m) in enumerate(everyone):
        groups.setdefault(m, []).append(r)
    detail = "; ".join(f"rank(s) {rs} passed {m}" for m, rs in groups.items())
    raise CollectiveMismatch(f"{what}: ranks passed values that do not match: {detail}")


class _Plan:
    """How the leaves of one call are laid out in per-dtype buffers."""

    __slots__ = ("groups", "where", "sizes")

    def __init__(self, wdtypes: list, leaves: list):
        self.groups: dict = {}      # dtype.str -> total elements
        self.where: list = []       # per leaf: (dtype.str, offset)
        self.sizes = [a.size for a in leaves]
        for wd, a in zip(wdtypes, leaves):
            off = self.groups.get(wd.str, 0)
            self.where.append((wd.str, off))
            self.groups[wd.str] = off + a.size


_SIGS: dict = {}
_WORK: dict = {}


def _signature(name, root, spec, kind, treedef, wdtypes, leaves) -> int:
    key = (name, root, spec.name, kind, treedef,
           tuple((w.str, a.shape) for w, a in zip(wdtypes, leaves)))
    sig = _SIGS.get(key)
    if sig is None:
        if len(_SIGS) > 4096:
            _SIGS.clear()
        sig = _SIGS[key] = signature_of(*key)
    return sig


def _work(spec, dt):
    key = (spec.name, dt.str) if spec.user is None else None
    wd = _WORK.get(key) if key else None
    if wd is None:
        wd = work_dtype(spec, dt)  # raises ValueError for an op that does not fit
        if key:
            _WORK[key] = wd
    return wd


def run_reduction(name: str, value, op, root, comm, *, out=None, inplace=False, check=None,
                  timeout=None, local=False):
    """Reduce ``value`` over the ranks of ``comm``; ``root=None`` means every rank gets
    the result (allreduce)."""
    cc = get_comm(comm, timeout)
    what = cc.begin(name)  # the root is checked below, where errors reach every rank
    if not local and not inplace:
        vt = type(value)
        if vt is np.ndarray and (out is None or _plain_out(out, value)):
            done, result = _fast_array(cc, what, name, value, op, root, check, timeout, out)
            if done:
                return result
        elif out is None and (vt is float or vt is bool
                              or (vt is int and -2 ** 63 <= value < 2 ** 63)):
            done, result = _fast_array(cc, what, name, np.asarray(value), op, root, check,
                                       timeout)
            if done:
                return None if result is None else result.item()
    err = sig = None
    desc = ""
    try:
        spec = resolve_op(op)
        if root is not None:
            check_root(root, cc.size)
        flats = _contributions(value, local)
        flat = flats[0]
        if flat.kind == OBJECT:
            wdtypes = []
        else:
            wdtypes = [_work(spec, a.dtype) for a in flat.leaves]
        desc = lambda: describe(flat)  # noqa: E731 - only built on failure
        sig = _signature(name, root, spec, flat.kind, flat.treedef, wdtypes, flat.leaves)
        if out is not None or inplace:
            _check_out(flat, wdtypes, out, inplace, spec)
    except (ValueError, TypeError) as exc:
        err = exc
    settle(cc, what, err, sig, desc, check, timeout)

    if flat.kind == OBJECT:
        return _object_reduce(cc, what, flats, spec, root, timeout)
    if spec.name in ("minloc", "maxloc"):
        return _loc_reduce(cc, what, flats, spec, wdtypes, root, timeout, local)
    is_root = root is None or root == cc.rank
    # 1. one contiguous array, no local contributions: straight to MPI
    if not local and len(flat.leaves) == 1:
        return _single(cc, what, flat, spec, wdtypes[0], root, out, inplace, timeout, is_root)
    # 2./3. packed per dtype
    plan = _Plan(wdtypes, flat.leaves)
    # results land in the packed buffers themselves (MPI_IN_PLACE: MPICH then skips a
    # copy, measured 209 vs 269 us for 2 MB); so the buffers are fresh per call unless
    # the results are copied out at once (inplace=/out=), when a cached one is reused
    reuse = bool(inplace or out is not None or not is_root)
    bufs = _pack(cc, sig, plan, flats, wdtypes, spec, reuse)
    results = bufs
    reqs = []
    for key, buf in bufs.items():
        mop = mpi_op_for(spec, buf.dtype)
        if root is None:
            reqs.append(cc.comm.Iallreduce(MPI.IN_PLACE, buf, mop))
        elif is_root:
            reqs.append(cc.comm.Ireduce(MPI.IN_PLACE, buf, mop, root))
        else:
            reqs.append(cc.comm.Ireduce(buf, None, mop, root))
    count = cc.size
    if spec.name == "mean" and local:
        count = _global_count(cc, what, len(flats), timeout)
    cc.wait(reqs, what, timeout)
    if not is_root:
        return None
    if spec.name == "mean":
        for res in results.values():
            K.scale_into(res, 1.0 / count)
    leaves = []
    for (key, off), a, n in zip(plan.where, flat.leaves, plan.sizes):
        leaves.append(results[key][off:off + n].reshape(a.shape))
    if inplace or out is not None:
        targets = flat.leaves if inplace else flatten(out).leaves
        for dst, src in zip(targets, leaves):
            K.unpack_from(src.reshape(-1), 0, dst.reshape(-1))
        return value if inplace else out
    return unflatten(flat, leaves)


_FAST: dict = {}


def _fast_array(cc, what, name, value, op, root, check, timeout, out=None):
    """One array, a built-in op: everything about the call (validation, signature, MPI op)
    comes from one cache lookup. Returns (False, None) to let the general path handle
    anything unusual (including errors, which it reports on every rank)."""
    key = (name, root, op, value.dtype.str, value.shape) if type(op) is str else None
    hit = _FAST.get(key) if key is not None else None
    if hit is None:
        try:
            spec = resolve_op(op)
            if (spec.user is not None or spec.name in ("minloc", "maxloc")
                    or value.dtype.kind not in "biufc"):
                return False, None
            if root is not None:
                check_root(root, cc.size)
            wd = _work(spec, value.dtype)
        except (ValueError, TypeError):
            return False, None
        sig = _signature(name, root, spec, "array", ("a",), (wd,), (value,))
        hit = (sig, wd, mpi_op_for(spec, wd), spec.name == "mean")
        if len(_FAST) > 4096:
            _FAST.clear()
        _FAST[key] = hit
    sig, wd, mop, is_mean = hit
    if out is not None and out.dtype != wd:
        return False, None  # the general path explains what out= should be
    if (DEFAULT_CHECK if check is None else check) and cc.size > 1:
        same, bad = cc.agree(sig, False, what, timeout)
        if bad >= 0 or not same:
            settle(cc, what, None, sig, lambda: describe(flatten(value)), check, timeout,
                   agreed=(same, bad))
    a = value if value.flags.c_contiguous else np.ascontiguousarray(value)
    if a.dtype != wd:
        a = a.astype(wd)
    comm = cc.comm
    is_root = root is None or root == cc.rank
    if out is not None:
        res = out if is_root else None
    else:
        res = cc.result_array(value.shape, wd) if is_root else None
    if root is None:
        req = comm.Iallreduce(a, res, mop)
    else:
        req = comm.Ireduce(a, res, mop, root)
    cc.wait(req, what, timeout)
    if is_mean and res is not None:
        K.scale_into(res.reshape(-1), 1.0 / cc.size)
    return True, res


def _plain_out(out, value) -> bool:
    return (type(out) is np.ndarray and out.shape == value.shape and out.flags.c_contiguous
            and out.flags.writeable)


def _contributions(value, local: bool) -> list:
    if not local:
        return [flatten(value)]
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) == 0:
        raise ValueError("local=True takes a non-empty list of this rank's contributions")
    flats = [flatten(v) for v in value]
    first = flats[0]
    for i, f in enumerate(flats[1:], 1):
        if f.kind != first.kind or f.treedef != first.treedef or f.leaf_meta() != first.leaf_meta():
            raise ValueError(f"local contribution {i} ({describe(f)}) does not match "
                             f"contribution 0 ({describe(first)})")
    return flats


def _check_out(flat: Flat, wdtypes, out, inplace, spec: OpSpec) -> None:
    if inplace and out is not None:
        raise ValueError("give either out= or inplace=True, not both")
    if spec.name in ("minloc", "maxloc"):
        raise ValueError(f"op {spec.name!r} returns (values, locations): out=/inplace are "
                         "not supported for it")
    if flat.kind == OBJECT:
        raise ValueError("out=/inplace need array values")
    if inplace:
        if flat.copied:
            raise ValueError("inplace=True needs C-contiguous arrays as every leaf (a scalar "
                             "or a non-contiguous array cannot be updated in place)")
        targets = flat.leaves
        label = "inplace=True"
    else:
        tflat = flatten(out)
        if tflat.kind != flat.kind or tflat.treedef != flat.treedef:
            raise ValueError(f"out= must have the structure of the value: {describe(flat)}, "
                             f"got {describe(tflat)}")
        if tflat.copied:
            raise ValueError("out= needs C-contiguous arrays as every leaf")
        targets = tflat.leaves
        label = "out="
    for a, t, wd in zip(flat.leaves, targets, wdtypes):
        if t.shape != a.shape or t.dtype != wd:
            raise ValueError(f"{label} needs arrays of shape {a.shape} and dtype {wd.name}, "
                             f"got {t.shape} {t.dtype.name}")
        if not t.flags.writeable:
            raise ValueError(f"{label} needs writable arrays")
        if not t.flags.c_contiguous:
            raise ValueError(f"{label} needs C-contiguous arrays")


def _single(cc, what, flat, spec, wd, root, out, inplace, timeout, is_root):
    a = flat.leaves[0]
    mop = mpi_op_for(spec, wd)
    send = a if a.dtype == wd else a.astype(wd)
    if inplace:
        res = a
        sbuf = MPI.IN_PLACE if is_root else send
    else:
        res = (out if out is not None else np.empty(a.shape, wd)) if is_root else None
        sbuf = send
    if root is None:
        req = cc.comm.Iallreduce(sbuf, res, mop)
    else:
        req = cc.comm.Ireduce(sbuf, res, mop, root)
    cc.wait(req, what, timeout)
    if not is_root:
        return None
    if spec.name == "mean":
        K.scale_into(res.reshape(-1), 1.0 / cc.size)
    if inplace or out is not None:
        return res
    return unflatten(flat, [res])


def _pack(cc, sig, plan: _Plan, flats, wdtypes, spec, reuse: bool):
    """Per-dtype buffers holding this rank's (locally combined) contribution; cached
    per call signature when ``reuse`` (a training loop then allocates nothing)."""
    cache = cc.__dict__.setdefault("_pack_cache", {})
    bufs = {}
    for key, total in plan.groups.items():
        ck = (sig, key)
        buf = cache.get(ck) if reuse else None
        if buf is None:
            buf = np.empty(total, np.dtype(key)) if reuse else cc.result_array(total, key)
            if reuse:
                if len(cache) > 64:
                    cache.clear()
                cache[ck] = buf
        bufs[key] = buf
    for (key, off), a in zip(plan.where, flats[0].leaves):
        K.pack_into(bufs[key], off, a.reshape(-1))
    if len(flats) > 1:
        combine = local_combiner(spec)
        for f in flats[1:]:
            for (key, off), a, n in zip(plan.where, f.leaves, plan.sizes):
                dst = bufs[key][off:off + n]
                src = a.reshape(-1)
                if src.dtype != dst.dtype:
                    src = src.astype(dst.dtype)
                combine(dst, src)
    return bufs


def _global_count(cc, what, n_local, timeout) -> int:
    mine = np.array([n_local], np.int64)
    total = np.empty(1, np.int64)
    cc.wait(cc.comm.Iallreduce(mine, total, MPI.SUM), what, timeout)
    return int(total[0])


def _loc_reduce(cc, what, flats, spec, wdtypes, root, timeout, local):
    """minloc/maxloc: the best value per element and where it came from (the rank, or
    the global contribution index with local contributions); ties go to the lower one."""
    want_min = spec.name == "minloc"
    offset = cc.rank
    if local:
        counts = cc.allgather_obj(len(flats), what, timeout)
        offset = sum(counts[:cc.rank])
    flat = flats[0]
    best_vals, best_locs = [], []
    for i, (a, wd) in enumerate(zip(flat.leaves, wdtypes)):
        v = a.astype(wd).reshape(-1).copy()
        loc = np.full(v.size, offset, np.int64)
        for k, f in enumerate(flats[1:], 1):
            x = f.leaves[i].astype(wd).reshape(-1)
            K.loc_into(v, loc, x, np.full(v.size, offset + k, np.int64), want_min)
        best_vals.append(v)
        best_locs.append(loc)
    vals_out, locs_out = [], []
    for v, loc, wd in zip(best_vals, best_locs, wdtypes):
        g = np.empty_like(v)
        cc.wait(cc.comm.Iallreduce(v, g, mpi_op_for(spec, wd)), what, timeout)
        cand = np.where(v == g, loc, _BIG)
        gl = np.empty_like(cand)
        cc.wait(cc.comm.Iallreduce(cand, gl, MPI.MIN), what, timeout)
        vals_out.append(g)
        locs_out.append(gl)
    if root is not None and root != cc.rank:
        return None
    shaped_v = [g.reshape(a.shape) for g, a in zip(vals_out, flat.leaves)]
    shaped_l = [gl.reshape(a.shape) for gl, a in zip(locs_out, flat.leaves)]
    return unflatten(flat, shaped_v), unflatten(flat, shaped_l)


_PY_COMBINE = {
    "sum": operator.add, "mean": operator.add, "prod": operator.mul, "min": min, "max": max,
    "land": lambda a, b: bool(a) and bool(b), "lor": lambda a, b: bool(a) or bool(b),
    "band": operator.and_, "bor": operator.or_, "bxor": operator.xor,
}


def _object_reduce(cc, what, flats, spec, root, timeout):
    """The slow path: every contribution pickled to every rank, combined in rank order."""
    mine = [f.obj for f in flats]
    everyone = cc.allgather_obj(mine, what, timeout)
    items = [(r, x) for r, xs in enumerate(everyone) for x in xs]
    if root is not None and root != cc.rank:
        return None
    values = [x for _, x in items]
    try:
        if spec.name in ("minloc", "maxloc"):
            pick = min if spec.name == "minloc" else max
            best = pick(range(len(items)), key=lambda i: (values[i], i if spec.name ==
                                                           "minloc" else -i))
            return values[best], best
        fn = spec.user.py_func if spec.user is not None else _PY_COMBINE[spec.name]
        result = functools.reduce(fn, values)
        if spec.name == "mean":
            result = result / len(values)
        return result
    except TypeError as exc:
        raise TypeError(f"{what}: op {spec.name!r} cannot combine these objects: {exc}") from exc
