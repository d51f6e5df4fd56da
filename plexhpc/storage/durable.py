"""This rank's durable state: its SQLite file of actor checkpoints, workflow steps and
durable timers, opened on first use.

Each rank writes only its own file (``<state dir>/rank-<r>.sqlite``), so checkpoints
never contend across processes. When an actor first starts in a launch, every rank's
file is consulted and the checkpoint with the highest sequence number wins, so state
follows an actor that a relaunch with another rank count placed elsewhere. The files
hold signed, typed encodings (:mod:`plexhpc.storage.codec`), never pickles.

The key rules, checked the first time this rank needs the key:

* a missing key file is created only while no rank's file holds signed state (a
  checkpoint, a workflow record or a timer); otherwise a new key would make all of it
  unreadable and every durable actor would start empty without a word, so the start
  fails with a StateError naming the key file and what to do;
* an existing key must be the one that signed the state it finds: each rank file
  records a fingerprint of its key (an HMAC of a fixed text under the key, which
  tells nothing about the key) in a ``key_check`` table; a file whose fingerprint
  differs was signed with another key and the start fails the same way. (A file
  written before fingerprints is judged by its rows: signed rows of which not one
  verifies.) A single row that fails while the key matches is a tampered row,
  refused on its own at load (``CheckpointRejected``).

The state directory is made private (0700, see :func:`secure_state_dir`), its files
0600 (:func:`plexhpc.storage.db.open_db`).
"""

from __future__ import annotations

import glob
import os
import sqlite3
import time

from .. import errors as E
from ..log import get_logger

__all__ = ["LocalState", "secure_state_dir", "signed_state_files", "check_key_signs",
           "key_fingerprint", "record_fingerprint"]

log = get_logger("state")

# (table, column, seal kind) of every row signed with the deployment key
_SIGNED = (("checkpoint", "blob", "checkpoint"), ("wf_step", "blob", "workflow-step"),
           ("wf_run", "result", "workflow-result"), ("timer", "payload", "timer"))
_SAMPLE = 16  # rows of each table tried against the key


def secure_state_dir(directory: str) -> None:
    """Create the state directory 0700 (and its missing parents), or tighten an
    existing one of ours that other users may enter to 0700, with a warning. Raises
    StateError if it belongs to another user: its owner could read or replace every
    file in it."""
    from .db import private_dir
    private_dir(directory)
    try:
        st = os.stat(directory)
    except OSError as exc:
        raise E.StateError(f"cannot read the state directory {directory}: {exc}") from None
    if st.st_uid != os.geteuid():
        raise E.StateError(f"the state directory {directory} belongs to another user "
                           f"(uid {st.st_uid}), who could read or replace the state in "
                           f"it; set [state] dir (or PLEXHPC_STATE_DIR) to a directory "
                           f"of your own")
    if st.st_mode & 0o077:
        try:
            os.chmod(directory, 0o700)
        except OSError as exc:
            raise E.StateError(f"cannot make the state directory {directory} private "
                               f"(chmod 700): {exc}") from None
        log.warning("the state directory %s was open to other users (mode %o); made it "
                    "0700: it holds every tenant's state", directory, st.st_mode & 0o777)


def _signed_blobs(conn) -> list[tuple[str, bytes]]:
    """Up to _SAMPLE sealed blobs of each signed table, as ``(kind, blob)``."""
    from .codec import MAGIC
    out = []
    for table, column, kind in _SIGNED:
        try:
            rows = conn.execute(f"SELECT {column} FROM {table} LIMIT ?", (_SAMPLE,))
            out.extend((kind, bytes(b)) for (b,) in rows
                       if isinstance(b, (bytes, memoryview)) and bytes(b[:4]) == MAGIC)
        except sqlite3.Error:
            continue  # a file from before that table
    return out


_FINGERPRINT_TEXT = b"plexhpc state key fingerprint v1"
_KEY_CHECK = ("CREATE TABLE IF NOT EXISTS key_check (id INTEGER PRIMARY KEY CHECK (id = 1), "
              "fingerprint BLOB NOT NULL)")


def key_fingerprint(key: bytes) -> bytes:
    """16 bytes that tell one key from another and nothing about either."""
    import hashlib
    import hmac
    return hmac.new(key, _FINGERPRINT_TEXT, hashlib.sha256).digest()[:16]


def _stored_fingerprint(conn) -> bytes | None:
    try:
        row = conn.execute("SELECT fingerprint FROM key_check WHERE id = 1").fetchone()
    except sqlite3.Error:
        return None  # a file from before fingerprints
    return None if row is None else bytes(row[0])


def record_fingerprint(conn, key: bytes) -> None:
    """Remember which key signs this (writable) file, once."""
    conn.execute(_KEY_CHECK)
    conn.execute("INSERT OR IGNORE INTO key_check (id, fingerprint) VALUES (1, ?)",
                 (key_fingerprint(key),))


def _read_only(path: str):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def signed_state_files(directory: str) -> list[str]:
    """The rank files under ``directory`` that hold signed state (read only)."""
    found = []
    for path in sorted(glob.glob(os.path.join(directory, "rank-*.sqlite"))):
        try:
            conn = _read_only(path)
        except sqlite3.Error:
            continue
        try:
            if _signed_blobs(conn):
                found.append(path)
        finally:
            conn.close()
    return found


