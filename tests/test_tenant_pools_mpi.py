"""Pools behind tenant walls (issue 10): tenant B attacks tenant A's pool; pool
arguments are checked; a restarted manager orphans no workers."""

import pytest

from conftest import scenario_result

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def result():
    return scenario_result("tenant_pools", 2, timeout=200)


def test_b_cannot_reach_a_pool_through_the_pool_calls(result):
    assert result["a_create"] == "ok"
    for where in ("client", "client1"):
        for call, got in result["attacks"][f"p/{where}"].items():
            assert got[:2] == ["err", "ActorNotFound"], (call, where, got)
            missing = result["attacks"][f"nope/{where}"][call]
            assert got[2] == missing[2].replace("nope", "p"), (call, got, missing)
            assert "acme" not in got[2] and "known names" not in got[2], got


def test_the_same_pool_name_in_two_tenants_is_two_pools(result):
    assert result["b_create_same_name"][0] == "ok", result["b_create_same_name"]
    assert result["a_stats"][1]["size"] == 1 and result["b_stats"][1]["size"] == 2
    assert result["a_checkin"] == "ok"


def test_checkout_ids_are_unguessable(result):
    assert result["a_lease"][0] == "ok"
    assert result["cid_unguessable"] == [True, True]


def test_b_asking_a_manager_directly_is_refused(result):
    for to, ops in result["raw"].items():
        for op, got in ops.items():
            # by a guessed name or by the id: refused as a missing actor or pool (the
            # router echoes the name B wrote; the manager's refusal names nothing)
            assert got[:2] == ["err", "ActorNotFound"], (to, op, got)


def test_growth_spawns_workers_in_the_pool_owners_context_not_the_callers(result):
    assert result["grow_leases"] == ["ok", "ok"]
    assert result["homes"] == [["acme", "default"], ["acme", "default"]]
    assert result["grow_checkin"] == ["ok", "ok"]


def test_a_system_service_reaches_a_tenants_pool_with_tenant(result):
    assert result["sys_lease"] == ["ok", "ok"]


def test_bad_pool_arguments_are_refused_clearly_without_a_restart(result):
    bad = result["bad"]
    assert bad["api_soon"][:2] == ["err", "InvalidMessage"] and "timeout_ms" in bad[
        "api_soon"][2] and "'soon'" in bad["api_soon"][2]
    assert bad["api_neg"] == ["err", "InvalidMessage"]
    assert bad["raw_soon"][0] == "err" and bad["raw_soon"][1] in ("InvalidMessage",
                                                                  "Rejected")
    assert "timeout_ms" in bad["raw_soon"][2]
    for k in ("raw_inf", "raw_bool"):
        assert bad[k][0] == "err" and bad[k][1] in ("InvalidMessage", "Rejected"), bad[k]
    assert bad["raw_healthy"][0] == "err" and "healthy" in bad["raw_healthy"][2]
    assert bad["raw_ids"][0] == "err" and "actor_id" in bad["raw_ids"][2]
    # the lease taken before the bad asks is still open: the manager was not restarted
    stats = result["busy_after_bad"]
    assert stats[0] == "ok" and stats[1]["busy"] == 1, stats


def test_a_restarted_manager_leaves_no_orphaned_workers(result):
    a = result["after_crash"]
    assert result["crash"][0] == "err"
    assert a["old_alive"] == 0, a
    assert a["stats"][0] == "ok" and a["stats"][1]["size"] == 2
    assert a["checkout"] == "ok"


def test_the_system_reaches_a_tenants_pool_with_tenant(result):
    assert result["sys_stats_a"] == "ok"
    assert result["sys_destroy_a"][0] == "ok"
    assert result["sys_destroy_a"][1]["workers_stopped"] >= 1
    assert result["a_after_destroy"] == ["err", "ActorNotFound"]
    assert result["b_destroy_own"] == "ok"
