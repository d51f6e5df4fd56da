"""The supervisor of dynamically spawned actors on one rank: what to do when one crashes.

OTP's one_for_one, scoped to the rank: a crashed ``permanent`` or ``transient`` actor is
restarted, a ``temporary`` one is not; more than ``max_restarts`` restarts within
``max_restart_window_seconds`` means restarting is not helping, and the job stops with
status 1. The app's config children are supervised by the tree in
:mod:`plexhpc.otp.supervision` instead, with every strategy.
"""

from __future__ import annotations

from collections import deque

__all__ = ["RankSupervisor", "RESTART", "STOP", "ESCALATE"]

RESTART = "restart"
STOP = "stop"
ESCALATE = "escalate"


class RankSupervisor:
    """Restart decisions with OTP's restart intensity, for one rank."""

    def __init__(self, max_restarts: int, window_s: float, strategy: str = "one_for_one"):
        if strategy != "one_for_one":
            raise ValueError(f"strategy {strategy!r} is not available; only one_for_one")
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.strategy = strategy
        self._restarts: deque = deque()

    def on_crash(self, restart_type: str, now: float) -> str:
        """RESTART, STOP (a temporary child) or ESCALATE (intensity exceeded)."""
        if restart_type == "temporary":
            return STOP
        log = self._restarts
        log.append(now)
        while log and log[0] < now - self.window_s:
            log.popleft()
        if len(log) > self.max_restarts:
            return ESCALATE
        return RESTART

    @property
    def recent_restarts(self) -> int:
        return len(self._restarts)

    def escalation_reason(self, rank: int) -> str:
        return (f"supervisor on rank {rank}: restart intensity exceeded "
                f"({len(self._restarts)} restarts within {self.window_s:g} s, "
                f"max_restarts={self.max_restarts})")
