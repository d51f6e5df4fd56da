"""The node's SQLite database: one file holds KV, tuples, channels, checkpoints,
workflow steps and timers.

:func:`open_db` opens it the way every store expects: WAL (readers never block the
writer), ``synchronous=NORMAL`` (a commit survives a process crash; a power cut may
lose the last commits but never corrupts the file), a 5 s busy timeout, and autocommit
(``isolation_level=None``) so each statement is its own transaction unless a store
opens one with :func:`write_txn`.

A connection is not thread-safe: use it from one thread at a time (the node's event
loop). ``check_same_thread=False`` only lets that thread differ from the opener.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager

from ..errors import StateError

__all__ = ["open_db", "ensure_schema", "write_txn", "wall_ms", "SCHEMA_VERSION"]

#: stored in ``PRAGMA user_version``; a database from a newer plexhpc is refused
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    scope BLOB NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS ts_tuple (
    seq INTEGER PRIMARY KEY,
    scope BLOB NOT NULL,
    tup BLOB NOT NULL
);

-- one row per ready or leased message, clustered by channel then enqueue order
-- lease_until: 0 ready, else leased until then (ready again once it has passed)
CREATE TABLE IF NOT EXISTS channel_msg (
    q BLOB NOT NULL,
    seq INTEGER NOT NULL,
    token TEXT NOT NULL,
    msg_type TEXT NOT NULL,
    payload BLOB NOT NULL,
    lease_until INTEGER NOT NULL DEFAULT 0,
    deliveries INTEGER NOT NULL DEFAULT 0,
    enqueued_at INTEGER NOT NULL,
    PRIMARY KEY (q, seq)
) WITHOUT ROWID;

-- dead letters, in the order they died
CREATE TABLE IF NOT EXISTS channel_dead (
    id INTEGER PRIMARY KEY,
    q BLOB NOT NULL,
    seq INTEGER NOT NULL,
    token TEXT NOT NULL,
    msg_type TEXT NOT NULL,
    payload BLOB NOT NULL,
    deliveries INTEGER NOT NULL,
    enqueued_at INTEGER NOT NULL,
    died_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS channel_dead_q ON channel_dead (q, id);

CREATE TABLE IF NOT EXISTS channel_idem (
    q BLOB NOT NULL,
    idem TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (q, idem)
) WITHOUT ROWID;

-- an actor's newest checkpoints, one row per retention slot: a save overwrites the
-- oldest slot in place (one page written, the index untouched)
CREATE TABLE IF NOT EXISTS checkpoint (
    actor_key TEXT NOT NULL,
    slot INTEGER NOT NULL,
    version INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    blob BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS checkpoint_slot ON checkpoint (actor_key, slot);

-- one row per finished run, "finished" numbers them in finishing order
CREATE TABLE IF NOT EXISTS wf_run (
    wf_key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    finished INTEGER NOT NULL,
    result BLOB NOT NULL,
    PRIMARY KEY (wf_key, run_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS wf_step (
    wf_key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    blob BLOB NOT NULL,
    PRIMARY KEY (wf_key, run_id, step)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS timer (
    timer_id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    due_ms INTEGER NOT NULL,
    op TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS timer_due ON timer (due_ms);
CREATE INDEX IF NOT EXISTS timer_owner ON timer (owner, due_ms);
"""


def wall_ms() -> int:
    """Milliseconds since the epoch: the default clock of stores whose deadlines (leases,
    TTLs) must mean the same after a restart."""
    return time.time_ns() // 1_000_000


def open_db(path: str) -> sqlite3.Connection:
    """Open (creating it and its parent directories if needed) the state database at
    ``path`` with the settings every store expects, and create its tables.

    ``":memory:"`` gives a private in-memory database (for tests). Close the connection
    when done."""
    if path != ":memory:" and not path.startswith("file:"):
        parent = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create the state directory {parent}: {exc}") from None
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                               uri=path.startswith("file:"))
    except sqlite3.Error as exc:
        raise StateError(f"cannot open the state database {path}: {exc}") from None
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        ensure_schema(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create every table the stores use (idempotent; the schema text holds no ";"
    but between statements).  Raises StateError for a database
    written by a newer plexhpc, whose layout this one does not know."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise StateError(f"the state database has schema version {version}, this plexhpc "
                         f"knows up to {SCHEMA_VERSION}: it was written by a newer "
                         f"plexhpc; upgrade plexhpc or use another state directory")
    if version == SCHEMA_VERSION:
        return
    try:
        with write_txn(conn):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except sqlite3.Error as exc:
        raise StateError(f"cannot create the state tables: {exc}") from None


@contextmanager
def write_txn(conn: sqlite3.Connection):
    """Run the block as one write transaction (``BEGIN IMMEDIATE``: takes the write lock
    up front, so a read-then-write block cannot be overtaken by another writer).

    Inside an already open transaction it nests as a savepoint."""
    if conn.in_transaction:
        conn.execute("SAVEPOINT plexhpc_state")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK TO plexhpc_state")
            conn.execute("RELEASE plexhpc_state")
            raise
        conn.execute("RELEASE plexhpc_state")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
