"""Shard groups on the actor plane: N actors of one class, partitioned by key, spread
over ranks, addressed as one.

A group's metadata (its shard ids, the rank of each, the partition strategy) is kept by
the rank that created it and announced to every other rank on the node's FIFO channel,
so any actor on any rank can ``route`` to a shard or fan a query out with
``scatter_gather``. Shards are ordinary supervised actors named ``<group>.shard<i>``: a
crashed shard is restarted by its rank's supervisor under the same id, so it keeps its
partition; while it is down, asks to it time out and are reported as failed, never
hanging the caller.

Groups belong to the tenant whose context created them, and their ids are scoped per
tenant: tenant A's ``"orders"`` and tenant B's ``"orders"`` are two groups, and a caller
acting for a tenant names only that tenant's groups (another tenant's id gets the very
error of an id that does not exist, so ids do not leak). The system (a caller without a
tenant: the driver, the job's own services) names its own groups by their plain id and a
tenant's as ``"<group_id>@<tenant>"``; the ``@`` cannot occur in a group id. Every
operation resolves the id for the caller's context through :meth:`ShardGroups.get`,
which applies :func:`~plexhpc.context.may_act_on`. A tenant's shards are spawned in its
context (homed in that tenant) under names that carry a random suffix, so isolation
never rests on global actor names.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from .. import errors as E
from ..context import SYSTEM_TENANT, may_act_on, tenant_of
from .partition import PARTITIONS, RoundRobin, hash_shard, place_shards, range_shard

__all__ = ["ShardGroup", "ShardGroups", "aggregate", "AGGREGATIONS"]

AGGREGATIONS = ("concat", "merge", "first", "majority", "sum", "min", "max", "mean")
_SPEC_KEYS = {"group_id", "actor_type", "shard_count", "partition_strategy", "placement",
              "initial_state", "args", "key_range"}


@dataclass
class ShardGroup:
    """What every rank knows about a group."""

    group_id: str
    actor_type: str
    shard_count: int
    partition_strategy: str
    shard_actor_ids: list
    rank_of_shard: list
    key_range: list = field(default_factory=lambda: [0, 2 ** 32])
    creator_rank: int = 0
    #: the tenant that owns the group (None: the system)
    tenant: str | None = None

    @property
    def key(self) -> tuple:
        """What the group is stored under on every rank: (owner tenant, group id)."""
        return (self.tenant, self.group_id)

    @property
    def qualified_id(self) -> str:
        """The id a system caller names the group by: ``<group_id>@<tenant>`` for a
        tenant's group, the plain id for the system's own."""
        return self.group_id if self.tenant is None else f"{self.group_id}@{self.tenant}"

    def reply(self) -> dict:
        return {"group_id": self.group_id, "tenant": self.tenant,
                "qualified_id": self.qualified_id, "shard_count": self.shard_count,
                "shard_actor_ids": list(self.shard_actor_ids),
                "rank_of_shard": list(self.rank_of_shard),
                "partition_strategy": self.partition_strategy,
                "ranks": sorted(set(self.rank_of_shard))}


def _fail(message: str) -> E.ShardGroupError:
    return E.ShardGroupError(message)


def group_key(group_id, ctx) -> tuple:
    """The (owner tenant, group id) a caller acting in ``ctx`` means by ``group_id``: its
    own tenant's group, or, written ``<group_id>@<tenant>``, that tenant's (which only the
    system, or the tenant itself, may then act on)."""
    if not isinstance(group_id, str) or not group_id:
        raise _fail(f"group_id must be a non-empty str, got {group_id!r}")
    gid, sep, tenant = group_id.partition("@")
    if not sep:
        return (tenant_of(ctx), group_id)
    if not gid or not tenant:
        raise _fail(f"group_id {group_id!r}: expected '<group_id>' or "
                    f"'<group_id>@<tenant>'")
    return (None if tenant == SYSTEM_TENANT else tenant, gid)


class ShardGroups:
    """This rank's view of the job's shard groups (created here or announced), keyed by
    (owner tenant, group id)."""

    def __init__(self, node):
        self._node = node
        self._groups: dict[tuple, ShardGroup] = {}
        self._round_robin: dict[tuple, RoundRobin] = {}
        node.system.register("shard_group", lambda src, meta: self._install(ShardGroup(**meta)),
                             owner="shard groups", payload="ShardGroup as a dict: created")
        node.system.register("shard_group_drop", lambda src, key: self.drop(tuple(key)),
                             owner="shard groups",
                             payload="(owner tenant, group id): destroyed")

    # ---- queries -------------------------------------------------------------------

    def get(self, group_id, ctx=None) -> ShardGroup:
        """The group a caller acting in ``ctx`` names ``group_id`` (None: the system).
        A group the caller may not act on raises exactly what a missing one does."""
        key = group_key(group_id, ctx)
        group = self._groups.get(key)
        if group is None or not may_act_on(ctx, group.tenant):
            raise _fail(f"no shard group {group_id!r} (known: {self.visible(ctx)[:20]})")
        return group

    def by_key(self, key: tuple) -> ShardGroup:
        """The group stored under ``key`` (the runtime's own lookup: no tenant check,
        for plans already checked where they entered)."""
        group = self._groups.get(tuple(key))
        if group is None:
            raise _fail(f"no shard group {key[1]!r}")
        return group

    def visible(self, ctx=None) -> list:
        """The ids of the groups a caller acting in ``ctx`` may name, sorted: a tenant's
        own plain ids; for the system every group (a tenant's as ``<id>@<tenant>``)."""
        t = tenant_of(ctx)
        if t is None:
            return sorted(g.qualified_id for g in self._groups.values())
        return sorted(gid for (owner, gid) in self._groups if owner == t)

    def route(self, group_id: str, key, ctx=None) -> tuple:
        """(shard index, shard actor id) that owns ``key``."""
        g = self.get(group_id, ctx)
        if g.partition_strategy == "hash":
            i = hash_shard(key, g.shard_count)
        elif g.partition_strategy == "range":
            i = range_shard(key, g.shard_count, tuple(g.key_range))
        else:
            rr = self._round_robin.setdefault(g.key, RoundRobin(g.shard_count))
            i = rr(key)
        return i, g.shard_actor_ids[i]

    # ---- changes (run on the hub) -------------------------------------------------

    def create(self, spec: dict, done, ctx=None, caps=None) -> None:
        """Validate ``spec``, spawn the shards on their ranks, then announce the group;
        ``done(True, reply)`` once every shard's init has succeeded. The group belongs to
        the tenant of ``ctx``, and its shards are spawned in ``ctx`` (homed there)."""
        node = self._node
        tenant = tenant_of(ctx)
        try:
            plan = self._plan(spec, tenant)
        except (E.ShardGroupError, ValueError, TypeError) as exc:
            done(False, exc if isinstance(exc, E.PlexError) else _fail(str(exc)))
            return
        gid, ref, ranks, base_args = plan["group_id"], plan["ref"], plan["ranks"], plan["args"]
        n = len(ranks)
        ids: list = [None] * n
        state = {"left": n, "error": None}

        def one_done(i):
            def cb(ok, value):
                if ok:
                    ids[i] = value
                elif state["error"] is None:
                    state["error"] = value
                state["left"] -= 1
                if state["left"] == 0:
                    finish()
            return cb

        def finish():
            if state["error"] is not None:
                for aid in ids:
                    if aid is not None:
                        node.actors.start_stop(aid, "shard group creation failed",
                                         lambda ok, value: None)
                done(False, _fail(f"creating shard group {gid!r} failed: {state['error']}"))
                return
            group = ShardGroup(gid, plan["actor_type"], n, plan["strategy"], ids, ranks,
                               plan["key_range"], node.rank, tenant)
            self._install(group)
            node.system.broadcast("shard_group", asdict(group))
            done(True, group.reply())

        # a tenant's shards: names no other group's can take (the system's groups keep
        # the plain "<group>.shard<i>" that existing callers address)
        suffix = "" if tenant is None else f".{secrets.token_hex(6)}"
        for i, r in enumerate(ranks):
            args = dict(base_args)
            args.update({"shard_id": i, "shard_count": n, "group_id": gid,
                         "initial_state": plan["initial_state"]})
            node.actors.start_spawn(ref, f"{gid}.shard{i}{suffix}", r, args, "permanent",
                                    one_done(i), ctx, caps)

    def destroy(self, group_id: str, done, ctx=None) -> None:
        """Stop every shard of the group ``group_id`` names for a caller acting in
        ``ctx`` and forget it on every rank."""
        node = self._node
        try:
            group = self.get(group_id, ctx)
        except E.ShardGroupError as exc:
            done(False, exc)
            return
        left = {"n": group.shard_count}

        def stopped(ok, value):
            left["n"] -= 1
            if left["n"] == 0:
                done(True, {"group_id": group_id, "destroyed": True,
                            "shards_stopped": group.shard_count})

        self.drop(group.key)
        node.system.broadcast("shard_group_drop", list(group.key))
        for aid in group.shard_actor_ids:
            node.actors.start_stop(aid, f"shard group {group.qualified_id} destroyed",
                                   stopped, ctx)

    def drop(self, key: tuple) -> None:
        """Forget the group stored under (owner tenant, group id)."""
        self._groups.pop(key, None)
        self._round_robin.pop(key, None)

    def _install(self, group: ShardGroup) -> None:
        self._groups[group.key] = group

    def _plan(self, spec: dict, tenant=None) -> dict:
        node = self._node
        if not isinstance(spec, dict):
            raise _fail(f"create_shard_group takes a dict, got {type(spec).__name__}")
        unknown = set(spec) - _SPEC_KEYS
        if unknown:
            raise _fail(f"create_shard_group: unknown key(s) {sorted(unknown)}; expected "
                        f"{sorted(_SPEC_KEYS)}")
        gid = spec.get("group_id")
        if not isinstance(gid, str) or not gid or "@" in gid:
            raise _fail(f"group_id must be a non-empty str without '@', got {gid!r}")
        if (tenant, gid) in self._groups:
            raise _fail(f"shard group {gid!r} already exists; destroy it first")
        count = spec.get("shard_count")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise _fail(f"shard_count must be an int >= 1, got {count!r}")
        strategy = spec.get("partition_strategy", "hash")
        if strategy not in PARTITIONS:
            raise _fail(f"partition_strategy must be one of {list(PARTITIONS)}, got "
                        f"{strategy!r}")
        placement = spec.get("placement", {"strategy": "spread"})
        if isinstance(placement, str):
            placement = {"strategy": placement}
        if not isinstance(placement, dict):
            raise _fail(f"placement must be a dict like {{'strategy': 'spread'}}, got "
                        f"{placement!r}")
        ranks = place_shards(count, node.size, placement.get("strategy", "spread"),
                             placement.get("ranks"))
        key_range = list(spec.get("key_range", [0, 2 ** 32]))
        actor_type = spec.get("actor_type")
        args = dict(spec.get("args") or {})
        if not isinstance(actor_type, str) or not actor_type:
            raise _fail("actor_type must be a 'module:Class' path or the name of a child "
                        "in the app config")
        child = next((c for c in node.config.children if c.name == actor_type), None)
        if child is not None:  # reuse a configured child's class (and its args)
            ref = node.actors.class_ref(child.cls)
            args = {**child.args, **args}
        elif ":" in actor_type:
            try:
                ref = node.actors.class_ref(actor_type)
            except E.ConfigError as exc:
                raise _fail(f"actor_type {actor_type!r}: {exc}") from exc
        else:
            raise _fail(f"actor_type {actor_type!r} is neither 'module:Class' nor the name "
                        f"of a child in the app config")
        return {"group_id": gid, "ref": ref, "ranks": ranks, "args": args,
                "strategy": strategy, "key_range": key_range, "actor_type": actor_type,
                "initial_state": spec.get("initial_state", {})}


# ---- aggregation -------------------------------------------------------------------------

def _numeric(values, how):
    if not values:
        return None
    if all(isinstance(v, dict) for v in values):
        keys = list(dict.fromkeys(k for v in values for k in v))
        return {k: _numeric([v[k] for v in values if k in v], how) for k in keys}
    arrs = [np.asarray(v) for v in values]
    if not all(a.dtype.kind in "biufc" for a in arrs):
        raise _fail(f"aggregation {how!r} needs numbers, arrays or dicts of them; got "
                    f"{[type(v).__name__ for v in values]}")
    stack = np.stack(arrs)
    out = {"sum": stack.sum, "min": stack.min, "max": stack.max, "mean": stack.mean}[how](0)
    return out.item() if out.ndim == 0 else out


def aggregate(how: str, responses: list, arrival: list):
    """Combine successful shard responses (in shard order; ``arrival`` in reply order)."""
    if how == "concat":
        return list(responses)
    if how == "merge":
        merged: dict = {}
        for r in responses:
            if not isinstance(r, dict):
                raise _fail(f"aggregation 'merge' needs dict responses, got "
                            f"{type(r).__name__}")
            merged.update(r)
        return merged
    if how == "first":
        return arrival[0] if arrival else None
    if how == "majority":
        if not responses:
            return None
        keyed = [json.dumps(r, sort_keys=True, default=repr) for r in responses]
        winner, _ = Counter(keyed).most_common(1)[0]
        return responses[keyed.index(winner)]
    if how in ("sum", "min", "max", "mean"):
        return _numeric(responses, how)
    raise _fail(f"unknown aggregation {how!r}; expected one of {list(AGGREGATIONS)}")
