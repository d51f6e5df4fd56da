"""Reductions over shard groups at 2 and 4 ranks: numba per rank, one MPI collective
across ranks, sequenced by rank 0 so concurrent calls stay ordered."""

import pytest

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(180)]


@pytest.fixture(scope="module", params=[2, 4], ids=["2ranks", "4ranks"])
def result(request):
    from conftest import scenario_result
    return request.param, scenario_result("group_reduce", request.param)


def test_reductions_equal_a_direct_computation(result):
    n, r = result
    assert r["sum"] == {"served": 21, "latency": 15.0}   # shards 0..5 answer (i+1, i)
    assert r["max"] == {"served": 6, "latency": 5.0}
    assert r["product"] == {"served": 720, "latency": 0.0}
    assert r["vector"] == [15.0] * 5
    assert r["bool_and"] is False and r["bool_or"] is True
    assert r["concat"] == [f"s{i}" for i in range(6)]
    assert r["answered"] == 6 and r["ranks"] == list(range(min(n, 6)))


def test_large_values_take_the_second_exchange(result):
    _, r = result
    assert r["big_vector"] == [50000, 5.0, 5.0]


def test_all_reduce_delivers_the_value_to_every_shard(result):
    _, r = result
    assert r["all_reduce_value"] == r["sum"] and r["every_shard_received"] is True


def test_from_inside_an_actor_and_in_a_long_sequence(result):
    _, r = result
    assert r["from_actor"] == {"served": 6, "latency": 5.0}
    assert r["repeat"] is True


def test_a_failing_shard_fails_the_reduction_clearly_and_the_next_one_works(result):
    _, r = result
    assert r["failure"] == ["ShardFailure", True]
    assert r["after_failure"] == 21


def test_bad_specs_are_refused(result):
    _, r = result
    e = r["errors"]
    assert "reduction must be one of" in e["reduction"]
    assert "map_function must be a dict" in e["map"]
    assert e["group"] == "ShardGroupError"
