"""The numba kernels alone, against numpy, compiled and through their py_func (no MPI)."""

import numpy as np
import pytest

from plexhpc.collectives import kernels as K
from plexhpc.collectives.ops import reduction, resolve_op, work_dtype

DTYPES = [np.bool_, np.int8, np.int32, np.int64, np.uint16, np.uint64, np.float32,
          np.float64, np.complex128]


def sample(dtype, n=9, seed=0):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return rng.integers(0, 2, n).astype(bool)
    if dt.kind in "iu":
        return rng.integers(0, 5, n).astype(dt)
    if dt.kind == "c":
        return (rng.normal(size=n) + 1j * rng.normal(size=n)).astype(dt)
    return rng.normal(size=n).astype(dt)


@pytest.mark.parametrize("compiled", [True, False], ids=["jit", "py_func"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_pack_and_unpack_round_trip(dtype, compiled):
    pack = K.pack_into if compiled else K.pack_into.py_func
    unpack = K.unpack_from if compiled else K.unpack_from.py_func
    a, b = sample(dtype, 4, 1), sample(dtype, 6, 2)
    buf = np.zeros(10, a.dtype)
    assert pack(buf, pack(buf, 0, a), b) == 10
    assert np.array_equal(buf, np.concatenate([a, b]))
    x, y = np.empty_like(a), np.empty_like(b)
    assert unpack(buf, unpack(buf, 0, x), y) == 10
    assert np.array_equal(x, a) and np.array_equal(y, b)


REFERENCE = {
    "sum": np.add, "prod": np.multiply, "min": np.minimum, "max": np.maximum,
    "land": np.logical_and, "lor": np.logical_or, "band": np.bitwise_and,
    "bor": np.bitwise_or, "bxor": np.bitwise_xor,
}


@pytest.mark.parametrize("compiled", [True, False], ids=["jit", "py_func"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", sorted(REFERENCE))
def test_combiners_match_numpy(op, dtype, compiled):
    try:
        wd = work_dtype(resolve_op(op), np.dtype(dtype))
    except ValueError:
        pytest.skip(f"{op} does not apply to {np.dtype(dtype).name}")
    acc = sample(dtype, 9, 3).astype(wd)
    x = sample(dtype, 9, 4).astype(wd)
    want = REFERENCE[op](acc, x).astype(wd)
    kernel = K.COMBINERS[op] if compiled else K.COMBINERS[op].py_func
    kernel(acc, x)
    if wd.kind in "fc":
        assert np.allclose(acc, want, rtol=1e-6)
    else:
        assert np.array_equal(acc, want)


def test_scale_and_loc_kernels():
    acc = np.array([2.0, 4.0])
    K.scale_into(acc, 0.5)
    assert np.array_equal(acc, [1.0, 2.0])
    vals, locs = np.array([3.0, 1.0, 2.0]), np.array([0, 0, 0])
    K.loc_into(vals, locs, np.array([1.0, 1.0, 5.0]), np.array([1, 1, 1]), True)
    assert vals.tolist() == [1.0, 1.0, 2.0] and locs.tolist() == [1, 0, 0]  # tie keeps 0


def test_user_reduction_compiles_and_matches_its_python_function():
    @reduction
    def hypot(a, b):
        return (a * a + b * b) ** 0.5

    acc, x = np.array([3.0, 5.0]), np.array([4.0, 12.0])
    hypot.combine_into(acc, x)
    assert np.allclose(acc, [5.0, 13.0]) and hypot(3.0, 4.0) == 5.0


def test_compile_all_reports_seconds():
    s = K.compile_all()
    assert s >= 0 and K.compile_seconds() == s
