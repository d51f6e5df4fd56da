"""The state half of ``host``: KV, TupleSpace (``host.ts``) and channels
(``host.channel``), scoped by the caller's request context.

Every call checks the calling actor's capability (kv, ts, channel), builds the scope
from its request context (and, for KV, its actor type) and sends the request to the
rank that owns the stores (:mod:`plexhpc.storage.service`). Callers name keys, patterns
and channels only within that scope; there is no argument that reaches outside it.
"""

from __future__ import annotations

from greenlet import getcurrent

from .. import errors as E
from ..context import DEFAULT_CTX, require
from ..runtime.current import here as _here

__all__ = ["KVCalls", "TupleSpaceCalls", "ChannelCalls", "SHARED_OWNER", "scoped_group"]

#: the KV owner of keys shared by every actor type of a tenant's namespace
SHARED_OWNER = "*shared*"
_SEP = "\x1f"  # cannot occur in a tenant or namespace label (they are printable)


def current_ctx(cell):
    """The context the running code acts in: a workflow run keeps the context it was
    started in, even while the actor handles other callers' messages."""
    return getattr(getcurrent(), "ctx", None) or cell.ctx


def _call(node, prim, op, scope, args, timeout_ms=0, who=None):
    """``who``: the calling actor's id, which channel leases are held by."""
    svc = node.state_service
    if svc is not None and not timeout_ms:  # the stores are here: no message, no wait
        return svc.call(prim, op, scope, args, who)
    caller = getcurrent()

    def start(done):
        def answered(ok, value):
            if ok and value is not None and (caller.dead or getattr(caller, "killed", False)):
                _give_back(node, prim, op, scope, args, value, who)
            done(ok, value)
        node.state_request((prim, op, scope, args, timeout_ms, who), answered)
    return node.wait_from_actor(start)


def _give_back(node, prim, op, scope, args, value, who=None) -> None:
    """The caller was killed (its actor crashed or was stopped) while it waited: what
    was taken for it goes back, so nothing is lost with it."""
    if prim == "ts" and op == "take":
        req = ("ts", "write", scope, (value,), 0, who)
    elif prim == "ch" and op == "receive":
        req = ("ch", "nack", scope, (args[0], value["msg_id"], True), 0, who)
    else:
        return
    node.state_request(req, lambda ok, v: None)


def _key(key) -> str:
    if not isinstance(key, str) or not key:
        raise E.InvalidMessage(f"a KV key is a non-empty str, got {key!r}")
    return key


_MAX_WAIT_MS = 7 * 24 * 3600 * 1000.0
_MAX_TTL_MS = 100 * 365 * 24 * 3600 * 1000  # as the store's bound (storage.scope.MAX_MS)
_MAX_LIMIT = 2 ** 63 - 1  # SQLite's largest integer


def _limit(limit) -> int:
    """A listing limit: an int in 0..2**63-1 (past that SQLite cannot bind it)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= _MAX_LIMIT:
        shown = "a larger int" if isinstance(limit, int) and limit > _MAX_LIMIT else repr(limit)
        raise E.InvalidMessage(f"limit must be an int between 0 and {_MAX_LIMIT}, got "
                               f"{shown}")
    return limit


def _timeout(timeout_ms, what: str = "timeout_ms") -> float:
    """A finite wait in milliseconds: >= 0, at most a week (inf or nan would park the
    caller, and with it its actor, for ever). InvalidMessage (a ValueError) otherwise."""
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, float)) or not (
            0 <= timeout_ms <= _MAX_WAIT_MS):
        raise E.InvalidMessage(f"{what} must be a number of milliseconds between 0 and "
                         f"{_MAX_WAIT_MS:.0f} (a week), got {timeout_ms!r}")
    return float(timeout_ms)


def scoped_group(ctx, group: str) -> str:
    """A process group's name inside the host: its tenant and namespace first."""
    if not isinstance(group, str) or not group:
        raise ValueError(f"a process group name is a non-empty str, got {group!r}")
    ctx = ctx or DEFAULT_CTX
    return f"{ctx[0]}{_SEP}{ctx[1]}{_SEP}{group}"


