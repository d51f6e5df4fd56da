"""Reductions over a shard group: each shard answers a map op, the values are combined
on each rank by numba kernels, then across ranks by one MPI collective.

Why it is shaped like this. The node's loop must never block, and MPI has no
nonblocking way to build a communicator for just the group's ranks, so group
reductions run on one communicator shared by every rank (``node.group_comm``), with
nonblocking collectives that the loop polls. Collectives on one communicator must be
entered in the same order everywhere, so every group reduction is sequenced by rank 0:
the caller's rank asks rank 0, rank 0 numbers it and tells every rank on its FIFO
channel, and each rank runs them one at a time in that order.

On each rank: ask the local shards the map op (local asks, no MPI), combine their
answers with the numba kernels of :mod:`plexhpc.collectives`, then one ``Iallgather`` of
fixed 512-byte slots carries every rank's status and, when small, its partial result
(values that do not fit follow in one ``Iallgatherv``); every rank combines the
partials in rank order, so all get the same result. Ranks without shards take part with
an empty slot. A shard that fails or times out fails the reduction on every rank, with
the missing shards named.
"""

from __future__ import annotations

import operator
import pickle
import struct
import time

from mpi4py import MPI

from .. import errors as E
from ..collectives.ops import local_combiner, resolve_op, work_dtype
from .api import check_op
from ..collectives.values import OBJECT, flatten, unflatten

__all__ = ["REDUCTIONS", "combine", "GroupReductions"]

REDUCTIONS = ("sum", "min", "max", "product", "concat", "bool_and", "bool_or")
_OPS = {"sum": "sum", "min": "min", "max": "max", "product": "prod", "bool_and": "land",
        "bool_or": "lor"}
_SLOT = 512
_HEAD = struct.Struct("<iiiq")   # status, answered, failed, payload bytes
_EMPTY, _DATA, _FAILED = 0, 1, 2


_PY = {"sum": operator.add, "product": operator.mul, "min": min, "max": max,
       "bool_and": lambda a, b: bool(a) and bool(b), "bool_or": lambda a, b: bool(a) or bool(b)}
_SCALARS = (int, float, bool)


def _scalar_shape(v):
    """The type signature of a number or a flat dict of numbers, else None."""
    t = type(v)
    if t in _SCALARS:
        return t
    if t is dict and all(type(x) in _SCALARS for x in v.values()):
        return tuple((k, type(x)) for k, x in v.items())
    return None


_NO = object()


def _combine_flat(values: list, reduction: str):
    """The usual case, fast: flat dicts of ints and floats with the same keys (metrics),
    summed, multiplied, or min/max-ed. Anything else: ``_NO`` (the general path)."""
    fn = _PY.get(reduction)
    first = values[0]
    if fn is None or reduction in ("bool_and", "bool_or") or type(first) is not dict:
        return _NO
    acc = {}
    for k, x in first.items():
        t = type(x)
        if t is not int and t is not float:
            return _NO
        acc[k] = x
    n = len(acc)
    for v in values[1:]:
        if type(v) is not dict or len(v) != n:
            return _NO
        for k, x in v.items():
            t = type(x)
            if (t is not int and t is not float) or k not in acc:
                return _NO
            acc[k] = fn(acc[k], x)
    return acc


