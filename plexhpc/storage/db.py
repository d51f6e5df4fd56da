"""The node's SQLite database: one file holds KV, tuples, channels, checkpoints,
workflow steps and timers.

:func:`open_db` opens it the way every store expects: WAL (readers never block the
writer), a 5 s busy timeout, and autocommit (``isolation_level=None``) so each
statement is its own transaction unless a store opens one with :func:`write_txn`.

Durability (``[state] durability``), what a commit that has returned survives:

* ``"normal"`` (the default, ``synchronous=NORMAL``): a crash of the process (or of
  every process of the job). A power cut or an operating-system crash may lose the
  last commits before the WAL was last synced (a rollback to an earlier, consistent
  state), but never corrupts the file.
* ``"full"`` (``synchronous=FULL``): a power cut or OS crash too, as far as the disk
  honours fsync; each commit costs an fsync.

The files are private to the user: a database file is created 0600 (SQLite gives its
``-wal``, ``-shm`` and ``-journal`` files the database file's mode, and they are
tightened after the open as well), an existing file of ours that is more open is
tightened to 0600, and missing directories are created 0700. Every tenant's KV and
channel payloads are in these files, so no other local user may read them.

A connection is not thread-safe: use it from one thread at a time (the node's event
loop). ``check_same_thread=False`` only lets that thread differ from the opener.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager

from ..errors import StateError

__all__ = ["open_db", "ensure_schema", "write_txn", "wall_ms", "SCHEMA_VERSION",
           "DURABILITY", "private_dir"]

#: ``[state] durability`` -> the SQLite ``synchronous`` setting (see the module doc)
DURABILITY = {"normal": "NORMAL", "full": "FULL"}
_SIDE_FILES = ("-wal", "-shm", "-journal")

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


def private_dir(directory: str) -> None:
    """Create ``directory`` and its missing parents with mode 0700. One that exists is
    left as it is (see :func:`plexhpc.storage.durable.secure_state_dir` for tightening
    a state directory). Raises StateError if it cannot be created."""
    missing = []
    d = os.path.abspath(directory)
    while not os.path.isdir(d):
        missing.append(d)
        up = os.path.dirname(d)
        if up == d:
            break
        d = up
    try:
        for d in reversed(missing):
            try:
                os.mkdir(d, 0o700)
            except FileExistsError:
                if not os.path.isdir(d):
                    raise
                continue  # another process made it first
            os.chmod(d, 0o700)  # whatever the umask
    except OSError as exc:
        raise StateError(f"cannot create the state directory {directory}: {exc}") from None


def _private_file(path: str) -> None:
    """Create the database file 0600 before SQLite opens it (SQLite then gives its
    side files the same mode), and tighten a file of ours that is more open."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        _tighten(path)
        return
    except OSError as exc:
        raise StateError(f"cannot create the state database {path}: {exc}") from None
    os.close(fd)


def _tighten(path: str) -> None:
    """chmod 0600 ``path`` and its side files, where they exist, are ours and are more
    open (best effort: a file of another user is left to the open to refuse)."""
    for p in (path, *(path + side for side in _SIDE_FILES)):
        try:
            st = os.stat(p)
        except OSError:
            continue
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            try:
                os.chmod(p, 0o600)
            except OSError:
                pass


def open_db(path: str, *, durability: str = "normal") -> sqlite3.Connection:
    """Open (creating it and its parent directories if needed, privately: see the
    module doc) the state database at ``path`` with the settings every store expects,
    and create its tables. ``durability`` is ``"normal"`` or ``"full"`` (module doc).

    ``":memory:"`` gives a private in-memory database (for tests). Close the connection
    when done."""
    if durability not in DURABILITY:
        raise StateError(f"durability must be one of {sorted(DURABILITY)}, got "
                         f"{durability!r}")
    on_disk = path != ":memory:" and not path.startswith("file:")
    if on_disk:
        private_dir(os.path.dirname(os.path.abspath(path)))
        _private_file(path)
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                               uri=path.startswith("file:"))
    except sqlite3.Error as exc:
        raise StateError(f"cannot open the state database {path}: {exc}") from None
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {DURABILITY[durability]}")
        ensure_schema(conn)
    except BaseException:
        conn.close()
        raise
    if on_disk:
        _tighten(path)  # the -wal and -shm files, on a SQLite that made them wider
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
