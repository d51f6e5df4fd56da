"""Signed actor checkpoints and durable workflow steps in SQLite.

A checkpoint is an actor's state (a dict of plain data) plus the caller's sequence
number, encoded with :func:`~plexhpc.storage.codec.encode` (never pickled) and sealed with
the deployment key (:func:`~plexhpc.storage.codec.seal`). The sealed payload also names the
actor (and a workflow step its workflow, run and step number), so a valid blob moved
under another name is refused too. Each save gets the next version number for its actor;
only the newest ``retention`` versions are kept: once an actor has that many, a save
overwrites its oldest in place, so a steady stream of checkpoints writes one page each.

:meth:`CheckpointStore.load` never falls back silently: if the newest checkpoint fails
verification it raises :class:`~plexhpc.errors.CheckpointRejected` and the caller
decides (start fresh, alert, restore a backup).

Workflow steps record each step's result of a run, so a restarted workflow replays
recorded steps instead of running them again; a finished run keeps its result, and
:meth:`~CheckpointStore.compact_runs` drops the steps of old finished runs.
"""

from __future__ import annotations

import sqlite3

from ..errors import CheckpointRejected, StateError
from .codec import check_key, decode, encode, seal, unseal
from .db import ensure_schema, write_txn
from .scope import check_int, check_name

__all__ = ["CheckpointStore"]

_CHECKPOINT = "checkpoint"
_STEP = "workflow-step"
_RESULT = "workflow-result"

# overwrite the actor's oldest slot with the next version (the fast path, once every
# slot is in use): ?1 actor_key, ?2 seq, ?3 blob
_ROTATE = ("UPDATE checkpoint SET version = (SELECT MAX(version) FROM checkpoint "
           "WHERE actor_key = ?1) + 1, seq = ?2, blob = ?3 WHERE actor_key = ?1 AND slot = "
           "(SELECT slot FROM checkpoint WHERE actor_key = ?1 ORDER BY version LIMIT 1)")
_ADD = ("INSERT INTO checkpoint (actor_key, slot, version, seq, blob) SELECT ?1, "
        "COALESCE(MAX(slot), -1) + 1, COALESCE(MAX(version), 0) + 1, ?2, ?3 FROM checkpoint "
        "WHERE actor_key = ?1")
# drop all but the newest ?2 versions of actor ?1
_TRIM = ("DELETE FROM checkpoint WHERE actor_key = ?1 AND version < (SELECT version FROM "
         "checkpoint WHERE actor_key = ?1 ORDER BY version DESC LIMIT 1 OFFSET ?2 - 1)")
_MAX_CACHED = 100_000


def _int(value, what: str) -> int:
    return check_int(value, what)