def check_key_signs(conn, key: bytes) -> bool:
    """False if the file was signed with another key than ``key``: its recorded
    fingerprint differs, or (a file from before fingerprints) it holds signed rows and
    not one of those tried verifies. True otherwise."""
    import hmac
    from .codec import unseal
    stored = _stored_fingerprint(conn)
    if stored is not None:
        return hmac.compare_digest(stored, key_fingerprint(key))
    blobs = _signed_blobs(conn)
    if not blobs:
        return True
    for kind, blob in blobs:
        try:
            unseal(blob, key, kind)
            return True
        except E.CheckpointRejected:
            continue
    return False


class LocalState:
    """Lazily opened checkpoint, workflow and timer stores of one rank."""

    def __init__(self, config, rank: int):
        self.config = config
        self.rank = rank
        self._conn = None
        self._checkpoints = None
        self._timers = None
        self._key = None

    @property
    def path(self) -> str:
        return os.path.join(self.config.dir, f"rank-{self.rank}.sqlite")

    def key_path(self) -> str:
        from .keys import default_key_path
        return os.path.abspath(os.path.expanduser(self.config.key_file or default_key_path()))

    def key(self) -> bytes:
        """The deployment key, checked against the signed state (see the module doc)."""
        if self._key is None:
            from .keys import KEY_FILE_ENV, load_or_create_key
            path = self.key_path()
            where = (f"set [state] key_file (or {KEY_FILE_ENV}) to the key that signed it, "
                     f"or restore {path} from a backup; to start over with empty durable "
                     f"state, move {self.config.dir} away")
            if not os.path.lexists(path):
                signed = signed_state_files(self.config.dir) if os.path.lexists(
                self.config.dir) else []
                if signed:
                    raise E.StateError(
                        f"the state key file {path} does not exist, but {signed[0]}"
                        f"{f' (and {len(signed) - 1} more)' if len(signed) > 1 else ''} "
                        f"holds state signed with a key: a new key would make it "
                        f"unreadable and the durable actors would start empty. {where}")
            key = load_or_create_key(path, state_dir=self.config.dir)
            for file in sorted(glob.glob(os.path.join(self.config.dir, "rank-*.sqlite"))):
                try:
                    conn = _read_only(file)
                except sqlite3.Error:
                    continue
                try:
                    ok = check_key_signs(conn, key)
                finally:
                    conn.close()
                if not ok:
                    raise E.StateError(
                        f"{file} holds state signed with another key than {path} (or "
                        f"every signed row in it was altered): nothing in it would load. "
                        f"{where}")
            self._key = key
        return self._key

    def _open(self):
        """This rank's file, opened on first use with its key's fingerprint recorded
        (the key is checked first, so a key problem is reported as one)."""
        if self._conn is None:
            from .db import open_db
            key = self.key()
            try:
                secure_state_dir(self.config.dir)
                conn = open_db(self.path,
                               durability=getattr(self.config, "durability", "normal"))
            except Exception as exc:  # noqa: BLE001 - the message says what to fix
                raise E.StateError(f"cannot open the state file {self.path}: {exc}; set "
                                   "[state] dir in the app config (or PLEXHPC_STATE_DIR) "
                                   "to a writable directory") from exc
            try:
                record_fingerprint(conn, key)
            except sqlite3.Error as exc:
                conn.close()
                raise E.StateError(f"cannot write to the state file {self.path}: {exc}; "
                                   "check the disk and the file's permissions") from exc
            self._conn = conn
        return self._conn

    @property
    def checkpoints(self):
        if self._checkpoints is None:
            from .checkpoints import CheckpointStore
            key = self.key()
            self._checkpoints = CheckpointStore(self._open(), key,
                                                retention=self.config.retention)
        return self._checkpoints

    @property
    def timers(self):
        if self._timers is None:
            from .timers import TimerStore
            key = self.key()
            self._timers = TimerStore(self._open(), key)
        return self._timers

    def load_latest(self, actor_key: str):
        """The newest ``(state, seq)`` of ``actor_key`` over every rank's file (this
        rank's first), or None. A refused checkpoint raises CheckpointRejected, as a
        plain load does; other ranks' files are only read."""
        from .checkpoints import CheckpointStore
        best = self.checkpoints.load(actor_key)
        for path in sorted(glob.glob(os.path.join(self.config.dir, "rank-*.sqlite"))):
            if os.path.abspath(path) == os.path.abspath(self.path):
                continue
            try:
                conn = _read_only(path)
            except sqlite3.Error:
                continue
            try:
                found = CheckpointStore.reader(conn, self.key(),
                                               retention=self.config.retention)
                try:
                    got = found.load(actor_key)
                except sqlite3.Error:
                    got = None  # a file from before the checkpoint table: nothing there
            finally:
                conn.close()
            if got is not None and (best is None or got[1] > best[1]):
                best = got
        return best

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._checkpoints = self._timers = None


def now_ms() -> int:
    return int(time.time() * 1000)
