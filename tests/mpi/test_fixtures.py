"""The plexhpc.testing fixtures themselves: outcomes agreed on every rank."""

import pytest

from plexhpc import ActorNotFound

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(30)]


def test_the_handle_is_the_driver_s(plex_driver):
    assert plex_driver.is_driver and plex_driver.rank == 0 and not plex_driver.closed


@pytest.mark.xfail(strict=True, raises=ActorNotFound,
                   reason="fails on the driver; strict: every rank must report it")
def test_a_failure_on_the_driver_fails_every_rank(plex_driver):
    plex_driver.ask("nobody", "whoami")


def test_a_skip_on_the_driver_skips_every_rank(plex_driver):
    pytest.skip("skipped on the driver, reported on every rank")
