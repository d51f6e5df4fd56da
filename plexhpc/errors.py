"""The exceptions plexhpc raises, in one tree.

Every class also subclasses the builtin it means, so ordinary ``except`` clauses keep
working (an ask timeout is a ``TimeoutError``, a bad config a ``ValueError``)::

    PlexError
    ├── ConfigError           (ValueError)       the app config is wrong; names file and key
    ├── InvalidMessage        (ValueError)       a payload that a handler cannot take
    │   └── Rejected                             raised by a handler to refuse a request
    ├── ActorNotFound         (LookupError)      no actor with that name or id
    ├── AskTimeout            (TimeoutError)     no reply within timeout_ms
    ├── RemoteError           (RuntimeError)     a handler raised; carries type, rank, traceback
    │   └── RemoteTimeout     (TimeoutError)     ... and what it raised was a timeout
    ├── NodeClosed            (RuntimeError)     the node is shutting down or has shut down
    ├── StartError            (RuntimeError)     the job could not start (an init failed, a
    │                                            rank never arrived)
    ├── JobFailed             (RuntimeError)     the job stopped abnormally (restart intensity
    │                                            exceeded, the driver raised, a rank vanished)
    ├── HostUsageError        (RuntimeError)     ``host`` used outside an actor's handler
    ├── ShardGroupError       (ValueError)       a bad shard-group spec or an unknown group
    ├── ScatterGatherIncomplete (TimeoutError)   fewer shards answered than min_responses
    ├── ShardFailure          (RuntimeError)     a group reduction's shards raised or stopped
    ├── ShardTimeout          (TimeoutError)     not every rank joined a group reduction
    ├── CollectiveError       (RuntimeError)     a collective could not complete
    │   ├── CollectiveMismatch (ValueError)      ranks passed different shapes/dtypes/trees
    │   ├── CollectiveTimeout  (TimeoutError)    not every rank arrived in time
    │   └── CollectiveAborted                    another rank failed (names it), or the
    │                                            communicator is unusable after a failure
    ├── CapabilityDenied      (PermissionError)  a host call outside the actor's declared
    │                                            capabilities; names the capability
    └── StateError            (RuntimeError)     KV, TupleSpace, channel or checkpoint store
        ├── CheckpointRejected (ValueError)      a tampered, truncated, foreign or
        │                                        unknown-version checkpoint; never loaded
        ├── StateTimeout       (TimeoutError)    a blocking take/read/receive timed out
        └── UnknownLease       (LookupError)     ack/nack of a message not leased (or
                                                 whose lease expired)

Errors that cross ranks travel as data (:func:`to_wire` / :func:`from_wire`) and are
rebuilt here as the class they were raised as, with ``rank``, ``actor``, ``op`` and
``remote_traceback`` saying where; a foreign exception arrives as RemoteError naming its
type. The caller never gets an unpickled foreign exception.
"""

from __future__ import annotations

__all__ = [
    "PlexError",
    "ConfigError",
    "InvalidMessage",
    "Rejected",
    "ActorNotFound",
    "AskTimeout",
    "RemoteError",
    "RemoteTimeout",
    "NodeClosed",
    "StartError",
    "JobFailed",
    "HostUsageError",
    "ShardGroupError",
    "ScatterGatherIncomplete",
    "ShardFailure",
    "ShardTimeout",
    "CollectiveError",
    "CollectiveMismatch",
    "CollectiveTimeout",
    "CollectiveAborted",
    "CapabilityDenied",
    "StateError",
    "CheckpointRejected",
    "StateTimeout",
    "UnknownLease",
]


#: every PlexError class by name, for :func:`from_wire` (filled as classes are defined)
REGISTRY: dict = {}


class PlexError(Exception):
    """Base class of every error plexhpc raises on purpose.

    ``rank``, ``actor`` and ``op`` say where it was raised when it crossed ranks (None
    otherwise), ``remote_traceback`` the traceback there."""

    rank: int | None = None
    actor: str | None = None
    op: str | None = None
    remote_traceback: str | None = None

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        REGISTRY[cls.__name__] = cls


REGISTRY["PlexError"] = PlexError


class ConfigError(PlexError, ValueError):
    """The app config is invalid. ``path`` and ``key`` say where, the message says what
    was expected and what was found."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None):
        self.path = path
        self.key = key
        where = ""
        if path and key:
            where = f"{path}: {key}: "
        elif path:
            where = f"{path}: "
        elif key:
            where = f"{key}: "
        super().__init__(where + message)


class InvalidMessage(PlexError, ValueError):
    """A message was refused before any handler ran: its payload is not a dict, or it
    lacks an argument the handler requires. The actor's state is untouched."""


