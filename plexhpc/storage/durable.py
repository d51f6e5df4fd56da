"""This rank's durable state: its SQLite file of actor checkpoints, workflow steps and
durable timers, opened on first use.

Each rank writes only its own file (``<state dir>/rank-<r>.sqlite``), so checkpoints
never contend across processes. When an actor first starts in a launch, every rank's
file is consulted and the checkpoint with the highest sequence number wins, so state
follows an actor that a relaunch with another rank count placed elsewhere. The files
hold signed, typed encodings (:mod:`plexhpc.storage.codec`), never pickles.
"""

from __future__ import annotations

import os
import time

from .. import errors as E

__all__ = ["LocalState"]


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

    def key(self) -> bytes:
        if self._key is None:
            from .keys import load_or_create_key
            self._key = load_or_create_key(self.config.key_file, state_dir=self.config.dir)
        return self._key

    def _open(self):
        if self._conn is None:
            from .db import open_db
            try:
                self._conn = open_db(self.path)
            except Exception as exc:  # noqa: BLE001 - the message says what to fix
                raise E.StateError(f"cannot open the state file {self.path}: {exc}; set "
                                   "[state] dir in the app config (or PLEXHPC_STATE_DIR) "
                                   "to a writable directory") from exc
        return self._conn

    @property
    def checkpoints(self):
        if self._checkpoints is None:
            from .checkpoints import CheckpointStore
            self._checkpoints = CheckpointStore(self._open(), self.key(),
                                                retention=self.config.retention)
        return self._checkpoints

    @property
    def timers(self):
        if self._timers is None:
            from .timers import TimerStore
            self._timers = TimerStore(self._open())
        return self._timers

    def load_latest(self, actor_key: str):
        """The newest ``(state, seq)`` of ``actor_key`` over every rank's file (this
        rank's first), or None. A refused checkpoint raises CheckpointRejected, as a
        plain load does; other ranks' files are only read."""
        import glob
        import sqlite3
        from .checkpoints import CheckpointStore
        best = self.checkpoints.load(actor_key)
        for path in sorted(glob.glob(os.path.join(self.config.dir, "rank-*.sqlite"))):
            if os.path.abspath(path) == os.path.abspath(self.path):
                continue
            try:
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            except sqlite3.Error:
                continue
            try:
                conn.execute("PRAGMA busy_timeout = 5000")
                found = CheckpointStore.__new__(CheckpointStore)
                found._conn, found._key = conn, self.key()
                found.retention = self.config.retention
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
