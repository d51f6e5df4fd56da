"""Facets on 2 ranks: durability across a crash and across a full stop and relaunch of
the app, a tampered checkpoint refused at load, durable timers that fire after the
relaunch, virtual actors activated on demand and deactivated when idle, metrics."""

import sqlite3
import tempfile

import pytest

from conftest import SCENARIOS, STATE_TMP, mpirun

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(150)]


@pytest.fixture(scope="module")
def runs():
    state = tempfile.mkdtemp(prefix="durable-", dir=STATE_TMP)
    env = {"PLEXHPC_STATE_DIR": state}
    first = mpirun(2, [str(SCENARIOS / "durable_app.py"), "first"], env=env, timeout=90)
    assert first.returncode == 0, first
    # flip one byte of fragile's newest checkpoint, as a tampered file would
    db = sqlite3.connect(f"{state}/durable/rank-0.sqlite")
    key, version, blob = db.execute(
        "SELECT actor_key, version, blob FROM checkpoint WHERE actor_key LIKE ? "
        "ORDER BY version DESC LIMIT 1", ("actor:fragile:%",)).fetchone()
    blob = bytearray(blob)
    blob[-3] ^= 0xFF
    db.execute("UPDATE checkpoint SET blob = ? WHERE actor_key = ? AND version = ?",
               (bytes(blob), key, version))
    db.commit()
    db.close()
    second = mpirun(2, [str(SCENARIOS / "durable_app.py"), "second"], env=env, timeout=90)
    assert second.returncode == 0, second
    return first.result(), second.result(), second.stderr


def test_state_survives_a_crash_with_interval_1(runs):
    first, _, _ = runs
    assert first["after_crash"] == {"value": 15, "ticks": 0, "history": [1, 2, 3, 4, 5]}


def test_interval_10_loses_what_was_not_checkpointed_yet(runs):
    first, _, _ = runs
    assert first["batched_after_crash"] == 0


def test_state_survives_a_stop_and_relaunch(runs):
    _, second, _ = runs
    assert second["counter"]["value"] == 15 and second["counter"]["history"] == [1, 2, 3, 4, 5]
    assert second["batched"] == 4  # checkpointed when the job stopped


def test_a_tampered_checkpoint_is_refused_and_the_actor_starts_fresh(runs):
    _, second, stderr = runs
    assert second["fragile"] == 0
    assert "checkpoint refused" in stderr and "fragile" in stderr


def test_a_workflow_stopped_mid_run_resumes_after_the_relaunch_without_repeating(runs):
    first, second, _ = runs
    assert first["flow_progress_before_stop"] == 2
    # told the run was interrupted (or, if the node closed first, that)
    assert first["flow_caller_told"] in ("RemoteError", "NodeClosed")
    assert second["flow_status_after_relaunch"] == "running"
    progress, ran = second["flow_after_relaunch"]
    assert progress == 3 and ran == [1, 1, 1]  # steps 0 and 1 were not run again


def test_durable_timer_fires_after_the_relaunch(runs):
    _, second, _ = runs
    assert second["timer_fired_after_relaunch"] == 1


def test_virtual_actor_activates_on_demand_and_keeps_state_when_idle(runs):
    first, _, _ = runs
    assert first["lazy_starts_before"] == 0
    assert first["lazy_starts_after_msg"] == 1
    assert first["lazy_value_after_idle"] == 3
    assert first["lazy_starts_after_idle"] == 2  # deactivated, then activated again


def test_metrics_facet_counts_messages_errors_and_checkpoints(runs):
    first, _, _ = runs
    messages, errors, adds, checkpoints = first["metrics"]
    assert messages == 8 and errors == 1 and adds == 5 and checkpoints
    prom = first["prometheus"]
    assert 'plexhpc_actor_messages_total{actor="fragile@0",op="add"} 1.0' in prom
    assert 'plexhpc_actor_errors_total{actor="fragile@0",op="add"} 0.0' in prom


def test_on_corrupt_escalate_refuses_to_start_on_a_tampered_checkpoint():
    state = tempfile.mkdtemp(prefix="strict-", dir=STATE_TMP)
    env = {"PLEXHPC_STATE_DIR": state}
    args = [str(SCENARIOS / "just_start.py"), str(SCENARIOS / "durable_strict.toml")]
    first = mpirun(2, args, env=env, timeout=60)
    assert first.returncode == 0, first
    db = sqlite3.connect(f"{state}/durable-strict/rank-1.sqlite")
    (blob,) = db.execute("SELECT blob FROM checkpoint WHERE actor_key LIKE 'actor:strict:%' "
                         "ORDER BY version DESC LIMIT 1").fetchone()
    db.execute("UPDATE checkpoint SET blob = ? WHERE actor_key LIKE 'actor:strict:%'",
               (blob[:-10],))  # truncated
    db.commit()
    db.close()
    second = mpirun(2, args, env=env, timeout=60)
    assert second.returncode != 0
    assert "actor 'strict' on rank 1 failed to start" in second.stderr
    assert "checkpoint is truncated" in second.stderr and "refused, not loaded" in second.stderr


def test_state_follows_an_actor_that_a_relaunch_places_on_another_rank():
    state = tempfile.mkdtemp(prefix="move-", dir=STATE_TMP)
    env = {"PLEXHPC_STATE_DIR": state}
    script = str(SCENARIOS / "durable_move.py")
    first = mpirun(2, [script, "add"], env=env, timeout=60)
    assert first.returncode == 0, first
    assert first.result() == {"value": 5, "rank": 1}
    second = mpirun(1, [script, "read"], env=env, timeout=60)
    assert second.returncode == 0, second
    assert second.result() == {"value": 5, "rank": 0}


def _free_port_pair() -> int:
    import socket
    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", 0))
                port = a.getsockname()[1]
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            if port + 1 <= 65535:
                return port
    pytest.skip("no two free neighbouring ports")


def test_metrics_are_served_for_prometheus_over_http():
    port = _free_port_pair()
    job = mpirun(2, [str(SCENARIOS / "metrics_http.py"), str(port)], timeout=60)
    assert job.returncode == 0, job
    lines = job.result()["lines"]
    assert 'plexhpc_actor_messages_total{actor="metered@1",op="add"} 3.0' in lines


def test_a_taken_metrics_port_fails_the_start_clearly():
    import socket
    port = _free_port_pair()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port + 1))  # rank 1's port is taken
        s.listen()
        job = mpirun(2, [str(SCENARIOS / "metrics_http.py"), str(port)], timeout=60)
    assert job.returncode != 0
    assert f"rank 1 cannot serve metrics on 127.0.0.1:{port + 1}" in job.stderr
