"""Small units: id routing, host outside handlers, the launcher command, tuning knobs."""

import os

import pytest

from plexhpc import HostUsageError, host
from plexhpc.errors import ActorNotFound, ConfigError
from plexhpc.runtime.launcher import mpiexec_command
from plexhpc.runtime.hub import tuning_us
from plexhpc.runtime.routing import rank_of


@pytest.mark.parametrize("aid, rank", [("a@0", 0), ("svc:agent@12", 12), ("x@y@3", 3)])
def test_an_actor_id_names_its_rank(aid, rank):
    assert rank_of(aid) == rank


@pytest.mark.parametrize("bad", ["noat", "a@", "a@x", "a@-1"])
def test_a_malformed_id_is_not_found_with_the_reason(bad):
    with pytest.raises(ActorNotFound, match="expected name@rank"):
        rank_of(bad)


def test_host_outside_a_handler_says_how_to_use_it():
    with pytest.raises(HostUsageError, match="only inside an actor's handler"):
        host.ask("x", "op")
    with pytest.raises(HostUsageError):
        host.self_id()


def test_launcher_prefers_override_and_adds_flags(monkeypatch):
    monkeypatch.setenv("PLEXHPC_MPIEXEC", "srun --mpi=pmix")
    monkeypatch.setenv("PLEXHPC_MPIEXEC_ARGS", "--exclusive")
    cmd = mpiexec_command(4, ["-m", "plexhpc", "run", "a.toml"])
    assert cmd[:5] == ["srun", "--mpi=pmix", "--ntasks", "4", "--exclusive"]
    assert cmd[-4:] == ["-m", "plexhpc", "run", "a.toml"]


def test_launcher_uses_the_wheel_mpiexec_by_default(monkeypatch):
    monkeypatch.delenv("PLEXHPC_MPIEXEC", raising=False)
    cmd = mpiexec_command(2, ["x.py"])
    assert os.path.basename(cmd[0]) in ("mpiexec", "mpirun") and cmd[1:3] == ["-n", "2"]
    with pytest.raises(ValueError):
        mpiexec_command(0, ["x.py"])


def test_tuning_knobs_refuse_nonsense(monkeypatch):
    monkeypatch.setenv("PLEXHPC_SPIN_US", "lots")
    with pytest.raises(ConfigError, match="PLEXHPC_SPIN_US"):
        tuning_us("PLEXHPC_SPIN_US", None, 200)
    monkeypatch.setenv("PLEXHPC_SPIN_US", "50")
    assert tuning_us("PLEXHPC_SPIN_US", None, 200) == 50.0


def test_an_explicit_tuning_argument_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("PLEXHPC_SPIN_US", "50")
    assert tuning_us("PLEXHPC_SPIN_US", 300, 200) == 300.0  # Node(spin_us=300)
    monkeypatch.delenv("PLEXHPC_SPIN_US")
    assert tuning_us("PLEXHPC_SPIN_US", None, 200) == 200.0
    with pytest.raises(ConfigError):
        tuning_us("PLEXHPC_SPIN_US", -1, 200)


def test_importing_the_collectives_does_no_work_and_reads_the_timeout_on_first_use():
    """Import time does nothing (no allocator tuning, no parsing of the environment); a bad
    PLEXHPC_COLLECTIVE_TIMEOUT_S is a clear ConfigError when a collective needs it."""
    import subprocess
    import sys
    code = ("import plexhpc.collectives.comm as c, plexhpc.runtime.allocator as a\n"
            "assert not a.allocator_tuned()\n"
            "try:\n    c.default_timeout()\nexcept Exception as e:\n"
            "    print(type(e).__name__, e)\n")
    env = dict(os.environ, PLEXHPC_COLLECTIVE_TIMEOUT_S="soon")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ConfigError") and "PLEXHPC_COLLECTIVE_TIMEOUT_S" in out.stdout
