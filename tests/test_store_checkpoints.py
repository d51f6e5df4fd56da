"""plexhpc.storage.checkpoints (signed checkpoints, workflow steps) and
plexhpc.storage.timers (durable timers)."""

from __future__ import annotations

import numpy as np
import pytest

from plexhpc.errors import CheckpointRejected, InvalidMessage, StateError
from plexhpc.storage.checkpoints import CheckpointStore
from plexhpc.storage.db import open_db
from plexhpc.storage.timers import TimerStore

KEY = b"s" * 32
OTHER_KEY = b"o" * 32


@pytest.fixture
def conn(tmp_path):
    c = open_db(str(tmp_path / "state.db"))
    yield c
    c.close()


@pytest.fixture
def cp(conn):
    return CheckpointStore(conn, KEY)


def _flip_last_byte(conn, table, where, args):
    (blob,) = conn.execute(f"SELECT blob FROM {table} WHERE {where}", args).fetchone()
    bad = blob[:-1] + bytes([blob[-1] ^ 1])
    conn.execute(f"UPDATE {table} SET blob = ? WHERE {where}", (bad, *args))


# --- checkpoints --------------------------------------------------------------------------

def test_save_and_load(cp):
    assert cp.load("counter/1") is None
    state = {"count": 3, "seen": {"a", "b"}, "w": np.ones((2, 2), "<f4"), "t": (1, 2)}
    cp.save("counter/1", state, seq=17)
    loaded, seq = cp.load("counter/1")
    assert seq == 17
    assert loaded["count"] == 3 and loaded["seen"] == {"a", "b"} and loaded["t"] == (1, 2)
    assert np.array_equal(loaded["w"], state["w"]) and loaded["w"].dtype == np.float32


def test_newest_wins_and_old_versions_are_compacted(cp):
    for i in range(5):
        cp.save("a", {"i": i}, seq=i * 10)
    assert cp.load("a") == ({"i": 4}, 40)
    assert cp.versions("a") == [4, 5]  # retention=2 keeps the newest two
    cp.save("b", {}, seq=0)
    assert cp.versions("b") == [1]     # versions count per actor


def test_retention_is_configurable(conn):
    cp = CheckpointStore(conn, KEY, retention=1)
    for i in range(3):
        cp.save("a", {"i": i}, seq=i)
    assert cp.versions("a") == [3]
    cp5 = CheckpointStore(conn, KEY, retention=5)
    for i in range(10):
        cp5.save("b", {"i": i}, seq=i)
    assert cp5.versions("b") == [6, 7, 8, 9, 10]
    assert cp5.load("b") == ({"i": 9}, 9)


def test_retention_changed_between_runs(conn):
    """A node restarted with another retention trims or grows an actor's history."""
    cp5 = CheckpointStore(conn, KEY, retention=5)
    for i in range(7):
        cp5.save("a", {"i": i}, seq=i)
    cp2 = CheckpointStore(conn, KEY, retention=2)
    cp2.save("a", {"i": 7}, seq=7)
    assert cp2.versions("a") == [7, 8]
    cp2.save("a", {"i": 8}, seq=8)
    assert cp2.versions("a") == [8, 9] and cp2.load("a") == ({"i": 8}, 8)
    cp3 = CheckpointStore(conn, KEY, retention=3)
    for i in range(9, 12):
        cp3.save("a", {"i": i}, seq=i)
    assert cp3.versions("a") == [10, 11, 12] and cp3.load("a") == ({"i": 11}, 11)


def test_rows_deleted_behind_the_stores_back(cp, conn):
    for i in range(3):
        cp.save("a", {"i": i}, seq=i)
    conn.execute("DELETE FROM checkpoint")
    cp.save("a", {"i": 3}, seq=3)
    assert cp.versions("a") == [1] and cp.load("a") == ({"i": 3}, 3)


