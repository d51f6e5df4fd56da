"""Issue 10, the storage layer: no request, however malformed, kills the state service;
a corrupt row never leaves it half built; durable timers are sealed; the state files
are private and the key rules hold."""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import stat
import types

import pytest

from plexhpc import errors as E
from plexhpc.storage.codec import encode
from plexhpc.storage.db import open_db
from plexhpc.storage.service import StateService

SCOPE = ("acme", "prod")
KV_SCOPE = ("acme", "prod", "Store")


class FakeNode:
    """What the state service uses of a node: its config and a timer queue."""

    def __init__(self, state_dir):
        self.config = types.SimpleNamespace(state=types.SimpleNamespace(
            dir=str(state_dir), max_deliveries=5, durability="normal"))
        self.later = []

    def call_later(self, delay, fn):
        self.later.append((delay, fn))


@pytest.fixture
def svc(tmp_path):
    service = StateService(FakeNode(tmp_path / "state"))
    yield service
    service.close()


def ask(svc, req):
    """``handle(req)`` -> the one (ok, value) it answered with."""
    answers = []
    svc.handle(req, lambda ok, value: answers.append((ok, value)))
    assert len(answers) == 1, answers
    return answers[0]


def still_serving(svc):
    ok, _ = ask(svc, ("kv", "put", KV_SCOPE, ("alive", 7), 0, None))
    assert ok
    assert ask(svc, ("kv", "get", KV_SCOPE, ("alive",), 0, None)) == (True, 7)


# --- finding 1: overflowing inputs, foreign exceptions ---------------------------------

@pytest.mark.parametrize("req, words", [
    (("ch", "ack", SCOPE, ("q", "99999999999999999999.x"), 0, "a@1"), "not leased"),
    (("ch", "ack", SCOPE, ("q", "9223372036854775808.x"), 0, "a@1"), "not leased"),
    (("kv", "put_with_ttl", KV_SCOPE, ("k", 1, 10 ** 300), 0, None), "ttl_ms"),
    (("kv", "put_with_ttl", KV_SCOPE, ("k", 1, 2 ** 63 - 1), 0, None), "ttl_ms"),
    (("kv", "list", KV_SCOPE, ("", 10 ** 30), 0, None), "limit"),
    (("ch", "dead_letters", SCOPE, ("q", 2 ** 64), 0, None), "limit"),
    (("ch", "receive", SCOPE, ("q", 10 ** 30), 0, "a@1"), "visibility_ms"),
    (("ch", "receive", SCOPE, ("q", 2 ** 63 - 1), 0, "a@1"), "visibility_ms"),
])
def test_inputs_past_sqlite_integers_get_a_clear_error(svc, req, words):
    ok, err = ask(svc, req)
    assert not ok and isinstance(err, (E.InvalidMessage, E.UnknownLease)), repr(err)
    assert words in str(err)
    still_serving(svc)


def test_a_foreign_exception_from_a_store_is_an_error_reply_naming_its_type(svc,
                                                                            monkeypatch):
    still_serving(svc)  # opens the stores
    ask(svc, ("kv", "put", KV_SCOPE, ("kept", 1), 0, None))

    def boom(*args):
        raise OverflowError("Python int too large to convert to SQLite INTEGER")
    monkeypatch.setattr(svc.kv, "get", boom)
    ok, err = ask(svc, ("kv", "get", KV_SCOPE, ("kept",), 0, None))
    assert not ok and isinstance(err, E.StateError) and "OverflowError" in str(err)
    with pytest.raises(E.StateError, match="OverflowError"):  # the in-place path too
        svc.call("kv", "get", KV_SCOPE, ("kept",))
    monkeypatch.setattr(svc.kv, "get", lambda *a: {}["missing"])
    ok, err = ask(svc, ("kv", "get", KV_SCOPE, ("kept",), 0, None))
    assert not ok and "KeyError" in str(err)
    monkeypatch.undo()
    assert ask(svc, ("kv", "get", KV_SCOPE, ("kept",), 0, None)) == (True, 1)  # not lost


@pytest.mark.parametrize("req", [
    None, 42, ("kv",), ("kv", "get", KV_SCOPE), ("kv", "get", KV_SCOPE, None, 0, None),
    ("kv", "get", KV_SCOPE, ("k",), math.nan, None),
    ("ts", "take", SCOPE, ("x",), math.inf, None),
    ("ts", "take", SCOPE, (), 10, None),
    ("ch", "receive", SCOPE, ("q",), 10, None),
    ("ch", "ack", SCOPE, ([1], [2]), 0, "a@1"),
    ("zz", "get", KV_SCOPE, ("k",), 0, None),
    ("kv", "__init__", KV_SCOPE, (), 0, None),
])
def test_malformed_requests_are_answered_with_an_error(svc, req):
    ok, err = ask(svc, req)
    assert not ok and isinstance(err, E.PlexError), repr(err)
    still_serving(svc)


# --- finding 2: a corrupt TupleSpace row ---------------------------------------------

