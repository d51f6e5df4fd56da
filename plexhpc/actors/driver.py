"""The handle a driver script gets from :func:`plexhpc.start`: the job, seen from one rank.

It offers what a script needs (ask, send, spawn, stop, shard groups, pools, process
groups, shutdown) and nothing of the node's internals. Every call waits on the script's
thread while the rank's loop runs on its own; the calls shared with ``host`` are the
same code (:mod:`plexhpc.actors.calls`).
"""

from __future__ import annotations

from typing import Any

from .. import errors as E
from ..context import make_context
from ..runtime.cell import check_message, check_ms
from .calls import Calls, DriverCaller

__all__ = ["Driver"]


class Driver(Calls):
    """Drive the job from a script (rank ``driver_rank``, 0 by default). On the other
    ranks the same object exists after the job has ended (``is_driver`` is False)."""

    def __init__(self, node):
        self._node = node
        self._caller_obj = DriverCaller(node)

    def _caller(self):
        return self._caller_obj

    # ---- who and where ---------------------------------------------------------------

    @property
    def is_driver(self) -> bool:
        """True on the rank whose script drives the job (guard driver code with it)."""
        return self._node.is_driver

    @property
    def rank(self) -> int:
        return self._node.rank

    @property
    def size(self) -> int:
        """The number of ranks in the job."""
        return self._node.size

    @property
    def config(self):
        """The app config the job runs (read it; changing it changes nothing)."""
        return self._node.config

    def resolve(self, name_or_id: str) -> str:
        """The actor id for a name or id (``ActorNotFound`` if the name is unknown)."""
        return self._node.resolve(name_or_id)

    # ---- messaging -------------------------------------------------------------------

    def ask(self, to: str, op: str, payload: dict | None = None, timeout_ms: float = 5000,
            *, tenant: str | None = None, namespace: str | None = None,
            principal: str | None = None) -> Any:
        """Send ``op`` to ``to`` and wait for the reply.

        ``tenant``, ``namespace`` and ``principal`` set the request context the handler
        (and everything it asks in turn) runs in; without them the target runs in its
        own context. Raises :class:`~plexhpc.errors.AskTimeout`,
        :class:`~plexhpc.errors.ActorNotFound`, or the error the handler raised (a
        plexhpc error as itself, anything else as :class:`~plexhpc.errors.RemoteError`)."""
        check_message(op, payload)
        check_ms(timeout_ms)
        ctx = make_context(tenant, namespace, principal)
        node = self._node
        frm = self._caller_obj.frm
        return self._caller_obj.wait(
            lambda done: node.start_ask(to, op, payload, timeout_ms, done, frm, ctx),
            timeout_ms)

    def send(self, to: str, op: str, payload: dict | None = None, *,
             tenant: str | None = None, namespace: str | None = None,
             principal: str | None = None) -> None:
        """Fire-and-forget ``op`` to ``to``, in the given context. An unknown name raises
        ActorNotFound here."""
        check_message(op, payload)
        ctx = make_context(tenant, namespace, principal)
        node = self._node
        node.resolve(to)
        frm = self._caller_obj.frm
        if node.lifecycle.finished.is_set():
            raise E.NodeClosed(f"the node on rank {node.rank} has shut down")
        node.hub.call_soon(lambda: node.send_quiet(to, op, payload, frm, ctx))

    def stop(self, actor: str, timeout_ms: float = 10000) -> None:
        """Stop an actor normally (its terminate handler runs; it is not restarted) and
        wait until it has stopped."""
        node = self._node
        self._caller_obj.wait(lambda done: node.actors.start_stop(actor, "normal", done),
                              timeout_ms)

    # ---- the job ---------------------------------------------------------------------

    def shutdown(self, reason: str = "requested", exit_code: int = 0) -> None:
        """Begin a job-wide shutdown (returns at once; every rank drains and stops)."""
        node = self._node
        if node.lifecycle.finished.is_set():
            raise E.NodeClosed(f"the node on rank {node.rank} has shut down")
        node.hub.call_soon(lambda: node.request_shutdown(reason, exit_code))

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until the job has shut down on this rank (an actor's ``host.shutdown``,
        a signal, a failure); True if it did within ``timeout`` seconds."""
        return self._node.lifecycle.finished.wait(timeout)

    @property
    def closed(self) -> bool:
        return self._node.closed

    @property
    def exit_code(self) -> int:
        return self._node.exit_code

    def metrics_text(self) -> str:
        """Prometheus text of this rank's actors that have the ``metrics`` facet."""
        return self._node.metrics_text()
