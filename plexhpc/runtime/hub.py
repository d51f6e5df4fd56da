"""The hub: one loop per rank that does everything, and its idle policy.

Each turn: receive batches from other ranks, run closures handed in from other threads,
resume parked handlers and run actors with messages (up to ``TURN_CAP`` per turn), fire
timers, progress background MPI requests, expire asks, flush outgoing batches, and
advance start-up or shutdown. With nothing to do the rank spins briefly (noticing a
reply within microseconds), yields its core, and then sleeps on its doorbell until a
peer rings it, a timer is due or ``max_sleep_s`` passes.

No message ends the loop: delivery is guarded per envelope (one that raises is logged,
and answered if it was an ask; the rest of its batch is delivered), and an envelope the
transport could not unpickle is answered with ``InvalidMessage`` (an ask, a reply) or
dropped with a log line (a cast). An exception that escapes the loop anyway is the last
resort of :mod:`plexhpc.runtime.fatal`: the job is told, and the rank exits in bounded
time.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque

from greenlet import getcurrent
from greenlet import greenlet as _greenlet_type

from .. import errors as E
from ..log import get_logger
from . import envelope as env_
from .envelope import ASK, ERROR, REPLY, SEND, SYS, CORR, KIND, PAYLOAD, TO
from .fatal import fail_rank
from .cell import RUNNING as A_RUNNING
from .cell import STOPPED
from .lifecycle import FINAL, RUNNING

__all__ = ["Hub", "TURN_CAP", "IdlePolicy", "tuning_us"]

log = get_logger("node")

#: greenlet resumptions and actor turns per loop turn before polling MPI again
TURN_CAP = 256

_monotonic = time.monotonic


class IdlePolicy:
    """How long an idle rank spins, yields and sleeps (seconds). Explicit arguments win;
    the ``PLEXHPC_*_US`` environment variables only fill in what was not given."""

    def __init__(self, *, oversubscribed: bool, spin_s: float, busy_spin_s: float,
                 yield_after_s: float, max_sleep_s: float, remote_poll_s: float):
        self.oversubscribed = oversubscribed
        self.spin_s = spin_s
        self.busy_spin_s = busy_spin_s
        self.yield_after_s = yield_after_s
        self.max_sleep_s = max_sleep_s
        self.remote_poll_s = remote_poll_s

    @staticmethod
    def for_rank(doorbell, spin_us, max_sleep_s, remote_poll_s) -> "IdlePolicy":
        return idle_policy_for(doorbell, spin_us, max_sleep_s, remote_poll_s)


class Hub:
    """The loop of one rank. ``rt`` is the node whose parts it drives."""

    def __init__(self, rt, idle: IdlePolicy):
        self.rt = rt
        self.idle = idle
        self.external: deque = deque()   # closures to run on the hub (any thread)
        self.background: list = []       # (request, on_done, deadline, on_timeout)
        self.thread = None               # the hub's thread when it runs in the background
        self.greenlet = None
        self._signal = 0
        rt.transport.on_undecodable = self.on_undecodable

    # ---- from other threads --------------------------------------------------------

    def call_soon(self, fn) -> None:
        """Run ``fn`` on the hub, from any thread (rings this rank's doorbell)."""
        self.external.append(fn)
        if self.thread is not None and threading.current_thread() is not self.thread:
            self.rt.doorbell.ring_self()

    def on_thread(self) -> bool:
        """True on the hub's own thread (or before it runs in one)."""
        return self.thread is None or threading.current_thread() is self.thread

    def request_signal(self, signum) -> None:
        """A signal arrived: the loop begins a graceful shutdown on its next turn."""
        self._signal = signum
        self.rt.doorbell.ring_self()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT start a graceful job-wide shutdown (main thread only)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: self.request_signal(signum))

    def add_background(self, req, on_done, timeout_s: float, on_timeout) -> None:
        """Poll a nonblocking MPI request from the loop; ``on_done()`` when it completes,
        ``on_timeout()`` if it has not within ``timeout_s``."""
        self.background.append((req, on_done, _monotonic() + timeout_s, on_timeout))

    def _poll_background(self, now) -> None:
        tasks, self.background = self.background, []
        for task in tasks:
            req, on_done, deadline, on_timeout = task
            if req.Test():
                on_done()
            elif now > deadline:
                on_timeout()
            else:
                self.background.append(task)

    # ---- receiving -----------------------------------------------------------------

    def on_batch(self, src: int, batch) -> None:
        """Deliver a batch from rank ``src``, envelope by envelope. One that raises is
        reported (:meth:`undeliverable`) and the rest of the batch is still delivered."""
        rt = self.rt
        ex = rt.executor
        cells = ex.cells
        waiting = rt.pending.waiting
        single = len(batch) == 1
        env = None
        while True:
            try:
                for env in batch:
                    k = env[KIND]
                    if k <= SEND:
                        cell = cells.get(env[TO])
                        if (single and cell is not None and cell.running is None
                                and cell.status == A_RUNNING and not cell.mailbox
                                and not cell.queued and not ex.closed):
                            # fast path: an idle actor runs the message now, skipping
                            # the queue
                            mb = cell.mailbox
                            if mb is None:
                                cell.mailbox = mb = deque()
                            mb.append(env)
                            ex.dispatch(cell)
                        else:
                            ex.deliver(env)
                    elif k == REPLY:
                        w = waiting.pop(env[CORR], None)
                        if w is not None:
                            target = w[0]
                            if type(target) is _greenlet_type:
                                ex.switch(target, (True, env[PAYLOAD]))  # resume the asker
                            else:
                                target(True, env[PAYLOAD])
                    elif k == ERROR:
                        rt.pending.complete(env[CORR], False, env[PAYLOAD])
                    else:
                        rt.system.dispatch(src, env)
                return
            except Exception as exc:  # noqa: BLE001 - one envelope's failure, reported
                self.undeliverable(src, env, exc)
                for i, e in enumerate(batch):
                    if e is env:
                        batch = batch[i + 1:]
                        break
                else:  # cannot tell where it failed: the rest is lost, said in the log
                    return

    def undeliverable(self, src: int, env, exc: BaseException) -> None:
        """Delivering ``env`` from rank ``src`` raised ``exc``: log it with the traceback
        and answer the asker, if there is one, with RemoteError naming the op."""
        rank = self.rt.rank
        try:
            what = env_.describe(env)
        except Exception:  # noqa: BLE001 - a malformed envelope
            what = repr(env)[:200]
        log.error("rank %d: delivering %s from rank %d failed; the rest of its batch is "
                  "delivered", rank, what, src, exc_info=exc)
        try:
            kind, to, _frm, op, _payload, corr, rr, _ctx = env
            if kind in (ASK, SYS) and corr and type(rr) is int and rr >= 0:
                err = E.RemoteError(
                    f"rank {rank} could not deliver {op!r} to {to!r}: "
                    f"{type(exc).__name__}: {exc}", remote_type=type(exc).__name__,
                    remote_message=str(exc))
                self._answer_error(rr, corr, err, to, op)
        except Exception:  # noqa: BLE001 - reporting must not fail the loop
            log.exception("rank %d: could not answer the undeliverable %s", rank, what)

    def on_undecodable(self, src: int, env, reason: str) -> None:
        """The transport could not unpickle ``env`` from rank ``src`` (None: a whole
        batch). An ask is answered with InvalidMessage, a reply completes its ask with
        InvalidMessage, a cast is dropped; each is logged naming what and why."""
        rt = self.rt
        rank = rt.rank
        try:
            if env is None:
                log.error("rank %d: a batch from rank %d could not be unpickled and is "
                          "lost (its asks end at their timeouts): %s", rank, src, reason)
                return
            kind, to, frm, op, _payload, corr, rr, _ctx = env
            if kind in (REPLY, ERROR):
                w = rt.pending.waiting.get(corr)
                if w is None:
                    log.warning("rank %d: a late reply from rank %d could not be unpickled "
                                "(dropped): %s", rank, src, reason)
                    return
                what = "reply" if kind == REPLY else "error"
                msg = (f"the {what} to {w[2]!r} from {w[1]!r} could not be unpickled on "
                       f"rank {rank}: {reason}")
                log.error(msg)
                rt.pending.complete(corr, False, E.InvalidMessage(msg))
                return
            target = to if to is not None else f"$node@{rank}"
            msg = (f"the payload of {op!r} to {target!r} from {frm!r} could not be "
                   f"unpickled on rank {rank}: {reason}")
            if kind in (ASK, SYS) and corr and type(rr) is int and rr >= 0:
                log.warning(msg)
                self._answer_error(rr, corr, E.InvalidMessage(msg), to, op)
            else:
                log.error("%s (a cast: dropped)", msg)
        except Exception:  # noqa: BLE001 - reporting must not fail the loop
            log.exception("rank %d: could not report an undecodable message from rank %d",
                          rank, src)

    def _answer_error(self, rr: int, corr: int, err, to, op) -> None:
        rt = self.rt
        wire = E.to_wire(err, rank=rt.rank, actor=to, op=op)
        if rr == rt.rank:
            rt.pending.complete(corr, False, wire)
        else:
            rt.transport.post(rr, env_.error(corr, wire))

    # ---- the loop ------------------------------------------------------------------

    def run(self, first=None) -> None:
        """Run until this rank's shutdown completes (``first()``, if given, runs before
        the loop under the same guard: the node's start-up). An exception out of the
        loop is the last resort (:func:`~plexhpc.runtime.fatal.fail_rank`): logged with
        the rank, told to every other rank, and the rank ends within a bound."""
        try:
            if first is not None:
                first()
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - the job must end, not hang
            fail_rank(self.rt, exc)

    def _loop(self) -> None:
        rt = self.rt
        self.greenlet = getcurrent()
        rt.executor.hub = self.greenlet
        transport = rt.transport
        doorbell = rt.doorbell
        ex = rt.executor
        ready = ex.ready
        resume = ex.resume
        external = self.external
        timers = rt.timers.heap
        pending = rt.pending
        lifecycle = rt.lifecycle
        idle = self.idle
        last_work = _monotonic()
        next_expiry = 0.0
        sched_yield = getattr(os, "sched_yield", lambda: None)
        poll = transport.poll
        on_batch = self.on_batch
        last_long = -1.0
        while True:
            worked = False
            turn_start = _monotonic()
            if poll(on_batch):
                worked = True
            while external:
                external.popleft()()
                worked = True
            if resume or ready:
                worked = True
                cap = TURN_CAP
                while cap and (resume or ready):
                    cap -= 1
                    if resume:
                        g, outcome = resume.popleft()
                        if not g.dead:
                            ex.switch(g, outcome)
                        continue
                    if transport.outbox:
                        # what earlier handlers sent leaves before the next one runs: a
                        # long handler must not hold other ranks' work back
                        for dest in transport.flush():
                            doorbell.ring_if_sleeping(dest)
                    cell = ready.popleft()
                    cell.queued = False
                    if (cell.running is None and cell.status != STOPPED
                            and (cell.pending_init or cell.mailbox)):
                        ex.dispatch(cell)
            now = _monotonic()
            if timers and timers[0][0] <= now:
                rt.timers.fire(now)
                worked = True
            if self.background:  # nonblocking collectives in flight: keep spinning
                self._poll_background(now)
                worked = True
            if now >= next_expiry:
                # ask timeouts are checked every millisecond, not every turn
                next_expiry = now + 0.001
                if pending.deadlines:
                    pending.expire(now)
            if transport.outbox:
                for dest in transport.flush():
                    doorbell.ring_if_sleeping(dest)
                worked = True
            transport.progress_if_backlogged()
            if self._signal:
                sig, self._signal = self._signal, 0
                lifecycle.request_shutdown(f"signal {signal.Signals(sig).name}", 0)
                worked = True
            if lifecycle.phase != RUNNING:
                if lifecycle.phase == FINAL and transport.outbox:
                    continue
                drained = not (ready or resume or ex.busy or transport.outbox)
                outcome = lifecycle.step(now, drained)
                if outcome == "exit":
                    return
                if outcome:
                    worked = True
            if worked:
                last_work = now
                if now - turn_start > 0.001:  # real work ran (> 1 ms): a busy stretch
                    last_long = now
                continue
            transport.progress_sends()  # idle: release every completed send
            idle_for = now - last_work
            # within 50 ms of real work, spin longer before sleeping
            if idle_for < (idle.busy_spin_s if now - last_long < 0.05 else idle.spin_s):
                if idle_for > idle.yield_after_s:
                    sched_yield()
                else:
                    transport.spin_probe(32)  # tight probing: notice a reply sooner
                continue
            self._sleep(now)

    def _sleep(self, now) -> None:
        rt = self.rt
        db = rt.doorbell
        transport = rt.transport
        ex = rt.executor
        db.announce_sleep()
        # re-check after announcing: after a sleep MPICH's first Iprobe only runs progress
        if (transport.has_held() or transport.probe() or transport.probe()
                or self.external or self._signal or ex.ready or ex.resume):
            db.wake()
            return
        timeout = self.idle.max_sleep_s
        nxt = rt.timers.next_deadline()
        nxt_ask = rt.pending.next_deadline()
        if nxt_ask is not None and (nxt is None or nxt_ask < nxt):
            nxt = nxt_ask
        if nxt is not None:
            timeout = min(timeout, max(0.0, nxt - now))
        if transport.sends_in_flight or not db.shared or db.has_remote_peers:
            timeout = min(timeout, self.idle.remote_poll_s)
        if rt.lifecycle.phase != RUNNING:
            timeout = min(timeout, 0.05)
        db.sleep(timeout)