def test_a_corrupt_tuple_row_is_skipped_with_a_warning_not_a_dead_service(tmp_path,
                                                                         caplog):
    state = tmp_path / "state"
    conn = open_db(str(state / "shared.sqlite"))
    from plexhpc.storage.scope import scope_key
    conn.execute("INSERT INTO ts_tuple (seq, scope, tup) VALUES (1, ?, ?)",
                 (scope_key(SCOPE), encode(["good", 1])))
    conn.execute("INSERT INTO ts_tuple (seq, scope, tup) VALUES (2, ?, ?)",
                 (scope_key(SCOPE), b"\xc1 not msgpack"))
    conn.execute("INSERT INTO ts_tuple (seq, scope, tup) VALUES (3, ?, ?)",
                 (scope_key(SCOPE), encode(7)))
    conn.close()
    svc = StateService(FakeNode(state))
    try:
        with caplog.at_level(logging.WARNING):
            assert ask(svc, ("ts", "count", SCOPE, (None,), 0, None)) == (True, 1)
        assert "persisted tuple 2 cannot be read" in caplog.text
        assert "persisted tuple 3 cannot be read" in caplog.text
        assert ask(svc, ("ts", "read", SCOPE, (["good", None],), 0, None)) == (
            True, ("good", 1))
        ok, _ = ask(svc, ("ts", "write", SCOPE, (["new", 2],), 0, None))  # seq 4, no clash
        assert ok and ask(svc, ("ts", "count", SCOPE, (None,), 0, None)) == (True, 2)
        still_serving(svc)
    finally:
        svc.close()


def test_the_service_is_built_all_or_nothing(tmp_path, monkeypatch):
    from plexhpc.storage import channels
    svc = StateService(FakeNode(tmp_path / "state"))

    def broken(*args, **kw):
        raise sqlite3.DatabaseError("database disk image is malformed")
    monkeypatch.setattr(channels, "ChannelStore", broken)
    for _ in range(2):  # the second call meets no half-built service
        ok, err = ask(svc, ("kv", "get", KV_SCOPE, ("k",), 0, None))
        assert not ok and isinstance(err, E.StateError), repr(err)
        assert "cannot load the shared state file" in str(err)
        assert "DatabaseError" in str(err)
    monkeypatch.undo()
    try:
        still_serving(svc)  # once the cause is gone, it opens
    finally:
        svc.close()


# --- finding 4: private files, key rules --------------------------------------------

def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def local_state(tmp_path, key_file=None, *, app="app"):
    from plexhpc.storage.durable import LocalState
    cfg = types.SimpleNamespace(dir=str(tmp_path / "base" / app), retention=2,
                                key_file=str(key_file or tmp_path / "keys" / "state.key"),
                                durability="normal")
    return LocalState(cfg, 0)


@pytest.fixture
def open_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_state_dir_and_every_sqlite_file_are_private(tmp_path, open_umask):
    ls = local_state(tmp_path)
    ls.timers.add("actor:a", 10, "tick", {"payload": 1})
    ls.checkpoints.save("actor:a", {"n": 1}, 1)
    svc = StateService(FakeNode(tmp_path / "base" / "app"))
    still_serving(svc)
    try:
        state = tmp_path / "base" / "app"
        assert mode(state) == 0o700 and mode(tmp_path / "base") == 0o700
        files = sorted(p.name for p in state.iterdir())
        assert {"rank-0.sqlite", "rank-0.sqlite-wal", "rank-0.sqlite-shm",
                "shared.sqlite", "shared.sqlite-wal", "shared.sqlite-shm"} <= set(files)
        for name in files:
            assert mode(state / name) == 0o600, name
    finally:
        svc.close()
        ls.close()


def test_an_open_state_dir_and_files_of_older_versions_are_tightened(tmp_path, open_umask):
    state = tmp_path / "base" / "app"
    state.mkdir(parents=True, mode=0o755)
    os.chmod(state, 0o755)
    sqlite3.connect(str(state / "shared.sqlite")).close()
    os.chmod(state / "shared.sqlite", 0o644)
    svc = StateService(FakeNode(state))
    try:
        still_serving(svc)
        assert mode(state) == 0o700
        assert all(mode(p) == 0o600 for p in state.iterdir())
    finally:
        svc.close()


@pytest.mark.parametrize("bits", [0o620, 0o602, 0o622, 0o666])
def test_a_key_others_may_write_is_refused(tmp_path, bits):
    from plexhpc.storage.keys import load_or_create_key
    path = tmp_path / "state.key"
    path.write_bytes(os.urandom(32))
    os.chmod(path, bits)
    with pytest.raises(E.StateError, match=r"chmod 600"):
        load_or_create_key(str(path))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file away")
def test_a_key_owned_by_another_user_is_refused(tmp_path):
    from plexhpc.storage.keys import load_or_create_key
    path = tmp_path / "state.key"
    path.write_bytes(os.urandom(32))
    os.chmod(path, 0o600)
    os.chown(path, 4242, -1)
    with pytest.raises(E.StateError, match="belongs to another user"):
        load_or_create_key(str(path))


