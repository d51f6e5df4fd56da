"""Actor messages between ranks: batches of envelopes over MPI point-to-point.

Why it looks like this (figures in ``docs/ARCHITECTURE.md``):

- Everything a rank sends to one peer during one turn of its loop goes as one MPI
  message (a *batch*), pickled once. A flood of small sends costs one MPI message per
  turn, not one per send, and per-pair order is the order of the batch.
- Array data travels out of band: pickle protocol 5 hands large buffers (>= 4 KiB) to a
  callback; they follow the batch header as raw MPI messages and are received straight
  into fresh buffers that the unpickled arrays then own. Nothing big is copied in-band.
- Sends are nonblocking (``Isend``): two ranks sending large messages to each other at
  once never deadlock. A request not complete at once is kept with its buffers until it is.
- Only the node's loop thread calls into this module, and only on the runtime's own
  communicator, so user traffic on COMM_WORLD can never match these messages.
- A batch that ``pickle.loads`` refuses (a payload that pickles on its sender but not
  back on its receiver) costs nothing on the fast path: only then is it decoded again
  envelope by envelope (:mod:`plexhpc.runtime.salvage`); the good envelopes are
  delivered, and each one that cannot be rebuilt goes to ``on_undecodable``.
"""

from __future__ import annotations

import pickle
import struct

from mpi4py import MPI

from ..log import get_logger
from .salvage import salvage

__all__ = ["Transport", "TAG_BATCH", "TAG_HDR", "TAG_BUF"]

TAG_BATCH = 101  # a pickled batch with everything in-band
TAG_HDR = 102    # header (buffer sizes) + pickle stream; TAG_BUF messages follow
TAG_BUF = 103    # one out-of-band buffer

_dumps = pickle.dumps
_loads = pickle.loads
_U64 = struct.Struct("<Q")

log = get_logger("node")


