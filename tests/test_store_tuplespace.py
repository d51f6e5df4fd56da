"""plexhpc.storage.tuplespace: match(), the space, its waiters and persistence."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexhpc.errors import InvalidMessage
from plexhpc.storage.db import open_db
from plexhpc.storage.tuplespace import TupleSpace, match

S = ("tenant", "ns")


# --- match() against a reference ------------------------------------------------------------

def ref_equal(a, b) -> bool:
    """The rule, written plainly: bools equal only bools; lists and tuples are sequences
    compared element by element; anything else by ==."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    a_seq, b_seq = isinstance(a, (list, tuple)), isinstance(b, (list, tuple))
    if a_seq or b_seq:
        return a_seq and b_seq and len(a) == len(b) and all(map(ref_equal, a, b))
    if isinstance(a, dict) or isinstance(b, dict):
        return (isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys()
                and all(ref_equal(a[k], b[k]) for k in a))
    return a == b


def ref_match(pattern, tup) -> bool:
    return len(pattern) == len(tup) and all(
        p is None or ref_equal(p, v) for p, v in zip(pattern, tup))


atoms = (st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([0.0, 1.0, -1.0, 2.5])
         | st.sampled_from(["", "a", "1"]) | st.sampled_from([b"", b"a"]))
fields = st.recursive(atoms, lambda inner: st.lists(inner, max_size=3)
                      | st.lists(inner, max_size=3).map(tuple)
                      | st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2),
                      max_leaves=6)
tuples_ = st.lists(fields, min_size=1, max_size=4).map(tuple)


@settings(max_examples=400)
@given(tuples_, tuples_)
def test_property_match_agrees_with_the_reference_on_random_pairs(pattern, tup):
    assert match(pattern, tup) == ref_match(pattern, tup)


@settings(max_examples=400)
@given(tuples_, st.data())
def test_property_match_agrees_on_patterns_derived_from_the_tuple(tup, data):
    """Random pairs rarely match; derive patterns from the tuple: keep, wildcard, or
    perturb each field (a bool for an int, a tuple for a list, a float for an int...)."""
    def derive(v):
        choice = data.draw(st.sampled_from(["keep", "none", "perturb"]))
        if choice == "keep":
            return v
        if choice == "none":
            return None
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, int):
            return data.draw(st.sampled_from([float(v), bool(v % 2), str(v), v + 1]))
        if isinstance(v, list):
            return tuple(v)
        if isinstance(v, tuple):
            return list(v) + [0]
        return data.draw(atoms)

    pattern = tuple(derive(v) for v in tup)
    if data.draw(st.booleans()):
        pattern = pattern[:-1] if len(pattern) > 1 else pattern + (None,)
    assert match(pattern, tup) == ref_match(pattern, tup)
    assert match(tuple(None for _ in tup), tup)
    assert match(tup, tup) == ref_match(tup, tup)


@pytest.mark.parametrize("pattern, tup, expected", [
    ((1,), (True,), False),
    ((True,), (1,), False),
    ((0,), (False,), False),
    ((True,), (True,), True),
    ((1,), (1.0,), True),
    (([1, 2],), ((1, 2),), True),
    (([1, True],), ([1, 1],), False),
    (({"a": 1},), ({"a": True},), False),
    ((None, "x"), (5, "x"), True),
    ((None,), (None,), True),
    (("a",), ("a", "b"), False),
    ((np.array([1, 2]),), (np.array([1, 2]),), True),
    ((np.array([1, 2]),), (np.array([1, 3]),), False),
    ((np.array([1, 2]),), ([1, 2],), False),
    ((np.bool_(True),), (1,), False),
    ((np.int64(3),), (3,), True),
])
def test_match_examples(pattern, tup, expected):
    assert match(pattern, tup) is expected


# --- the space ------------------------------------------------------------------------------

@pytest.fixture
def ts():
    return TupleSpace()


