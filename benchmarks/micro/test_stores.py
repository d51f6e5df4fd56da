"""The SQLite stores (``KVStore``, ``TupleSpace``, ``ChannelStore``) called directly, in
one process, against hand-written ``sqlite3`` doing the same inserts and selects.

Both sides use a database file opened by :func:`plexhpc.storage.db.open_db` (WAL,
``synchronous=NORMAL``, autocommit: each statement outside a transaction is one commit),
and the same ~100-byte payload. The baseline serializes with raw msgpack (what a
hand-written store would do); plexhpc adds scopes, checks and its typed codec.
``plexhpc bench state`` measures the same stores through actors, across ranks.
"""

from __future__ import annotations

import itertools

import msgpack
import pytest

from plexhpc.storage.channels import ChannelStore
from plexhpc.storage.kv import KVStore
from plexhpc.storage.scope import scope_key
from plexhpc.storage.tuplespace import TupleSpace

SCOPE = ("tenant-a", "orders")
PAYLOAD = {"task": "x" * 64, "n": 7}
KEYS = 1000  # distinct keys cycled through, so the tables stay the same size


def _pack(value) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


# --- KV -------------------------------------------------------------------------------

@pytest.fixture
def raw_kv(raw_conn):
    raw_conn.execute("CREATE TABLE raw_kv (scope BLOB NOT NULL, key BLOB NOT NULL, "
                     "value BLOB NOT NULL, PRIMARY KEY (scope, key)) WITHOUT ROWID")
    return raw_conn


def _raw_put(conn, s: bytes, key: str, value) -> None:
    conn.execute("INSERT OR REPLACE INTO raw_kv (scope, key, value) VALUES (?, ?, ?)",
                 (s, key.encode(), _pack(value)))


def _raw_get(conn, s: bytes, key: str):
    row = conn.execute("SELECT value FROM raw_kv WHERE scope = ? AND key = ?",
                       (s, key.encode())).fetchone()
    return None if row is None else msgpack.unpackb(row[0], raw=False)


@pytest.mark.parametrize("impl", ["plexhpc", "sqlite3"])
def test_kv_put(benchmark, impl, conn, raw_kv):
    benchmark.group = "stores kv put"
    keys = itertools.cycle([f"order-{i}" for i in range(KEYS)])
    if impl == "plexhpc":
        kv = KVStore(conn)
        benchmark(lambda: kv.put(SCOPE, next(keys), PAYLOAD))
        assert kv.get(SCOPE, "order-0") == PAYLOAD
    else:
        s = scope_key(SCOPE)
        benchmark(lambda: _raw_put(raw_kv, s, next(keys), PAYLOAD))
        assert _raw_get(raw_kv, s, "order-0") == PAYLOAD


@pytest.mark.parametrize("impl", ["plexhpc", "sqlite3"])
def test_kv_get(benchmark, impl, conn, raw_kv):
    benchmark.group = "stores kv get"
    names = [f"order-{i}" for i in range(KEYS)]
    keys = itertools.cycle(names)
    if impl == "plexhpc":
        kv = KVStore(conn)
        for k in names:
            kv.put(SCOPE, k, PAYLOAD)
        assert benchmark(lambda: kv.get(SCOPE, next(keys))) == PAYLOAD
    else:
        s = scope_key(SCOPE)
        for k in names:
            _raw_put(raw_kv, s, k, PAYLOAD)
        assert benchmark(lambda: _raw_get(raw_kv, s, next(keys))) == PAYLOAD


# --- TupleSpace: write a tuple, take it back by pattern -------------------------------

@pytest.fixture
def raw_ts(raw_conn):
    raw_conn.execute("CREATE TABLE raw_ts (seq INTEGER PRIMARY KEY, scope BLOB NOT NULL, "
                     "tup BLOB NOT NULL)")
    return raw_conn


def _raw_write_take(conn, s: bytes, tup: tuple):
    """Insert the tuple, then find the oldest one of the scope and delete it: what
    ``TupleSpace(conn)`` persists, without its in-memory index and pattern matching."""
    conn.execute("INSERT INTO raw_ts (scope, tup) VALUES (?, ?)", (s, _pack(tup)))
    seq, blob = conn.execute("SELECT seq, tup FROM raw_ts WHERE scope = ? ORDER BY seq "
                             "LIMIT 1", (s,)).fetchone()
    conn.execute("DELETE FROM raw_ts WHERE seq = ?", (seq,))
    return tuple(msgpack.unpackb(blob, raw=False))


