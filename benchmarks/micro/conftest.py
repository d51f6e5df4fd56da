"""Shared by the micro-benchmarks: SQLite files opened the way the stores open them.

Run with ``python -m pytest benchmarks/micro --benchmark-json=out.json`` from the
checkout (``--benchmark-disable`` runs every body once, as the smoke test does). Every
file puts plexhpc's call and its baseline in one benchmark group, so the report shows
them side by side; compare them as ratios within one run.
"""

from __future__ import annotations

import pytest

from plexhpc.storage.db import open_db


@pytest.fixture
def conn(tmp_path):
    """A state database on disk with the stores' settings (WAL, synchronous=NORMAL,
    autocommit), as a node opens it."""
    c = open_db(str(tmp_path / "state.sqlite"))
    yield c
    c.close()


@pytest.fixture
def raw_conn(tmp_path):
    """Another database with the same settings, for the hand-written sqlite3 baseline."""
    c = open_db(str(tmp_path / "raw.sqlite"))
    yield c
    c.close()