def combine(values: list, reduction: str):
    """Combine values (numbers, arrays, or pytrees of them; lists for ``concat``) in
    order. Numbers and flat dicts of numbers (the usual metrics) are combined directly in
    Python (measured 14.6 -> ~1 µs for two small dicts); arrays and deeper pytrees with
    the numba kernels. None entries (a rank with no shards) are skipped."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    if reduction == "concat":
        out: list = []
        for v in values:
            out.extend(v if isinstance(v, list) else [v])
        return out
    fast = _combine_flat(values, reduction)
    if fast is not _NO:
        return fast
    shape = _scalar_shape(values[0])
    if reduction in ("sum", "product") and (shape is bool or (
            isinstance(shape, tuple) and any(t is bool for _, t in shape))):
        shape = None  # summing bools counts (int64): the numba path says so
    if shape is not None and all(_scalar_shape(v) == shape for v in values[1:]):
        fn = _PY[reduction]
        bool_result = reduction in ("bool_and", "bool_or")
        if type(values[0]) is dict:
            acc = dict(values[0])
            for v in values[1:]:
                for k in acc:
                    acc[k] = fn(acc[k], v[k])
            return {k: bool(x) for k, x in acc.items()} if bool_result else acc
        acc = values[0]
        for v in values[1:]:
            acc = fn(acc, v)
        return bool(acc) if bool_result else acc
    spec = resolve_op(_OPS[reduction])
    flats = [flatten(v) for v in values]
    first = flats[0]
    if first.kind == OBJECT:
        raise E.ShardGroupError(f"reduction {reduction!r} needs numbers, arrays or pytrees "
                                f"of them; got {type(first.obj).__name__}")
    for f in flats[1:]:
        if f.treedef != first.treedef or f.leaf_meta() != first.leaf_meta():
            raise E.ShardGroupError(f"reduction {reduction!r}: shards returned values of "
                                    "different structure, dtypes or shapes")
    kernel = local_combiner(spec)
    leaves = []
    for i, leaf in enumerate(first.leaves):
        wd = work_dtype(spec, leaf.dtype)
        acc = leaf.astype(wd).reshape(-1).copy()
        for f in flats[1:]:
            kernel(acc, f.leaves[i].astype(wd).reshape(-1))
        leaves.append(acc.reshape(leaf.shape))
    return unflatten(first, leaves)


class GroupReductions:
    """This rank's part in the job's group reductions (and, on rank 0, the sequencer)."""

    def __init__(self, node):
        self._node = node
        node.system.register("gred_req", lambda src, plan: self._sequence(plan),
                             owner="group reductions",
                             payload="a checked plan: for rank 0 to number and broadcast")
        node.system.register("gred", lambda src, plan: self.receive(plan),
                             owner="group reductions",
                             payload="a numbered plan: every rank runs it in seq order")
        self._next_seq = 0          # rank 0: the next number to hand out
        self._waiting: dict = {}    # seq -> spec, received but not yet run
        self._expect = 0            # the next seq this rank must run
        self._running = None
        self._broken: str | None = None

    # ---- the caller's side -----------------------------------------------------------

    def request(self, spec: dict, frm: str, done, ctx=None) -> None:
        """Validate and send to the sequencer; ``done`` gets the reply on this rank.
        ``ctx``: the caller's request context, which every shard's map op runs in."""
        node = self._node
        try:
            plan = self._check(spec, ctx)
            check_op(plan["map_function"]["op"], plan["kind"])
            check_op(plan["target"], plan["kind"])
            plan["ctx"] = ctx
        except (E.ShardGroupError, ValueError) as exc:
            done(False, exc if isinstance(exc, E.PlexError) else E.ShardGroupError(str(exc)))
            return
        # the reduction's own timeout fires first (ShardTimeout); this one is a backstop
        corr = node.pending.add(done, f"$group:{plan['group_id']}", plan["kind"],
                                plan["timeout_ms"] + 1000)
        plan.update(origin=node.rank, corr=corr)
        if node.rank == 0:
            self._sequence(plan)
        else:
            node.system.post(0, "gred_req", plan)

    def _check(self, spec, ctx=None) -> dict:
        if not isinstance(spec, dict):
            raise E.ShardGroupError(f"reduce_shard_group takes a dict, got "
                                    f"{type(spec).__name__}")
        allowed = {"group_id", "map_function", "reduction", "target", "timeout_ms", "all"}
        unknown = set(spec) - allowed
        if unknown:
            raise E.ShardGroupError(f"reduce_shard_group: unknown key(s) {sorted(unknown)}; "
                                    f"expected {sorted(allowed - {'all'})}")
        group = self._node.shards.get(spec.get("group_id"), ctx)  # the tenant check
        mf = spec.get("map_function")
        if not isinstance(mf, dict) or not isinstance(mf.get("op"), str):
            raise E.ShardGroupError("map_function must be a dict with an 'op' (the query "
                                    "each shard answers)")
        reduction = spec.get("reduction", "sum")
        if reduction not in REDUCTIONS:
            raise E.ShardGroupError(f"reduction must be one of {list(REDUCTIONS)}, got "
                                    f"{reduction!r}")
        timeout = spec.get("timeout_ms", 10000)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise E.ShardGroupError(f"timeout_ms must be > 0, got {timeout!r}")
        target = spec.get("target", "reduced")
        if not isinstance(target, str) or not target:
            raise E.ShardGroupError(f"target must be an op name, got {target!r}")
        return {"group_id": group.group_id, "group_key": list(group.key),
                "map_function": dict(mf), "reduction": reduction,
                "timeout_ms": float(timeout), "all": bool(spec.get("all")), "target": target,
                "kind": "all_reduce_shard_group" if spec.get("all") else "reduce_shard_group"}

    # ---- sequencing (rank 0) and ordering (every rank) --------------------------------

    def _sequence(self, plan: dict) -> None:
        plan["seq"] = self._next_seq
        self._next_seq += 1
        node = self._node
        node.system.broadcast("gred", plan)
        # the other ranks start their part when this arrives: send it before starting
        # this rank's own part (which would otherwise delay it until the loop flushes)
        node.flush_now()
        self.receive(plan)

    def receive(self, plan: dict) -> None:
        self._waiting[plan["seq"]] = plan
        self._run_next()

    def _run_next(self) -> None:
        if self._running is not None:
            return
        plan = self._waiting.pop(self._expect, None)
        if plan is None:
            return
        self._expect += 1
        self._running = plan
        _Run(self, plan).start()

    def finished(self) -> None:
        self._running = None
        self._run_next()


class _Run:
    """One group reduction on this rank: local asks, local combine, exchange, combine."""

    def __init__(self, owner: GroupReductions, plan: dict):
        self.owner = owner
        self.node = owner._node
        self.plan = plan
        self.t0 = time.perf_counter()

    def start(self) -> None:
        node, plan = self.node, self.plan
        if self.owner._broken is not None:
            self._exchange(_FAILED, 0, 0, f"group reductions are unusable: "
                                          f"{self.owner._broken}")
            return
        try:
            group = node.shards.by_key(plan["group_key"])  # checked where it entered
        except E.ShardGroupError:
            self._exchange(_EMPTY, 0, 0, None)  # destroyed meanwhile: nothing here
            return
        self.group = group
        local = [aid for aid, r in zip(group.shard_actor_ids, group.rank_of_shard)
                 if r == node.rank]
        self.local = local
        if not local:
            self._exchange(_EMPTY, 0, 0, None)
            return
        mf = plan["map_function"]
        node.start_ask_many(local, mf["op"], mf, plan["timeout_ms"], len(local),
                            f"$group:{group.group_id}", self._on_local, plan.get("ctx"))

    def _on_local(self, results) -> None:
        good = [r[1] for r in results if r is not None and r[0]]
        failed = [aid for aid, r in zip(self.local, results) if r is None or not r[0]]
        if failed:
            self._exchange(_FAILED, len(good), len(failed), f"shards {failed} did not answer "
                           f"{self.plan['map_function']['op']!r}")
            return
        try:
            partial = combine(good, self.plan["reduction"])
        except (E.ShardGroupError, ValueError, TypeError) as exc:
            self._exchange(_FAILED, len(good), 0, str(exc))
            return
        self._exchange(_DATA, len(good), 0, partial)

    def _exchange(self, status, answered, failed, payload) -> None:
        node = self.node
        self.t_exchange = time.perf_counter()
        data = pickle.dumps(payload, 5) if status != _EMPTY else b""
        slot = bytearray(_SLOT)
        _HEAD.pack_into(slot, 0, status, answered, failed, len(data))
        if len(data) <= _SLOT - _HEAD.size:
            slot[_HEAD.size:_HEAD.size + len(data)] = data
        self.data = data
        self.slots = bytearray(_SLOT * node.size)
        req = node.group_comm.Iallgather([slot, MPI.BYTE], [self.slots, MPI.BYTE])
        node.add_background(req, self._on_slots, self.plan["timeout_ms"] / 1000.0,
                            self._on_timeout)

    def _on_slots(self) -> None:
        node = self.node
        heads = [_HEAD.unpack_from(self.slots, r * _SLOT) for r in range(node.size)]
        self.heads = heads
        if any(h[3] > _SLOT - _HEAD.size for h in heads):  # someone's partial is large
            counts = [h[3] if h[0] == _DATA else 0 for h in heads]
            displs = [sum(counts[:r]) for r in range(node.size)]
            self.big = bytearray(sum(counts))
            mine = self.data if heads[node.rank][0] == _DATA else b""
            req = node.group_comm.Iallgatherv([mine, MPI.BYTE],
                                              [self.big, (counts, displs), MPI.BYTE])
            self.counts, self.displs = counts, displs
            node.add_background(req, self._on_big, self.plan["timeout_ms"] / 1000.0,
                                self._on_timeout)
            return
        view = memoryview(self.slots)  # no copies: pickle reads the slots in place
        parts = [pickle.loads(view[r * _SLOT + _HEAD.size:r * _SLOT + _HEAD.size + h[3]])
                 if h[0] != _EMPTY else None for r, h in enumerate(heads)]
        self._finish(parts)

    def _on_big(self) -> None:
        parts = []
        for r, h in enumerate(self.heads):
            if h[0] == _DATA:
                d, c = self.displs[r], self.counts[r]
                parts.append(pickle.loads(bytes(self.big[d:d + c])))
            elif h[0] == _FAILED and h[3] <= _SLOT - _HEAD.size:
                parts.append(pickle.loads(bytes(self.slots[r * _SLOT + _HEAD.size:
                                                           r * _SLOT + _HEAD.size + h[3]])))
            else:
                parts.append(None)
        self._finish(parts)

    def _finish(self, parts) -> None:
        plan, node = self.plan, self.node
        failures = [(r, parts[r]) for r, h in enumerate(self.heads) if h[0] == _FAILED]
        answered = sum(h[1] for h in self.heads)
        ranks = [r for r, h in enumerate(self.heads) if h[0] != _EMPTY]
        if failures:
            detail = "; ".join(f"rank {r}: {m}" for r, m in failures)
            self._reply(False, E.ShardFailure(
                f"{plan['kind']} on {plan['group_id']!r} failed: {detail}"))
            return
        try:
            value = combine([parts[r] for r in ranks], plan["reduction"])
        except (E.ShardGroupError, ValueError, TypeError) as exc:
            self._reply(False, E.ShardGroupError(f"{plan['kind']}: {exc}"))
            return
        reached = 0
        if plan["all"] and getattr(self, "local", None):
            for aid in self.local:  # every shard receives the reduced value too
                node.send_from(f"$group:{plan['group_id']}", aid, plan["target"], {
                    "value": value, "group_id": plan["group_id"],
                    "reduction": plan["reduction"]}, plan.get("ctx"))
                reached += 1
        now = time.perf_counter()
        self._reply(True, {"group_id": plan["group_id"], "reduction": plan["reduction"],
                           "value": value, "shards_answered": answered,
                           "ranks": ranks, "elapsed_ms": (now - self.t0) * 1e3,
                           # where the time went on this rank: asking the local shards
                           # and combining, then the cross-rank exchange and final combine
                           "local_ms": (self.t_exchange - self.t0) * 1e3,
                           "exchange_ms": (now - self.t_exchange) * 1e3,
                           "delivered_on_this_rank": reached})

    def _on_timeout(self) -> None:
        self.owner._broken = (f"{self.plan['kind']} #{self.plan['seq']} timed out: not every "
                              "rank took part")
        self._reply(False, E.ShardTimeout(
            f"{self.plan['kind']} on {self.plan['group_id']!r}: not every rank took part "
            f"within {self.plan['timeout_ms']:g} ms; group reductions are disabled until "
            "the job restarts"))

    def _reply(self, ok, value) -> None:
        plan, node = self.plan, self.node
        if plan["origin"] == node.rank:
            w = node.pending.take(plan["corr"])
            if w is not None:
                w[0](ok, value)
        elif plan["all"] and ok:
            pass  # other ranks deliver to their shards only
        self.owner.finished()
