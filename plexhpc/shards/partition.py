"""Which shard owns a key, and which rank hosts a shard: pure functions, no runtime.

Partition strategies (``partition_strategy``):

- ``hash``: ``crc32(str(key)) % shard_count`` — stable across processes and runs
  (Python's ``hash`` is salted per process, so it would send one key to different
  shards on different ranks);
- ``range``: numeric keys in ``[lo, hi)`` (``key_range``, default ``[0, 2**32)``) split into
  ``shard_count`` equal, contiguous ranges; non-numeric keys are placed by their hash;
- ``round_robin``: the key is ignored, successive routes go to successive shards.

Placement strategies (``placement.strategy``):

- ``spread`` (also the reference's ``from_registry``): shard ``i`` on rank ``i % size``;
- ``pack``: fill ranks in order, ``ceil(shard_count / size)`` shards each;
- ``ranks``: spread over an explicit list ``placement.ranks``.
"""

from __future__ import annotations

import math
import zlib

__all__ = ["PARTITIONS", "PLACEMENTS", "hash_shard", "range_shard", "place_shards",
           "RoundRobin"]

PARTITIONS = ("hash", "range", "round_robin")
PLACEMENTS = ("spread", "pack", "ranks", "from_registry")
_DEFAULT_RANGE = (0, 2 ** 32)


def hash_shard(key, shard_count: int) -> int:
    """The shard for ``key`` under the hash strategy (stable across processes)."""
    _check_count(shard_count)
    return zlib.crc32(str(key).encode()) % shard_count


def range_shard(key, shard_count: int, key_range=_DEFAULT_RANGE) -> int:
    """The shard for a numeric ``key`` under the range strategy; a key outside the range
    is clamped to the first or last shard."""
    _check_count(shard_count)
    lo, hi = key_range
    if not hi > lo:
        raise ValueError(f"key_range must be [lo, hi) with hi > lo, got {key_range!r}")
    if isinstance(key, bool) or not isinstance(key, (int, float)):
        return hash_shard(key, shard_count)
    if key < lo:
        return 0
    if key >= hi:
        return shard_count - 1
    return min(shard_count - 1, int((key - lo) * shard_count // (hi - lo)))


class RoundRobin:
    """Successive shards for successive routes (per group, per rank)."""

    def __init__(self, shard_count: int):
        _check_count(shard_count)
        self.shard_count = shard_count
        self._next = 0

    def __call__(self, key=None) -> int:
        shard = self._next
        self._next = (self._next + 1) % self.shard_count
        return shard


def place_shards(shard_count: int, world_size: int, strategy: str = "spread",
                 ranks=None) -> list:
    """The rank of each shard, ``[rank_of_shard_0, ...]``."""
    _check_count(shard_count)
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if strategy in ("spread", "from_registry"):
        return [i % world_size for i in range(shard_count)]
    if strategy == "pack":
        per = math.ceil(shard_count / world_size)
        return [i // per for i in range(shard_count)]
    if strategy == "ranks":
        if not ranks or not isinstance(ranks, (list, tuple)):
            raise ValueError("placement 'ranks' needs a non-empty list placement.ranks")
        for r in ranks:
            if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r < world_size:
                raise ValueError(f"placement.ranks: {r!r} is not a rank of this job "
                                 f"(0..{world_size - 1})")
        return [ranks[i % len(ranks)] for i in range(shard_count)]
    raise ValueError(f"unknown placement strategy {strategy!r}; expected one of "
                     f"{list(PLACEMENTS)}")


def _check_count(shard_count) -> None:
    if isinstance(shard_count, bool) or not isinstance(shard_count, int) or shard_count < 1:
        raise ValueError(f"shard_count must be an int >= 1, got {shard_count!r}")
