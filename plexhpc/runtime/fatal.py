"""The last resort: this rank's loop failed, and the job must end rather than hang.

Everything a message can do wrong is handled where it happens (a payload that does not
pickle or unpickle, a handler that raises, a delivery that raises). An exception that
escapes the hub loop anyway means this rank can no longer serve, and its peers would
wait for it forever. :func:`fail_rank` then, in this order and each step best effort:

1. arms a watchdog: if this rank's node has not finished closing within
   ``PLEXHPC_FATAL_EXIT_S`` (10 s), the process exits with status 1 (``os._exit``:
   nothing the node does may block it);
2. logs the traceback, naming the rank;
3. records the failure in the lifecycle (status 1, the reason, an unclean end: no
   collective clean-up with peers that may be gone);
4. sends what is queued, then tells every other rank ``job_failed`` with the message
   ``job failed: rank R: <cause>``, waiting at most 2 s for those sends; each peer
   fails its calls to this rank at once and shuts down with status 1 and that message;
5. fails every call still waiting on this rank with ``JobFailed`` (a driver script's
   call returns at once).

Then the loop returns and the node closes as usual; the watchdog stands down once it
has (``plexhpc run`` then exits with status 1; a script gets ``JobFailed`` on every
rank).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback

from .. import errors as E
from ..log import get_logger
from . import envelope as env_
from .current import current_node
from .lifecycle import JOB_FAILED

__all__ = ["fail_rank", "arm_watchdog", "node_closed", "fatal_exit_s", "NOTIFY_S"]

log = get_logger("node")

#: how long the last resort waits for its ``job_failed`` messages to leave
NOTIFY_S = 2.0


def fatal_exit_s() -> float:
    """Seconds a failed rank has to close its node before the watchdog ends the process
    (``PLEXHPC_FATAL_EXIT_S``, default 10; an unusable value means the default)."""
    try:
        value = float(os.environ.get("PLEXHPC_FATAL_EXIT_S", "") or 10.0)
    except ValueError:
        return 10.0
    return value if value > 0 else 10.0


def arm_watchdog(closed, seconds: float, message: str) -> threading.Thread:
    """Exit the process with status 1 unless ``closed()`` is true within ``seconds``
    (checked every 50 ms)."""
    deadline = time.monotonic() + seconds

    def watch():
        while time.monotonic() < deadline:
            if closed():
                return
            time.sleep(0.05)
        try:
            log.critical("%s; the rank did not close within %.0f s: exiting now", message,
                         seconds)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(1)
    t = threading.Thread(target=watch, name="plexhpc-fatal-watchdog", daemon=True)
    t.start()
    return t


def node_closed(rt) -> bool:
    """``rt`` has finished closing: its loop ended and it is no longer this process's
    node (the last step of closing a node)."""
    return rt.lifecycle.finished.is_set() and current_node() is not rt


def fail_rank(rt, exc: BaseException) -> str:
    """This rank's loop raised ``exc``: end the job on every rank, in bounded time.
    Never raises; returns the message the job fails with."""
    rank = rt.rank
    cause = f"{type(exc).__name__}: {exc}"
    message = f"job failed: rank {rank}: {cause}"
    life = rt.lifecycle
    try:
        arm_watchdog(lambda: node_closed(rt), fatal_exit_s(), message)
    except Exception:  # noqa: BLE001 - no thread: still tell the job
        pass
    try:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        log.critical("rank %d: the node's loop failed; ending the job (%s)\n%s", rank,
                     message, tb)
    except Exception:  # noqa: BLE001
        pass
    try:
        life.fail(message)
    except Exception:  # noqa: BLE001
        log.exception("rank %d: could not record the failure", rank)
    tell_peers(rt, message)
    try:
        pending = rt.pending
        for corr in list(pending.waiting):
            pending.complete(corr, False, E.JobFailed(message, exit_code=1))
    except Exception:  # noqa: BLE001
        log.exception("rank %d: could not fail the calls in flight", rank)
    return message


def tell_peers(rt, message: str, timeout_s: float = NOTIFY_S) -> None:
    """Send what is queued, then ``job_failed`` to every other rank; wait at most
    ``timeout_s`` for the sends to complete. Best effort: errors are logged."""
    transport = rt.transport
    try:
        for dest in transport.flush():
            rt.doorbell.ring_if_sleeping(dest)
    except Exception:  # noqa: BLE001 - what failed may be the outbox itself
        log.exception("rank %d: could not send what was queued", rt.rank)
    note = env_.system(JOB_FAILED, message)
    for dest in range(rt.size):
        if dest == rt.rank:
            continue
        try:
            transport.send_now(dest, [note])
            rt.doorbell.ring_if_sleeping(dest)
        except Exception:  # noqa: BLE001
            log.exception("rank %d: could not tell rank %d that the job failed", rt.rank,
                          dest)
    deadline = time.monotonic() + timeout_s
    try:
        while transport.sends_in_flight and time.monotonic() < deadline:
            transport.progress_sends()
            time.sleep(0.001)
    except Exception:  # noqa: BLE001
        log.exception("rank %d: could not complete the sends", rt.rank)
