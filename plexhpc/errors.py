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

Errors that cross ranks travel as plain data (:func:`to_wire` / :func:`from_wire`) and
are rebuilt here, so the caller always gets one of these classes, never an unpickled
foreign exception.
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


class PlexError(Exception):
    """Base class of every error plexhpc raises on purpose."""


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

#: wire codes for error replies
NOT_FOUND = "not_found"
INVALID = "invalid"
REMOTE = "remote"
CLOSED = "closed"
TIMEOUT = "timeout"
STATE = "state"


def to_wire(code: str, message: str, *, remote_type: str = "", rank: int | None = None,
            actor: str | None = None, op: str | None = None, tb: str = "") -> tuple:
    """Encode an error reply as plain data (safe to send, never executes anything)."""
    return (code, message, remote_type, rank, actor, op, tb)


def from_wire(wire: tuple) -> PlexError:
    """Rebuild the exception a caller should see from an error reply."""
    code, message, remote_type, rank, actor, op, tb = wire
    if code == NOT_FOUND:
        return ActorNotFound(message, actor=actor)
    if code == INVALID:
        return InvalidMessage(message)
    if code == CLOSED:
        return NodeClosed(message)
    if code == TIMEOUT:
        return AskTimeout(message, to=actor, op=op)
    if code == STATE:
        cls = _STATE_TYPES.get(remote_type, StateError)
        return cls(message)
    cls = RemoteTimeout if remote_type in _TIMEOUT_TYPES else RemoteError
    err = cls(message, remote_type=remote_type, remote_message=message, rank=rank,
              actor=actor, op=op, remote_traceback=tb)
    return err


_STATE_TYPES = {c.__name__: c for c in (StateError, CheckpointRejected, StateTimeout,
                                        UnknownLease, CapabilityDenied)}
_TIMEOUT_TYPES = {"AskTimeout", "RemoteTimeout", "TimeoutError", "CollectiveTimeout"}
