"""Elastic pools over 2 ranks: leases, growth, waiting, timeouts, replacement, shrink."""

import pytest

from conftest import scenario_result

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def result():
    return scenario_result("pools", 2, timeout=100)


def test_a_pool_starts_with_size_idle_workers(result):
    assert result["created"] == {"size": 2, "idle": 2, "busy": 0, "max_size": 3}
    assert result["two"] == [True, True]


def test_it_grows_to_max_size_then_times_out_clearly(result):
    assert result["grown"] == 1
    kind, seconds, clear = result["exhausted"]
    assert kind == "AskTimeout" and seconds < 2 and clear


def test_a_waiting_checkout_gets_the_next_worker_checked_in(result):
    assert result["waiter_served"] is True


def test_an_unhealthy_worker_is_replaced_and_bad_checkins_refused(result):
    assert result["replaced"] == [True, 1, "ActorNotFound"]
    assert result["bad_checkin"] == "Rejected"  # and the pool kept its leases


def test_stats_and_shrink_when_idle(result):
    assert {"avg_wait_ms", "avg_exec_ms", "utilization", "size", "idle", "busy"} <= set(
        result["stats_keys"])
    assert result["utilization_idle"] == 0.0
    assert result["avg_wait_ms_positive"] and result["avg_exec_ms_positive"]
    assert result["shrunk"] == [2, 1]


def test_errors_and_destroy(result):
    e = result["errors"]
    assert e["unknown_pool"] == "ActorNotFound"
    assert "size must be an int >= 0" in e["bad_size"]
    assert "max_size must be an int >= max(size, 1) = 3" in e["bad_max"]
    assert e["bad_class"] == "ConfigError"
    assert result["destroy"]["destroyed"] and result["after_destroy"] == "ActorNotFound"
