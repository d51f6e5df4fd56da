"""Durable at-least-once message queues ("channels") in SQLite.

A message is *ready* when enqueued; :meth:`ChannelStore.receive` hands out the oldest
ready one and *leases* it for a visibility timeout; :meth:`~ChannelStore.ack` deletes
it; :meth:`~ChannelStore.nack` makes it ready again (or dead); a lease that runs out
makes it ready again, so a consumer that crashed mid-message does not lose it. A message
whose lease ends after ``max_deliveries`` deliveries becomes *dead* (a dead letter)
instead of being handed out forever. Sending with an idempotency key enqueues once: a
repeat within ``idempotency_window_ms`` (a day by default) returns the first message's
id, even after that message was acked; older keys are forgotten and pruned.

Lease expiry is judged lazily against ``now_ms`` (no background sweeper): a message
whose lease has run out counts as ready (or dead) from that moment on.

Cost. The store is on the request path, so each hot call is at most one commit that
dirties one page: messages are clustered by channel and enqueue order in one table with
no secondary index, and dead letters move to a table of their own. Sends and leases are
durable when the call returns (a lease must be: its delivery count is what stops a
message that crashes its consumer from being redelivered forever). Acks are checked at
once — a wrong, repeated or late ack raises :class:`~plexhpc.errors.UnknownLease` at
once — but an ack of a lease this store handed out is written with this store's next
call (in that call's commit), or by :meth:`~ChannelStore.flush`, or with the 256th held
back: a send + receive + ack costs two commits, not three. Until written, the message
is leased, not deleted, on disk: if the process dies, or its connection is closed
without :meth:`~ChannelStore.flush`, the message is delivered again once its lease runs
out — a duplicate, which at-least-once consumers must bear anyway, never a loss. Flush
on shutdown, or pass ``defer_acks=False`` to commit every ack on its own. (The check
uses this store's record of the leases it handed out: a lease acked through another
store first, then through this one, is accepted twice. Give each database one
ChannelStore.)

:meth:`~ChannelStore.receive` steps over the messages leased ahead of the first ready
one, so it slows down with thousands of messages in flight on one channel.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Callable

from ..errors import InvalidMessage, StateError, UnknownLease
from .codec import decode, encode
from .db import ensure_schema, wall_ms, write_txn
from .scope import INT64_MAX, MAX_MS, check_int, check_name, scope_key

__all__ = ["ChannelStore"]

_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)

_INSERT = ("INSERT INTO channel_msg (q, seq, token, msg_type, payload, enqueued_at) "
           "VALUES (?, ?, ?, ?, ?, ?)")
# the oldest message that is ready or whose lease ran out: ?1 q, ?2 now
_PICK = ("SELECT seq FROM channel_msg WHERE q = ?1 AND lease_until <= ?2 "
         "ORDER BY seq LIMIT 1")
# lease it until ?3, or mark it for burial (-1) if it had its ?4 deliveries already
_SET_LEASE = ("UPDATE channel_msg SET "
              "lease_until = CASE WHEN deliveries >= ?4 THEN -1 ELSE ?3 END, "
              "deliveries = CASE WHEN deliveries >= ?4 THEN deliveries ELSE deliveries + 1 END ")
_COLUMNS = "seq, token, msg_type, payload, deliveries, enqueued_at, lease_until"
_LEASE_RETURNING = f"{_SET_LEASE} WHERE q = ?1 AND seq = ({_PICK}) RETURNING {_COLUMNS}"
_LEASE_ONE = f"{_SET_LEASE} WHERE q = ?1 AND seq = ?5"
_ACK = ("DELETE FROM channel_msg WHERE q = ? AND seq = ? AND token = ? "
        "AND lease_until > ?")
_ACKED = "DELETE FROM channel_msg WHERE q = ? AND seq = ? AND token = ?"
# messages to bury: ?1 q, ?2 now, ?3 max deliveries
_EXHAUSTED = ("q = ?1 AND (lease_until = -1 OR (lease_until > 0 AND lease_until <= ?2 "
              "AND deliveries >= ?3))")

_MAX_DEFERRED = 256      # acks held back at most before they are written
_MAX_LEASES = 100_000    # leases remembered at most (older ones: checked in SQL)

_QUEUES: dict = {}  # (scope, channel) -> column value, for the hot calls


def _queue(scope, channel) -> bytes:
    """The column value for a scope's channel: the scope with the channel as one more
    part, so (scope, channel) pairs never collide whatever characters they hold."""
    try:
        return _QUEUES[scope, channel]
    except (KeyError, TypeError):
        pass
    if type(scope) is not tuple:
        scope_key(scope)  # raises InvalidMessage with the reason
    check_name(channel, "channel")
    q = scope_key(scope + (channel,))
    if len(_QUEUES) >= 4096:
        _QUEUES.clear()
    _QUEUES[scope, channel] = q
    return q


def _message(seq, token, msg_type, payload, deliveries, enqueued_at, *_) -> dict:
    return {"msg_id": f"{seq}.{token}", "msg_type": msg_type, "payload": decode(payload),
            "delivery_count": deliveries, "enqueued_at_ms": enqueued_at}


def _parse_id(msg_id):
    if type(msg_id) is str:
        seq, dot, token = msg_id.partition(".")
        if dot and 0 < len(seq) <= 19 and seq.isascii() and seq.isdigit():
            n = int(seq)
            if n <= INT64_MAX:  # past it no row can hold it (and SQLite cannot bind it)
                return n, token
    return None, None


class ChannelStore:
    """Channels on a connection from :func:`plexhpc.storage.open_db`.

    ``now_ms`` is the clock leases are measured against (wall-clock milliseconds by
    default, so leases mean the same after a restart; tests inject their own).
    ``defer_acks`` (default True) writes an ack with the store's next call; see the
    module doc.
    """

    def __init__(self, conn: sqlite3.Connection, *, now_ms: Callable[[], int] | None = None,
                 max_deliveries: int = 5, defer_acks: bool = True,
                 idempotency_window_ms: int = 24 * 3600 * 1000):
        check_int(max_deliveries, "max_deliveries", minimum=1)
        check_int(idempotency_window_ms, "idempotency_window_ms", minimum=1, maximum=MAX_MS)
        # an idempotency key counts for this long (as payment APIs do: a day), then it is
        # forgotten, so the key table does not grow with every send ever made
        self.idempotency_window_ms = idempotency_window_ms
        self._idem_sends = 0
        ensure_schema(conn)
        self._conn = conn
        self._now = now_ms or wall_ms
        self.max_deliveries = max_deliveries
        self._defer = bool(defer_acks)
        self._cur = conn.cursor()  # reused by the hot calls
        self._last_seq: dict[bytes, int] = {}
        # (q, seq, token) -> lease end, for the leases this store handed out
        self._leases: dict[tuple, int] = {}
        # (q, seq, token) of acks checked but not written yet
        self._acked: list[tuple] = []

    # --- the hot path -------------------------------------------------------------------

    def send(self, scope: tuple, channel: str, msg_type: str, payload, *,
             idempotency_key: str | None = None) -> str:
        """Enqueue a message; returns its id. With ``idempotency_key``, a second send
        with the same key on the same channel enqueues nothing and returns the first
        message's id."""
        q = _queue(scope, channel)
        check_name(msg_type, "msg_type")
        body = encode(payload, name="payload")
        if idempotency_key is None:
            if self._acked:
                return self._with_acks(self._insert, q, msg_type, body, self._now())
            return self._insert(q, msg_type, body, self._now())
        check_name(idempotency_key, "idempotency_key")
        return self._with_acks(self._send_once, q, msg_type, body, idempotency_key)

    def receive(self, scope: tuple, channel: str, visibility_ms: int) -> dict | None:
        """Lease the oldest ready message for ``visibility_ms`` and return it as
        ``{"msg_id", "msg_type", "payload", "delivery_count", "enqueued_at_ms"}``;
        None if no message is ready."""
        q = _queue(scope, channel)
        check_int(visibility_ms, "visibility_ms (milliseconds, at most 100 years)",
                  minimum=1, maximum=MAX_MS)
        while True:
            now = self._now()
            until = now + visibility_ms
            if self._acked or not _RETURNING:
                row = self._with_acks(self._lease, q, now, until)
            else:
                rows = self._cur.execute(_LEASE_RETURNING,
                                         (q, now, until, self.max_deliveries)).fetchall()
                row = rows[0] if rows else None
            if row is None:
                return None
            if row[6] != -1:
                break
            self._bury(q, now)  # its deliveries were used up: a dead letter; look again
        if self._defer:
            if len(self._leases) >= _MAX_LEASES:
                self._leases = {k: t for k, t in self._leases.items() if t > now}
                if len(self._leases) >= _MAX_LEASES:
                    self._leases.clear()
            self._leases[q, row[0], row[1]] = until
        return _message(*row)

    def ack(self, scope: tuple, channel: str, msg_id: str) -> None:
        """Delete a message leased now. Raises UnknownLease for a wrong id, a second ack,
        or a lease that already expired (the message was or will be redelivered)."""
        q = _queue(scope, channel)
        seq, token = _parse_id(msg_id)
        key = (q, seq, token)
        now = self._now()
        until = self._leases.pop(key, None)
        if until is not None and until > now:  # leased by us and still ours: defer
            self._acked.append(key)
            if len(self._acked) >= _MAX_DEFERRED:
                self.flush()
            return
        if seq is not None:  # not a lease of ours (another store, or before a restart)
            if self._acked:  # first our own held-back acks: a second ack must fail
                done = self._with_acks(self._delete_leased, q, seq, token, now)
            else:
                done = self._delete_leased(q, seq, token, now)
            if done:
                return
        raise UnknownLease(self._not_leased("ack", channel, msg_id))

    def flush(self) -> None:
        """Write the acks held back (see the module doc). Call it before closing the
        connection; every other write of this store does it too."""
        if self._acked:
            self._with_acks(lambda: None)

    # --- the rest -----------------------------------------------------------------------

    def nack(self, scope: tuple, channel: str, msg_id: str, requeue: bool = True) -> None:
        """Give a leased message back: ready again now (``requeue``; dead instead if it
        already had ``max_deliveries`` deliveries), or dead at once (``requeue=False``).
        Raises UnknownLease as :meth:`ack` does."""
        q = _queue(scope, channel)
        seq, token = _parse_id(msg_id)
        self._leases.pop((q, seq, token), None)
        now = self._now()
        with write_txn(self._conn):
            self._write_acks()
            row = None if seq is None else self._conn.execute(
                "SELECT deliveries FROM channel_msg WHERE q = ? AND seq = ? AND token = ? "
                "AND lease_until > ?", (q, seq, token, now)).fetchone()
            if row is not None:
                dead = not requeue or row[0] >= self.max_deliveries
                self._conn.execute("UPDATE channel_msg SET lease_until = ? WHERE q = ? AND "
                                   "seq = ?", (-1 if dead else 0, q, seq))
                if dead:
                    self._bury(q, now)
        self._acked.clear()
        if row is None:
            raise UnknownLease(self._not_leased("nack", channel, msg_id))

    def depth(self, scope: tuple, channel: str) -> dict:
        """``{"ready": n, "leased": n, "dead": n}`` for the channel."""
        q = _queue(scope, channel)
        self.flush()
        now = self._now()
        self._bury(q, now)
        leased, total = self._conn.execute(
            "SELECT COALESCE(SUM(lease_until > ?), 0), COUNT(*) FROM channel_msg "
            "WHERE q = ?", (now, q)).fetchone()
        (dead,) = self._conn.execute("SELECT COUNT(*) FROM channel_dead WHERE q = ?",
                                     (q,)).fetchone()
        return {"ready": total - leased, "leased": leased, "dead": dead}

    def dead_letters(self, scope: tuple, channel: str, limit: int = 100) -> list[dict]:
        """The channel's dead messages in the order they died, in :meth:`receive`'s
        format (``delivery_count`` is how often each was delivered)."""
        q = _queue(scope, channel)
        check_int(limit, "limit", minimum=0)
        self.flush()
        self._bury(q, self._now())
        rows = self._conn.execute(
            "SELECT seq, token, msg_type, payload, deliveries, enqueued_at FROM channel_dead "
            "WHERE q = ? ORDER BY id LIMIT ?", (q, limit)).fetchall()
        return [_message(*row) for row in rows]

    def next_ready_in_ms(self, scope: tuple, channel: str) -> int | None:
        """0 if a message is ready now, else the ms until the first lease that will make
        a message ready again runs out; None if neither (a waiter can only wait for a
        send)."""
        q = _queue(scope, channel)
        self.flush()
        now = self._now()
        (due,) = self._conn.execute(
            "SELECT MIN(lease_until) FROM channel_msg WHERE q = ? AND lease_until >= 0 AND "
            "deliveries < ?", (q, self.max_deliveries)).fetchone()
        return None if due is None else max(0, due - now)

    # --- internals ----------------------------------------------------------------------

    def _write_acks(self) -> None:
        """Delete the messages of the held-back acks (inside the caller's transaction;
        the caller clears the list once that committed)."""
        for key in self._acked:
            self._cur.execute(_ACKED, key)

    def _with_acks(self, fn, *args):
        """``fn(*args)`` and the held-back acks in one transaction (one commit)."""
        conn = self._conn
        if conn.in_transaction:  # inside a transaction of the caller's: nest in it
            with write_txn(conn):
                self._write_acks()
                result = fn(*args)
        else:  # write_txn inlined: this is the hot path
            cur = self._cur
            cur.execute("BEGIN IMMEDIATE")
            try:
                self._write_acks()
                result = fn(*args)
                cur.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    cur.execute("ROLLBACK")
                raise
        self._acked.clear()
        return result

    def _delete_leased(self, q, seq, token, now) -> int:
        return self._cur.execute(_ACK, (q, seq, token, now)).rowcount

    def _send_once(self, q: bytes, msg_type: str, body: bytes, idem: str) -> str:
        now = self._now()
        oldest = now - self.idempotency_window_ms
        row = self._conn.execute("SELECT msg_id, created_at FROM channel_idem WHERE q = ? "
                                 "AND idem = ?", (q, idem)).fetchone()
        if row is not None and row[1] >= oldest:
            return row[0]
        self._idem_sends += 1
        if self._idem_sends % 256 == 0:  # now and then, forget keys past the window
            self._conn.execute("DELETE FROM channel_idem WHERE created_at < ?", (oldest,))
        msg_id = self._insert(q, msg_type, body, now)
        self._conn.execute("INSERT OR REPLACE INTO channel_idem (q, idem, msg_id, created_at) "
                           "VALUES (?, ?, ?, ?)", (q, idem, msg_id, now))
        return msg_id

    def _insert(self, q: bytes, msg_type: str, body: bytes, now: int) -> str:
        """Insert one message; returns its id.

        ``seq`` orders a channel's messages. It is the wall clock in microseconds, made
        strictly increasing per channel within this store (and above what the channel
        held when this store first used it): no extra query per send, and the senders
        of several processes interleave in time order. Two processes that pick the same
        ``seq`` collide on the primary key; the loser takes the next one."""
        token = os.urandom(6).hex()
        last = self._last_seq.get(q)
        if last is None:
            last = self._max_seq(q)
        for _ in range(100):
            seq = time.time_ns() // 1000
            if seq <= last:
                seq = last + 1
            try:
                self._cur.execute(_INSERT, (q, seq, token, msg_type, body, now))
            except sqlite3.IntegrityError:  # another process's message took this seq
                last = max(seq, self._max_seq(q))
                continue
            self._last_seq[q] = seq
            return f"{seq}.{token}"
        raise StateError("could not enqueue: 100 sequence numbers in a row were taken "
                         "by other writers")

    def _max_seq(self, q: bytes) -> int:
        (top,) = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM channel_msg WHERE "
                                    "q = ?", (q,)).fetchone()
        return top

    def _lease(self, q: bytes, now: int, until: int):
        """Lease the oldest ready message inside an open transaction; its row or None."""
        if _RETURNING:
            rows = self._cur.execute(_LEASE_RETURNING,
                                     (q, now, until, self.max_deliveries)).fetchall()
            return rows[0] if rows else None
        picked = self._conn.execute(_PICK, (q, now)).fetchone()
        if picked is None:
            return None
        self._conn.execute(_LEASE_ONE, (q, now, until, self.max_deliveries, picked[0]))
        return self._conn.execute(f"SELECT {_COLUMNS} FROM channel_msg WHERE q = ? AND "
                                  "seq = ?", (q, picked[0])).fetchone()

    def _bury(self, q: bytes, now: int) -> None:
        """Move the messages marked dead, or whose last allowed lease ran out, to the
        dead letters."""
        args = (q, now, self.max_deliveries)
        if self._conn.execute(f"SELECT 1 FROM channel_msg WHERE {_EXHAUSTED} LIMIT 1",
                              args).fetchone() is None:
            return
        with write_txn(self._conn):
            self._conn.execute(
                "INSERT INTO channel_dead (q, seq, token, msg_type, payload, deliveries, "
                "enqueued_at, died_at) SELECT q, seq, token, msg_type, payload, deliveries, "
                f"enqueued_at, ?2 FROM channel_msg WHERE {_EXHAUSTED} ORDER BY seq", args)
            self._conn.execute(f"DELETE FROM channel_msg WHERE {_EXHAUSTED}", args)

    @staticmethod
    def _not_leased(op: str, channel: str, msg_id) -> str:
        return (f"{op} of message {msg_id!r} on channel {channel!r}: it is not leased now "
                f"(a wrong id, an {op} that came twice, or a lease that expired: the "
                f"message was or will be redelivered)")