def idle_policy_for(doorbell, spin_us, max_sleep_s, remote_poll_s) -> IdlePolicy:
    """The idle policy for this rank: explicit arguments first, then the environment."""
    # Spinning ranks that share a core with a peer must yield it quickly, or the peer
    # loses whole scheduler ticks; with a core each, yielding only adds latency.
    local_ranks = len(doorbell.local_of_world)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    oversubscribed = local_ranks > cores
    spin_s = tuning_us("PLEXHPC_SPIN_US", spin_us, 200.0) * 1e-6
    remote_poll_s = tuning_us("PLEXHPC_REMOTE_POLL_US",
                            None if remote_poll_s is None else remote_poll_s * 1e6,
                            1000.0) * 1e-6
    # After a long handler (real compute), the next request usually follows within a
    # few ms; sleeping in between costs a wake-up (~0.4 ms) per request. So a rank that
    # just worked hard spins longer before sleeping (not when ranks outnumber cores:
    # then spinning takes a peer's core). Measured: core efficiency of the 2-shard
    # inference benchmark 86.7 -> 91.3 %.
    busy_spin_s = spin_s if oversubscribed else max(
        spin_s, tuning_us("PLEXHPC_BUSY_SPIN_US", None, 3000.0) * 1e-6)
    yield_after_s = tuning_us("PLEXHPC_YIELD_AFTER_US", None,
                            10.0 if oversubscribed else 100.0) * 1e-6
    return IdlePolicy(oversubscribed=oversubscribed, spin_s=spin_s, busy_spin_s=busy_spin_s,
                      yield_after_s=yield_after_s, max_sleep_s=max_sleep_s,
                      remote_poll_s=remote_poll_s)


def tuning_us(name: str, given, default: float) -> float:
    """A tuning knob in microseconds: the argument if given, else the environment
    variable ``name`` (a clear ConfigError if it is not a number >= 0), else
    ``default``."""
    if given is not None:
        value = float(given)
        if value < 0:
            raise E.ConfigError(f"expected a number >= 0, got {given!r}", key=name.lower())
        return value
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return float(default)
    try:
        value = float(raw)
    except ValueError:
        raise E.ConfigError(f"expected a number (microseconds), got {raw!r}", key=name) from None
    if value < 0:
        raise E.ConfigError(f"expected a number >= 0, got {raw!r}", key=name)
    return value

