"""plexhpc.storage.codec: the plain-data encoding and the signed envelope."""

from __future__ import annotations

import collections
import datetime
import enum
import math
import struct

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plexhpc.errors import CheckpointRejected, InvalidMessage
from plexhpc.storage.codec import CODEC_VERSION, MAGIC, decode, encode, seal, unseal

KEY = b"k" * 32


def same(a, b) -> bool:
    """Equal values of exactly the same types, all the way down (nan equals nan)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return (a.dtype == b.dtype and a.shape == b.shape
                and (a.tobytes() == b.tobytes()))
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return (list(a.keys()) == list(b.keys())
                and all(same(a[k], b[k]) for k in a))
    return a == b


def roundtrip(value):
    data = encode(value)
    assert data[0] == CODEC_VERSION
    return decode(data)


# --- round trips ------------------------------------------------------------------------

PLAIN = [
    None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1,
    2**1000, -(3**500), 0.0, -0.0, 1.5, float("inf"), float("-inf"), float("nan"),
    "", "text", "ünïcødé \U0001f600", "\x00nul", b"", b"\x00\xff bytes",
    [], [1, [2, [3]]], (), (1,), (1, (2, 3), [4]), [(1, 2), (3,)],
    {"a": 1}, {1: "int key", 2.5: "float key", None: "none key"}, {True: "bool key"},
    {(1, 2): "tuple key", b"raw": "bytes key", frozenset({1}): "frozenset key"},
    {"nested": {"deep": [{"x": (1, {2, 3})}]}},
    set(), {1, 2, 3}, {"a", (1, 2), frozenset({3})}, frozenset(), frozenset({1, "a"}),
]


@pytest.mark.parametrize("value", PLAIN, ids=lambda v: repr(v)[:40])
def test_plain_values_round_trip_with_their_types(value):
    assert same(roundtrip(value), value)


DTYPES = ["<f8", ">f4", "<f2", "<i8", ">i4", "i2", "i1", "<u8", "u2", "u1", "?", "<c16",
          ">c8", "<U5", ">U3", "S4", "<M8[ns]", ">M8[D]", "<m8[s]", "<M8[10ms]"]
SHAPES = [(), (0,), (5,), (2, 3), (2, 0, 4), (1, 1, 1, 3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_arrays_round_trip(dtype, shape):
    n = int(np.prod(shape))
    base = np.arange(n) % 7
    if np.dtype(dtype).kind in "US":
        arr = base.astype(str).astype(dtype).reshape(shape)
    else:
        arr = base.astype(dtype).reshape(shape)
    out = roundtrip(arr)
    assert same(out, arr)
    assert out.flags.writeable  # decoded arrays are ordinary, writable arrays
    if n:
        out.flat[0] = out.flat[-1]


@pytest.mark.parametrize("view", [
    lambda a: a[::2], lambda a: a.T, lambda a: a[:, 1:3], lambda a: a[::-1, ::3],
    lambda a: np.asfortranarray(a), lambda a: a.reshape(4, 6)[1:, ::2],
], ids=["step", "transpose", "slice", "reversed", "fortran", "reshape-step"])
def test_non_contiguous_arrays_round_trip_as_c_order(view):
    arr = view(np.arange(24, dtype="<f8").reshape(4, 6))
    out = roundtrip(arr)
    assert np.array_equal(out, arr) and out.dtype == arr.dtype and out.shape == arr.shape
    assert out.flags.c_contiguous


@pytest.mark.parametrize("scalar", [
    np.float64(1.5), np.float32(-2.25), np.float16(0.5), np.int64(-7), np.int8(3),
    np.uint16(65535), np.bool_(True), np.complex64(1 + 2j), np.str_("abc"), np.str_(""),
    np.bytes_(b"xy"), np.bytes_(b""), np.datetime64("2024-01-02T03:04:05", "ns"),
    np.timedelta64(5, "ms"), np.float64("nan"),
], ids=repr)
def test_numpy_scalars_round_trip(scalar):
    out = roundtrip(scalar)
    assert type(out) is type(scalar) and same(out, scalar)


def test_arrays_inside_containers_and_as_many_values():
    value = {"w": np.ones((2, 2), "<f4"), "ids": [np.arange(3), (np.int32(4), "x")]}
    assert same(roundtrip(value), value)


def test_sets_encode_canonically_whatever_their_order():
    a = {3, "b", (1, 2), 2**70, b"x", frozenset({1, 2})}
    b = set(reversed(list(a)))
    assert encode(a) == encode(b)
    assert encode(frozenset(range(100))) == encode(frozenset(reversed(range(100))))
    assert encode({1, 2}) != encode(frozenset({1, 2}))  # the type is part of the value


def test_bytearray_and_memoryview_come_back_as_bytes():
    assert roundtrip(bytearray(b"ab")) == b"ab"


def test_big_sets_and_tuples_round_trip():
    big = set(range(70000))
    assert roundtrip(big) == big
    t = tuple(range(20))
    assert roundtrip(t) == t


# --- refusals name the path ---------------------------------------------------------------

class Foo:
    pass


class Color(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize("value, path, what", [
    ({"cache": [0, 1, 2, Foo()]}, "state['cache'][3]", "type Foo"),
    ({"f": lambda: 1}, "state['f']", "type function"),
    ([datetime.datetime(2024, 1, 1)], "state[0]", "type datetime"),
    ({"d": collections.OrderedDict(a=1)}, "state['d']", "plain dict"),
    ({"c": Color.RED}, "state['c']", "plain int"),
    ({"a": np.array([1, None], dtype=object)}, "state['a']", "dtype object"),
    ({"s": np.zeros(2, dtype="i4,f4")}, "state['s']", "dtype"),
    ({"m": np.ma.masked_array([1, 2])}, "state['m']", "numpy.asarray"),
    ({Foo(): 1}, "state key", "type Foo"),
    ({"set": {1, (2, Foo())}}, "state['set'] element", "type Foo"),
    ({"t": (1, (2, [3, Foo()]))}, "state['t'][1][1][1]", "type Foo"),
    ({"x": "\ud800"}, "state['x']", "lone surrogate"),
    ({"v": np.void(b"ab")}, "state['v']", "numpy scalar"),
    ({"o": object()}, "state['o']", "store plain data"),
    ({"raw": bytearray(b"x"), "bad": Foo()}, "state['bad']", "type Foo"),
])
def test_unsupported_values_are_refused_with_their_path(value, path, what):
    with pytest.raises(TypeError) as err:
        encode(value, name="state")
    message = str(err.value)
    assert message.startswith(path), message
    assert what in message, message


def test_a_value_that_contains_itself_is_refused():
    loop = {"a": []}
    loop["a"].append(loop)
    with pytest.raises(ValueError, match=r"value\['a'\]\[0\].*contains itself"):
        encode(loop)


@pytest.mark.parametrize("wrap", [lambda x: [x], lambda x: (x,), lambda x: {"k": x}])
def test_absurdly_deep_nesting_is_refused_not_crashing(wrap):
    value = 1
    for _ in range(5000):
        value = wrap(value)
    with pytest.raises(ValueError, match="nests too deeply"):
        encode(value)


def test_default_name_is_value():
    with pytest.raises(TypeError, match=r"^value\[0\]: cannot store object of type Foo"):
        encode([Foo()])


# --- decode never builds anything but plain data ----------------------------------------

def _ext(code: int, payload) -> bytes:
    return bytes([CODEC_VERSION]) + msgpack.packb(
        msgpack.ExtType(code, msgpack.packb(payload, use_bin_type=True)), use_bin_type=True)


@pytest.mark.parametrize("data, reason", [
    (b"", "truncated"),
    (b"\x01", "truncated"),
    (b"\x02\xc0", "encoding version 2"),
    (b"\x80\x04\x95" + b"pickle-ish", "encoding version 128"),  # a pickle header
    (b"\x01\xc1", "malformed"),  # a msgpack byte that is never used
    (b"\x01\x92\x01", "malformed"),  # an array of 2 with one item
    (b"\x01\x01\x02", "malformed"),  # extra data
    (_ext(99, [1]), "unknown extension type 99"),
    (_ext(4, ["|O8", [1], b"\x00" * 8]), "bad dtype"),
    (_ext(4, ["O", [1], b"\x00" * 8]), "bad dtype"),
    (_ext(4, ["<f8", [2], b"\x00" * 8]), "array buffer holds 8 bytes"),
    (_ext(4, ["<f8", [-1], b""]), "bad array shape"),
    (_ext(4, ["<f8", [1] * 65, b"\x00" * 8]), "bad array shape"),
    (_ext(4, ["numpy.core.multiarray._reconstruct", [1], b"\x00" * 8]), "bad dtype"),
    (_ext(5, ["<f8", b"\x00"]), "wrong size"),
    (_ext(1, {"not": "a list"}), "not a list"),
    (bytes([1]) + msgpack.packb(msgpack.ExtType(6, b"os.system")), "bad big integer"),
    (_ext(2, [[1, 2]]), "unhashable"),
    (bytes([1]) + msgpack.packb({1: 2}) [:1] + b"\x91\x01\x02", "malformed"),
])
def test_malformed_data_is_refused(data, reason):
    with pytest.raises(CheckpointRejected, match=reason):
        decode(data)


def test_decode_takes_only_bytes():
    with pytest.raises(TypeError):
        decode("text")  # type: ignore[arg-type]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64))
def test_decoding_arbitrary_bytes_either_works_or_is_rejected(data):
    try:
        decode(b"\x01" + data)
    except CheckpointRejected:
        pass


# --- a property: whatever plain data we build comes back the same -----------------------

hashables = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.binary(max_size=5)
    | st.floats(allow_nan=False),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=6)
leaves = (st.none() | st.booleans() | st.integers(min_value=-(2**130), max_value=2**130)
          | st.floats() | st.text(max_size=10) | st.binary(max_size=10))
plain = st.recursive(
    leaves,
    lambda inner: (st.lists(inner, max_size=4) | st.tuples(inner, inner)
                   | st.dictionaries(hashables, inner, max_size=4)
                   | st.sets(hashables, max_size=4) | st.frozensets(hashables, max_size=4)),
    max_leaves=25)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(plain)
def test_property_plain_data_round_trips(value):
    data = encode(value)
    assert same(decode(data), value)
    assert encode(decode(data)) == data  # stable: decode-then-encode gives the same bytes


@settings(max_examples=100)
@given(st.sampled_from(["<f8", "<i4", "u1", "?", "<c8", "<U3"]),
       st.lists(st.integers(0, 4), max_size=3))
def test_property_arrays_round_trip(dtype, shape):
    arr = (np.arange(int(np.prod(shape))) % 5).astype(dtype).reshape(shape)
    assert same(roundtrip(arr), arr)


# --- seal / unseal ---------------------------------------------------------------------

def test_seal_round_trip_and_layout():
    payload = encode({"state": [1, 2, 3]})
    blob = seal(payload, KEY, "checkpoint")
    assert blob.startswith(MAGIC + b"\x01" + bytes([len("checkpoint")]) + b"checkpoint")
    assert blob.endswith(struct.pack(">Q", len(payload)) + payload)
    assert unseal(blob, KEY, "checkpoint") == payload
    assert unseal(seal(b"", KEY, "k"), KEY, "k") == b""


def test_every_single_byte_change_is_refused():
    blob = seal(encode({"a": 1, "b": "x" * 20}), KEY, "checkpoint")
    for i in range(len(blob)):
        for flip in (0x01, 0x80):
            bad = bytearray(blob)
            bad[i] ^= flip
            with pytest.raises(CheckpointRejected):
                unseal(bytes(bad), KEY, "checkpoint")


def test_every_truncation_is_refused():
    blob = seal(encode([1, 2, 3]), KEY, "checkpoint")
    for n in range(len(blob)):
        with pytest.raises(CheckpointRejected):
            unseal(blob[:n], KEY, "checkpoint")


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:3], "only 3 byte"),
    (lambda b: b[:30], "truncated"),
    (lambda b: b[:-1], "truncated"),
    (lambda b: b + b"\x00", "unexpected bytes after"),
    (lambda b: b"PK\x03\x04" + b[4:], "not a plexhpc checkpoint"),
    (lambda b: b[:4] + b"\x02" + b[5:], "format version 2"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "signed with another key or modified: refused, "
                                            "not loaded"),
])
def test_each_kind_of_damage_has_its_own_message(mutate, message):
    blob = seal(encode({"x": 1}), KEY, "checkpoint")
    with pytest.raises(CheckpointRejected, match=message):
        unseal(mutate(blob), KEY, "checkpoint")


def test_another_key_is_refused():
    blob = seal(b"payload", KEY, "checkpoint")
    with pytest.raises(CheckpointRejected, match="signature mismatch"):
        unseal(blob, b"j" * 32, "checkpoint")


def test_another_kind_is_refused():
    blob = seal(b"payload", KEY, "workflow-step")
    with pytest.raises(CheckpointRejected, match="expected a 'checkpoint' blob, this one is "
                                                 "a 'workflow-step'"):
        unseal(blob, KEY, "checkpoint")


def test_a_forged_kind_breaks_the_signature():
    blob = seal(b"payload", KEY, "checkpoint")
    forged = blob.replace(b"checkpoint", b"checkpoinX", 1)
    with pytest.raises(CheckpointRejected, match="signature mismatch"):
        unseal(forged, KEY, "checkpoinX")


@pytest.mark.parametrize("key, exc", [(b"short", InvalidMessage), ("k" * 32, TypeError)])
def test_bad_keys_are_refused(key, exc):
    with pytest.raises(exc):
        seal(b"x", key, "checkpoint")
    with pytest.raises(exc):
        unseal(b"x" * 64, key, "checkpoint")


@pytest.mark.parametrize("kind", ["", "x" * 256, 5])
def test_bad_kinds_are_refused(kind):
    with pytest.raises(InvalidMessage):
        seal(b"x", KEY, kind)


# --- found by fuzzing: crafted input is refused, never crashes or misbehaves ------------

def _msgpack_ext(code: int, payload: bytes) -> bytes:
    import msgpack
    return bytes([CODEC_VERSION]) + msgpack.packb(msgpack.ExtType(code, payload))


def test_deeply_nested_tuples_are_refused_both_ways():
    value = 1
    for _ in range(200):
        value = (value,)
    with pytest.raises(ValueError, match="nest"):
        encode(value)
    import msgpack
    blob = msgpack.packb(1)
    for _ in range(200):  # tuple extensions inside tuple extensions: C-stack deep
        blob = msgpack.packb(msgpack.ExtType(1, msgpack.packb([msgpack.ExtType(
            1, blob)])))
    with pytest.raises(CheckpointRejected, match="nest more than"):
        decode(bytes([CODEC_VERSION]) + blob)


def test_msgpack_timestamps_and_ext_types_are_not_plain_data():
    import msgpack
    with pytest.raises(CheckpointRejected, match="Timestamp"):
        decode(bytes([CODEC_VERSION]) + b"\xd6\xff\x00\x00\x00\x01")
    with pytest.raises(TypeError, match="ExtType"):
        encode(msgpack.ExtType(99, b"x"))
    with pytest.raises(TypeError, match=r"value\['a'\]\[0\]: .*Timestamp"):
        encode({"a": [msgpack.Timestamp(1)]})


def test_arrays_that_would_lie_about_their_contents_are_refused():
    import msgpack
    for dts, shape, buf, why in (("<U0", [2 ** 31], b"", "empty dtype"),
                                 ("<U1", [1], b"\xff\xff\xff\xff", "invalid code points"),
                                 ("|b1", [2], b"\x00\x07", "other than 0 and 1")):
        blob = _msgpack_ext(4, msgpack.packb([dts, shape, buf]))
        with pytest.raises(CheckpointRejected, match=why):
            decode(blob)
