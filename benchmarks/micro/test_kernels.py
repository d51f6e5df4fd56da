"""The numba kernels of ``plexhpc.collectives.kernels`` against the numpy call that does
the same work, group by group (one group per operation and size).

What the collectives use them for: combining several local contributions into one
accumulator before the cross-rank call (``add_into``, ``max_into``, ``loc_into``),
and packing a pytree's leaves into one buffer and back (``pack_into``,
``unpack_from``). float64 throughout; sizes 8 KiB, 1 MiB and 8 MiB.
"""

from __future__ import annotations

import numpy as np
import pytest

from plexhpc.collectives import kernels as K

#: elements per array (float64): 8 KiB, 1 MiB, 8 MiB
SIZES = [1 << 10, 1 << 17, 1 << 20]
#: leaves of the packed pytree (equal sizes, together the row's size)
LEAVES = 8


def _label(n: int) -> str:
    nbytes = n * 8
    return f"{nbytes >> 20}MiB" if nbytes >= 1 << 20 else f"{nbytes >> 10}KiB"


@pytest.fixture(scope="module", autouse=True)
def _compiled():
    """Compile (or load from numba's cache) before any timing: first use is not measured
    here (``plexhpc bench collectives`` reports it as ``jit_compile_s``)."""
    K.compile_all()
    a, loc = np.zeros(4), np.zeros(4, np.int64)
    K.loc_into(a, loc, np.ones(4), np.ones(4, np.int64), True)


def _operands(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random(n), rng.random(n)


# --- elementwise combine: acc <- acc (op) x -------------------------------------------

COMBINE = {
    # op: (numba kernel, numpy equivalent writing into acc)
    "sum": (K.add_into, lambda acc, x: np.add(acc, x, out=acc)),
    "max": (K.max_into, lambda acc, x: np.maximum(acc, x, out=acc)),
}


@pytest.mark.parametrize("n", SIZES, ids=_label)
@pytest.mark.parametrize("impl", ["plexhpc", "numpy"])
@pytest.mark.parametrize("op", list(COMBINE))
def test_combine(benchmark, op, impl, n):
    benchmark.group = f"kernels {op}_into {_label(n)}"
    acc, x = _operands(n)
    fn = COMBINE[op][0 if impl == "plexhpc" else 1]
    benchmark(fn, acc, x)
    assert np.isfinite(acc).all()


def _numpy_minloc(acc, acc_loc, x, x_loc):
    """What ``loc_into(..., want_min=True)`` does, in numpy: the smaller value wins, a
    tie keeps the lower location."""
    better = (x < acc) | ((x == acc) & (x_loc < acc_loc))
    np.copyto(acc, x, where=better)
    np.copyto(acc_loc, x_loc, where=better)


@pytest.mark.parametrize("n", SIZES, ids=_label)
@pytest.mark.parametrize("impl", ["plexhpc", "numpy"])
def test_minloc(benchmark, impl, n):
    benchmark.group = f"kernels minloc {_label(n)}"
    acc, x = _operands(n)
    acc_loc = np.zeros(n, np.int64)
    x_loc = np.ones(n, np.int64)
    if impl == "plexhpc":
        benchmark(K.loc_into, acc, acc_loc, x, x_loc, True)
    else:
        benchmark(_numpy_minloc, acc, acc_loc, x, x_loc)
    assert (acc <= x).all()


# --- packing a pytree's leaves into one buffer, and back ------------------------------

def _pack_plexhpc(buf, leaves):
    off = 0
    for a in leaves:
        off = K.pack_into(buf, off, a)
    return off


def _pack_numpy(buf, leaves):
    off = 0
    for a in leaves:
        buf[off:off + a.size] = a
        off += a.size
    return off


def _unpack_plexhpc(buf, leaves):
    off = 0
    for a in leaves:
        off = K.unpack_from(buf, off, a)
    return off


def _unpack_numpy(buf, leaves):
    off = 0
    for a in leaves:
        a[...] = buf[off:off + a.size]
        off += a.size
    return off


PACK = {"pack": {"plexhpc": _pack_plexhpc, "numpy": _pack_numpy},
        "unpack": {"plexhpc": _unpack_plexhpc, "numpy": _unpack_numpy}}


@pytest.mark.parametrize("n", SIZES, ids=_label)
@pytest.mark.parametrize("impl", ["plexhpc", "numpy"])
@pytest.mark.parametrize("direction", list(PACK))
def test_pack(benchmark, direction, impl, n):
    benchmark.group = f"kernels {direction} {LEAVES} leaves {_label(n)}"
    rng = np.random.default_rng(1)
    leaves = [rng.random(n // LEAVES) for _ in range(LEAVES)]
    buf = np.empty(n) if direction == "pack" else rng.random(n)
    assert benchmark(PACK[direction][impl], buf, leaves) == n
    assert np.array_equal(buf, np.concatenate(leaves))
