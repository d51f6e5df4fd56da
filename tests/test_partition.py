"""Partition and placement strategies: pure functions, checked over many random keys."""

import random

import pytest

from plexhpc.shards import RoundRobin, hash_shard, place_shards, range_shard
from plexhpc.shards.groups import aggregate
from plexhpc.errors import ShardGroupError

RNG = random.Random(1234)
KEYS = [RNG.choice([RNG.randint(-10**9, 10**9), f"user-{RNG.random()}", RNG.random()])
        for _ in range(2000)]


@pytest.mark.parametrize("n", [1, 2, 3, 8, 32])
def test_hash_is_in_range_stable_and_spreads(n):
    shards = [hash_shard(k, n) for k in KEYS]
    assert all(0 <= s < n for s in shards)
    assert shards == [hash_shard(k, n) for k in KEYS]     # deterministic
    counts = [shards.count(i) for i in range(n)]
    assert min(counts) > len(KEYS) / n * 0.6               # roughly balanced


def test_hash_does_not_depend_on_python_hash_salt():
    # crc32 of the key's text: the same value in every process, every run
    assert hash_shard("user-42", 8) == 3 and hash_shard(12345, 7) == 1


@pytest.mark.parametrize("n", [1, 4, 10])
def test_range_is_monotone_contiguous_and_clamped(n):
    keys = sorted(RNG.randint(0, 999) for _ in range(500))
    shards = [range_shard(k, n, (0, 1000)) for k in keys]
    assert shards == sorted(shards) and all(0 <= s < n for s in shards)
    assert range_shard(-5, n, (0, 1000)) == 0 and range_shard(10**6, n, (0, 1000)) == n - 1
    assert range_shard(999, n, (0, 1000)) == n - 1 and range_shard(0, n, (0, 1000)) == 0


def test_range_rejects_an_empty_range_and_hashes_non_numbers():
    with pytest.raises(ValueError, match="hi > lo"):
        range_shard(1, 4, (5, 5))
    assert range_shard("abc", 4) == hash_shard("abc", 4)


def test_round_robin_cycles():
    rr = RoundRobin(3)
    assert [rr() for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]


@pytest.mark.parametrize("shards, size", [(1, 1), (8, 2), (7, 4), (32, 2), (3, 4)])
def test_placements(shards, size):
    spread = place_shards(shards, size, "spread")
    assert spread == [i % size for i in range(shards)]
    pack = place_shards(shards, size, "pack")
    assert pack == sorted(pack) and max(pack) < size
    assert max(pack.count(r) for r in set(pack)) == -(-shards // size)
    assert place_shards(shards, size, "from_registry") == spread
    assert place_shards(shards, size, "ranks", [size - 1]) == [size - 1] * shards


@pytest.mark.parametrize("args, needle", [
    ((0, 2, "spread"), "shard_count"), ((2, 0, "spread"), "world_size"),
    ((2, 2, "diagonal"), "unknown placement"), ((2, 2, "ranks", []), "non-empty"),
    ((2, 2, "ranks", [5]), "not a rank"),
])
def test_placement_errors(args, needle):
    with pytest.raises(ValueError, match=needle):
        place_shards(*args)


def test_aggregations_on_plain_values():
    assert aggregate("concat", [1, 2], [2, 1]) == [1, 2]
    assert aggregate("first", [1, 2], [2, 1]) == 2
    assert aggregate("merge", [{"a": 1}, {"b": 2}], []) == {"a": 1, "b": 2}
    assert aggregate("majority", ["x", "y", "x"], []) == "x"
    assert aggregate("sum", [1, 2, 3], []) == 6 and aggregate("mean", [1, 3], []) == 2.0
    assert aggregate("max", [{"k": 1}, {"k": 5}], []) == {"k": 5}
    with pytest.raises(ShardGroupError, match="needs numbers"):
        aggregate("sum", ["a", "b"], [])
    with pytest.raises(ShardGroupError, match="needs dict"):
        aggregate("merge", [1], [])
