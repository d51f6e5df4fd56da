"""Durable timers: "send ``op`` with ``payload`` to ``owner`` at ``due_ms``".

The store only remembers timers; the node's loop asks :meth:`TimerStore.due` for those
whose time has come, delivers them, then :meth:`~TimerStore.remove`\\ s them. A crash
between delivery and removal delivers the timer again after restart (at least once),
never zero times. Timer ids are never reused, so cancelling a stale id cannot cancel
another timer. Payloads are plain data (:func:`~plexhpc.storage.codec.encode`).

With the deployment key (the runtime always passes it) every row is sealed as a
checkpoint is (:func:`~plexhpc.storage.codec.seal`, kind ``"timer"``): the seal covers
the owner, the due time, the op and the payload, because a re-armed timer is trusted
to send that op, in the request context its payload names, to that actor. A row that
fails verification (modified, signed with another key, moved to another owner, or
written unsealed by an older plexhpc) is refused with a warning and never returned by
:meth:`~TimerStore.due` or :meth:`~TimerStore.pending`; it stays in the file for
inspection until cancelled. A copy of a valid row under a new id is a duplicate of a
timer that was set (at-least-once delivery allows that), never a forged one. Without a
key (tests, tools) rows are neither sealed nor checked.
"""

from __future__ import annotations

import sqlite3

from ..errors import CheckpointRejected
from ..log import get_logger
from .codec import check_key, decode, encode, seal, unseal
from .db import ensure_schema
from .scope import check_int, check_name

__all__ = ["TimerStore", "TIMER_KIND"]

log = get_logger("state")

#: the seal kind of a timer row
TIMER_KIND = "timer"
_COLUMNS = ("timer_id, CAST(owner AS BLOB), due_ms, CAST(op AS BLOB), "
            "CAST(payload AS BLOB)")


def _ms(value, what: str) -> int:
    return check_int(value, f"{what} (an int of milliseconds)")


class TimerStore:
    """Timers on a connection from :func:`plexhpc.storage.open_db`, sealed with ``key``
    (from :func:`plexhpc.storage.load_or_create_key`) when one is given."""

    def __init__(self, conn: sqlite3.Connection, key: bytes | None = None):
        if key is not None:
            check_key(key)
        ensure_schema(conn)
        self._conn = conn
        self._key = key

    def add(self, owner: str, due_ms: int, op: str, payload=None) -> int:
        """Remember a timer; returns its id."""
        check_name(owner, "timer owner")
        check_name(op, "timer op")
        _ms(due_ms, "due_ms")
        body = encode(payload, name="timer payload")
        if self._key is not None:
            body = seal(encode([owner, due_ms, op, body]), self._key, TIMER_KIND)
        return self._conn.execute("INSERT INTO timer (owner, due_ms, op, payload) "
                                  "VALUES (?, ?, ?, ?)", (owner, due_ms, op, body)).lastrowid

    def cancel(self, timer_id: int) -> bool:
        """Forget a timer that has not been removed yet; False if there is none."""
        return self._conn.execute("DELETE FROM timer WHERE timer_id = ?",
                                  (_ms(timer_id, "timer_id"),)).rowcount > 0

    def remove(self, timer_id: int) -> None:
        """Forget a timer once it has been delivered (a no-op if already gone)."""
        self.cancel(timer_id)

    def due(self, now_ms: int, owner: str | None = None) -> list[tuple]:
        """``(timer_id, owner, op, payload)`` of every timer due at ``now_ms`` (of
        ``owner`` only, if given), earliest first. They stay stored until removed.
        Rows that fail verification are left out (module doc)."""
        _ms(now_ms, "now_ms")
        if owner is None:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM timer WHERE due_ms <= ? "
                "ORDER BY due_ms, timer_id", (now_ms,))
        else:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM timer WHERE owner = ? AND "
                "due_ms <= ? ORDER BY due_ms, timer_id", (check_name(owner, "owner"), now_ms))
        out = []
        for tid, who, due, op, body in rows.fetchall():
            ok, payload = self._open(tid, who, due, op, body)
            if ok:
                out.append((tid, who.decode(), op.decode(), payload))
        return out

    def pending(self, owner: str) -> list[tuple]:
        """``(timer_id, due_ms, op, payload)`` of every timer of ``owner``, earliest
        first. Rows that fail verification are left out (module doc)."""
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM timer WHERE owner = ? "
            "ORDER BY due_ms, timer_id", (check_name(owner, "owner"),)).fetchall()
        out = []
        for tid, who, due, op, body in rows:
            ok, payload = self._open(tid, who, due, op, body)
            if ok:
                out.append((tid, due, op.decode(), payload))
        return out

    def next_due_ms(self, owner: str | None = None) -> int | None:
        """The earliest due time (of ``owner``'s timers, if given); None if there are
        no timers. Lets a loop sleep exactly until the next one."""
        if owner is None:
            row = self._conn.execute("SELECT MIN(due_ms) FROM timer").fetchone()
        else:
            row = self._conn.execute("SELECT MIN(due_ms) FROM timer WHERE owner = ?",
                                     (check_name(owner, "owner"),)).fetchone()
        return row[0]

    def _open(self, tid, owner, due, op, body) -> tuple[bool, object]:
        """``(True, payload)`` of a row that verifies, else ``(False, None)`` and a
        warning naming the row and what to do."""
        try:
            # read as bytes: a row altered to hold text that is not UTF-8 must be
            # refused here, not fail the whole query
            owner, op = owner.decode("utf-8"), op.decode("utf-8")
            if self._key is None:
                return True, decode(body)
            fields = decode(unseal(body, self._key, TIMER_KIND))
            if type(fields) is not list or len(fields) != 4 or type(fields[3]) is not bytes:
                raise CheckpointRejected("it has an unexpected layout")
            if fields[:3] != [owner, due, op]:
                raise CheckpointRejected(f"it was sealed for {fields[:3]!r}, the row says "
                                         f"{[owner, due, op]!r}: modified or moved")
            return True, decode(fields[3])
        except (CheckpointRejected, TypeError, ValueError, AttributeError) as exc:
            log.warning("durable timer %s of %r (op %r) refused, not re-armed: %s; it stays "
                        "in the state file until cancelled (if it was written by an older "
                        "plexhpc, or with another key, set the timer again)",
                        tid, owner, op, exc)
            return False, None
