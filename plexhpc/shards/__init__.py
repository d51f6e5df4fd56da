"""Shard groups: N actors of one class, partitioned by key, placed over ranks.

From a handler: ``host.create_shard_group({...})``, ``host.route(...)``,
``host.scatter_gather({...})``, ``host.broadcast_shard_group({...})``,
``host.barrier_shard_group({...})``, ``host.destroy_shard_group(id)``; from a driver the
same calls on the node. Partitioning and placement are pure functions in
:mod:`plexhpc.shards.partition`.
"""

from .groups import AGGREGATIONS, ShardGroup, ShardGroups, aggregate
from .partition import PARTITIONS, PLACEMENTS, RoundRobin, hash_shard, place_shards, range_shard

__all__ = ["ShardGroup", "ShardGroups", "aggregate", "AGGREGATIONS", "PARTITIONS",
           "PLACEMENTS", "RoundRobin", "hash_shard", "range_shard", "place_shards"]