def test_many_actors_keep_their_own_history(cp):
    for round_ in range(4):
        for a in range(20):
            cp.save(f"actor/{a}", {"a": a, "round": round_}, seq=round_)
    for a in range(20):
        assert cp.load(f"actor/{a}") == ({"a": a, "round": 3}, 3)
        assert cp.versions(f"actor/{a}") == [3, 4]


def test_delete(cp):
    cp.save("a", {"x": 1}, 1)
    cp.save("b", {"x": 2}, 1)
    cp.delete("a")
    assert cp.load("a") is None and cp.load("b") == ({"x": 2}, 1)
    cp.save("a", {"x": 3}, 2)  # starts over
    assert cp.load("a") == ({"x": 3}, 2)


def test_checkpoints_survive_reopening(tmp_path):
    path = str(tmp_path / "s.db")
    conn = open_db(path)
    CheckpointStore(conn, KEY).save("a", {"x": [1, 2]}, 5)
    conn.close()
    conn = open_db(path)
    try:
        assert CheckpointStore(conn, KEY).load("a") == ({"x": [1, 2]}, 5)
    finally:
        conn.close()


def test_a_tampered_checkpoint_is_refused_without_falling_back(cp, conn):
    cp.save("actor/7", {"v": 1}, 1)
    cp.save("actor/7", {"v": 2}, 2)
    _flip_last_byte(conn, "checkpoint", "actor_key = ? AND version = 2", ("actor/7",))
    with pytest.raises(CheckpointRejected, match=r"actor 'actor/7' \(version 2\).*signed "
                                                 r"with another key or modified"):
        cp.load("actor/7")
    cp.save("actor/7", {"v": 3}, 3)  # a fresh save is fine again
    assert cp.load("actor/7") == ({"v": 3}, 3)


@pytest.mark.parametrize("damage, reason", [
    (lambda b: b[:20], "truncated"),
    (lambda b: b"\x80\x04\x95pickle" + b[10:], "not a plexhpc checkpoint"),
    (lambda b: b[:4] + b"\x09" + b[5:], "version 9"),
    (lambda b: b"", "truncated"),
])
def test_damaged_checkpoints_are_refused(cp, conn, damage, reason):
    cp.save("a", {"v": 1}, 1)
    (blob,) = conn.execute("SELECT blob FROM checkpoint").fetchone()
    conn.execute("UPDATE checkpoint SET blob = ?", (damage(blob),))
    with pytest.raises(CheckpointRejected, match=reason):
        cp.load("a")


def test_another_deployments_key_is_refused(conn):
    CheckpointStore(conn, OTHER_KEY).save("a", {"v": 1}, 1)
    with pytest.raises(CheckpointRejected, match="checkpoint of actor 'a'.*another key"):
        CheckpointStore(conn, KEY).load("a")


def test_a_checkpoint_moved_to_another_actor_is_refused(cp, conn):
    cp.save("alice", {"balance": 10}, 1)
    cp.save("mallory", {"balance": 0}, 1)
    (blob,) = conn.execute("SELECT blob FROM checkpoint WHERE actor_key = 'alice'").fetchone()
    conn.execute("UPDATE checkpoint SET blob = ? WHERE actor_key = 'mallory'", (blob,))
    with pytest.raises(CheckpointRejected, match="made for actor 'alice'"):
        cp.load("mallory")


def test_unstorable_state_is_refused_with_its_path(cp):
    with pytest.raises(TypeError, match=r"^state\['conn'\]: cannot store object of type"):
        cp.save("a", {"conn": object()}, 1)
    with pytest.raises(TypeError, match="must be a dict"):
        cp.save("a", [1, 2], 1)
    assert cp.load("a") is None


