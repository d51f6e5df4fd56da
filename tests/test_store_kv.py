"""plexhpc.storage.kv (and the database it lives in, plexhpc.storage.db)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexhpc.errors import InvalidMessage, StateError
from plexhpc.storage.db import SCHEMA_VERSION, open_db, write_txn
from plexhpc.storage.kv import KVStore

S = ("tenant", "ns", "actor")


class Clock:
    def __init__(self, t: int = 1_000_000):
        self.t = t

    def __call__(self) -> int:
        return self.t


@pytest.fixture
def conn(tmp_path):
    c = open_db(str(tmp_path / "state" / "node.db"))
    yield c
    c.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def kv(conn, clock):
    return KVStore(conn, now_ms=clock)


# --- the database ---------------------------------------------------------------------

def test_open_db_settings(conn, tmp_path):
    assert (tmp_path / "state" / "node.db").exists()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert conn.isolation_level is None
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"kv", "ts_tuple", "channel_msg", "channel_dead", "channel_idem", "checkpoint",
            "wf_run", "wf_step", "timer"} <= tables


def test_open_db_twice_is_fine(tmp_path):
    for _ in range(2):
        c = open_db(str(tmp_path / "x.db"))
        c.close()


def test_a_database_from_a_newer_plexhpc_is_refused(tmp_path):
    path = str(tmp_path / "x.db")
    c = sqlite3.connect(path)
    c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    c.close()
    with pytest.raises(StateError, match="newer plexhpc"):
        open_db(path)


def test_a_state_dir_that_cannot_be_made_is_a_state_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StateError, match="cannot create the state directory"):
        open_db(str(tmp_path / "file" / "sub" / "x.db"))


def test_write_txn_rolls_back_and_nests(conn):
    conn.execute("CREATE TABLE t (x)")
    with pytest.raises(RuntimeError):
        with write_txn(conn):
            conn.execute("INSERT INTO t VALUES (1)")
            raise RuntimeError
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0
    with write_txn(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(RuntimeError):
            with write_txn(conn):
                conn.execute("INSERT INTO t VALUES (2)")
                raise RuntimeError
        conn.execute("INSERT INTO t VALUES (3)")
    assert [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x")] == [1, 3]
    assert not conn.in_transaction


# --- basic operations -----------------------------------------------------------------

def test_put_get_delete(kv):
    assert kv.get(S, "k") is None
    assert kv.get(S, "k", default=7) == 7
    kv.put(S, "k", {"a": [1, 2], "t": (1, "x"), "arr": np.arange(3)})
    value = kv.get(S, "k")
    assert value["a"] == [1, 2] and value["t"] == (1, "x")
    assert np.array_equal(value["arr"], np.arange(3))
    kv.put(S, "k", "replaced")
    assert kv.get(S, "k") == "replaced"
    assert kv.delete(S, "k") is True
    assert kv.delete(S, "k") is False
    assert kv.get(S, "k") is None


def test_none_is_a_value_but_reads_like_absent(kv):
    kv.put(S, "k", None)
    assert kv.get(S, "k", default="d") is None
    assert kv.list(S) == ["k"]


def test_list_sorted_with_prefix_and_limit(kv):
    for key in ["b", "a", "ab", "a/2", "a/10", "é", "z", "A"]:
        kv.put(S, key, 1)
    assert kv.list(S) == sorted(["b", "a", "ab", "a/2", "a/10", "é", "z", "A"])
    assert kv.list(S, "a") == ["a", "a/10", "a/2", "ab"]
    assert kv.list(S, "a/") == ["a/10", "a/2"]
    assert kv.list(S, "a", limit=2) == ["a", "a/10"]
    assert kv.list(S, "a", limit=0) == []
    assert kv.list(S, "nothing") == []


def test_prefixes_at_the_top_of_unicode(kv):
    keys = ["\U0010ffff", "\U0010ffffa", "\U0010fffe", "\uffff", "\uffff\U0010ffff"]
    for key in keys:
        kv.put(S, key, 1)
    assert kv.list(S, "\U0010ffff") == ["\U0010ffff", "\U0010ffffa"]
    assert kv.list(S, "\uffff") == ["\uffff", "\uffff\U0010ffff"]
    assert kv.list(S) == sorted(keys)


def test_values_survive_reopening(tmp_path):
    path = str(tmp_path / "x.db")
    c = open_db(path)
    KVStore(c).put(S, "k", {"n": 1})
    c.close()
    c = open_db(path)
    try:
        assert KVStore(c).get(S, "k") == {"n": 1}
    finally:
        c.close()


@pytest.mark.parametrize("key", ["", None, 5, b"k", "\ud800"])
def test_bad_keys_are_refused(kv, key):
    with pytest.raises(InvalidMessage):
        kv.put(S, key, 1)
    with pytest.raises(InvalidMessage):
        kv.get(S, key)


@pytest.mark.parametrize("scope", [["a"], "a", ("a", 1), ("a", None), (("a",),), ("\ud800",)])
def test_bad_scopes_are_refused(kv, scope):
    with pytest.raises(InvalidMessage, match="scope"):
        kv.put(scope, "k", 1)


def test_unstorable_values_are_refused_with_the_key(kv):
    with pytest.raises(TypeError, match=r"value of 'k'\['f'\]: cannot store object of type"):
        kv.put(S, "k", {"f": object()})
    assert kv.get(S, "k") is None


def test_bad_list_arguments(kv):
    with pytest.raises(InvalidMessage):
        kv.list(S, prefix=5)
    with pytest.raises(InvalidMessage):
        kv.list(S, limit=-1)


# --- TTL ------------------------------------------------------------------------------

def _rows(conn) -> int:
    return conn.execute("SELECT COUNT(*) FROM kv").fetchone()[0]


def test_ttl_expires_and_is_purged_lazily(kv, clock, conn):
    kv.put_with_ttl(S, "t", "soon gone", ttl_ms=100)
    kv.put(S, "p", "stays")
    clock.t += 99
    assert kv.get(S, "t") == "soon gone"
    assert kv.list(S) == ["p", "t"]
    clock.t += 1
    assert _rows(conn) == 2  # expired but not yet met
    assert kv.get(S, "t") is None
    assert _rows(conn) == 1  # the read purged it
    assert kv.list(S) == ["p"]


def test_list_purges_expired_entries(kv, clock, conn):
    for i in range(5):
        kv.put_with_ttl(S, f"t{i}", i, ttl_ms=10)
    clock.t += 10
    assert kv.list(S) == []
    assert _rows(conn) == 0


def test_delete_of_an_expired_entry_says_absent(kv, clock, conn):
    kv.put_with_ttl(S, "t", 1, ttl_ms=5)
    clock.t += 5
    assert kv.delete(S, "t") is False
    assert _rows(conn) == 0


def test_put_clears_a_ttl_and_put_with_ttl_sets_one(kv, clock):
    kv.put_with_ttl(S, "k", 1, ttl_ms=10)
    kv.put(S, "k", 2)
    clock.t += 1000
    assert kv.get(S, "k") == 2
    kv.put_with_ttl(S, "k", 3, ttl_ms=10)
    clock.t += 10
    assert kv.get(S, "k") is None


@pytest.mark.parametrize("ttl", [0, -5, 1.5, True, None])
def test_bad_ttls_are_refused(kv, ttl):
    with pytest.raises(InvalidMessage, match="ttl_ms"):
        kv.put_with_ttl(S, "k", 1, ttl)


# --- compare-and-set and counters -------------------------------------------------------

def test_cas(kv, clock):
    assert kv.cas(S, "k", None, 1) is True          # absent -> 1
    assert kv.cas(S, "k", None, 2) is False         # not absent any more
    assert kv.cas(S, "k", 5, 2) is False            # wrong expectation
    assert kv.cas(S, "k", 1, {"a": 1}) is True
    assert kv.cas(S, "k", {"a": 1}, [1.0]) is True  # compared by encoding
    assert kv.cas(S, "k", [1], "x") is False        # 1 and 1.0 encode differently
    assert kv.cas(S, "k", [True], "x") is False
    assert kv.get(S, "k") == [1.0]
    kv.put_with_ttl(S, "e", "old", ttl_ms=5)
    clock.t += 5
    assert kv.cas(S, "e", "old", "new") is False    # expired reads as absent
    assert kv.cas(S, "e", None, "new") is True
    clock.t += 10**6
    assert kv.get(S, "e") == "new"                   # the new value has no expiry


def test_cas_with_a_value_read_back(kv):
    kv.put(S, "k", {"set": {3, 1, 2}, "t": (1, 2), "n": np.float32(1)})
    current = kv.get(S, "k")
    assert kv.cas(S, "k", current, "next") is True


def test_increment(kv, clock):
    assert kv.increment(S, "n") == 1
    assert kv.increment(S, "n", 5) == 6
    assert kv.increment(S, "n", -10) == -4
    assert kv.increment(S, "big", 2**70) == 2**70
    assert kv.increment(S, "big", 2**70) == 2**71
    assert kv.get(S, "n") == -4


def test_increment_keeps_a_ttl_window(kv, clock):
    kv.put_with_ttl(S, "rate", 0, ttl_ms=1000)
    assert kv.increment(S, "rate") == 1
    clock.t += 999
    assert kv.increment(S, "rate") == 2
    clock.t += 1
    assert kv.get(S, "rate") is None
    assert kv.increment(S, "rate") == 1  # a new window, without expiry
    clock.t += 10**6
    assert kv.get(S, "rate") == 1


@pytest.mark.parametrize("value", ["1", 1.0, True, None, [1]])
def test_increment_of_a_non_int_is_refused(kv, value):
    kv.put(S, "k", value)
    with pytest.raises(StateError, match="not an int"):
        kv.increment(S, "k")
    assert kv.get(S, "k") == value


@pytest.mark.parametrize("delta", [1.5, "1", True, None])
def test_increment_needs_an_int_delta(kv, delta):
    with pytest.raises(InvalidMessage):
        kv.increment(S, "k", delta)


# --- scopes never leak ----------------------------------------------------------------

ADVERSARIAL = ["", "%", "_", "%%", "a%", "a_", ":", "a:b", "\x00", "a\x00", "\x00b", "\\",
               "\\%", "'", "\"", "*", "?", "[a]", "a/b", "\U0010ffff", "é", "\xff"]


def test_scopes_that_look_alike_stay_apart(kv):
    scopes = [("a", "b"), ("a:b",), ("ab",), ("a", "b", ""), ("a\x00b",), ("a",), ("b", "a"),
              ("", "ab"), ("a", ""), (), ("", ""), ("\x00\x00\x00\x01a",), ("a%",), ("a_",)]
    for i, scope in enumerate(scopes):
        kv.put(scope, "k", i)
        kv.put(scope, f"k{i}", i)
    for i, scope in enumerate(scopes):
        assert kv.get(scope, "k") == i
        assert kv.list(scope) == sorted(["k", f"k{i}"])
        assert kv.list(scope, "k") == sorted(["k", f"k{i}"])


@pytest.mark.parametrize("prefix", ADVERSARIAL)
def test_adversarial_prefixes_match_only_their_own_scope_and_prefix(kv, prefix):
    mine, other = ("t", "mine"), ("t", "other")
    keys = [k for k in {p + s for p in ADVERSARIAL if p for s in ("", "x", "%", "_")}]
    for key in keys:
        kv.put(other, key, "other")
    mine_keys = [k for k in keys if k.startswith("a") or k.startswith("%")]
    for key in mine_keys:
        kv.put(mine, key, "mine")
    listed = kv.list(mine, prefix)
    assert listed == sorted(k for k in mine_keys if k.startswith(prefix))
    assert all(kv.get(mine, k) == "mine" for k in listed)


scope_parts = st.text(alphabet="ab:%_\x00\\", max_size=3)
scopes = st.lists(scope_parts, max_size=3).map(tuple)
keys_ = st.text(alphabet="ab:%_\x00\\\U0010ffff", min_size=1, max_size=4)


@settings(max_examples=60)
@given(ops=st.lists(st.tuples(st.sampled_from(["put", "delete", "get", "list"]), scopes, keys_,
                              st.integers(0, 3)), max_size=40))
def test_property_kv_behaves_like_a_dict_per_scope(ops):
    conn = open_db(":memory:")
    try:
        kv = KVStore(conn, now_ms=Clock())
        model: dict[tuple, dict[str, int]] = {}
        for op, scope, key, value in ops:
            space = model.setdefault(scope, {})
            if op == "put":
                kv.put(scope, key, value)
                space[key] = value
            elif op == "delete":
                assert kv.delete(scope, key) == (space.pop(key, None) is not None)
            elif op == "get":
                assert kv.get(scope, key) == space.get(key)
            else:
                prefix = key[:value]
                assert kv.list(scope, prefix) == sorted(k for k in space if k.startswith(prefix))
    finally:
        conn.close()
