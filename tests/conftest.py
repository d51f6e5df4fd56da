"""Shared helpers: launching multi-rank jobs with a timeout, reading their results.

Multi-rank tests never run MPI in the pytest process itself: each launches ``mpiexec``
in its own process group with a timeout, so a hang becomes a failure with the job's
output attached (and every rank is killed), never a stuck CI run.
"""

from __future__ import annotations

import json
import os
import tempfile
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
BIN = Path(sys.executable).parent
MPIEXEC = str(BIN / "mpiexec") if (BIN / "mpiexec").exists() else "mpiexec"

# tests/mpi is the pytest-mpi suite: it runs under ``mpiexec ... pytest --with-mpi
# tests/mpi`` (tests/test_pytest_mpi_suite.py launches it), never inside this process
collect_ignore = ["mpi"]


class Job:
    def __init__(self, returncode, stdout, stderr, cmd):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.cmd = cmd

    def result(self) -> dict:
        """The JSON after the last ``RESULT `` line on stdout."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT "):])
        raise AssertionError(f"no RESULT line; rc={self.returncode}\n"
                             f"--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-6000:]}")

    def __repr__(self):
        return (f"Job(rc={self.returncode}, cmd={' '.join(self.cmd)})\n--- stdout\n"
                f"{self.stdout[-2000:]}\n--- stderr\n{self.stderr[-4000:]}")


STATE_TMP = Path(tempfile.mkdtemp(prefix="plexhpc-test-state-"))


def env_for_job(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SCENARIOS), str(ROOT),
                                         env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("PYTHONFAULTHANDLER", "1")
    # durable state and its signing key go to this session's temporary folder, never
    # into the checkout or the user's home
    # (a fresh folder per job unless the test passes one, as a relaunch test does)
    if not (extra and "PLEXHPC_STATE_DIR" in extra):
        env["PLEXHPC_STATE_DIR"] = tempfile.mkdtemp(prefix="job-", dir=STATE_TMP)
    env.setdefault("PLEXHPC_STATE_KEY_FILE", str(STATE_TMP / "keys" / "state.key"))
    if extra:
        env.update(extra)
    return env


def run(cmd: list, *, timeout: float = 120, env: dict | None = None, cwd=ROOT,
        on_start=None) -> Job:
    """Run ``cmd`` in its own session; on timeout kill the whole group and fail."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd, env=env_for_job(env), start_new_session=True)
    try:
        if on_start is not None:
            on_start(proc)
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # PYTHONFAULTHANDLER is set: SIGABRT makes every hung rank print its stacks
        os.killpg(proc.pid, signal.SIGABRT)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout}s: {' '.join(cmd)}\n--- stdout\n{out[-3000:]}"
                    f"\n--- stderr\n{err[-6000:]}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # nothing may outlive the test
        except ProcessLookupError:
            pass
    return Job(proc.returncode, out, err, cmd)


def mpirun(n: int, args: list, **kw) -> Job:
    """``mpiexec -n N python ARGS...`` with this interpreter."""
    return run([MPIEXEC, "-n", str(n), sys.executable, *args], **kw)


def plexhpc_cli(args: list, **kw) -> Job:
    return run([sys.executable, "-m", "plexhpc", *args], **kw)


def scenario_result(name: str, ranks: int, *, timeout: float = 150) -> dict:
    """Run tests/scenarios/NAME.py on ``ranks`` ranks, require success, return its RESULT."""
    job = mpirun(ranks, [str(SCENARIOS / f"{name}.py")], timeout=timeout)
    assert job.returncode == 0, job
    return job.result()


@pytest.fixture
def scenario():
    """``scenario(name, n)`` runs tests/scenarios/NAME.py on n ranks and returns the Job."""
    def go(name: str, n: int, *args, timeout: float = 120, env: dict | None = None) -> Job:
        return mpirun(n, [str(SCENARIOS / f"{name}.py"), *args], timeout=timeout, env=env)
    return go
