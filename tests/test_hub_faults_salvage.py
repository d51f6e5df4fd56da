"""Salvaging a batch that pickle.loads refused (issue 10), on one process: the
tolerant decoder rebuilds what pickle rebuilds, and marks only what cannot be."""

import dataclasses
import pickle
from collections import OrderedDict, deque
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from plexhpc import errors as E
from plexhpc.runtime import envelope as env_
from plexhpc.runtime.salvage import Undecodable, find_undecodable, salvage, tolerant_loads


class Bad(Exception):
    """Pickles, but rebuilding it calls ``Bad(a)``: TypeError."""

    def __init__(self, a, b):
        super().__init__(a)


class BadState:
    def __init__(self):
        self.v = 1

    def __setstate__(self, state):
        raise ValueError("state refused on purpose")


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self):
        self.a, self.b = 1, [2]

    def __eq__(self, other):
        return type(other) is Slotted and (self.a, self.b) == (other.a, other.b)


def roundtrip(obj, oob=False):
    bufs = []
    data = pickle.dumps(obj, 5, buffer_callback=bufs.append if oob else None)
    return tolerant_loads(data, [b.raw() for b in bufs])


@pytest.mark.parametrize("obj", [
    [], [1, 2.5, "x", b"y", None, True, False, 10 ** 40, -(2 ** 70)],
    {"a": {"b": (1, 2, 3)}, 2: [set([1, 2]), frozenset([3])]},
    (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), bytearray(b"abc"),
    OrderedDict(a=1), deque([1, 2]), Fraction(3, 4), Point(1, 2.0), Slotted(),
    E.InvalidMessage("bad"), E.JobFailed("x", exit_code=3), ValueError("v"),
    [env_.ask("a@1", "b@0", "op", {"i": i}, i, 0) for i in range(300)],
    list(range(2000)), "é" * 100, {"big": "x" * 100_000},
])
def test_tolerant_loads_rebuilds_what_pickle_rebuilds(obj):
    got = roundtrip(obj)
    want = pickle.loads(pickle.dumps(obj, 5))
    assert type(got) is type(want)
    if isinstance(obj, BaseException):
        assert got.args == want.args and vars(got) == vars(want)
    else:
        assert got == want


def test_shared_and_recursive_objects_stay_shared():
    shared = {"k": 1}
    loop: list = []
    loop.append(loop)
    a, b, c = roundtrip([shared, shared, loop])
    assert a is b and c[0] is c


@pytest.mark.parametrize("oob", [False, True])
def test_arrays_in_band_and_out_of_band(oob):
    arr = np.arange(10_000, dtype=np.float64)
    got = roundtrip({"a": arr, "small": np.ones(3)}, oob=oob)
    assert np.array_equal(got["a"], arr) and np.array_equal(got["small"], np.ones(3))


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    | st.binary(),
    lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids) | st.tuples(kids, kids)
    | st.frozensets(st.integers()), max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(json_like)
def test_tolerant_loads_equals_pickle_on_plain_data(obj):
    assert roundtrip(obj) == pickle.loads(pickle.dumps(obj, 5))


def test_what_cannot_be_rebuilt_becomes_a_marker_naming_the_error():
    got = roundtrip({"ok": 1, "bad": Bad("a", "b"), "state": BadState()})
    assert got["ok"] == 1
    assert type(got["bad"]) is Undecodable and "TypeError" in got["bad"].reason
    assert "Bad" in got["bad"].reason
    assert type(got["state"]) is Undecodable and "state refused" in got["state"].reason


def test_a_class_the_receiver_cannot_import_becomes_a_marker():
    data = pickle.dumps([Point(1, 2.0)], 5).replace(b"Point", b"Pzint")
    got = tolerant_loads(data)
    assert type(got[0]) is Undecodable and "AttributeError" in got[0].reason


def test_salvage_marks_only_the_envelopes_that_hold_a_marker():
    batch = [env_.send("r@1", "s@0", "rec", {"i": 1}),
             env_.ask("r@1", "s@0", "echo", {"data": Bad("a", "b")}, 7, 0),
             env_.send("r@1", "s@0", "rec", {"i": 3}),
             env_.reply(9, Bad("x", "y"))]
    data = pickle.dumps(batch, 5)
    with pytest.raises(TypeError) as info:
        pickle.loads(data)
    out = salvage(data, None, info.value)
    assert [reason is None for _env, reason in out] == [True, False, True, False]
    assert out[0][0] == batch[0] and out[2][0] == batch[2]
    assert out[1][0][5] == 7 and "TypeError" in out[1][1]
    assert out[3][0][5] == 9


def test_a_marker_shared_by_two_envelopes_marks_both():
    bad = {"v": Bad("a", "b")}
    batch = [env_.send("r@1", "s@0", "rec", bad), env_.send("r@1", "s@0", "rec", bad)]
    data = pickle.dumps(batch, 5)
    out = salvage(data, None, ValueError("x"))
    assert all(reason is not None for _env, reason in out)


def test_a_broken_stream_is_lost_as_a_whole_with_both_errors():
    data = pickle.dumps([env_.send("r@1", "s@0", "rec", {"i": 1})], 5)[:-5]
    out = salvage(data, None, EOFError("truncated"))
    assert out[0][0] is None and "EOFError: truncated" in out[0][1]


def test_malformed_envelopes_are_reported_not_delivered():
    out = salvage(pickle.dumps([("not", "an envelope"), env_.send("a", "b", "c", None)], 5),
                  None, ValueError("x"))
    assert out[0][0] is None and out[1][1] is None


def test_find_undecodable_looks_into_instance_dicts():
    p = Point(1, 2.0)
    p.x = Undecodable("x", "why")
    assert find_undecodable([{"a": (p,)}]).reason == "why"
    assert find_undecodable([{"a": (1,)}]) is None