def test_write_read_take_oldest_first(ts):
    ts.write(S, ("job", 1))
    ts.write(S, ["job", 2])  # lists are stored as tuples
    ts.write(S, ("job", 3, "x"))
    assert ts.read(S, ("job", None)) == ("job", 1)
    assert ts.read_all(S, ("job", None)) == [("job", 1), ("job", 2)]
    assert ts.count(S) == 3
    assert ts.count(S, ("job", None)) == 2
    assert ts.take(S, ("job", None)) == ("job", 1)
    assert ts.take(S, ["job", None]) == ("job", 2)
    assert ts.take(S, ("job", None)) is None
    assert ts.read(S, (None, None, None)) == ("job", 3, "x")
    assert ts.count(S) == 1


def test_duplicates_are_kept(ts):
    ts.write(S, ("a",))
    ts.write(S, ("a",))
    assert ts.count(S, ("a",)) == 2
    ts.take(S, ("a",))
    assert ts.count(S, ("a",)) == 1


def test_scopes_are_separate(ts):
    ts.write(("a", "b"), ("x",))
    ts.write(("a:b",), ("y",))
    assert ts.read(("a", "b"), (None,)) == ("x",)
    assert ts.read(("a:b",), (None,)) == ("y",)
    assert ts.read(("a",), (None,)) is None
    assert ts.take(("ab",), (None,)) is None
    assert ts.count(("a", "b")) == 1


@pytest.mark.parametrize("bad", [(), [], "abc", 5, None])
def test_bad_tuples_and_patterns_are_refused(ts, bad):
    with pytest.raises(InvalidMessage):
        ts.write(S, bad)
    with pytest.raises(InvalidMessage):
        ts.read(S, bad)


def test_unstorable_fields_are_refused(ts):
    with pytest.raises(TypeError, match=r"tuple\[1\]: cannot store object"):
        ts.write(S, ("x", object()))
    assert ts.count(S) == 0


def test_bad_scope_is_refused(ts):
    with pytest.raises(InvalidMessage):
        ts.write(["a"], ("x",))


# --- waiters --------------------------------------------------------------------------------

def test_waiting_takers_are_served_first_come_first_served(ts):
    got = []
    ts.add_waiter(S, ("job", None), True, lambda t: got.append(("w1", t)))
    ts.add_waiter(S, ("job", None), True, lambda t: got.append(("w2", t)))
    ts.add_waiter(S, ("job", None), True, lambda t: got.append(("w3", t)))
    ts.write(S, ("job", 1))
    ts.write(S, ("job", 2))
    assert got == [("w1", ("job", 1)), ("w2", ("job", 2))]
    assert ts.count(S) == 0  # consumed by the takers, never stored
    assert ts.waiting(S) == 1


def test_readers_see_it_then_one_taker_consumes_it(ts):
    got = []
    ts.add_waiter(S, ("e", None), False, lambda t: got.append(("r1", t)))
    ts.add_waiter(S, ("e", None), True, lambda t: got.append(("t1", t)))
    ts.add_waiter(S, ("e", None), False, lambda t: got.append(("r2", t)))
    ts.add_waiter(S, ("e", None), True, lambda t: got.append(("t2", t)))
    ts.write(S, ("e", 1))
    assert got == [("r1", ("e", 1)), ("r2", ("e", 1)), ("t1", ("e", 1))]
    assert ts.count(S) == 0
    assert ts.waiting() == 1  # t2 still waits


def test_readers_alone_leave_the_tuple_stored(ts):
    got = []
    ts.add_waiter(S, ("e", None), False, got.append)
    ts.write(S, ("e", 1))
    assert got == [("e", 1)]
    assert ts.read(S, ("e", None)) == ("e", 1)
    assert ts.waiting() == 0  # one shot


def test_non_matching_writes_do_not_wake_waiters(ts):
    got = []
    ts.add_waiter(S, ("job", 2), True, got.append)
    ts.write(S, ("job", 1))
    ts.write(S, ("job", 1, 2))
    ts.write(S, ("other", 2))
    assert got == [] and ts.count(S) == 3
    ts.write(S, ("job", 2))
    assert got == [("job", 2)] and ts.count(S) == 3


def test_waiters_are_scoped(ts):
    got = []
    ts.add_waiter(("a",), (None,), True, lambda t: got.append(("a", t)))
    ts.add_waiter(("b",), (None,), True, lambda t: got.append(("b", t)))
    ts.write(("b",), (1,))
    ts.write(("c",), (2,))
    assert got == [("b", (1,))]
    assert ts.waiting(("a",)) == 1 and ts.count(("c",)) == 1