@pytest.mark.parametrize("call", [
    lambda cp: cp.save("", {}, 1),
    lambda cp: cp.save(5, {}, 1),
    lambda cp: cp.save("a", {}, "1"),
    lambda cp: cp.load(None),
    lambda cp: CheckpointStore(cp._conn, KEY, retention=0),
    lambda cp: CheckpointStore(cp._conn, b"short"),
])
def test_bad_arguments(cp, call):
    with pytest.raises(InvalidMessage):
        call(cp)


# --- workflow steps ---------------------------------------------------------------------

def test_steps_are_recorded_and_replayed(cp):
    assert cp.steps("wf", "run-1") == {}
    cp.record_step("wf", "run-1", 0, {"fetched": [1, 2]})
    cp.record_step("wf", "run-1", 1, "summary")
    cp.record_step("wf", "run-1", 2, None)
    cp.record_step("wf", "run-2", 0, "other run")
    assert cp.steps("wf", "run-1") == {0: {"fetched": [1, 2]}, 1: "summary", 2: None}
    cp.record_step("wf", "run-1", 1, "summary, retried")  # a step recorded again replaces
    assert cp.steps("wf", "run-1")[1] == "summary, retried"
    assert cp.steps("wf", "run-2") == {0: "other run"}


def test_finish_run(cp):
    cp.record_step("wf", "r", 0, 1)
    assert cp.run_result("wf", "r") is None and not cp.run_finished("wf", "r")
    cp.finish_run("wf", "r", {"answer": 42})
    assert cp.run_result("wf", "r") == {"answer": 42} and cp.run_finished("wf", "r")
    with pytest.raises(StateError, match="has finished"):
        cp.record_step("wf", "r", 1, 2)
    with pytest.raises(StateError, match="already finished"):
        cp.finish_run("wf", "r", "again")
    cp.finish_run("wf", "r2", None)  # a run with no steps can finish; None is a result
    assert cp.run_finished("wf", "r2") and cp.run_result("wf", "r2") is None


def test_compact_runs_keeps_the_newest_finished_runs_steps(cp):
    for i in range(5):
        cp.record_step("wf", f"r{i}", 0, i)
        cp.record_step("wf", f"r{i}", 1, i)
    for i in [3, 0, 4, 1]:  # finishing order, not name order
        cp.finish_run("wf", f"r{i}", f"result {i}")
    cp.record_step("other", "r0", 0, "untouched")
    assert cp.compact_runs("wf", keep=2) == 2  # r3 and r0 finished first
    assert cp.steps("wf", "r3") == {} and cp.steps("wf", "r0") == {}
    assert cp.steps("wf", "r4") == {0: 4, 1: 4} and cp.steps("wf", "r1") == {0: 1, 1: 1}
    assert cp.steps("wf", "r2") == {0: 2, 1: 2}  # still running: never compacted
    assert cp.run_result("wf", "r3") == "result 3"  # results stay
    assert cp.steps("other", "r0") == {0: "untouched"}
    assert cp.compact_runs("wf", keep=2) == 0
    assert cp.compact_runs("wf", keep=0) == 2


def test_a_tampered_step_is_refused(cp, conn):
    cp.record_step("wf", "r", 0, "ok")
    cp.record_step("wf", "r", 1, "ok")
    _flip_last_byte(conn, "wf_step", "step = ?", (1,))
    with pytest.raises(CheckpointRejected, match="workflow 'wf' run 'r' step 1 refused"):
        cp.steps("wf", "r")


def test_a_step_moved_to_another_run_is_refused(cp, conn):
    cp.record_step("wf", "a", 0, "a's result")
    cp.record_step("wf", "b", 0, "b's result")
    (blob,) = conn.execute("SELECT blob FROM wf_step WHERE run_id = 'a'").fetchone()
    conn.execute("UPDATE wf_step SET blob = ? WHERE run_id = 'b'", (blob,))
    with pytest.raises(CheckpointRejected, match="moved from elsewhere"):
        cp.steps("wf", "b")


