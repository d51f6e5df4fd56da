"""Issue 10, part 1: no malformed request reaches a handler, built-in actors validate
their input, and one actor's crashes cannot end the job through a shared restart budget.
Each case crashed a handler, killed the rank's loop, or ended the job before."""

import pytest

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def r():
    from conftest import scenario_result
    return scenario_result("iso_requests", 2)


def test_payload_keys_that_would_crash_a_kwargs_handler_are_refused_before_it_runs(r):
    assert r["kw_self"] == r["kw_intkey"] == r["kw_list"] == "InvalidMessage"
    assert r["kw_good"] == ["a", "b"]
    assert r["kw_inits"] == 1 and r["kw_still"] == 1  # never crashed, never restarted


def test_a_bad_timeout_is_refused_in_the_caller_and_never_reaches_the_hub(r):
    assert r["handler_bad_timeout"] == "InvalidMessage"
    assert r["driver_bad_timeouts"] == ["InvalidMessage"] * 5


def test_gen_event_refuses_bad_events_without_dropping_its_handler(r):
    assert r["bus_count"] == 1
    assert r["bus_subscribe_bad"] == "Rejected"


def test_workflow_built_ins_validate_their_input(r):
    assert r["wf_run_self"] == r["wf_run_intkey"] == "InvalidMessage"
    assert r["wf_run_bad_id"] == r["wf_signal_missing"] == r["wf_status_bad"] == "Rejected"
    assert r["wf_signal_self"] == "InvalidMessage"
    assert r["wf_run_good"] == {"n": 2}
    assert r["wf_notes"] == []


def test_restart_budgets_are_per_actor_and_exhausting_one_stops_only_that_actor(r):
    # max_restarts = 3: the 4th crash is one too many; the actor is stopped
    assert r["a_crashes"][:4] == ["RemoteError"] * 4
    assert r["a_crashes"][4:] == ["ActorNotFound"] * 2
    assert r["a_after"] == "ActorNotFound"
    assert r["b_after"] == "pong" and r["b_crash_then_ping"] == ["RemoteError", "pong"]
    assert r["exit_code"] == 0  # the job went on and ended normally
