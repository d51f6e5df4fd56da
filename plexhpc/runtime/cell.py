"""What the node keeps per actor, and the shapes of the messages it moves.

An envelope is a tuple ``(kind, to, from, op, payload, corr, reply_rank, ctx)``: cheap to
build, to pickle in a batch, and to take apart. ``corr`` matches a reply to its ask and
``reply_rank`` says where the reply goes (-1: nowhere, a send). ``ctx`` is the request
context (:class:`~plexhpc.context.RequestContext`) or None: the target's own context.
"""

from __future__ import annotations

from .. import errors as E

__all__ = ["ActorCell", "rank_of", "ASK", "SEND", "REPLY", "ERROR", "SYS", "INIT", "TERM",
           "STARTING", "RUNNING", "STOPPING", "STOPPED"]

# envelope kinds (ASK and SEND first: "kind <= SEND" means "for an actor")
ASK, SEND, REPLY, ERROR, SYS, INIT, TERM = range(7)

# actor status
STARTING, RUNNING, STOPPING, STOPPED = range(4)

# node phases
P_STARTING, P_RUNNING, P_DRAINING, P_FINAL, P_DONE = range(5)

# what a worker greenlet hands back to the hub: its turn is over / it waits on a reply
DONE = object()
BLOCKED = object()


class ActorCell:
    """The runtime's record of one actor: kept small, since a rank may hold 100k of them."""

    __slots__ = ("id", "name", "spec", "inst", "mailbox", "running", "queued", "status",
                 "restart", "args", "init_waiter", "seq", "groups", "stop_reason",
                 "stop_waiters", "restarts", "supervised", "pending_init", "current",
                 "ctx", "home_ctx", "caps", "monitors", "links", "facets", "watching")

    def __init__(self, aid, name, spec, args, restart, seq, supervised):
        self.id = aid
        self.name = name
        self.spec = spec
        self.inst = None
        self.mailbox = None
        self.running = None
        self.queued = False
        self.status = STARTING
        self.restart = restart
        self.args = args
        self.init_waiter = None
        self.seq = seq
        self.groups = None
        self.stop_reason = None
        self.stop_waiters = None
        self.restarts = 0
        self.supervised = supervised
        self.pending_init = False
        self.current = None  # the ask being handled, until its reply is sent or deferred
        self.ctx = None      # the request context of the message being handled
        self.home_ctx = None  # the context it was started in (init, timers)
        self.caps = None     # frozenset of capabilities, None = all
        self.monitors = None  # ref -> watcher id: who gets __DOWN__ when this one stops
        self.links = None    # peer ids: who gets __EXIT__ when this one crashes
        self.facets = None   # runtime state of its facets (durability, virtual, metrics)
        self.watching = None  # ref -> target: the monitors this actor holds


#: ops only the runtime sends (a forged exit signal could kill any actor)
RESERVED_OPS = frozenset({"__EXIT__", "__DOWN__", "__init__", "__terminate__"})


def check_message(op, payload=None, where: str = "") -> None:
    """Refuse, with InvalidMessage, what no caller may send: an op that is not a
    non-empty str or is reserved for the runtime, a payload that is not a dict."""
    pre = f"{where}: " if where else ""
    if not isinstance(op, str) or not op:
        raise E.InvalidMessage(f"{pre}op must be a non-empty str, got {op!r}")
    if op in RESERVED_OPS:
        raise E.InvalidMessage(f"{pre}op {op!r} is reserved for the runtime (monitors, "
                               "links, lifecycle) and cannot be sent")
    if payload is not None and not isinstance(payload, dict):
        raise E.InvalidMessage(f"{pre}payload for {op!r} must be a dict (or None), got "
                               f"{type(payload).__name__}")


def rank_of(actor_id: str) -> int:
    """The rank encoded in an actor id (``name@rank``)."""
    head, sep, tail = actor_id.rpartition("@")
    if not sep or not tail.isdigit():
        raise E.ActorNotFound(f"{actor_id!r} is not an actor id (expected name@rank)",
                              actor=actor_id)
    return int(tail)
