"""The job's shared state stores, KV, TupleSpace and channels, owned by one rank.

One rank (``[state] rank``, default 0) opens ``<state dir>/shared.sqlite`` and serves
every request; other ranks reach it with system messages on the same FIFO channel as
their actor messages, so a write followed by a message to another rank is visible
there. Requests arrive already scoped: the host builds the scope from the caller's
request context (and, for KV, its actor type), never from the caller's arguments, so
no key or pattern can name another tenant's data.

Blocking calls (``ts.take`` / ``ts.read`` with a timeout, ``channel.receive`` with a
timeout) park on the owner until a write or a send wakes them, or the timeout answers
with :class:`~plexhpc.errors.StateTimeout`. The caller's handler waits; its rank and
the owner's loop do not.
"""

from __future__ import annotations

import os
import time

from .. import errors as E
from ..log import get_logger

__all__ = ["StateService", "KV_OPS", "TS_OPS", "CHANNEL_OPS"]

log = get_logger("state")

KV_OPS = ("get", "put", "put_with_ttl", "delete", "list", "cas", "increment")
TS_OPS = ("write", "read", "take", "read_all", "count")
CHANNEL_OPS = ("send", "receive", "ack", "nack", "depth", "dead_letters")


_MAX_WAIT_MS = 7 * 24 * 3600 * 1000  # the longest a blocking call may wait (a week)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _foreign(what: str, exc: BaseException) -> E.StateError:
    """The StateError a caller gets for an exception that is not a plexhpc error: it
    names the type, and the traceback goes to the state rank's log."""
    log.error("%s failed in the state service: %s: %s", what, type(exc).__name__, exc,
              exc_info=exc)
    return E.StateError(f"{what} failed in the state service: {type(exc).__name__}: "
                        f"{exc}; nothing was changed. This is a bad argument or a bug: "
                        f"check the call, and report it if the arguments are right")


