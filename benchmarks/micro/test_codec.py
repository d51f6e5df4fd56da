"""The typed codec (``plexhpc.storage.codec.encode`` / ``decode``) against raw msgpack and
pickle on the same values, one group per value and direction.

The codec is msgpack plus a version byte, a walk that refuses what it could not read
back, and extension types (tuples, sets, numpy arrays); the baselines show what that
costs. They are not equivalent: raw msgpack turns tuples into lists and cannot store
an array (it gets the array's bytes only, losing dtype and shape), and pickle runs code
when loaded (why the stores never use it).
"""

from __future__ import annotations

import pickle

import msgpack
import numpy as np
import pytest

from plexhpc.storage.codec import decode, encode

VALUES = {
    # a channel message's payload, as in ``plexhpc bench state``
    "payload": {"task": "x" * 64, "n": 7},
    # an actor's checkpointed state: counters, a ~1 KB string, a short history, a tuple
    "state": {"count": 42, "blob": "s" * 1000, "owner": "user-42",
              "history": [0.5 * i for i in range(16)], "tags": ("hot", "eu-west"),
              "limits": {"rps": 100, "burst": 20}},
    # model weights with a step counter: an 8 KiB float64 array
    "array": {"step": 3, "weights": np.arange(1024, dtype=np.float64)},
}


def _msgpack_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tobytes()  # lossy: dtype and shape are dropped
    raise TypeError(type(obj).__name__)


def _msgpack_pack(value):
    return msgpack.packb(value, use_bin_type=True, default=_msgpack_default)


def _msgpack_unpack(data):
    return msgpack.unpackb(data, raw=False)


def _pickle_dumps(value):
    return pickle.dumps(value, protocol=5)


ENCODERS = {"plexhpc": encode, "msgpack": _msgpack_pack, "pickle": _pickle_dumps}
DECODERS = {"plexhpc": decode, "msgpack": _msgpack_unpack, "pickle": pickle.loads}


@pytest.mark.parametrize("impl", list(ENCODERS))
@pytest.mark.parametrize("name", list(VALUES))
def test_encode(benchmark, name, impl):
    benchmark.group = f"codec encode {name}"
    data = benchmark(ENCODERS[impl], VALUES[name])
    benchmark.extra_info["bytes"] = len(data)
    assert len(data) > 0


@pytest.mark.parametrize("impl", list(DECODERS))
@pytest.mark.parametrize("name", list(VALUES))
def test_decode(benchmark, name, impl):
    benchmark.group = f"codec decode {name}"
    data = ENCODERS[impl](VALUES[name])
    value = benchmark(DECODERS[impl], data)
    if impl != "msgpack":  # msgpack lost the tuple and the array's dtype and shape
        assert _same(value, VALUES[name])


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
                and a.dtype == b.dtype and np.array_equal(a, b))
    if isinstance(a, dict):
        return (type(b) is dict and list(a) == list(b)
                and all(_same(a[k], b[k]) for k in a))
    return type(a) is type(b) and a == b