class KVCalls:
    """``host.kv_*``: a key-value store private to the calling actor's type (or, with
    ``shared=True``, shared by every actor type) within the request's tenant and
    namespace. Values are plain data (dict/list/str/int/float/bytes/numpy arrays)."""

    @staticmethod
    def _kv(op, key, args, shared):
        node, cell = _here()
        require(cell, "kv")
        owner = SHARED_OWNER if shared else cell.spec.type_name
        ctx = current_ctx(cell)
        return _call(node, "kv", op, (ctx[0], ctx[1], owner), args)

    def kv_get(self, key: str, default=None, *, shared: bool = False):
        """The value under ``key``, or ``default``."""
        return self._kv("get", key, (_key(key), default), shared)

    def kv_put(self, key: str, value, *, shared: bool = False) -> None:
        self._kv("put", key, (_key(key), value), shared)

    def kv_put_with_ttl(self, key: str, value, ttl_ms: float, *, shared: bool = False) -> None:
        """Store ``value`` for ``ttl_ms`` milliseconds; afterwards it reads as absent."""
        if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, (int, float)) or not (
                0 < ttl_ms <= _MAX_TTL_MS):
            raise ValueError(f"ttl_ms must be > 0 (and finite, at most {_MAX_TTL_MS} ms: "
                             f"100 years), got {ttl_ms!r}")
        self._kv("put_with_ttl", key, (_key(key), value, max(1, int(ttl_ms))), shared)

    def kv_delete(self, key: str, *, shared: bool = False) -> bool:
        """Remove ``key``; False if it was not there."""
        return self._kv("delete", key, (_key(key),), shared)

    def kv_list(self, prefix: str = "", *, shared: bool = False, limit: int | None = None
                ) -> list:
        """Keys starting with ``prefix``, sorted."""
        if not isinstance(prefix, str):
            raise E.InvalidMessage(f"prefix must be a str, got {prefix!r}")
        if limit is not None:
            _limit(limit)
        return self._kv("list", prefix, (prefix, limit), shared)

    def kv_cas(self, key: str, expected, new, *, shared: bool = False) -> bool:
        """Set ``key`` to ``new`` only if it holds ``expected`` (None: only if absent);
        returns whether it did."""
        return self._kv("cas", key, (_key(key), expected, new), shared)

    def kv_increment(self, key: str, delta: int = 1, *, shared: bool = False) -> int:
        """Add ``delta`` to the integer under ``key`` (absent: 0); returns the new value."""
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise ValueError(f"delta must be an int, got {delta!r}")
        return self._kv("increment", key, (_key(key), delta), shared)


def _scope():
    node, cell = _here()
    ctx = current_ctx(cell)
    return node, cell, (ctx[0], ctx[1])


def _tuple(value, what):
    if not isinstance(value, (list, tuple)) or not value:
        raise E.InvalidMessage(f"{what} must be a non-empty list or tuple, got {value!r}")
    return tuple(value)


