"""Deliberate failures, for tests/test_pytest_mpi_suite.py to check that a test failing
on the driver fails on every rank and nothing hangs. Not a test module (no test_
prefix): it runs only when named on the command line."""

import pytest

from mpi_actors import Echo

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(30)]


def test_an_assert_fails(plex):
    assert plex.size == -1


def test_an_uncaught_remote_error_fails(plex):
    plex.driver.ask(plex.spawn(Echo, rank=plex.last_rank), "fail")


def test_passes(plex):
    assert plex.spawn(Echo)
