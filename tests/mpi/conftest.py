"""The pytest-mpi suite of plexhpc's own actors, through the plexhpc.testing fixtures.

Run it under MPI (tests/test_pytest_mpi_suite.py does, on 1, 2 and 4 ranks)::

    mpiexec -n 2 python -m pytest --with-mpi tests/mpi -q -p no:cacheprovider

The normal suite does not collect this folder (tests/conftest.py ignores it): these
tests need ``mpiexec`` around pytest, and without ``--with-mpi`` they would only skip.
"""

pytest_plugins = ["plexhpc.testing"]