class Rejected(InvalidMessage):
    """Raise it in a handler to refuse a request that is wrong (an unknown lease, a bad
    argument): the asker gets :class:`InvalidMessage` with your message, and the actor
    is not restarted — its state, and everything it already accepted, stays."""


class ActorNotFound(PlexError, LookupError):
    """No actor answers to this name or id (never spawned, stopped, or a rank that does
    not exist)."""

    def __init__(self, message: str, *, actor: str | None = None):
        self.actor = actor
        super().__init__(message)


class AskTimeout(PlexError, TimeoutError):
    """No reply arrived within the ask's timeout. ``to``, ``op`` and ``timeout_ms`` say
    which ask. The target may still be running it; a late reply is dropped."""

    def __init__(self, message: str, *, to: str | None = None, op: str | None = None,
                 timeout_ms: float | None = None):
        self.to = to
        self.op = op
        self.timeout_ms = timeout_ms
        super().__init__(message)


class RemoteError(PlexError, RuntimeError):
    """The target's handler raised. The caller's ask re-raises it as this class:
    ``remote_type`` and ``remote_message`` are the original exception's, ``rank`` and
    ``actor`` say where it ran, ``remote_traceback`` holds the formatted traceback
    (also attached as ``__cause__`` text in ``str(err.__cause__)``)."""

    def __init__(self, message: str, *, remote_type: str = "", remote_message: str = "",
                 rank: int | None = None, actor: str | None = None, op: str | None = None,
                 remote_traceback: str = ""):
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.rank = rank
        self.actor = actor
        self.op = op
        self.remote_traceback = remote_traceback
        super().__init__(message)


class RemoteTimeout(RemoteError, TimeoutError):
    """The remote handler failed with a timeout of its own (for instance an ask it made
    in turn timed out, as in a call cycle A -> B -> A)."""


class NodeClosed(PlexError, RuntimeError):
    """The node is shutting down or has shut down, so it takes no new work."""


class StartError(PlexError, RuntimeError):
    """The job could not start: an actor's init failed, or a rank never arrived within
    the start-up timeout. Every rank raises it; the message names the cause."""


class JobFailed(PlexError, RuntimeError):
    """The job stopped abnormally; ``exit_code`` is its status, the message the reason.
    Raised on every rank when a driver script's block ends, so the script fails too."""

    def __init__(self, message: str, *, exit_code: int = 1):
        self.exit_code = exit_code
        super().__init__(message)


class HostUsageError(PlexError, RuntimeError):
    """``host`` was used where there is no current actor (outside a handler). From a
    driver script use the node returned by :func:`plexhpc.start` instead."""


class ShardGroupError(PlexError, ValueError):
    """A shard-group call was refused: a bad spec (the message names the key and what was
    expected), an unknown group, or shards that could not be created."""


class ScatterGatherIncomplete(PlexError, TimeoutError):
    """Fewer shards answered than ``min_responses`` before the timeout. ``missing`` lists
    the shard ids that did not answer successfully; ``partial`` holds the reply built
    from those that did."""

    def __init__(self, message: str, *, missing=(), partial=None):
        self.missing = list(missing)
        self.partial = partial
        super().__init__(message)


class ShardFailure(PlexError, RuntimeError):
    """A group reduction could not use every shard: some raised, stopped or did not
    answer its ``map_function`` in time. The message names them, rank by rank; nothing
    was reduced."""


class ShardTimeout(PlexError, TimeoutError):
    """Not every rank took part in a group reduction within its ``timeout_ms`` (a rank is
    stuck or gone). Group reductions stay disabled until the job restarts, since the
    ranks no longer agree on which reduction comes next."""


class CollectiveError(PlexError, RuntimeError):
    """A collective could not complete. Raised on every rank that took part."""


class CollectiveMismatch(CollectiveError, ValueError):
    """Ranks passed values that do not fit together (shapes, dtypes, pytree structure,
    op or root). The message names the ranks and what each passed."""


class CollectiveTimeout(CollectiveError, TimeoutError):
    """Not every rank arrived at the collective within the timeout (a rank died, is stuck,
    or called collectives in a different order). The communicator cannot be used again."""


class CollectiveAborted(CollectiveError):
    """Another rank failed inside the collective or a collective region; ``rank`` names
    it. Also raised when a communicator is used again after such a failure."""

    def __init__(self, message: str, *, rank: int | None = None):
        self.rank = rank
        super().__init__(message)


