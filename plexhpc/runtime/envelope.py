"""The wire protocol between nodes: what one message (an *envelope*) holds.

An envelope is a plain tuple ``(kind, to, frm, op, payload, corr, reply_rank, ctx)``;
read it by unpacking (``kind, to, frm, op, payload, corr, rr, ctx = env``) or with the
field indices below, and build it with the constructors (or, on the hottest paths, a
literal in the same order, with a comment naming the constructor it inlines).

Why a plain tuple and not a NamedTuple: measured on this machine (Python 3.11, see
``benchmarks/micro/test_envelope.py``), a NamedTuple costs 5x to build (196 vs 39 ns)
and 5x to pickle and unpickle in a batch of 64 (58 vs 12 us, 1829 vs 1556 bytes), while
unpacking a tuple is as fast as indexing it. Every remote message is built once and
pickled once, so the tuple wins; the names live here.

Fields:

- ``kind``: ASK (wants a reply) or SEND (a cast) for an actor; REPLY / ERROR answer an
  ask; SYS is for the node itself (see :mod:`plexhpc.runtime.sysops`); INIT and TERM run
  an actor's init / terminate handler in its mailbox order (never cross ranks).
- ``to``: the target actor id (None for replies and most system messages).
- ``frm``: the sender's id (an actor id, ``$driver@R``, ``$group:G``...).
- ``op`` and ``payload``: what to do, and its arguments (a dict, or None).
- ``corr``: matches a reply to its ask (0: no reply wanted).
- ``reply_rank``: where the reply goes (-1: nowhere).
- ``ctx``: the request context tuple (tenant, namespace, principal), or None: the target
  runs in its own context.
"""

from __future__ import annotations

__all__ = ["ASK", "SEND", "REPLY", "ERROR", "SYS", "INIT", "TERM",
           "KIND", "TO", "FRM", "OP", "PAYLOAD", "CORR", "REPLY_RANK", "CTX",
           "ask", "send", "reply", "error", "system", "init", "terminate", "describe"]

# kinds (ASK and SEND first: "kind <= SEND" means "for an actor")
ASK, SEND, REPLY, ERROR, SYS, INIT, TERM = range(7)

KIND_NAMES = ("ASK", "SEND", "REPLY", "ERROR", "SYS", "INIT", "TERM")

# field indices
KIND, TO, FRM, OP, PAYLOAD, CORR, REPLY_RANK, CTX = range(8)


def ask(to: str, frm, op: str, payload, corr: int, reply_rank: int, ctx=None) -> tuple:
    """An ask: the reply goes to ``reply_rank`` under ``corr``."""
    return (ASK, to, frm, op, payload, corr, reply_rank, ctx)


def send(to: str, frm, op: str, payload, ctx=None) -> tuple:
    """A cast: no reply."""
    return (SEND, to, frm, op, payload, 0, -1, ctx)


def reply(corr: int, value) -> tuple:
    """The successful answer to ask ``corr``."""
    return (REPLY, None, None, None, value, corr, -1, None)


def error(corr: int, wire: tuple) -> tuple:
    """The failed answer to ask ``corr``; ``wire`` is :func:`plexhpc.errors.to_wire`'s."""
    return (ERROR, None, None, None, wire, corr, -1, None)


def system(op: str, data=None, corr: int = 0, reply_rank: int = -1, to=None) -> tuple:
    """A message for the node itself; with ``corr`` and ``reply_rank`` it is a system ask."""
    return (SYS, to, None, op, data, corr, reply_rank, None)


def init(actor_id: str, config: dict) -> tuple:
    """Run the init handler of ``actor_id`` (local only)."""
    return (INIT, actor_id, None, "__init__", config, 0, -1, None)


def terminate(actor_id: str, reason) -> tuple:
    """Run the terminate handler of ``actor_id`` (local only)."""
    return (TERM, actor_id, None, "__terminate__", reason, 0, -1, None)


def describe(env: tuple) -> str:
    """One line for logs: ``ASK op -> to (corr 5, reply to rank 0)``."""
    kind, to, frm, op, _payload, corr, rr, _ctx = env
    name = KIND_NAMES[kind] if 0 <= kind < len(KIND_NAMES) else f"kind {kind}"
    return f"{name} {op!r} {frm} -> {to} (corr {corr}, reply to rank {rr})"