class TupleSpaceCalls:
    """``host.ts``: a Linda tuple space of the request's tenant and namespace, reached
    from any rank. Patterns are tuples where None matches anything."""

    @staticmethod
    def _ts(op, args, timeout_ms=0.0):
        node, cell, scope = _scope()
        require(cell, "ts")
        return _call(node, "ts", op, scope, args, timeout_ms)

    def write(self, tup) -> None:
        self._ts("write", (_tuple(tup, "a tuple"),))

    def read(self, pattern, timeout_ms: float = 5000):
        """The oldest matching tuple, waiting up to ``timeout_ms`` for one to be
        written; raises :class:`~plexhpc.errors.StateTimeout` if none comes."""
        t = _timeout(timeout_ms)
        return self._ts("read", (_tuple(pattern, "a pattern"),), t or 0.001)

    def take(self, pattern, timeout_ms: float = 5000):
        """As :meth:`read`, and removes the tuple (exactly one taker gets it)."""
        t = _timeout(timeout_ms)
        return self._ts("take", (_tuple(pattern, "a pattern"),), t or 0.001)

    def read_nowait(self, pattern):
        """The oldest matching tuple, or None at once."""
        return self._ts("read", (_tuple(pattern, "a pattern"),))

    def take_nowait(self, pattern):
        """Remove and return the oldest matching tuple, or None at once."""
        return self._ts("take", (_tuple(pattern, "a pattern"),))

    def read_all(self, pattern) -> list:
        """Every matching tuple, oldest first."""
        return self._ts("read_all", (_tuple(pattern, "a pattern"),))

    def count(self, pattern=None) -> int:
        return self._ts("count", (None if pattern is None else _tuple(pattern, "a pattern"),))


def _channel_name(channel) -> str:
    if not isinstance(channel, str) or not channel:
        raise E.InvalidMessage(f"a channel name is a non-empty str, got {channel!r}")
    return channel


class ChannelCalls:
    """``host.channel``: durable queues with at-least-once delivery, in the request's
    tenant and namespace. ``receive`` leases a message for ``visibility_ms``; ``ack``
    deletes it; ``nack`` requeues (or dead-letters); a lease that runs out redelivers it
    with ``delivery_count`` + 1, and too many deliveries dead-letter it."""

    @staticmethod
    def _ch(op, args, timeout_ms=0.0):
        node, cell, scope = _scope()
        require(cell, "channel")
        return _call(node, "ch", op, scope, args, timeout_ms, cell.id)

    def send(self, channel: str, msg_type: str, payload=None, *,
             idempotency_key: str | None = None) -> str:
        """Enqueue; returns the msg_id. A repeated ``idempotency_key`` enqueues nothing
        and returns the first msg_id."""
        if not isinstance(msg_type, str) or not msg_type:
            raise E.InvalidMessage(f"msg_type must be a non-empty str, got {msg_type!r}")
        if idempotency_key is not None and (not isinstance(idempotency_key, str)
                                            or not idempotency_key):
            raise E.InvalidMessage(f"idempotency_key must be a non-empty str, got "
                                   f"{idempotency_key!r}")
        return self._ch("send", (_channel_name(channel), msg_type, payload, idempotency_key))

    def receive(self, channel: str, timeout_ms: float = 0, visibility_ms: float = 30000):
        """The oldest ready message as ``{msg_id, msg_type, payload, delivery_count,
        enqueued_at_ms}``, leased to the caller; waits up to ``timeout_ms`` (0: not at
        all) and returns None if nothing came."""
        t = _timeout(timeout_ms)
        if not _timeout(visibility_ms, "visibility_ms"):
            raise ValueError(f"visibility_ms must be > 0, got {visibility_ms!r}")
        try:
            return self._ch("receive", (_channel_name(channel), max(1, int(visibility_ms))), t)
        except E.StateTimeout:
            return None

    def ack(self, channel: str, msg_id: str) -> None:
        """Done with a leased message: it is deleted. UnknownLease if it is not leased."""
        self._ch("ack", (_channel_name(channel), msg_id))

    def nack(self, channel: str, msg_id: str, requeue: bool = True) -> None:
        """Give a leased message back: ready again now, or dead-lettered."""
        self._ch("nack", (_channel_name(channel), msg_id, bool(requeue)))

    def depth(self, channel: str) -> dict:
        """``{ready, leased, dead}`` counts."""
        return self._ch("depth", (_channel_name(channel),))

    def dead_letters(self, channel: str, limit: int = 100) -> list:
        """The channel's dead messages in the order they died, at most ``limit``."""
        return self._ch("dead_letters", (_channel_name(channel), _limit(limit)))
