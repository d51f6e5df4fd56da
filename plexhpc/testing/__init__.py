"""Testing actor apps with pytest-mpi: one plexhpc job per test, on 1, 2 or 4 ranks.

Enable the plugin with ``-p plexhpc.testing`` or, in the top-level ``conftest.py``,
``pytest_plugins = ["plexhpc.testing"]``; run the tests under MPI::

    mpiexec -n 2 python -m pytest --with-mpi tests/

A test asks for ``plex_driver`` (the driver's handle of a fresh job started with the
``plex_config`` fixture, or the ``plexhpc_app`` marker's config) or ``plex`` (the same
handle with size-agnostic helpers)::

    import pytest

    @pytest.mark.mpi
    @pytest.mark.timeout(60)
    def test_counter_on_the_last_rank(plex):
        counter = plex.spawn(Counter, rank=plex.last_rank)
        assert plex.driver.ask(counter, "add", {"n": 2}) == {"count": 2}

The body runs on the driver rank (0) while the other ranks serve the job's actors;
its outcome is then reported on every rank, so a failing assert fails the test on all
of them and nothing waits without a deadline. Without ``--with-mpi`` the fixtures skip
with the command to use. See :mod:`plexhpc.testing.plugin` for how a test runs and
why each test gets its own job.
"""

from .kit import PlexKit, WaitTimeout, wait_until
from .plugin import (DEFAULT_CONFIG, plex, plex_config, plex_driver, pytest_addoption,
                     pytest_configure, pytest_pyfunc_call, pytest_runtest_makereport,
                     pytest_timeout_set_timer)
from .sync import OutOfStep, RankSync

__all__ = ["PlexKit", "WaitTimeout", "wait_until", "DEFAULT_CONFIG", "OutOfStep",
           "RankSync", "plex", "plex_config", "plex_driver"]
