"""Shard groups behind tenant walls (issue 10): tenant B attacks tenant A's groups."""

import pytest

from conftest import scenario_result

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def result():
    return scenario_result("tenant_shards", 2, timeout=200)


def test_the_same_group_id_in_two_tenants_is_two_groups(result):
    assert result["a_create"] == "ok" and result["a_put"] == "ok"
    assert result["b_create_same_id"] == "ok"
    # B's "g" is its own (empty) group: B cannot read A's shard state through route
    assert result["b_route_own_g"][0] == "ok"
    assert result["b_route_own_g"][1]["value"] is None
    assert result["a_route_own_g"][1]["value"] == 42


def test_b_cannot_name_a_group_of_a_any_call_any_rank(result):
    attacks = result["attacks"]
    for where in ("client", "client1"):
        for call, got in attacks[f"only_a/{where}"].items():
            assert got[0] == "err" and got[1] == "ShardGroupError", (call, where, got)
            missing = attacks[f"nope/{where}"][call]
            # the very error of a group that does not exist: ids do not leak
            assert got[1:] == [missing[1], missing[2].replace("nope", "only_a")], (call, got)
            assert "acme" not in got[2], got
        for call, got in attacks[f"only_a@acme/{where}"].items():
            assert got[0] == "err" and got[1] == "ShardGroupError", (call, where, got)


def test_a_group_survives_the_attacks(result):
    route0, route1, sg, red, bar = result["a_after"]
    assert route0 == ["ok", {"shard_id": route0[1]["shard_id"], "value": 7}]
    assert route1[1]["value"] == 7
    assert sg[0] == "ok" and sg[1]["result"] == 1
    assert red[0] == "ok" and red[1]["value"] == 1
    assert bar[0] == "ok" and bar[1]["arrived"] == 2


def test_the_system_names_a_tenants_group_as_group_at_tenant(result):
    assert result["sys_plain"][:2] == ["err", "ShardGroupError"]
    via_actor, via_driver, total, reduced = result["sys_qualified"]
    assert via_actor[0] == "ok" and via_actor[1]["value"] == 7
    assert via_driver["value"] == 7 and total == 1 and reduced == 1
    assert result["sys_destroy_b"][0] == "ok"
    assert result["b_after_sys_destroy"] == ["err", "ShardGroupError"]
    assert result["a_g_after_sys_destroy_b"][1]["value"] == 42
    assert result["a_destroy"] == ["ok", "ok"]
