"""Each plexhpc error raised on another rank arrives as itself, with where it happened,
on every reply path: ask, shard call, group reduction, state call, system ask."""

import pytest

from plexhpc import errors

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def r():
    from conftest import scenario_result
    return scenario_result("errors_across", 2)


@pytest.mark.parametrize("name", sorted(errors.REGISTRY))
def test_an_error_raised_in_a_remote_handler_arrives_as_its_own_class(r, name):
    cls_name, rank, actor, op, has_tb = r["ask"][name]
    assert cls_name == name
    assert op == "raise"
    # a crash carries the remote traceback; a refusal (Rejected) is not a crash
    assert has_tb == (name != "Rejected")
    if name not in ("CollectiveAborted", "ActorNotFound"):  # these name their own rank/actor
        assert rank == 1 and actor == "raiser@1"


def test_a_foreign_exception_arrives_as_remote_error_naming_its_type(r):
    assert r["ask_foreign"] == ["RemoteError", 1, "raiser@1", "raise", True]
    assert r["foreign_type"] == "KeyError"


def test_a_shard_call_and_a_group_reduction(r):
    cls_name, rank, actor, op, has_tb = r["route"]
    assert cls_name == "StateError" and actor.startswith("g.shard") and has_tb
    assert r["reduction"] == ["ShardFailure", True]


def test_a_state_call_refused_on_the_state_rank(r):
    cls_name, rank, actor, op, _ = r["state"]
    assert cls_name == "UnknownLease"
    assert rank == 0  # the stores live on rank 0; the caller on rank 1


def test_a_system_ask_to_another_rank(r):
    cls_name, rank, actor, _op, _ = r["system"]
    assert cls_name == "ActorNotFound" and rank == 1 and actor == "ghost@1"
    assert r["still_up"] == 1
