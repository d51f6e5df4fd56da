"""Partitioning (``plexhpc.shards.partition``): which shard owns a key, which rank hosts a
shard. Each is timed over a batch of realistic keys against the bare expression it
wraps (no argument checks), so the group shows what the checks cost.
"""

from __future__ import annotations

import zlib

import pytest

from plexhpc.shards.partition import hash_shard, place_shards, range_shard

SHARDS = 16
#: keys as applications route them: user ids, and numeric ids for range partitioning
STR_KEYS = [f"user-{i * 7919}" for i in range(256)]
INT_KEYS = [i * 16_777_259 % (2 ** 32) for i in range(256)]


def _hash_plexhpc(keys):
    return [hash_shard(k, SHARDS) for k in keys]


def _hash_bare(keys):
    return [zlib.crc32(str(k).encode()) % SHARDS for k in keys]


def _range_plexhpc(keys):
    return [range_shard(k, SHARDS) for k in keys]


def _range_bare(keys, lo=0, hi=2 ** 32):
    return [min(SHARDS - 1, (k - lo) * SHARDS // (hi - lo)) for k in keys]


ROUTE = {"hash": (STR_KEYS, {"plexhpc": _hash_plexhpc, "bare": _hash_bare}),
         "range": (INT_KEYS, {"plexhpc": _range_plexhpc, "bare": _range_bare})}


@pytest.mark.parametrize("impl", ["plexhpc", "bare"])
@pytest.mark.parametrize("strategy", list(ROUTE))
def test_route_256_keys(benchmark, strategy, impl):
    benchmark.group = f"partition {strategy}_shard x256 keys"
    keys, fns = ROUTE[strategy]
    shards = benchmark(fns[impl], keys)
    assert shards == fns["bare"](keys)
    assert 0 <= min(shards) and max(shards) < SHARDS


def _place_bare(shard_count, world_size, strategy):
    if strategy == "spread":
        return [i % world_size for i in range(shard_count)]
    per = -(-shard_count // world_size)
    return [i // per for i in range(shard_count)]


@pytest.mark.parametrize("impl", ["plexhpc", "bare"])
@pytest.mark.parametrize("strategy", ["spread", "pack"])
def test_place_shards(benchmark, strategy, impl):
    benchmark.group = f"partition place_shards {strategy} 64 shards on 8 ranks"
    fn = place_shards if impl == "plexhpc" else _place_bare
    ranks = benchmark(fn, 64, 8, strategy)
    assert ranks == _place_bare(64, 8, strategy)