class CapabilityDenied(PlexError, PermissionError):
    """An actor called a host facility (kv, ts, channel, spawn, ...) that its config does
    not declare. Add the capability to the actor's ``capabilities`` list if it is meant to
    use it. ``capability`` names what was missing."""

    def __init__(self, message: str, *, capability: str = ""):
        self.capability = capability
        super().__init__(message)


class StateError(PlexError, RuntimeError):
    """A state primitive (KV, TupleSpace, channel, checkpoint store) could not do what was
    asked; the message says what and why."""


class CheckpointRejected(StateError, ValueError):
    """A checkpoint failed verification (bad signature, truncated, another deployment's
    key, unknown format version) and was refused without being decoded into objects."""


class StateTimeout(StateError, TimeoutError):
    """A blocking TupleSpace take/read or channel receive found nothing in time."""


class UnknownLease(StateError, LookupError):
    """ack/nack named a message that is not leased to anyone now: a wrong id, an ack that
    came twice, or a lease that expired (the message was or will be redelivered)."""


# --- errors on the wire -------------------------------------------------------------
#
# One format for every reply path (ask, driver call, shard call, group reduction, state
# call): the class travels by name and is rebuilt from this module's registry, so an
# error raised on another rank arrives as the class it was raised as, with the rank,
# actor and op where it happened and the remote traceback. A foreign exception (a
# handler's KeyError) arrives as RemoteError (RemoteTimeout for a timeout) naming its
# type. Only plain data crosses: nothing is unpickled into an arbitrary class.


#: attributes every error carries after crossing ranks (None when not known)
_WHERE = ("rank", "actor", "op", "remote_traceback")

_TIMEOUT_TYPES = frozenset({"TimeoutError", "socket.timeout"})


def to_wire(exc: BaseException, *, rank: int | None = None, actor: str | None = None,
            op: str | None = None, tb: str | None = None) -> tuple:
    """Encode ``exc`` as plain data: ``(class name, message, fields, rank, actor, op,
    traceback)``. ``rank``/``actor``/``op``/``tb`` say where it happened; values already
    on the error (it crossed a rank before) win, so the origin is kept."""
    if isinstance(exc, PlexError):
        name = type(exc).__name__
        if REGISTRY.get(name) is not type(exc):
            name = next(c.__name__ for c in type(exc).__mro__ if REGISTRY.get(c.__name__) is c)
        fields = {k: v for k, v in vars(exc).items()
                  if k not in _WHERE and not k.startswith("_") and _plain(v)}
        message = exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) \
            else str(exc)
    else:
        name = "RemoteTimeout" if isinstance(exc, TimeoutError) else "RemoteError"
        message = f"{type(exc).__name__}: {exc}"
        fields = {"remote_type": type(exc).__name__, "remote_message": str(exc)}
    where = [getattr(exc, "rank", None), getattr(exc, "actor", None),
             getattr(exc, "op", None), getattr(exc, "remote_traceback", None)]
    for i, v in enumerate((rank, actor, op, tb)):
        if where[i] in (None, "") and v is not None and (i != 0 or isinstance(v, int)):
            where[i] = v
    return (name, message, fields, *where)


def from_wire(wire: tuple) -> PlexError:
    """Rebuild the error a caller should see from :func:`to_wire`'s tuple. The class is
    looked up by name in :data:`REGISTRY` (an unknown name becomes RemoteError); its
    ``__init__`` is not called, so every class rebuilds, whatever its arguments."""
    name, message, fields, rank, actor, op, tb = wire
    cls = REGISTRY.get(name)
    if cls is None:
        cls = RemoteError
        fields = dict(fields or {}, remote_type=name)
    err = _blank(cls)
    Exception.__init__(err, message)
    for k, v in (fields or {}).items():
        setattr(err, k, v)
    err.rank, err.actor, err.op, err.remote_traceback = rank, actor, op, tb
    return err


def _blank(cls):
    """An instance of ``cls`` without running its ``__init__`` (whose arguments differ
    from class to class). With two builtin bases (RuntimeError and TimeoutError) only the
    base that owns the instance layout may allocate it, so try them in MRO order."""
    for base in cls.__mro__:
        try:
            return base.__new__(cls)
        except TypeError:
            continue
    raise TypeError(f"cannot rebuild {cls.__name__}")  # pragma: no cover


def _plain(v) -> bool:
    """Data, not behaviour: an error field that may travel (a reply's partial results
    do; an exception object or a callable does not)."""
    return not isinstance(v, BaseException) and not callable(v)
