"""numba kernels for the local side of collectives: packing, unpacking, combining.

Every kernel is a plain loop over 1-d contiguous arrays that writes into an explicit
output; none touches MPI or does I/O. The jit options live in :data:`JIT` (one place),
and every kernel keeps its pure-Python ``py_func`` for tests against numpy.

Why kernels at all: packing a pytree's leaves into one buffer lets one MPI call reduce
the whole tree; combining several local contributions (several shards on one rank)
before the cross-rank collective turns N reductions into one.
"""

from __future__ import annotations

import time

import numba
import numpy as np

__all__ = ["JIT", "pack_into", "unpack_from", "COMBINERS", "scale_into",
           "compile_all", "compile_seconds"]

#: the jit options of every kernel here: nopython, cached on disk, no GIL needed
JIT = dict(nopython=True, cache=True, nogil=True, fastmath=False)

_jit = numba.jit(**JIT)


@_jit
def pack_into(dst, offset, src):
    """Copy ``src`` (1-d) into ``dst[offset:offset + src.size]``; returns the next offset."""
    n = src.size
    d = dst[offset:offset + n]  # a view: the loop below vectorizes (offset indexing did not)
    for i in range(n):
        d[i] = src[i]
    return offset + n


@_jit
def unpack_from(src, offset, dst):
    """Copy ``src[offset:offset + dst.size]`` into ``dst`` (1-d); returns the next offset."""
    n = dst.size
    s = src[offset:offset + n]
    for i in range(n):
        dst[i] = s[i]
    return offset + n


@_jit
def add_into(acc, x):
    for i in range(acc.size):
        acc[i] = acc[i] + x[i]


@_jit
def mul_into(acc, x):
    for i in range(acc.size):
        acc[i] = acc[i] * x[i]


@_jit
def min_into(acc, x):
    for i in range(acc.size):
        if x[i] < acc[i]:
            acc[i] = x[i]


@_jit
def max_into(acc, x):
    for i in range(acc.size):
        if x[i] > acc[i]:
            acc[i] = x[i]


@_jit
def land_into(acc, x):
    for i in range(acc.size):
        acc[i] = acc[i] and x[i]


@_jit
def lor_into(acc, x):
    for i in range(acc.size):
        acc[i] = acc[i] or x[i]


@_jit
def band_into(acc, x):
    for i in range(acc.size):
        acc[i] = acc[i] & x[i]


@_jit
def bor_into(acc, x):
    for i in range(acc.size):
        acc[i] = acc[i] | x[i]


@_jit
def bxor_into(acc, x):
    for i in range(acc.size):
        acc[i] = acc[i] ^ x[i]


@_jit
def scale_into(acc, factor):
    """``acc *= factor`` (the division of a mean)."""
    for i in range(acc.size):
        acc[i] = acc[i] * factor


@_jit
def loc_into(acc, acc_loc, x, x_loc, want_min):
    """minloc/maxloc of (value, location) pairs; ties keep the lower location."""
    for i in range(acc.size):
        a = acc[i]
        b = x[i]
        better = (b < a) if want_min else (b > a)
        if better or (b == a and x_loc[i] < acc_loc[i]):
            acc[i] = b
            acc_loc[i] = x_loc[i]


#: elementwise ``acc <- acc (op) x`` kernels, by op name
COMBINERS = {
    "sum": add_into, "mean": add_into, "prod": mul_into, "min": min_into, "max": max_into,
    "land": land_into, "lor": lor_into, "band": band_into, "bor": bor_into,
    "bxor": bxor_into,
}

_compile_seconds: float | None = None


def compile_all() -> float:
    """Compile (or load from the cache) the kernels for the common dtypes; returns the
    seconds it took, reported by the benchmark as first-use cost."""
    global _compile_seconds
    t0 = time.perf_counter()
    for dt in (np.float64, np.float32, np.int64, np.int32):
        a = np.zeros(2, dt)
        b = np.ones(2, dt)
        pack_into(a, 0, b)
        unpack_from(a, 0, b)
        for name in ("sum", "prod", "min", "max"):
            COMBINERS[name](a, b)
        scale_into(a, 0.5) if dt in (np.float64, np.float32) else None
    _compile_seconds = time.perf_counter() - t0
    return _compile_seconds


def compile_seconds() -> float | None:
    """Seconds the first :func:`compile_all` took in this process (None if not run)."""
    return _compile_seconds
