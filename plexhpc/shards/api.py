"""The shard-group calls as the hub runs them, for any caller (``host.*`` and the driver
handle reach them through :mod:`plexhpc.actors.calls`).

Every function runs on the node's loop and ends by calling ``done(ok, value)``.
Replies say what happened (shards reached, responses counted, latencies), as the
reference's benchmark expects.

Each call acts for the caller's request context ``ctx``: it names groups within the
caller's tenant (see :mod:`plexhpc.shards.groups`), and asks the shards in that context.
``destroy`` and ``barrier`` take ``ctx`` too; a caller that does not pass it gets the
context of the handler it runs in (none on a driver's thread: the system).
"""

from __future__ import annotations

from greenlet import getcurrent

from .. import errors as E
from ..actors.host_state import current_ctx
from ..runtime.cell import check_message
from .groups import AGGREGATIONS, aggregate

__all__ = ["create", "destroy", "route", "scatter_gather", "broadcast", "barrier", "check_op"]


def _int(spec, key, default, minimum=0):
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise E.ShardGroupError(f"{key} must be a number >= {minimum}, got {value!r}")
    return value


def _check(spec, allowed, call):
    if not isinstance(spec, dict):
        raise E.ShardGroupError(f"{call} takes a dict, got {type(spec).__name__}")
    unknown = set(spec) - set(allowed)
    if unknown:
        raise E.ShardGroupError(f"{call}: unknown key(s) {sorted(unknown)}; expected "
                                f"{sorted(allowed)}")


def _guard(done, fn):
    try:
        fn()
    except (E.ShardGroupError, E.ActorNotFound, E.InvalidMessage) as exc:
        done(False, exc)


#: "the caller did not say": take the context of the running handler
CALLER = object()


def caller_ctx(ctx=CALLER):
    """``ctx`` as given, or, when not given, the context the running handler acts in
    (None off a handler: the driver's thread, which acts as the system)."""
    if ctx is not CALLER:
        return ctx
    cell = getattr(getcurrent(), "cell", None)
    return current_ctx(cell) if cell is not None else None


def check_op(op, call):
    """An op a caller may send: a str that is not one only the runtime sends."""
    if not isinstance(op, str) or not op:
        raise E.ShardGroupError(f"{call}: op must be a non-empty str, got {op!r}")
    check_message(op, None, call)
    return op


def create(node, frm, spec, done, ctx=None, caps=None):
    """``ctx`` and ``caps``: the creator's context and capabilities, which the shards
    inherit (a shard never gets more capabilities than its creator)."""
    node.shards.create(spec, done, ctx, caps)


def destroy(node, frm, group_id, done, ctx=CALLER):
    node.shards.destroy(group_id, done, caller_ctx(ctx))


def route(node, frm, group_id, key, op, payload, timeout_ms, done, ctx=None):
    def go():
        check_op(op, "route")
        _, aid = node.shards.route(group_id, key, ctx)
        node.start_ask(aid, op, payload, timeout_ms, done, frm, ctx)
    _guard(done, go)


def _shard_rows(group, results):
    rows = []
    for i, (aid, res) in enumerate(zip(group.shard_actor_ids, results)):
        if res is None:
            rows.append({"shard_id": i, "shard_actor_id": aid, "response": None,
                         "latency_ms": None, "success": False,
                         "error": "not waited for (min_responses reached first)"})
            continue
        ok, value, latency, _ = res
        rows.append({"shard_id": i, "shard_actor_id": aid,
                     "response": value if ok else None, "latency_ms": round(latency, 3),
                     "success": bool(ok),
                     "error": None if ok else f"{type(value).__name__}: {value}"})
    return rows


