"""Let an idle rank sleep in the kernel and be woken the moment a message is sent to it.

MPI has no "wait for any message without spinning": a blocked ``MPI_Probe`` or a polling
loop burns a core (MPICH spins). So a rank with nothing to do sets a *sleeping* flag in a
node-local shared-memory window and blocks in ``poll()`` on a UNIX datagram socket. A
sender that has just sent it an MPI message reads the flag and, only if it is set,
writes one byte to that socket. The hot path (a busy peer) costs one shared-memory read.

Across hosts there is no shared window; a rank with peers on other hosts caps its sleep
(``remote_poll_s``) so it still notices their messages, at a small idle cost.

A lost wake-up (the flag read before it was set, the message probed before it was
visible) is bounded by ``max_sleep_s``: the sleeper re-checks at least that often.
"""

from __future__ import annotations

import select
import socket

from mpi4py import MPI

__all__ = ["Doorbell"]


class Doorbell:
    """Per-rank sleeping flags plus a datagram socket per rank, for one node's ranks."""

    _STRIDE = 16  # int32 slots per rank: one 64-byte cache line each

    def __init__(self, comm: MPI.Comm, job_tag: str):
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.job_tag = job_tag
        self._local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        world_of_local = self._local.allgather(self.rank)
        self.local_of_world = {w: i for i, w in enumerate(world_of_local)}
        self.has_remote_peers = len(world_of_local) < self.size
        self._win = None
        self._flags: dict[int, memoryview] = {}
        try:
            self._win = MPI.Win.Allocate_shared(4 * self._STRIDE, 4, comm=self._local)
            # one passive-target epoch for the job's life, so Win.Sync works as a fence
            self._win.Lock_all(MPI.MODE_NOCHECK)
            for w, i in self.local_of_world.items():
                buf, _ = self._win.Shared_query(i)
                self._flags[w] = memoryview(buf).cast("B").cast("i")
        except Exception:  # noqa: BLE001 - no shared windows here: fall back to timed sleep
            # the flags are views of the window's memory: drop them before anything
            # can read freed memory through them
            self._win = None
            self._flags = {}
            self._my_flag = None
        self._my_flag = self._flags.get(self.rank)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self._address(self.rank))
        self._sock.setblocking(False)
        self._poller = select.poll()
        self._poller.register(self._sock.fileno(), select.POLLIN)
        self.rings_sent = 0
        self.wakeups = 0
        if self._win is not None:
            self._my_flag[0] = 0
            self._win.Sync()
        self._local.Barrier()

    def _address(self, rank: int) -> bytes:
        # abstract namespace: no file to clean up, gone when the process exits
        return f"\0plexhpc-{self.job_tag}-{rank}".encode()

    # ---- the sleeper's side ------------------------------------------------------------

    @property
    def shared(self) -> bool:
        """True when senders can see this rank's flag (same host, window available)."""
        return self._my_flag is not None

    def announce_sleep(self) -> None:
        """Set the flag; the caller must then re-check for work before :meth:`sleep`."""
        if self._my_flag is not None:
            self._my_flag[0] = 1
            self._win.Sync()

    def sleep(self, timeout_s: float) -> None:
        """Block until rung or ``timeout_s`` passes, then clear the flag."""
        try:
            if timeout_s > 0:
                if self._poller.poll(max(1, int(timeout_s * 1000))):
                    self.wakeups += 1
            self._drain()
        finally:
            self.wake()

    def wake(self) -> None:
        """Clear the flag (called on wake-up and when work turned up before sleeping)."""
        if self._my_flag is not None and self._my_flag[0]:
            self._my_flag[0] = 0
            self._win.Sync()

    def _drain(self) -> None:
        try:
            while True:
                self._sock.recv(64)
        except (BlockingIOError, InterruptedError):
            pass

    # ---- the sender's side -------------------------------------------------------------

    def ring_if_sleeping(self, rank: int) -> None:
        """Wake ``rank`` if its flag says it sleeps (call after sending it a message)."""
        flag = self._flags.get(rank)
        if flag is not None and flag[0]:
            self.ring(rank)

    def ring(self, rank: int) -> None:
        """Write one byte to ``rank``'s socket (it may be full or gone: both are fine)."""
        try:
            self._sock.sendto(b"\1", self._address(rank))
            self.rings_sent += 1
        except (BlockingIOError, ConnectionRefusedError, FileNotFoundError, OSError):
            pass

    def ring_self(self) -> None:
        """Wake this rank's own loop (from a signal handler or another thread)."""
        try:
            self._sock.sendto(b"\1", self._address(self.rank))
        except OSError:
            pass

    def close(self, clean: bool = True) -> None:
        """Release the socket, the shared window and the node-local communicator.

        ``clean``: every rank of the job finished shutting down, so the window can be
        freed (``Win.Free`` synchronizes the node's ranks: after an unclean end a peer
        may never call it, and the window is left to ``MPI_Finalize`` instead)."""
        try:
            self._poller.unregister(self._sock.fileno())
        except (KeyError, ValueError, OSError):
            pass
        self._sock.close()
        if self._win is not None:
            try:
                self._win.Unlock_all()
                if clean:
                    self._win.Free()
            except Exception:  # noqa: BLE001 - at shutdown a peer may be gone
                pass
            # the flags are views of the window's memory: drop them before anything
            # can read freed memory through them
            self._win = None
            self._flags = {}
            self._my_flag = None
        try:
            self._local.Free()
        except Exception:  # noqa: BLE001
            pass