def test_a_tampered_result_is_refused(cp, conn):
    cp.finish_run("wf", "r", "done")
    (blob,) = conn.execute("SELECT result FROM wf_run").fetchone()
    conn.execute("UPDATE wf_run SET result = ?", (blob[:-1] + bytes([blob[-1] ^ 1]),))
    with pytest.raises(CheckpointRejected, match="result of workflow 'wf' run 'r'"):
        cp.run_result("wf", "r")


def test_a_step_is_not_a_checkpoint(cp, conn):
    """Blobs of one kind never pass for another, even signed with the same key."""
    cp.record_step("a", "r", 0, {"v": 1})
    (blob,) = conn.execute("SELECT blob FROM wf_step").fetchone()
    conn.execute("INSERT INTO checkpoint (actor_key, slot, version, seq, blob) VALUES "
                 "('a', 0, 1, 0, ?)", (blob,))
    with pytest.raises(CheckpointRejected, match="'workflow-step'"):
        cp.load("a")


@pytest.mark.parametrize("call", [
    lambda cp: cp.record_step("", "r", 0, 1),
    lambda cp: cp.record_step("wf", "", 0, 1),
    lambda cp: cp.record_step("wf", "r", "0", 1),
    lambda cp: cp.compact_runs("wf", keep=-1),
])
def test_bad_workflow_arguments(cp, call):
    with pytest.raises(InvalidMessage):
        call(cp)


# --- timers ---------------------------------------------------------------------------

@pytest.fixture
def timers(conn):
    return TimerStore(conn)


def test_timers_fire_in_due_order_until_removed(timers):
    late = timers.add("actor/a", 300, "tick", {"n": 3})
    early = timers.add("actor/b", 100, "wake", None)
    mid = timers.add("actor/a", 200, "tick", (1, 2))
    assert timers.due(99) == []
    assert timers.due(200) == [(early, "actor/b", "wake", None), (mid, "actor/a", "tick", (1, 2))]
    assert timers.due(200, owner="actor/a") == [(mid, "actor/a", "tick", (1, 2))]
    assert timers.due(200) != []  # still there until removed (at least once)
    timers.remove(early)
    timers.remove(early)  # removing twice is harmless
    assert timers.due(1000) == [(mid, "actor/a", "tick", (1, 2)), (late, "actor/a", "tick",
                                                                    {"n": 3})]
    assert timers.pending("actor/a") == [(mid, 200, "tick", (1, 2)), (late, 300, "tick",
                                                                      {"n": 3})]
    assert timers.next_due_ms() == 200 and timers.next_due_ms("actor/b") is None


def test_cancel(timers):
    t = timers.add("a", 10, "op")
    assert timers.cancel(t) is True
    assert timers.cancel(t) is False
    assert timers.due(100) == [] and timers.next_due_ms() is None


def test_timer_ids_are_never_reused(timers):
    first = timers.add("a", 10, "op")
    timers.cancel(first)
    second = timers.add("a", 10, "op")
    assert second > first
    assert timers.cancel(first) is False and timers.pending("a") == [(second, 10, "op", None)]


def test_timers_survive_reopening(tmp_path):
    path = str(tmp_path / "t.db")
    conn = open_db(path)
    tid = TimerStore(conn).add("a", 5, "op", [1])
    conn.close()
    conn = open_db(path)
    try:
        assert TimerStore(conn).due(5) == [(tid, "a", "op", [1])]
    finally:
        conn.close()


@pytest.mark.parametrize("call", [
    lambda t: t.add("", 1, "op"),
    lambda t: t.add("a", 1.5, "op"),
    lambda t: t.add("a", 1, ""),
    lambda t: t.due("now"),
    lambda t: t.cancel("1"),
])
def test_bad_timer_arguments(timers, call):
    with pytest.raises(InvalidMessage):
        call(timers)


def test_unstorable_timer_payload(timers):
    with pytest.raises(TypeError, match="timer payload"):
        timers.add("a", 1, "op", {"f": len})
