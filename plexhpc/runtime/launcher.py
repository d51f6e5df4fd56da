"""Finding and calling ``mpiexec`` for ``plexhpc run -n N`` and ``plexhpc bench -n N``.

The ``mpich`` wheel puts ``mpiexec`` next to the Python interpreter of the environment
it was installed into; that one is preferred, so the MPI that mpi4py loads and the
launcher always match. ``PLEXHPC_MPIEXEC`` overrides it (for example ``srun`` or a site
``mpiexec``), with extra launcher flags in ``PLEXHPC_MPIEXEC_ARGS``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["find_mpiexec", "mpiexec_command", "relaunch"]


def find_mpiexec() -> list:
    override = os.environ.get("PLEXHPC_MPIEXEC")
    if override:
        return shlex.split(override)
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("mpiexec") or shutil.which("mpirun")
    if found:
        return [found]
    raise FileNotFoundError(
        "no mpiexec found: install the mpich wheel (pip install mpich) into this "
        "environment, or set PLEXHPC_MPIEXEC to your site's launcher")


def mpiexec_command(n: int, argv: list) -> list:
    """``mpiexec -n N <python> <argv...>`` for this interpreter."""
    if n < 1:
        raise ValueError(f"-n must be >= 1, got {n}")
    launcher = find_mpiexec()
    extra = shlex.split(os.environ.get("PLEXHPC_MPIEXEC_ARGS", ""))
    flag = "-n" if Path(launcher[0]).name != "srun" else "--ntasks"
    return [*launcher, flag, str(n), *extra, sys.executable, *argv]


def relaunch(n: int, argv: list) -> int:
    """Run ``python argv...`` as an ``n``-rank job and return its exit status.

    mpiexec runs in its own session, and SIGINT/SIGTERM received here are forwarded to it
    once (it passes them to every rank, which then shut down gracefully); a Ctrl-C from
    the terminal therefore reaches the ranks exactly once."""
    cmd = mpiexec_command(n, argv)
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)

    def forward(signum, frame):
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
