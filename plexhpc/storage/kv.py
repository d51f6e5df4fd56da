"""A key-value store in SQLite, partitioned by scope, with TTLs, compare-and-set and
counters.

Every entry lives under a scope (a tuple of str such as ``(tenant, namespace, owner)``,
see :mod:`plexhpc.storage.scope`) and a key (a non-empty str). Scopes are compared whole
and key prefixes are matched with a byte range, never ``LIKE``, so no key or prefix
(``%``, ``_``, ``:``, NUL, ...) reaches another scope. Values are plain data, encoded
with :func:`plexhpc.storage.codec.encode`.

An entry written with a TTL reads as absent once it expires; expired rows are deleted
lazily, when a read or a listing meets them. Each method is one transaction.
"""

from __future__ import annotations

import sqlite3
from typing import Callable

from ..errors import InvalidMessage, StateError
from .codec import decode, encode
from .db import ensure_schema, wall_ms, write_txn
from .scope import INT64_MAX, MAX_MS, check_int, check_name, scope_key

__all__ = ["KVStore"]

_MISSING = object()


def _key(key) -> bytes:
    check_name(key, "a KV key")
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMessage(f"KV key {key!r} is not valid text (lone surrogate)") from None


def _upper(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string that starts with ``prefix``
    (None if there is none: the prefix is all 0xff)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _int_arg(value, what: str, *, minimum: int, maximum: int = INT64_MAX) -> int:
    return check_int(value, what, minimum=minimum, maximum=maximum)


class KVStore:
    """Scoped key-value entries on a connection from :func:`plexhpc.storage.open_db`.

    ``now_ms`` is the clock TTLs are measured against (wall-clock milliseconds by
    default; tests inject their own)."""

    def __init__(self, conn: sqlite3.Connection, *, now_ms: Callable[[], int] | None = None):
        ensure_schema(conn)
        self._conn = conn
        self._now = now_ms or wall_ms

    # --- reads ----------------------------------------------------------------------

    def get(self, scope: tuple, key: str, default=None):
        """The value under ``key``, or ``default`` if it is absent or expired."""
        s, k = scope_key(scope), _key(key)
        row = self._conn.execute("SELECT value, expires_at FROM kv WHERE scope = ? AND key = ?",
                                 (s, k)).fetchone()
        if row is None:
            return default
        value, expires_at = row
        if expires_at is not None:
            now = self._now()
            if expires_at <= now:
                self._conn.execute("DELETE FROM kv WHERE scope = ? AND key = ? AND "
                                   "expires_at <= ?", (s, k, now))
                return default
        return decode(value)

    def list(self, scope: tuple, prefix: str = "", limit: int | None = None) -> list[str]:
        """Live keys of ``scope`` that start with ``prefix``, sorted, at most ``limit``."""
        s = scope_key(scope)
        if type(prefix) is not str:
            raise InvalidMessage(f"prefix must be a str, got {type(prefix).__name__}")
        try:
            lo = prefix.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidMessage(f"prefix {prefix!r} is not valid text") from None
        if limit is not None:
            _int_arg(limit, "limit", minimum=0)
        hi = _upper(lo)
        now = self._now()
        where = "scope = ? AND key >= ?" + ("" if hi is None else " AND key < ?")
        args = [s, lo] if hi is None else [s, lo, hi]
        self._conn.execute(f"DELETE FROM kv WHERE {where} AND expires_at <= ?", (*args, now))
        sql = f"SELECT key FROM kv WHERE {where} ORDER BY key"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [k.decode("utf-8") for (k,) in self._conn.execute(sql, args)]

    # --- writes ---------------------------------------------------------------------

    def put(self, scope: tuple, key: str, value) -> None:
        """Store ``value`` under ``key`` (no expiry), replacing what was there."""
        s, k = scope_key(scope), _key(key)
        data = encode(value, name=f"value of {key!r}")
        self._conn.execute("INSERT OR REPLACE INTO kv (scope, key, value, expires_at) "
                           "VALUES (?, ?, ?, NULL)", (s, k, data))

    def put_with_ttl(self, scope: tuple, key: str, value, ttl_ms: int) -> None:
        """Store ``value`` under ``key``; it reads as absent ``ttl_ms`` from now."""
        s, k = scope_key(scope), _key(key)
        _int_arg(ttl_ms, "ttl_ms (milliseconds, at most 100 years)", minimum=1,
                 maximum=MAX_MS)
        data = encode(value, name=f"value of {key!r}")
        self._conn.execute("INSERT OR REPLACE INTO kv (scope, key, value, expires_at) "
                           "VALUES (?, ?, ?, ?)", (s, k, data, self._now() + ttl_ms))

    def delete(self, scope: tuple, key: str) -> bool:
        """Remove ``key``; True if it held a live value."""
        s, k = scope_key(scope), _key(key)
        now = self._now()
        cur = self._conn.execute("DELETE FROM kv WHERE scope = ? AND key = ? AND "
                                 "(expires_at IS NULL OR expires_at > ?)", (s, k, now))
        if cur.rowcount:
            return True
        # an expired leftover reads as absent already; purge it too
        self._conn.execute("DELETE FROM kv WHERE scope = ? AND key = ?", (s, k))
        return False

    def cas(self, scope: tuple, key: str, expected, new) -> bool:
        """Compare-and-set: store ``new`` only if the current value encodes to the same
        bytes as ``expected`` (``expected=None``: only if the key is absent). True if it
        stored. The new value has no expiry."""
        s, k = scope_key(scope), _key(key)
        want = None if expected is None else encode(expected, name="expected")
        data = encode(new, name=f"value of {key!r}")
        with write_txn(self._conn):
            current = self._live(s, k)
            if current is not _MISSING:
                current = current[0]
            if (current is not _MISSING) if want is None else (current != want):
                return False
            self._conn.execute("INSERT OR REPLACE INTO kv (scope, key, value, expires_at) "
                               "VALUES (?, ?, ?, NULL)", (s, k, data))
        return True

    def increment(self, scope: tuple, key: str, delta: int = 1) -> int:
        """Add ``delta`` to the int under ``key`` (absent counts as 0) and return the new
        value. An entry with a TTL keeps its expiry (a rate-limit window stays a window).
        Raises StateError if the key holds something other than an int."""
        s, k = scope_key(scope), _key(key)
        if type(delta) is not int:
            raise InvalidMessage(f"increment delta must be an int, got {delta!r}")
        with write_txn(self._conn):
            current = self._live(s, k)
            if current is _MISSING:
                value, expires_at = 0, None
            else:
                value, expires_at = decode(current[0]), current[1]
                if type(value) is not int:
                    raise StateError(
                        f"cannot increment {key!r} in scope {scope!r}: it holds a "
                        f"{type(value).__name__}, not an int; delete it or use put()")
            value += delta
            self._conn.execute("INSERT OR REPLACE INTO kv (scope, key, value, expires_at) "
                               "VALUES (?, ?, ?, ?)", (s, k, encode(value), expires_at))
        return value

    def _live(self, s: bytes, k: bytes):
        """``(value bytes, expires_at)`` of a live entry, else _MISSING."""
        row = self._conn.execute("SELECT value, expires_at FROM kv WHERE scope = ? AND "
                                 "key = ?", (s, k)).fetchone()
        if row is None or (row[1] is not None and row[1] <= self._now()):
            return _MISSING
        return row