def scatter_gather(node, frm, spec, done, ctx=None):
    def go():
        _check(spec, ("group_id", "query", "aggregation", "min_responses", "timeout_ms"),
               "scatter_gather")
        group = node.shards.get(spec.get("group_id"), ctx)
        query = spec.get("query")
        if not isinstance(query, dict) or not isinstance(query.get("op"), str):
            raise E.ShardGroupError("scatter_gather: query must be a dict with an 'op'")
        check_op(query["op"], "scatter_gather")
        how = spec.get("aggregation", "concat")
        if how not in AGGREGATIONS:
            raise E.ShardGroupError(f"scatter_gather: aggregation must be one of "
                                    f"{list(AGGREGATIONS)}, got {how!r}")
        need = int(_int(spec, "min_responses", group.shard_count, 1))
        if need > group.shard_count:
            raise E.ShardGroupError(f"scatter_gather: min_responses {need} exceeds the "
                                    f"group's {group.shard_count} shards")
        timeout = _int(spec, "timeout_ms", 30000, 1)

        def on_results(results):
            rows = _shard_rows(group, results)
            good = [(r[3], rows[i]["response"]) for i, r in enumerate(results)
                    if r is not None and r[0]]
            stats = {"shards_queried": group.shard_count,
                     "shards_responded": len(good),
                     "shards_failed": sum(1 for r in rows if r["success"] is False
                                          and r["latency_ms"] is not None)}
            try:
                result = aggregate(how, [resp for _, resp in good],
                                   [resp for _, resp in sorted(good, key=lambda x: x[0])])
            except E.ShardGroupError as exc:
                done(False, exc)
                return
            reply = {"result": result, "shard_responses": rows, "stats": stats}
            if len(good) < need:
                missing = [r["shard_id"] for r in rows if not r["success"]]
                done(False, E.ScatterGatherIncomplete(
                    f"scatter_gather on {group.group_id!r}: {len(good)} of {need} required "
                    f"responses within {timeout:g} ms; missing shards {missing}",
                    missing=missing, partial=reply))
                return
            done(True, reply)

        node.start_ask_many(group.shard_actor_ids, query["op"], query, timeout, need, frm,
                            on_results, ctx)
    _guard(done, go)


def broadcast(node, frm, spec, done, ctx=None):
    def go():
        _check(spec, ("group_id", "message", "min_acks", "timeout_ms"), "broadcast_shard_group")
        group = node.shards.get(spec.get("group_id"), ctx)
        message = spec.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("op"), str):
            raise E.ShardGroupError("broadcast_shard_group: message must be a dict with an "
                                    "'op'")
        check_op(message["op"], "broadcast_shard_group")
        need = int(_int(spec, "min_acks", group.shard_count, 0))
        timeout = _int(spec, "timeout_ms", 10000, 1)

        def on_results(results):
            rows = _shard_rows(group, results)
            acks = sum(1 for r in rows if r["success"])
            reply = {"group_id": group.group_id, "shard_count": group.shard_count,
                     "acks": acks, "shards_reached": acks,
                     "failed": [r["shard_id"] for r in rows if not r["success"]]}
            if acks < need:
                done(False, E.ScatterGatherIncomplete(
                    f"broadcast_shard_group on {group.group_id!r}: {acks} of {need} acks "
                    f"within {timeout:g} ms; failed shards {reply['failed']}",
                    missing=reply["failed"], partial=reply))
                return
            done(True, reply)

        node.start_ask_many(group.shard_actor_ids, message["op"], message, timeout,
                            group.shard_count, frm, on_results, ctx)
    _guard(done, go)


def barrier(node, frm, spec, done, ctx=CALLER):
    ctx = caller_ctx(ctx)

    def go():
        _check(spec, ("group_id", "timeout_ms"), "barrier_shard_group")
        group = node.shards.get(spec.get("group_id"), ctx)
        timeout = _int(spec, "timeout_ms", 10000, 1)

        def on_results(results):
            rows = _shard_rows(group, results)
            arrived = sum(1 for r in rows if r["success"])
            slowest = max((r["latency_ms"] for r in rows if r["success"]), default=0.0)
            reply = {"group_id": group.group_id, "shard_count": group.shard_count,
                     "arrived": arrived, "slowest_ms": slowest}
            if arrived < group.shard_count:
                missing = [r["shard_id"] for r in rows if not r["success"]]
                done(False, E.ScatterGatherIncomplete(
                    f"barrier_shard_group on {group.group_id!r}: shards {missing} did not "
                    f"arrive within {timeout:g} ms", missing=missing, partial=reply))
                return
            done(True, reply)

        node.start_ask_many(group.shard_actor_ids, "__ping__", None, timeout,
                            group.shard_count, frm, on_results, ctx)
    _guard(done, go)
