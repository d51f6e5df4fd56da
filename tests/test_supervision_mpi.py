"""The supervision tree of tests/scenarios/sup_tree.toml on 2 ranks: each strategy with
crashes in different children, restart types, backoff, and a nested supervisor whose
intensity is exceeded escalating to the root."""

import pytest

from conftest import SCENARIOS, mpirun

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(120)]

ALL = ("a", "p1", "p2", "p3", "t1", "t2", "temp", "trans", "perm")


def starts(**changed):
    out = dict.fromkeys(ALL, 1)
    out.update(changed)
    return out


@pytest.fixture(scope="module")
def job():
    j = mpirun(2, [str(SCENARIOS / "sup_tree.py")], timeout=100)
    assert j.returncode == 0, j
    return j


@pytest.fixture(scope="module")
def r(job):
    return job.result()


def test_every_child_started_once(r):
    assert r["initial"] == starts()


def test_one_for_one_restarts_only_the_crashed_child(r):
    assert r["one_for_one"] == starts(a=2)


def test_rest_for_one_restarts_the_child_and_those_started_after_it(r):
    assert r["rest_for_one"] == starts(a=2, p2=2, p3=2)
    # the sibling was stopped properly (terminate handler ran), the crashed one was not
    assert r["rest_for_one_stops"] == [["p3", "shutdown"]]


def test_a_handler_killed_by_its_supervisor_answers_and_loses_nothing(r):
    assert r["killed_waiter"] == ["ActorNotFound", True]  # at once, not after 15 s
    assert r["tuple_kept"] == 1
    assert r["linked_exit_on_shutdown"] == ["shutdown"]  # OTP: shutdown is an exit


def test_one_for_all_restarts_every_child_after_the_backoff(r):
    assert r["one_for_all"] == starts(a=2, p2=2, p3=2, t1=2, t2=2)
    assert r["backoff_s"] >= 0.1
    assert r["messages_after_restart"] == ["pong"] * 3


def test_restart_types(r):
    # transient after a normal exit: gone; permanent after a normal exit: restarted;
    # temporary after a crash: gone
    assert r["types"] == ["ActorNotFound", "pong", "ActorNotFound"]
    assert r["types_starts"] == starts(a=2, p2=2, p3=2, t1=2, t2=2, perm=2)


def test_exit_runs_the_terminate_handler(r):
    assert r["exit_ran_terminate"] is True


def test_a_child_stopped_from_outside_stays_out_of_the_tree(r, job):
    assert r["after_terminate_child"] == [3, 4, "ActorNotFound"]
    assert "failed" not in job.stderr.replace("crashed", "")  # no halt/start failures


def test_intensity_exceeded_escalates_to_the_parent(r):
    # the team gave up on its second crash; the root restarted the whole team
    assert r["escalated"] == starts(a=2, p2=2, p3=2, t1=3, t2=3, perm=2)
    assert r["alive_after_escalation"] == "pong"


def test_shutdown_stops_children_in_reverse_order_with_a_timeout_then_kill():
    import tempfile
    import time

    from conftest import STATE_TMP
    from plexhpc.storage import TupleSpace, open_db

    state = tempfile.mkdtemp(prefix="shutdown-", dir=STATE_TMP)
    t0 = time.monotonic()
    job = mpirun(2, [str(SCENARIOS / "shutdown_order.py")],
                 env={"PLEXHPC_STATE_DIR": state}, timeout=60)
    took = time.monotonic() - t0
    assert job.returncode == 0, job
    assert took < 20  # the 60 s terminate handler was cut short
    assert "terminate handler still running after 300 ms; killed" in job.stderr
    conn = open_db(f"{state}/shutdown-order/shared.sqlite")
    try:
        tuples = TupleSpace(conn).read_all(("default", "default"), [None, None, None, None])
        stubborn = TupleSpace(conn).read_all(("default", "default"), ["stubborn", None])
    finally:
        conn.close()
    # stubborn (started last) first, then second (which could still ask first), then first
    assert [tuple(t) for t in stubborn] == [("stubborn", "began")]
    assert [t[1] for t in tuples] == ["second", "first"]
    assert tuples[0][2:] == ("shutdown", "pong")
