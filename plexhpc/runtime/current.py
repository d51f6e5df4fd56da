"""Which node runs in this process, and which actor the running code belongs to.

A process hosts one node at a time. Code inside a handler finds its actor from the
current greenlet (each worker greenlet carries the cell it runs), so ``host.*`` needs no
reference to either.
"""

from __future__ import annotations

from greenlet import getcurrent

from .. import errors as E

__all__ = ["current_node", "set_current_node", "here"]

_node = None


def current_node():
    """The node running in this process, if any."""
    return _node


def set_current_node(node, previous=None) -> None:
    """Make ``node`` current; with ``previous``, only if ``previous`` still is (a node
    that closes clears itself, not a newer one)."""
    global _node
    if previous is None or _node is previous:
        _node = node


def here():
    """``(node, cell)`` for the actor whose handler (or workflow run) is running."""
    cell = getattr(getcurrent(), "cell", None)
    if cell is None:
        raise E.HostUsageError(
            "host.* works only inside an actor's handler; from a driver script use the "
            "handle returned by plexhpc.start()")
    return _node, cell
