"""Logging with the rank in every line, so interleaved output from N ranks stays readable.

The level comes from ``PLEXHPC_LOG`` (``debug``, ``info``, ``warning``...; default
``warning``) or :func:`configure`. Lines go to stderr; the job's results go to stdout.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["get_logger", "configure"]

_configured = False


class _RankFilter(logging.Filter):
    def __init__(self, rank: int):
        super().__init__()
        self.rank = rank

    def filter(self, record):
        record.rank = self.rank
        return True


def configure(rank: int, level: str | int | None = None) -> None:
    """Install the rank-prefixed handler on the ``plexhpc`` logger (idempotent)."""
    global _configured
    logger = logging.getLogger("plexhpc")
    if level is None:
        level = os.environ.get("PLEXHPC_LOG", "warning")
    if isinstance(level, str):
        level = getattr(logging, level.upper(), logging.WARNING)
    logger.setLevel(level)
    for h in list(logger.handlers):
        if getattr(h, "_plexhpc", False):
            logger.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler._plexhpc = True  # type: ignore[attr-defined]
    handler.addFilter(_RankFilter(rank))
    handler.setFormatter(logging.Formatter(
        "%(asctime)s [r%(rank)s] %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.propagate = False
    _configured = True


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"plexhpc.{name}")
