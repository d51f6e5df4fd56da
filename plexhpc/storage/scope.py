"""Scopes: the tuple of names (tenant, namespace, owner...) that keeps stored data apart.

A scope is stored as one BLOB column: each part as a 4-byte big-endian length followed
by its UTF-8 bytes. That encoding is prefix-free, so two different scopes never share a
column value and no key or prefix chosen inside one scope can reach another (stores
compare scopes with ``=``, never with ``LIKE``).
"""

from __future__ import annotations

from functools import lru_cache

from ..errors import InvalidMessage

__all__ = ["scope_key", "scope_from_key", "check_name", "check_int", "INT64_MAX",
           "MAX_MS"]

#: the largest integer SQLite stores: every int bound into a statement must fit
INT64_MAX = 2 ** 63 - 1
#: the longest duration (TTL, lease, due time from now) a store accepts: 100 years in
#: milliseconds, far from INT64_MAX, so "now + duration" always fits a column
MAX_MS = 100 * 365 * 24 * 3600 * 1000


@lru_cache(maxsize=4096)
def _encode(scope: tuple) -> bytes:
    parts = []
    for part in scope:
        if type(part) is not str:
            raise InvalidMessage(f"scope {scope!r}: every part must be a str, "
                                 f"got {type(part).__name__}; e.g. ('tenant', 'ns')")
        try:
            raw = part.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidMessage(f"scope {scope!r}: part {part!r} is not valid text "
                                 f"(lone surrogate)") from None
        parts.append(len(raw).to_bytes(4, "big"))
        parts.append(raw)
    return b"".join(parts)


def scope_key(scope) -> bytes:
    """The column value for ``scope`` (a tuple of str). Raises InvalidMessage otherwise."""
    if type(scope) is not tuple:
        raise InvalidMessage(f"scope must be a tuple of str such as ('tenant', 'ns'), "
                             f"got {type(scope).__name__} {scope!r}")
    try:
        return _encode(scope)
    except TypeError:  # unhashable part: not a str anyway
        raise InvalidMessage(f"scope {scope!r}: every part must be a str") from None


def scope_from_key(raw: bytes) -> tuple:
    """Inverse of :func:`scope_key`."""
    parts = []
    i = 0
    while i < len(raw):
        n = int.from_bytes(raw[i:i + 4], "big")
        parts.append(raw[i + 4:i + 4 + n].decode("utf-8"))
        i += 4 + n
    return tuple(parts)


def check_name(value, what: str) -> str:
    """Refuse anything but a non-empty str for a key, channel or message type."""
    if type(value) is not str or not value:
        raise InvalidMessage(f"{what} must be a non-empty str, got "
                             f"{type(value).__name__} {value!r}")
    return value


def check_int(value, what: str, *, minimum: int = -INT64_MAX - 1,
              maximum: int = INT64_MAX) -> int:
    """Refuse anything but an int (a bool is not one) in ``minimum..maximum``; the
    default range is SQLite's 64-bit integers, so a value that passes can always be
    bound into a statement (past it SQLite raises OverflowError, not a clear error)."""
    if type(value) is not int or not minimum <= value <= maximum:
        shown = repr(value) if type(value) is not int or value.bit_length() < 200 else (
            f"an int of {value.bit_length()} bits")
        raise InvalidMessage(f"{what} must be an int between {minimum} and {maximum}, "
                             f"got {shown}")
    return value
