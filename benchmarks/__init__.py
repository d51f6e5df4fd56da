"""Benchmarks run by ``plexhpc bench SUITE``; each prints one JSON object.

This folder ships with the source checkout, not with the installed package: ``plexhpc
bench`` finds it next to the ``plexhpc`` package directory (see
:func:`plexhpc.cli.import_benchmarks`). ``micro/`` holds the single-process
micro-benchmarks (pytest-benchmark); see ``README.md`` here.
"""

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
