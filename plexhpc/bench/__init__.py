"""Benchmarks run by ``plexhpc bench SUITE``; each prints one JSON object."""

from __future__ import annotations

__all__ = ["run_suite"]


def run_suite(suite: str, args) -> int:
    if suite == "actors":
        from .actors import main
        return main(args)
    if suite == "collectives":
        from .collectives import main
        return main(args)
    if suite == "shards":
        from .shards import main
        return main(args)
    if suite == "state":
        from .state import main
        return main(args)
    raise ValueError(f"unknown benchmark suite {suite!r}")
