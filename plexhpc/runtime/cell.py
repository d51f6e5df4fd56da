"""What the node keeps per actor (:class:`ActorCell`), the status it goes through, and
what any caller may send it (:func:`check_message`). The messages themselves are in
:mod:`plexhpc.runtime.envelope`."""

from __future__ import annotations

from .. import errors as E

__all__ = ["ActorCell", "check_message", "RESERVED_OPS", "STARTING", "RUNNING", "STOPPING",
           "STOPPED", "DONE", "BLOCKED"]

# actor status: STARTING (init pending, or halted by its supervisor: messages wait),
# RUNNING, STOPPING (its terminate handler is queued), STOPPED (gone)
STARTING, RUNNING, STOPPING, STOPPED = range(4)

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


#: the longest timeout or delay any call takes (a week, in ms)
MAX_MS = 7 * 24 * 3600 * 1000.0


def check_ms(value, what: str = "timeout_ms", *, zero: bool = False) -> float:
    """A timeout or delay in milliseconds: a finite number > 0 (``zero``: >= 0) and at
    most a week; anything else (a bool, a str, NaN, infinity) is refused with
    :class:`~plexhpc.errors.InvalidMessage` before it reaches a deadline heap."""
    if value.__class__ is bool or not isinstance(value, (int, float)) or not (
            (0 <= value if zero else 0 < value) and value <= MAX_MS):
        raise E.InvalidMessage(
            f"{what} must be a number of milliseconds {'>=' if zero else '>'} 0 and at most "
            f"{MAX_MS:.0f} (a week), got {value!r}")
    return float(value)

