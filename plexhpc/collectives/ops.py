"""Reduction ops: names, which dtypes each accepts, the MPI op and the local kernel.

Built-in ops: ``sum``, ``prod``, ``min``, ``max``, ``mean``, ``land``/``lor`` (logical; the
result is bool), ``band``/``bor``/``bxor`` (bitwise; integers and bool only),
``minloc``/``maxloc`` (the value and the rank that holds it; ties go to the lower rank).
Aliases: ``+``, ``*``, ``and``, ``or``, ``&``, ``|``, ``^``, ``logical_and``...

The result keeps the input dtype, as elementwise ``a + b`` does in numpy and as MPI
does (so small integer types can wrap around: reduce int8 in a wider type if that
matters), with three exceptions: ``sum``/``prod`` of bools count (int64), ``mean`` of
integers or bools is float64, and ``land``/``lor`` return bool.

User ops: decorate an elementwise function of two scalars with :func:`reduction`; it is
compiled with numba for the local side and wrapped as an MPI user op for the cross-rank
side, so it is used exactly like a built-in name::

    @reduction
    def absmax(a, b):
        return a if abs(a) >= abs(b) else b

    allreduce(x, op=absmax)
"""

from __future__ import annotations

import numba
import numpy as np
from mpi4py import MPI

from .kernels import COMBINERS, JIT

__all__ = ["OpSpec", "Reduction", "reduction", "resolve_op", "work_dtype", "mpi_op_for",
           "OP_NAMES"]

_ALIASES = {
    "+": "sum", "add": "sum", "*": "prod", "product": "prod", "multiply": "prod",
    "minimum": "min", "maximum": "max", "average": "mean", "and": "land", "or": "lor",
    "logical_and": "land", "logical_or": "lor", "bool_and": "land", "bool_or": "lor",
    "&": "band", "|": "bor", "^": "bxor", "bitwise_and": "band", "bitwise_or": "bor",
    "bitwise_xor": "bxor",
}
OP_NAMES = ("sum", "prod", "min", "max", "mean", "land", "lor", "band", "bor", "bxor",
            "minloc", "maxloc")

_MPI_OPS = {"sum": MPI.SUM, "mean": MPI.SUM, "prod": MPI.PROD, "min": MPI.MIN,
            "max": MPI.MAX, "land": MPI.LAND, "lor": MPI.LOR, "band": MPI.BAND,
            "bor": MPI.BOR, "bxor": MPI.BXOR, "minloc": MPI.MIN, "maxloc": MPI.MAX}
# MPI defines no MIN/MAX/bitwise ops on C_BOOL: use the logical equivalents
_BOOL_OPS = {"min": MPI.LAND, "max": MPI.LOR, "band": MPI.LAND, "bor": MPI.LOR,
             "bxor": MPI.LXOR, "minloc": MPI.LAND, "maxloc": MPI.LOR}


class OpSpec:
    """A resolved op: its name, and for user ops the compiled kernel and MPI op."""

    __slots__ = ("name", "user")

    def __init__(self, name: str, user: "Reduction | None" = None):
        self.name = name
        self.user = user

    def __repr__(self):
        return f"OpSpec({self.name!r})"


class Reduction:
    """A user-defined elementwise reduction (see :func:`reduction`)."""

    def __init__(self, fn, commute: bool = True, name: str | None = None):
        self.py_func = fn
        self.name = name or f"user:{fn.__module__}.{fn.__qualname__}"
        self.commute = commute
        self.scalar = numba.njit(**{k: v for k, v in JIT.items() if k != "nopython"})(fn)
        scalar = self.scalar

        # a closure: numba's disk cache would add a new entry for it in every process
        # (the cache grew by ~1000 files over a few test runs), so it is compiled anew
        @numba.njit(**{k: v for k, v in JIT.items() if k not in ("nopython", "cache")})
        def combine_into(acc, x):
            for i in range(acc.size):
                acc[i] = scalar(acc[i], x[i])

        self.combine_into = combine_into
        self._mpi_ops: dict = {}

    def mpi_op(self, dtype: np.dtype) -> MPI.Op:
        """An MPI user op that combines with the compiled kernel (one per dtype)."""
        op = self._mpi_ops.get(dtype.str)
        if op is None:
            combine = self.combine_into

            def mpi_fn(inbuf, inoutbuf, datatype):
                a = np.frombuffer(inbuf, dtype)
                b = np.frombuffer(inoutbuf, dtype)
                # MPI wants inout = in (op) inout; for a commutative op order is free
                combine(b, a)

            op = self._mpi_ops[dtype.str] = MPI.Op.Create(mpi_fn, commute=self.commute)
        return op

    def __call__(self, a, b):
        return self.py_func(a, b)

    def __repr__(self):
        return f"<reduction {self.name}>"


def reduction(fn=None, *, commute: bool = True):
    """Turn ``fn(a, b) -> c`` (elementwise, on scalars) into a reduction op usable in
    ``reduce`` and ``allreduce``. ``commute=False`` keeps rank order (MPI semantics)."""
    if fn is None:
        return lambda f: Reduction(f, commute)
    return Reduction(fn, commute)


def resolve_op(op) -> OpSpec:
    """The OpSpec for a name, alias or :class:`Reduction`; ValueError if unknown."""
    if isinstance(op, Reduction):
        return OpSpec(op.name, op)
    if isinstance(op, OpSpec):
        return op
    if not isinstance(op, str):
        raise ValueError(f"op must be a name ({', '.join(OP_NAMES)}) or a @reduction, "
                         f"got {op!r}")
    name = _ALIASES.get(op.lower(), op.lower())
    if name not in OP_NAMES:
        raise ValueError(f"unknown op {op!r}; expected one of {', '.join(OP_NAMES)} or a "
                         "@reduction")
    return OpSpec(name)


def work_dtype(op: OpSpec, dtype: np.dtype) -> np.dtype:
    """The dtype the reduction runs in (and returns); ValueError if ``op`` does not fit
    ``dtype`` (bitwise on floats, min on complex...)."""
    kind = dtype.kind
    name = op.name
    if op.user is not None:
        return dtype
    if name in ("land", "lor"):
        return np.dtype(np.bool_)
    if name in ("band", "bor", "bxor"):
        if kind not in "biu":
            raise ValueError(f"op {name!r} is bitwise: it needs an integer or bool dtype, "
                             f"got {dtype.name}")
        return dtype
    if name in ("min", "max", "minloc", "maxloc") and kind == "c":
        raise ValueError(f"op {name!r} needs ordered values: complex {dtype.name} has no "
                         "order")
    if name in ("sum", "prod") and kind == "b":
        return np.dtype(np.int64)
    if name == "mean" and kind in "biu":
        return np.dtype(np.float64)
    return dtype


def mpi_op_for(op: OpSpec, dtype: np.dtype) -> MPI.Op:
    if op.user is not None:
        return op.user.mpi_op(dtype)
    if dtype.kind == "b" and op.name in _BOOL_OPS:
        return _BOOL_OPS[op.name]
    return _MPI_OPS[op.name]


def local_combiner(op: OpSpec):
    """The numba kernel ``acc <- acc (op) x`` for combining contributions on one rank."""
    if op.user is not None:
        return op.user.combine_into
    name = op.name
    if name in ("minloc", "maxloc"):
        name = "min" if name == "minloc" else "max"
    return COMBINERS[name]