def test_a_waiter_for_an_existing_tuple_fires_at_once(ts):
    ts.write(S, ("x", 1))
    got = []
    h = ts.add_waiter(S, ("x", None), False, got.append)
    assert got == [("x", 1)] and ts.count(S) == 1
    assert ts.cancel_waiter(h) is False
    h = ts.add_waiter(S, ("x", None), True, got.append)
    assert got == [("x", 1), ("x", 1)] and ts.count(S) == 0
    assert ts.waiting() == 0


def test_cancel_waiter(ts):
    got = []
    h1 = ts.add_waiter(S, ("x",), True, lambda t: got.append(1))
    h2 = ts.add_waiter(S, ("x",), True, lambda t: got.append(2))
    assert ts.cancel_waiter(h1) is True
    assert ts.cancel_waiter(h1) is False
    ts.write(S, ("x",))
    assert got == [2]
    assert ts.cancel_waiter(h2) is False  # already served
    assert ts.cancel_waiter(12345) is False


def test_a_raising_callback_leaves_the_space_consistent(ts):
    got = []

    def boom(t):
        raise RuntimeError("handler failed")

    ts.add_waiter(S, ("x",), False, boom)
    ts.add_waiter(S, ("x",), False, got.append)
    ts.add_waiter(S, ("x",), True, got.append)
    with pytest.raises(RuntimeError, match="handler failed"):
        ts.write(S, ("x",))
    assert got == [("x",), ("x",)]  # the others were still called
    assert ts.waiting() == 0 and ts.count(S) == 0


def test_a_callback_may_use_the_space(ts):
    def echo(t):
        ts.write(S, ("reply", t[1]))

    ts.add_waiter(S, ("req", None), True, echo)
    ts.write(S, ("req", 7))
    assert ts.read_all(S, (None, None)) == [("reply", 7)]


# --- persistence --------------------------------------------------------------------------

def test_a_failed_persist_changes_nothing(tmp_path):
    conn = open_db(str(tmp_path / "ts.db"))
    try:
        ts = TupleSpace(conn)
        got = []
        ts.add_waiter(S, ("x", None), False, got.append)
        conn.execute("DROP TABLE ts_tuple")  # the next persist fails
        with pytest.raises(sqlite3.OperationalError):
            ts.write(S, ("x", 1))
        assert got == [] and ts.waiting() == 1 and ts.count(S) == 0
    finally:
        conn.close()


def test_tuples_are_reloaded_in_write_order(tmp_path):
    path = str(tmp_path / "ts.db")
    conn = open_db(path)
    ts = TupleSpace(conn)
    for i in range(6):
        ts.write(S, ("n", i))
    ts.write(("other",), ("o", {"nested": (1, 2)}, np.arange(2)))
    ts.take(S, ("n", 2))
    ts.take(S, ("n", None))
    got = []
    ts.add_waiter(S, ("w",), True, got.append)
    ts.write(S, ("w",))  # consumed by a waiter: never persisted
    conn.close()

    conn = open_db(path)
    try:
        ts2 = TupleSpace(conn)
        assert ts2.read_all(S, ("n", None)) == [("n", 1), ("n", 3), ("n", 4), ("n", 5)]
        other = ts2.read(("other",), (None, None, None))
        assert other[1] == {"nested": (1, 2)} and np.array_equal(other[2], np.arange(2))
        assert ts2.count(S) == 4
        ts2.write(S, ("n", 6))  # new writes go after the reloaded ones
        assert ts2.read_all(S, ("n", None))[-1] == ("n", 6)
        ts2.take(S, ("n", 1))
    finally:
        conn.close()

    conn = open_db(path)
    try:
        assert TupleSpace(conn).read_all(S, ("n", None)) == [("n", 3), ("n", 4), ("n", 5),
                                                             ("n", 6)]
    finally:
        conn.close()


def test_a_written_tuple_is_a_copy_the_writer_cannot_change_later():
    space = TupleSpace()
    inner = [1, 2]
    space.write(("s",), ("job", inner))
    inner.append(3)
    assert space.read(("s",), ("job", None)) == ("job", [1, 2])