def signed_state(tmp_path):
    ls = local_state(tmp_path)
    ls.checkpoints.save("actor:a", {"n": 5}, 3)
    ls.timers.add("actor:a", 10, "tick", {"payload": 1})
    ls.close()
    return tmp_path / "keys" / "state.key"


def test_a_missing_key_is_not_replaced_while_signed_state_exists(tmp_path):
    key_file = signed_state(tmp_path)
    saved = key_file.read_bytes()
    key_file.unlink()
    ls = local_state(tmp_path)
    with pytest.raises(E.StateError) as info:
        ls.checkpoints
    text = str(info.value)
    assert str(key_file) in text and "does not exist" in text and "restore" in text
    assert "rank-0.sqlite" in text
    assert not key_file.exists()  # no new key was made
    key_file.write_bytes(saved)
    os.chmod(key_file, 0o600)
    assert local_state(tmp_path).load_latest("actor:a") == ({"n": 5}, 3)  # nothing lost


def test_state_signed_with_another_key_fails_loudly(tmp_path):
    key_file = signed_state(tmp_path)
    key_file.write_bytes(os.urandom(32))
    ls = local_state(tmp_path)
    with pytest.raises(E.StateError, match="signed with another key") as info:
        ls.timers
    assert str(key_file) in str(info.value)


def test_a_file_from_before_fingerprints_signed_with_another_key_fails_loudly(tmp_path):
    from plexhpc.storage.checkpoints import CheckpointStore
    from plexhpc.storage.keys import load_or_create_key
    load_or_create_key(str(tmp_path / "keys" / "state.key"))
    state = tmp_path / "base" / "app"
    conn = open_db(str(state / "rank-0.sqlite"))
    CheckpointStore(conn, os.urandom(32)).save("actor:a", {"n": 1}, 1)
    conn.close()
    with pytest.raises(E.StateError, match="signed with another key"):
        local_state(tmp_path).checkpoints


def test_one_tampered_checkpoint_is_refused_on_its_own_not_taken_for_a_key_change(tmp_path):
    signed_state(tmp_path)
    db = sqlite3.connect(str(tmp_path / "base" / "app" / "rank-0.sqlite"))
    (blob,) = db.execute("SELECT blob FROM checkpoint").fetchone()
    db.execute("UPDATE checkpoint SET blob = ?", (blob[:-1] + bytes([blob[-1] ^ 1]),))
    db.commit()
    db.close()
    with pytest.raises(E.CheckpointRejected, match="signature mismatch"):
        local_state(tmp_path).load_latest("actor:a")


def test_a_fresh_state_dir_gets_a_new_key(tmp_path):
    ls = local_state(tmp_path)
    ls.timers.add("actor:a", 10, "tick")
    assert mode(tmp_path / "keys" / "state.key") == 0o600
    ls.close()


# --- finding 5: sealed durable timers ------------------------------------------------

def timer_rows(tmp_path):
    db = sqlite3.connect(str(tmp_path / "base" / "app" / "rank-0.sqlite"))
    db.isolation_level = None
    return db


@pytest.mark.parametrize("tamper", [
    "UPDATE timer SET op = 'shutdown_everything'",
    "UPDATE timer SET owner = 'actor:b'",
    "UPDATE timer SET due_ms = 1",
    "UPDATE timer SET payload = :plain",
    "UPDATE timer SET payload = substr(payload, 1, length(payload) - 1) || x'00'",
    "UPDATE timer SET op = CAST(x'ff00' AS TEXT)",
])
def test_a_tampered_timer_row_is_refused_with_a_warning_and_not_rearmed(tmp_path, tamper,
                                                                        caplog):
    ls = local_state(tmp_path)
    ctx = ["acme", "prod", "actor:a"]
    tid = ls.timers.add("actor:a", 10, "tick", {"payload": 1, "ctx": ctx})
    assert ls.timers.pending("actor:a") == [(tid, 10, "tick", {"payload": 1, "ctx": ctx})]
    db = timer_rows(tmp_path)
    db.execute(tamper, {"plain": encode({"payload": 1, "ctx": ["globex", "prod", "x"]})})
    db.close()
    with caplog.at_level(logging.WARNING):
        assert ls.timers.pending("actor:a") == []
        assert ls.timers.pending("actor:b") == []
        assert ls.timers.due(10 ** 12) == []
    assert f"durable timer {tid}" in caplog.text and "not re-armed" in caplog.text
    ls.close()


def test_sealed_timers_round_trip(tmp_path):
    ls = local_state(tmp_path)
    a = ls.timers.add("actor:a", 20, "tick", {"payload": [1, 2]})
    b = ls.timers.add("actor:a", 10, "wake")
    assert ls.timers.pending("actor:a") == [(b, 10, "wake", None),
                                            (a, 20, "tick", {"payload": [1, 2]})]
    assert ls.timers.due(15) == [(b, "actor:a", "wake", None)]
    ls.close()