@pytest.mark.parametrize("impl", ["plexhpc-memory", "plexhpc-sqlite", "sqlite3"])
def test_tuplespace_write_take(benchmark, impl, conn, raw_ts):
    benchmark.group = "stores tuplespace write+take"
    tup = ("job", 17, "payload " + "x" * 64)
    if impl == "sqlite3":
        s = scope_key(SCOPE)
        got = benchmark(_raw_write_take, raw_ts, s, tup)
    else:
        ts = TupleSpace(conn if impl == "plexhpc-sqlite" else None)

        def write_take():
            ts.write(SCOPE, tup)
            return ts.take(SCOPE, ("job", None, None))
        got = benchmark(write_take)
        assert ts.count(SCOPE) == 0
    assert got == tup


# --- channels -------------------------------------------------------------------------

@pytest.fixture
def raw_queue(raw_conn):
    raw_conn.execute("CREATE TABLE raw_msg (q BLOB NOT NULL, seq INTEGER NOT NULL, "
                     "msg_type TEXT NOT NULL, payload BLOB NOT NULL, "
                     "lease_until INTEGER NOT NULL DEFAULT 0, "
                     "PRIMARY KEY (q, seq)) WITHOUT ROWID")
    return raw_conn


@pytest.mark.parametrize("impl", ["plexhpc", "sqlite3"])
def test_channel_send(benchmark, impl, conn, raw_queue):
    benchmark.group = "stores channel send"
    if impl == "plexhpc":
        ch = ChannelStore(conn)
        benchmark(lambda: ch.send(SCOPE, "orders", "task", PAYLOAD))
        assert ch.depth(SCOPE, "orders")["ready"] >= 1
    else:
        q, seqs = scope_key(SCOPE + ("orders",)), itertools.count(1)
        benchmark(lambda: raw_queue.execute(
            "INSERT INTO raw_msg (q, seq, msg_type, payload) VALUES (?, ?, ?, ?)",
            (q, next(seqs), "task", _pack(PAYLOAD))))


def _raw_roundtrip(conn, q: bytes, seqs, now: int):
    """Send, lease the oldest ready message for 30 s, delete it: three commits (the
    ChannelStore writes its ack with its next call, so two)."""
    conn.execute("INSERT INTO raw_msg (q, seq, msg_type, payload) VALUES (?, ?, ?, ?)",
                 (q, next(seqs), "task", _pack(PAYLOAD)))
    seq, payload = conn.execute(
        "UPDATE raw_msg SET lease_until = ?2 WHERE q = ?1 AND seq = (SELECT seq FROM "
        "raw_msg WHERE q = ?1 AND lease_until <= ?3 ORDER BY seq LIMIT 1) "
        "RETURNING seq, payload", (q, now + 30_000, now)).fetchone()
    conn.execute("DELETE FROM raw_msg WHERE q = ? AND seq = ?", (q, seq))
    return msgpack.unpackb(payload, raw=False)


@pytest.mark.parametrize("impl", ["plexhpc", "sqlite3"])
def test_channel_send_receive_ack(benchmark, impl, conn, raw_queue):
    benchmark.group = "stores channel send+receive+ack"
    if impl == "plexhpc":
        ch = ChannelStore(conn)

        def roundtrip():
            ch.send(SCOPE, "orders", "task", PAYLOAD)
            msg = ch.receive(SCOPE, "orders", 30_000)
            ch.ack(SCOPE, "orders", msg["msg_id"])
            return msg["payload"]
        assert benchmark(roundtrip) == PAYLOAD
        ch.flush()
        assert ch.depth(SCOPE, "orders")["ready"] == 0
    else:
        from plexhpc.storage.db import wall_ms
        q, seqs = scope_key(SCOPE + ("orders",)), itertools.count(1)
        assert benchmark(lambda: _raw_roundtrip(raw_queue, q, seqs, wall_ms())) == PAYLOAD