class Transport:
    """Batches outgoing envelopes per destination and moves them over ``comm``."""

    def __init__(self, comm: MPI.Comm, *, oob_threshold: int = 4096):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.oob_threshold = oob_threshold
        self.outbox: dict[int, list] = {}
        self._pending: list = []          # (request or list of requests, keepalive)
        self._oob: list = []
        self._held = None                 # a message found by spin_probe, status in _status
        self._keep_large_cb = self._keep_large
        self._status = MPI.Status()
        self._rbuf = bytearray(1 << 16)
        self.on_unsendable = None         # callback(dest, envelope, exc)
        self.on_flushed = None            # callback(dest) after an early flush
        self.on_undecodable = None        # callback(src, envelope or None, reason)
        self.batch_max = 256
        self.batches_sent = 0
        self.batches_received = 0

    # ---- sending -------------------------------------------------------------------

    def post(self, dest: int, envelope) -> None:
        """Queue an envelope for ``dest``; it leaves at the next :meth:`flush`, or at once
        when ``batch_max`` are waiting (so a handler that sends in a long loop streams)."""
        box = self.outbox.get(dest)
        if box is None:
            self.outbox[dest] = [envelope]
        else:
            box.append(envelope)
            if len(box) >= self.batch_max:
                del self.outbox[dest]
                self._send_box(dest, box)
                if self.on_flushed is not None:
                    self.on_flushed(dest)

    def flush(self) -> list:
        """Send every queued batch; returns the destinations that got one."""
        boxes = self.outbox
        if not boxes:
            return []
        self.outbox = {}
        dests = []
        for dest, batch in boxes.items():
            self._send_box(dest, batch)
            dests.append(dest)
        return dests

    def _send_box(self, dest: int, batch: list) -> None:
        try:
            self._send_batch(dest, batch)
        except Exception:
            # some payload would not pickle: send the others one by one and report
            # each one that fails, so one bad message loses nothing else
            for env in batch:
                try:
                    self._send_batch(dest, [env])
                except Exception as exc:  # noqa: BLE001 - reported to the sender
                    if self.on_unsendable is not None:
                        self.on_unsendable(dest, env, exc)

    def send_now(self, dest: int, batch: list) -> None:
        """Send ``batch`` to ``dest`` at once, past the outbox (the last-resort path:
        nothing queued before it needs to pickle for it to leave)."""
        self._send_batch(dest, batch)

    def _keep_large(self, pb) -> bool:
        """pickle's buffer_callback: True keeps a buffer in-band (small), False sends it
        out of band (large)."""
        if pb.raw().nbytes < self.oob_threshold:
            return True
        self._oob.append(pb)
        return False

    def _send_batch(self, dest: int, batch: list) -> None:
        self._oob = oob = []
        data = _dumps(batch, 5, buffer_callback=self._keep_large_cb)
        comm = self.comm
        self.batches_sent += 1
        if not oob:
            # completion is checked later, in bulk (progress_sends), not per message
            self._pending.append((comm.Isend(data, dest, TAG_BATCH), data))
            return
        raws = [pb.raw() for pb in oob]
        head = struct.pack(f"<Q{len(raws)}Q", len(raws), *(r.nbytes for r in raws)) + data
        reqs = [comm.Isend([head, MPI.BYTE], dest, TAG_HDR)]
        for r in raws:
            reqs.append(comm.Isend([r, MPI.BYTE], dest, TAG_BUF))
        if not MPI.Request.Testall(reqs):
            self._pending.append((reqs, (head, raws, oob)))

    @property
    def sends_in_flight(self) -> int:
        return len(self._pending)

    def progress_if_backlogged(self, limit: int = 64) -> None:
        """Release completed sends once more than ``limit`` are in flight (each turn of
        a busy loop; an idle one releases them all)."""
        if len(self._pending) > limit:
            self.progress_sends()

    def has_held(self) -> bool:
        """A message found by :meth:`spin_probe` waits for the next :meth:`poll`."""
        return self._held is not None

    def progress_sends(self) -> None:
        """Release the buffers of sends that have completed."""
        pending = self._pending
        if not pending:
            return
        if all(type(item[0]) is MPI.Request for item in pending):
            if MPI.Request.Testall([item[0] for item in pending]):
                self._pending = []
                return
        still = []
        for item in self._pending:
            req = item[0]
            done = MPI.Request.Testall(req) if isinstance(req, list) else req.Test()
            if not done:
                still.append(item)
        self._pending = still

    # ---- receiving -----------------------------------------------------------------

    def probe(self) -> bool:
        """True if a message is waiting (runs MPI progress once)."""
        return self.comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG)

    def spin_probe(self, tries: int) -> bool:
        """Probe up to ``tries`` times in a tight loop; a message found is kept for the
        next :meth:`poll`. Cheaper per probe than a full turn of the node's loop."""
        if self._held is not None:
            return True
        improbe = self.comm.Improbe
        st = self._status
        for _ in range(tries):
            msg = improbe(MPI.ANY_SOURCE, MPI.ANY_TAG, st)
            if msg is not None:
                self._held = msg
                return True
        return False

    def poll(self, deliver, max_batches: int = 1) -> int:
        """Receive up to ``max_batches`` waiting batches, calling ``deliver(src, batch)``.

        Matched probes (``Improbe`` + ``Message.Recv``) match each message once; a plain
        ``Iprobe`` + ``Recv`` matches twice and measured slower here."""
        comm = self.comm
        st = self._status
        improbe = comm.Improbe
        n = 0
        while n < max_batches:
            msg = self._held
            if msg is not None:
                self._held = None
            else:
                msg = improbe(MPI.ANY_SOURCE, MPI.ANY_TAG, st)
                if msg is None:
                    break
            src = st.Get_source()
            tag = st.Get_tag()
            count = st.Get_count(MPI.BYTE)
            if tag == TAG_BATCH:
                buf = self._rbuf
                if count > len(buf):
                    buf = bytearray(count)
                    if count <= (1 << 22):
                        self._rbuf = buf
                msg.Recv(buf)
                try:
                    batch = _loads(buf)  # pickle ignores the stale bytes after STOP
                except Exception as exc:  # noqa: BLE001 - one bad payload, not the rank
                    batch = self._salvaged(src, buf, None, exc)
            elif tag == TAG_HDR:
                head = bytearray(count)
                msg.Recv([head, count, MPI.BYTE])
                nbuf = _U64.unpack_from(head, 0)[0]
                sizes = struct.unpack_from(f"<{nbuf}Q", head, 8)
                bufs = []
                for size in sizes:
                    b = MPI.buffer.allocate(size)
                    comm.Recv([b, size, MPI.BYTE], src, TAG_BUF)
                    bufs.append(b)
                stream = memoryview(head)[8 + 8 * nbuf:]
                try:
                    batch = _loads(stream, buffers=bufs)
                except Exception as exc:  # noqa: BLE001 - one bad payload, not the rank
                    batch = self._salvaged(src, stream, bufs, exc)
            else:  # nothing else is sent on this communicator: drop it, say so
                msg.Recv([bytearray(max(count, 1)), count, MPI.BYTE])
                log.error("rank %d: dropped a message with unexpected tag %d from rank %d",
                          self.rank, tag, src)
                n += 1
                continue
            self.batches_received += 1
            n += 1
            deliver(src, batch)
        return n

    def _salvaged(self, src: int, data, buffers, exc) -> list:
        """The envelopes of a batch ``pickle.loads`` refused that can be rebuilt, in
        batch order, to deliver as usual. Each one that cannot (or the whole batch, if
        its stream is broken) is first handed to ``on_undecodable(src, envelope or
        None, reason)``, which answers or logs it."""
        good = []
        for env, reason in salvage(data, buffers, exc):
            if reason is None:
                good.append(env)
                continue
            if self.on_undecodable is not None:
                self.on_undecodable(src, env, reason)
            else:
                log.error("rank %d: a message from rank %d could not be unpickled: %s",
                          self.rank, src, reason)
        return good
