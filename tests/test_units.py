"""Small units: id routing, host outside handlers, the launcher command, tuning knobs."""

import os

import pytest

from plexhpc import HostUsageError, host
from plexhpc.errors import ActorNotFound, ConfigError
from plexhpc.runtime.launcher import mpiexec_command
from plexhpc.runtime.node import _env_float, rank_of


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
        _env_float("PLEXHPC_SPIN_US", 200)
    monkeypatch.setenv("PLEXHPC_SPIN_US", "50")
    assert _env_float("PLEXHPC_SPIN_US", 200) == 50.0
