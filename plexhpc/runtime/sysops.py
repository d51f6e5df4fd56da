"""Messages between nodes (not actors): one table of system ops, and one way to send them.

Each subsystem registers the ops it handles where it is built, with the shape of their
payload, so the protocol between ranks is written down in one place and can be listed
(:meth:`SystemOps.table`). Two kinds:

- a *cast* (``handler(src, data)``): names, process groups, phases, monitors...;
- an *ask* (``handler(src, data, done, to)``): spawn on another rank, stop, supervisor
  commands, state calls. ``done(ok, value)`` answers the asking rank; an error travels
  in :func:`plexhpc.errors.to_wire`'s format and arrives as its own class.

System messages from one rank to another arrive in the order they were posted (one
transport channel per pair of ranks), after that rank's earlier actor messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import errors as E
from ..log import get_logger
from . import envelope as env_

__all__ = ["SystemOps", "SystemOp"]

log = get_logger("node")


@dataclass(frozen=True)
class SystemOp:
    """One entry of the table: who handles ``name``, and what its payload is."""

    name: str
    handler: object
    payload: str
    asks: bool
    owner: str


class SystemOps:
    """The system-op table of one node and the calls that post to other nodes."""

    def __init__(self, rank: int, size: int, transport, pending):
        self.rank = rank
        self.size = size
        self._transport = transport
        self._pending = pending
        self._ops: dict = {}

    # ---- the table -----------------------------------------------------------------

    def register(self, name: str, handler, *, payload: str, owner: str,
                 asks: bool = False) -> None:
        """Handle system op ``name``: ``handler(src, data)``, or for an ask
        ``handler(src, data, done, to)``. ``payload`` documents the data's shape."""
        if name in self._ops:
            raise ValueError(f"system op {name!r} is registered twice "
                             f"({self._ops[name].owner} and {owner})")
        self._ops[name] = SystemOp(name, handler, payload, asks, owner)

    def table(self) -> list:
        """Every registered op, sorted by name (for docs and debugging)."""
        return [self._ops[k] for k in sorted(self._ops)]

    # ---- sending -------------------------------------------------------------------

    def post(self, rank: int, op: str, data=None) -> None:
        """Send a system cast to ``rank``'s node."""
        self._transport.post(rank, env_.system(op, data))

    def broadcast(self, op: str, data=None) -> None:
        """Send a system cast to every other rank's node."""
        post, msg = self._transport.post, env_.system(op, data)
        for r in range(self.size):
            if r != self.rank:
                post(r, msg)

    def ask(self, rank: int, op: str, data, done, timeout_ms: float, to=None) -> None:
        """Ask ``rank``'s node; ``done(ok, value)`` gets its answer, or AskTimeout."""
        corr = self._pending.add(done, to or f"$node@{rank}", op, timeout_ms)
        self._transport.post(rank, env_.system(op, data, corr, self.rank, to))

    def answer(self, src: int, corr: int):
        """The ``done(ok, value)`` that answers system ask ``corr`` from rank ``src``."""
        post = self._transport.post
        rank = self.rank

        def done(ok, value):
            if ok:
                post(src, env_.reply(corr, value))
            else:
                post(src, env_.error(corr, E.to_wire(value, rank=rank)))
        return done

    # ---- receiving -----------------------------------------------------------------

    def dispatch(self, src: int, env: tuple) -> None:
        """Handle a system message from rank ``src``. A bad payload is that message's
        error (answered, if it was an ask), never the rank's."""
        _kind, to, _frm, op, data, corr, _rr, _ctx = env
        entry = self._ops.get(op)
        if entry is None:
            log.error("unknown system message %r from rank %d (ignored)", op, src)
            if corr:
                self.answer(src, corr)(False, E.InvalidMessage(
                    f"rank {self.rank} has no system op {op!r}"))
            return
        if entry.asks:
            done = self.answer(src, corr) if corr else _ignore
            try:
                entry.handler(src, data, done, to)
            except Exception as exc:  # noqa: BLE001 - one message's failure, answered
                log.exception("system ask %r from rank %d failed", op, src)
                done(False, exc)
            return
        try:
            entry.handler(src, data)
        except Exception:  # noqa: BLE001 - never let one message end the rank's loop
            log.exception("system message %r from rank %d failed", op, src)


def _ignore(ok, value) -> None:
    return None
