"""Durable timers: "send ``op`` with ``payload`` to ``owner`` at ``due_ms``".

The store only remembers timers; the node's loop asks :meth:`TimerStore.due` for those
whose time has come, delivers them, then :meth:`~TimerStore.remove`\\ s them. A crash
between delivery and removal delivers the timer again after restart (at least once),
never zero times. Timer ids are never reused, so cancelling a stale id cannot cancel
another timer. Payloads are plain data (:func:`~plexhpc.storage.codec.encode`).
"""

from __future__ import annotations

import sqlite3

from ..errors import InvalidMessage
from .codec import decode, encode
from .db import ensure_schema
from .scope import check_name

__all__ = ["TimerStore"]


def _ms(value, what: str) -> int:
    if type(value) is not int:
        raise InvalidMessage(f"{what} must be an int (milliseconds), got {value!r}")
    return value


class TimerStore:
    """Timers on a connection from :func:`plexhpc.storage.open_db`."""

    def __init__(self, conn: sqlite3.Connection):
        ensure_schema(conn)
        self._conn = conn

    def add(self, owner: str, due_ms: int, op: str, payload=None) -> int:
        """Remember a timer; returns its id."""
        check_name(owner, "timer owner")
        check_name(op, "timer op")
        _ms(due_ms, "due_ms")
        body = encode(payload, name="timer payload")
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
        ``owner`` only, if given), earliest first. They stay stored until removed."""
        _ms(now_ms, "now_ms")
        if owner is None:
            rows = self._conn.execute(
                "SELECT timer_id, owner, op, payload FROM timer WHERE due_ms <= ? "
                "ORDER BY due_ms, timer_id", (now_ms,))
        else:
            rows = self._conn.execute(
                "SELECT timer_id, owner, op, payload FROM timer WHERE owner = ? AND "
                "due_ms <= ? ORDER BY due_ms, timer_id", (check_name(owner, "owner"), now_ms))
        return [(tid, who, op, decode(body)) for tid, who, op, body in rows.fetchall()]

    def pending(self, owner: str) -> list[tuple]:
        """``(timer_id, due_ms, op, payload)`` of every timer of ``owner``, earliest
        first."""
        rows = self._conn.execute(
            "SELECT timer_id, due_ms, op, payload FROM timer WHERE owner = ? "
            "ORDER BY due_ms, timer_id", (check_name(owner, "owner"),)).fetchall()
        return [(tid, due, op, decode(body)) for tid, due, op, body in rows]

    def next_due_ms(self, owner: str | None = None) -> int | None:
        """The earliest due time (of ``owner``'s timers, if given); None if there are
        no timers. Lets a loop sleep exactly until the next one."""
        if owner is None:
            row = self._conn.execute("SELECT MIN(due_ms) FROM timer").fetchone()
        else:
            row = self._conn.execute("SELECT MIN(due_ms) FROM timer WHERE owner = ?",
                                     (check_name(owner, "owner"),)).fetchone()
        return row[0]
