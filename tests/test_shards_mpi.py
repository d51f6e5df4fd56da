"""Shard groups over 2 and 4 ranks (several shards per rank), driven from a script and
from inside an actor."""

import pytest

from plexhpc.shards import hash_shard

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(180)]


@pytest.fixture(scope="module", params=[2, 4], ids=["2ranks", "4ranks"])
def result(request):
    from conftest import scenario_result
    return request.param, scenario_result("shards", request.param)


def test_create_spreads_shards_and_passes_init_config(result):
    n, r = result
    g = r["create"]
    assert g["shard_count"] == 8 and g["rank_of_shard"] == [i % n for i in range(8)]
    assert g["shard_actor_ids"] == [f"kv.shard{i}@{i % n}" for i in range(8)]
    assert [w["shard_id"] for w in r["who"]] == list(range(8))
    assert [w["rank"] for w in r["who"]] == [i % n for i in range(8)]
    assert all(w["initial_state"] == {"model": "m1"} and w["group_id"] == "kv"
               for w in r["who"])
    assert r["who_stats"] == {"shards_queried": 8, "shards_responded": 8, "shards_failed": 0}
    assert r["latencies_present"]


def test_route_sends_each_key_to_its_hash_partition(result):
    _, r = result
    assert r["route_matches_hash"] and r["route_get"] == 3


def test_aggregations(result):
    _, r = result
    assert r["sum"] == 40            # 40 keys spread over the shards
    assert r["max"] >= 5             # some shard holds at least 40/8 keys
    assert r["merge"] == ["shard_id"]
    assert r["majority"] == "yes"    # 7 of 8 shards vote yes
    assert r["stats_sum"]["keys"] == 48 and r["stats_sum"]["hits"] == 8


def test_min_responses_returns_before_slow_shards(result):
    _, r = result
    assert r["min1_responded"] >= 1 and r["min1_seconds"] < 0.5


def test_a_slow_shard_past_the_timeout_is_reported_missing_not_waited_for(result):
    _, r = result
    kind, missing, is_timeout, responded = r["timeout"]
    assert kind == "ScatterGatherIncomplete" and is_timeout
    assert 3 in missing and responded == 8 - len(missing)


def test_a_crashed_shard_is_restarted_under_the_same_id_and_partition(result):
    _, r = result
    assert r["crash"] == "RemoteError"
    assert r["after_crash_ids"] is True
    assert r["after_crash_route"] == hash_shard("key3", 8)


def test_broadcast_and_barrier_report_what_happened(result):
    _, r = result
    assert r["broadcast"]["acks"] == 8 and r["broadcast"]["failed"] == []
    assert r["barrier"]["arrived"] == 8
    assert r["count_after_reset"] == 0


def test_placement_pack_ranks_and_round_robin(result):
    n, r = result
    assert r["pack_ranks"] == [i // 2 for i in range(2 * n)]
    assert r["ranks_ranks"] == [n - 1] * 3
    assert r["rr"] == [0, 1, 2, 0]


def test_a_group_driven_from_inside_an_actor(result):
    n, r = result
    assert r["coord"] == {"ranks": [i % n for i in range(3)], "total": 20, "k7": 7,
                          "arrived": 3}


def test_bad_input_gets_clear_errors(result):
    _, r = result
    e = r["errors"]
    assert e["unknown_group"] == "ShardGroupError"
    assert "unknown key(s) ['colour']" in e["unknown_key"]
    assert "shard_count must be an int >= 1, got 0" in e["zero"]
    assert "partition_strategy must be one of" in e["strategy"]
    assert "nowhere" in e["actor_type"]
    assert "aggregation must be one of" in e["aggregation"]
    assert "already exists" in e["duplicate"]
    assert "exceeds the group's 8 shards" in e["min_too_big"]


def test_destroy_stops_the_shards_everywhere(result):
    _, r = result
    assert r["destroy"] == {"group_id": "kv", "destroyed": True, "shards_stopped": 8}
    assert r["after_destroy"] == "ShardGroupError" and r["shard_gone"] == "ActorNotFound"