class CheckpointStore:
    """Checkpoints and workflow steps on a connection from
    :func:`plexhpc.storage.open_db`, signed with ``key``
    (from :func:`plexhpc.storage.load_or_create_key`)."""

    def __init__(self, conn: sqlite3.Connection, key: bytes, *, retention: int = 2):
        check_key(key)
        check_int(retention, "retention", minimum=1)
        ensure_schema(conn)
        self._conn = conn
        self._key = key
        self.retention = retention
        self._cur = conn.cursor()
        # actor_key -> slots in use, as this store last saw them (the fast path's guide)
        self._full: dict[str, int] = {}

    @classmethod
    def reader(cls, conn: sqlite3.Connection, key: bytes, *, retention: int = 2
               ) -> "CheckpointStore":
        """A store that only reads, on a connection that may be read-only (another
        rank's file): it creates no tables. Use :meth:`load` and :meth:`versions`."""
        check_key(key)
        self = cls.__new__(cls)
        self._conn, self._key, self.retention = conn, key, retention
        self._cur = conn.cursor()
        self._full = {}
        return self

    # --- actor checkpoints --------------------------------------------------------------

    def save(self, actor_key: str, state: dict, seq: int) -> None:
        """Store a new checkpoint of ``actor_key`` and drop versions beyond
        ``retention``. Raises TypeError (naming the path) for state that is not plain
        data."""
        check_name(actor_key, "actor_key")
        _int(seq, "seq")
        if type(state) is not dict:
            raise TypeError(f"checkpoint state of {actor_key!r} must be a dict, "
                            f"got {type(state).__name__}")
        blob = seal(encode([actor_key, seq, encode(state, name="state")]), self._key,
                    _CHECKPOINT)
        if self._full.get(actor_key) == self.retention:
            if self._cur.execute(_ROTATE, (actor_key, seq, blob)).rowcount:
                return
        with write_txn(self._conn):  # first saves, a changed retention, rows gone
            self._conn.execute(_TRIM, (actor_key, self.retention))
            (count,) = self._conn.execute("SELECT COUNT(*) FROM checkpoint WHERE "
                                          "actor_key = ?", (actor_key,)).fetchone()
            if count < self.retention:
                self._conn.execute(_ADD, (actor_key, seq, blob))
                count += 1
            else:
                self._conn.execute(_ROTATE, (actor_key, seq, blob))
        if len(self._full) >= _MAX_CACHED:
            self._full.clear()
        self._full[actor_key] = count

    def load(self, actor_key: str) -> tuple[dict, int] | None:
        """``(state, seq)`` of the newest checkpoint of ``actor_key``, None if it has
        none. Raises CheckpointRejected if that checkpoint fails verification."""
        check_name(actor_key, "actor_key")
        row = self._conn.execute("SELECT version, CAST(blob AS BLOB) FROM checkpoint WHERE actor_key = ? "
                                 "ORDER BY version DESC LIMIT 1", (actor_key,)).fetchone()
        if row is None:
            return None
        version, blob = row
        where = f"checkpoint of actor {actor_key!r} (version {version})"
        fields = self._open(blob, _CHECKPOINT, where, 3)
        if fields[0] != actor_key or type(fields[1]) is not int:
            raise CheckpointRejected(f"{where} was made for actor {fields[0]!r}: moved "
                                     f"from elsewhere; refused, not loaded")
        state = self._decode(fields[2], where)
        if type(state) is not dict:
            raise CheckpointRejected(f"{where} does not hold a dict; refused")
        return state, fields[1]

    def versions(self, actor_key: str) -> list[int]:
        """The stored version numbers of ``actor_key``, oldest first."""
        return [v for (v,) in self._conn.execute(
            "SELECT version FROM checkpoint WHERE actor_key = ? ORDER BY version",
            (check_name(actor_key, "actor_key"),))]

    def delete(self, actor_key: str) -> None:
        """Drop every checkpoint of ``actor_key``."""
        self._conn.execute("DELETE FROM checkpoint WHERE actor_key = ?",
                           (check_name(actor_key, "actor_key"),))
        self._full.pop(actor_key, None)

    # --- workflow steps -----------------------------------------------------------------

    def record_step(self, wf_key: str, run_id: str, step: int, result) -> None:
        """Record the result of ``step`` of a run (replacing an earlier record of the
        same step). Raises StateError if the run has finished."""
        check_name(wf_key, "wf_key")
        check_name(run_id, "run_id")
        _int(step, "step")
        body = encode(result, name=f"result of step {step}")
        blob = seal(encode([wf_key, run_id, step, body]), self._key, _STEP)
        with write_txn(self._conn):
            if self._run_row(wf_key, run_id) is not None:
                raise StateError(f"workflow {wf_key!r} run {run_id!r} has finished; it "
                                 f"takes no more steps (start a new run)")
            self._conn.execute("INSERT OR REPLACE INTO wf_step (wf_key, run_id, step, blob) "
                               "VALUES (?, ?, ?, ?)", (wf_key, run_id, step, blob))

    def steps(self, wf_key: str, run_id: str) -> dict[int, object]:
        """``{step: result}`` of every recorded step of the run. Raises
        CheckpointRejected if any record fails verification."""
        check_name(wf_key, "wf_key")
        check_name(run_id, "run_id")
        out = {}
        for step, blob in self._conn.execute(
                "SELECT step, CAST(blob AS BLOB) FROM wf_step WHERE wf_key = ? AND run_id = ? "
                "ORDER BY step",
                (wf_key, run_id)):
            where = f"workflow {wf_key!r} run {run_id!r} step {step}"
            fields = self._open(blob, _STEP, where, 4)
            if fields[:3] != [wf_key, run_id, step]:
                raise CheckpointRejected(f"{where} holds the record of {fields[:3]!r}: "
                                         f"moved from elsewhere; refused, not loaded")
            out[step] = self._decode(fields[3], where)
        return out

    def finish_run(self, wf_key: str, run_id: str, result) -> None:
        """Mark the run finished with ``result``. Raises StateError if it already is."""
        check_name(wf_key, "wf_key")
        check_name(run_id, "run_id")
        body = encode(result, name="run result")
        blob = seal(encode([wf_key, run_id, body]), self._key, _RESULT)
        with write_txn(self._conn):
            if self._run_row(wf_key, run_id) is not None:
                raise StateError(f"workflow {wf_key!r} run {run_id!r} has already finished")
            self._conn.execute(
                "INSERT INTO wf_run (wf_key, run_id, finished, result) SELECT ?1, ?2, "
                "COALESCE(MAX(finished), 0) + 1, ?3 FROM wf_run WHERE wf_key = ?1",
                (wf_key, run_id, blob))

    def run_result(self, wf_key: str, run_id: str):
        """The result the run finished with; None if it has not finished (see
        :meth:`run_finished` to tell that from a None result)."""
        check_name(wf_key, "wf_key")
        check_name(run_id, "run_id")
        row = self._run_row(wf_key, run_id)
        if row is None:
            return None
        where = f"result of workflow {wf_key!r} run {run_id!r}"
        fields = self._open(row[0], _RESULT, where, 3)
        if fields[:2] != [wf_key, run_id]:
            raise CheckpointRejected(f"{where} holds the result of {fields[:2]!r}: moved "
                                     f"from elsewhere; refused, not loaded")
        return self._decode(fields[2], where)

    def run_finished(self, wf_key: str, run_id: str) -> bool:
        """True once :meth:`finish_run` recorded the run's result."""
        return self._run_row(check_name(wf_key, "wf_key"),
                             check_name(run_id, "run_id")) is not None

    def compact_runs(self, wf_key: str, keep: int) -> int:
        """Drop the step records of finished runs of ``wf_key`` except the newest
        ``keep`` (by finishing order); their results stay. Returns how many runs lost
        their steps."""
        check_name(wf_key, "wf_key")
        check_int(keep, "keep", minimum=0)
        with write_txn(self._conn):
            old = [r for (r,) in self._conn.execute(
                "SELECT run_id FROM wf_run WHERE wf_key = ? ORDER BY finished DESC "
                "LIMIT -1 OFFSET ?", (wf_key, keep))]
            removed = 0
            for run_id in old:
                removed += self._conn.execute(
                    "DELETE FROM wf_step WHERE wf_key = ? AND run_id = ?",
                    (wf_key, run_id)).rowcount > 0
        return removed

    # --- internals ----------------------------------------------------------------------

    def _run_row(self, wf_key, run_id):
        return self._conn.execute("SELECT CAST(result AS BLOB) FROM wf_run WHERE wf_key = ? AND "
                                  "run_id = ?",
                                  (wf_key, run_id)).fetchone()

    def _open(self, blob: bytes, kind: str, where: str, n_fields: int) -> list:
        try:
            fields = decode(unseal(blob, self._key, kind))
        except CheckpointRejected as exc:
            raise CheckpointRejected(f"{where} refused: {exc}") from None
        if type(fields) is not list or len(fields) != n_fields:
            raise CheckpointRejected(f"{where} has an unexpected layout; refused")
        return fields

    @staticmethod
    def _decode(body, where: str):
        if type(body) is not bytes:
            raise CheckpointRejected(f"{where} has an unexpected layout; refused")
        try:
            return decode(body)
        except CheckpointRejected as exc:
            raise CheckpointRejected(f"{where} refused: {exc}") from None