class StateService:
    """The stores on the owning rank, and the parked blocking requests."""

    def __init__(self, node):
        self.node = node
        self.config = node.config.state
        self._conn = None
        self.kv = self.ts = self.channels = None
        self._ch_waiters: dict = {}   # (scope, channel) -> [done, visibility, alive, who]
        self._flush_armed = False
        self._holders: dict = {}  # (scope, channel, msg_id) -> the actor holding its lease

    def _open(self) -> None:
        """Open the file and build every store, all or nothing: on any failure the
        connection is closed and nothing is kept, so the next call tries again (and
        fails with the same clear error) instead of meeting a half-built service."""
        if self._conn is not None:
            return
        from .channels import ChannelStore
        from .db import open_db
        from .durable import secure_state_dir
        from .kv import KVStore
        from .tuplespace import TupleSpace
        path = os.path.join(self.config.dir, "shared.sqlite")
        try:
            secure_state_dir(self.config.dir)
            conn = open_db(path, durability=getattr(self.config, "durability", "normal"))
        except Exception as exc:  # noqa: BLE001
            raise E.StateError(f"cannot open the shared state file {path}: {exc}; set "
                               "[state] dir (or PLEXHPC_STATE_DIR) to a writable "
                               "directory") from exc
        try:
            kv = KVStore(conn, now_ms=_now_ms)
            ts = TupleSpace(conn)
            channels = ChannelStore(conn, now_ms=_now_ms,
                                    max_deliveries=self.config.max_deliveries)
        except Exception as exc:  # noqa: BLE001 - the message says what to fix
            conn.close()
            raise E.StateError(f"cannot load the shared state file {path}: "
                               f"{type(exc).__name__}: {exc}; restore it from a backup, "
                               f"or move it away to start with empty stores") from exc
        self.kv, self.ts, self.channels = kv, ts, channels
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self.channels.flush()  # acks held for the next commit are written now
            except Exception as exc:  # noqa: BLE001 - still close; the acks redeliver
                _foreign("flushing the channel acks at close", exc)
            finally:
                self._conn.close()
                self._conn = None

    def _flush_soon(self) -> None:
        """The channel store writes acks with its next commit; when no call follows, they
        are written within 10 ms, so an idle job never holds an ack back for long."""
        if not self._flush_armed:
            self._flush_armed = True

            def flush():
                self._flush_armed = False
                if self._conn is not None:
                    self.channels.flush()
            self.node.call_later(0.01, self._guarded("channel ack flush", flush))

    @staticmethod
    def _guarded(what: str, fn):
        """``fn`` for the node's timers: an exception it raises is logged, never let
        into the loop (the acks it could not write are written with the next call)."""
        def run():
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - logged; the loop must go on
                _foreign(what, exc)
        return run

    # ---- requests -----------------------------------------------------------------

    def call(self, prim, op, scope, args, who=None):
        """Answer a request that does not wait, now: the value, or an exception raised
        (InvalidMessage for bad arguments). The state rank's own actors call this
        directly; everything else comes through :meth:`handle`.

        Only plexhpc errors leave this method: a TypeError/ValueError from a store is
        a bad argument (InvalidMessage); any other exception (an OverflowError from
        SQLite, a bug) becomes a StateError naming its type, so no request, however
        malformed, can take the state rank down. A store call that failed changed
        nothing (each is one transaction)."""
        try:
            if self._conn is None:
                self._open()
            if type(args) not in (tuple, list):
                raise E.InvalidMessage(f"{prim}.{op}: the arguments must be a tuple, got "
                                       f"{type(args).__name__}")
            if prim == "kv":
                if op not in KV_OPS:
                    raise E.StateError(f"unknown KV op {op!r}; expected one of {list(KV_OPS)}")
                return getattr(self.kv, op)(scope, *args)
            if prim == "ts":
                if op not in TS_OPS:
                    raise E.StateError(f"unknown TupleSpace op {op!r}; expected one of "
                                       f"{list(TS_OPS)}")
                return getattr(self.ts, op)(scope, *args)
            if prim == "ch":
                return self._channel(op, scope, args, who)
            raise E.StateError(f"unknown state primitive {prim!r}; expected kv, ts or ch")
        except E.PlexError:
            raise
        except (TypeError, ValueError) as exc:
            raise E.InvalidMessage(f"{prim}.{op}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - see the docstring
            raise _foreign(f"{prim}.{op}", exc) from None

    def handle(self, req, done) -> None:
        """Run one request; ``done(ok, value)`` now or, for a blocking call that found
        nothing yet, when a write/send answers it or its timeout runs out.

        ``done`` is called exactly once, with an error for anything that went wrong
        (a malformed request included): nothing raised here reaches the node's loop."""
        answered = []

        def once(ok, value):
            if not answered:
                answered.append(ok)
                done(ok, value)

        try:
            if type(req) not in (tuple, list) or len(req) != 6:
                raise E.InvalidMessage("a state request is (primitive, op, scope, args, "
                                       f"timeout_ms, who), got {type(req).__name__}")
            prim, op, scope, args, timeout_ms, who = req
            if timeout_ms is not None and (
                    type(timeout_ms) not in (int, float) or not 0 <= timeout_ms <= _MAX_WAIT_MS):
                raise E.InvalidMessage(f"{prim}.{op}: timeout_ms must be a number of "
                                       f"milliseconds between 0 and {_MAX_WAIT_MS} (a "
                                       f"week), got {timeout_ms!r}")
            if prim == "ts" and op in ("read", "take") and timeout_ms:
                self._ts_wait(op, scope, args[0], timeout_ms, once)
            elif prim == "ch" and op == "receive" and timeout_ms:
                msg = self.call(prim, op, scope, args, who)
                if msg is not None:
                    once(True, msg)
                else:
                    self._park_receive(scope, args[0], args[1], timeout_ms, once, who)
            else:
                value = self.call(prim, op, scope, args, who)
                once(True, value)
        except E.PlexError as exc:
            once(False, exc)
        except Exception as exc:  # noqa: BLE001 - a malformed request, or a bug
            once(False, _foreign("state request", exc))

    def _ts_wait(self, op, scope, pattern, timeout_ms, done) -> None:
        found = self.call("ts", op, scope, (pattern,))
        if found is not None:
            done(True, found)
            return
        ts = self.ts
        state = {"done": False}

        def on_match(tup):
            if not state["done"]:
                state["done"] = True
                done(True, tup)

        handle = ts.add_waiter(scope, pattern, op == "take", on_match)

        def expire():
            if not state["done"] and ts.cancel_waiter(handle):
                state["done"] = True
                done(False, E.StateTimeout(f"ts.{op}: no tuple matching {list(pattern)!r} "
                                           f"within {timeout_ms:g} ms"))
        self.node.call_later(timeout_ms / 1000.0, self._guarded(f"ts.{op} timeout", expire))

    def _lease(self, scope, channel, msg, who):
        """Remember who holds the lease of ``msg``: only that consumer may ack or nack
        it (a consumer whose lease ran out must not settle the next consumer's)."""
        if msg is not None and who is not None:
            if len(self._holders) > 100_000:  # leases that ran out and were never settled
                self._holders.clear()
            self._holders[(scope, channel, msg["msg_id"])] = who
        return msg

    def _settle(self, scope, channel, msg_id, who) -> None:
        holder = self._holders.get((scope, channel, msg_id))
        if holder is not None and who is not None and holder != who:
            raise E.UnknownLease(f"message {msg_id} on {channel!r} is leased to another "
                                 "consumer now (this caller's lease ran out and it was "
                                 "delivered again); nothing was changed")

    def _channel(self, op, scope, args, who=None):
        ch = self.channels
        if op == "receive":
            return self._lease(scope, args[0], ch.receive(scope, *args), who)
        if op == "send":
            channel, msg_type, payload, idem = args
            result = ch.send(scope, channel, msg_type, payload, idempotency_key=idem)
            if self._ch_waiters:
                self._wake(scope, channel)
            return result
        if op == "ack":
            self._settle(scope, args[0], args[1], who)
            ch.ack(scope, *args)
            self._holders.pop((scope, args[0], args[1]), None)
            self._flush_soon()
            return None
        if op == "nack":
            self._settle(scope, args[0], args[1], who)
            ch.nack(scope, *args)
            self._holders.pop((scope, args[0], args[1]), None)
            if self._ch_waiters and (len(args) < 3 or args[2]):
                self._wake(scope, args[0])
            return None
        if op in ("depth", "dead_letters"):
            return getattr(ch, op)(scope, *args)
        raise E.StateError(f"unknown channel op {op!r}; expected one of {list(CHANNEL_OPS)}")

    def _park_receive(self, scope, channel, visibility_ms, timeout_ms, done,
                      who=None) -> None:
        key = (scope, channel)
        waiter = [done, visibility_ms, True, who]
        self._ch_waiters.setdefault(key, []).append(waiter)
        deadline = time.monotonic() + timeout_ms / 1000.0

        def expire():
            if waiter[2]:
                waiter[2] = False
                self._drop(key, waiter)
                done(False, E.StateTimeout(f"channel.receive: nothing on {channel!r} within "
                                           f"{timeout_ms:g} ms"))
        self.node.call_later(timeout_ms / 1000.0,
                             self._guarded("channel.receive timeout", expire))
        # a leased message whose lease runs out before our deadline becomes ready then
        nxt = self.channels.next_ready_in_ms(scope, channel)
        if nxt is not None and time.monotonic() + nxt / 1000.0 < deadline:
            self.node.call_later(max(nxt, 1) / 1000.0, self._guarded(
                "channel.receive wake-up", lambda: self._wake(scope, channel)))

    def _drop(self, key, waiter) -> None:
        lst = self._ch_waiters.get(key)
        if lst and waiter in lst:
            lst.remove(waiter)
            if not lst:
                del self._ch_waiters[key]

    def _wake(self, scope, channel) -> None:
        key = (scope, channel)
        lst = self._ch_waiters.get(key)
        while lst:
            waiter = lst[0]
            if not waiter[2]:
                lst.pop(0)
                continue
            msg = self._lease(scope, channel, self.channels.receive(scope, channel, waiter[1]),
                              waiter[3])
            if msg is None:
                break
            lst.pop(0)
            waiter[2] = False
            waiter[0](True, msg)
        if lst is not None and not lst:
            self._ch_waiters.pop(key, None)
