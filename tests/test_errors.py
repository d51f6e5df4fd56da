"""The exception tree: builtin bases, wire round trips."""

import pytest

from plexhpc import errors as E


@pytest.mark.parametrize("cls, builtin", [
    (E.ConfigError, ValueError), (E.InvalidMessage, ValueError),
    (E.ActorNotFound, LookupError), (E.AskTimeout, TimeoutError),
    (E.RemoteError, RuntimeError), (E.RemoteTimeout, TimeoutError),
    (E.NodeClosed, RuntimeError), (E.HostUsageError, RuntimeError),
    (E.StartError, RuntimeError),
])
def test_every_error_is_also_the_builtin_it_means(cls, builtin):
    assert issubclass(cls, E.PlexError) and issubclass(cls, builtin)


def test_config_error_names_file_and_key():
    err = E.ConfigError("expected an integer", path="app.toml", key="supervisor.max_restarts")
    assert str(err) == "app.toml: supervisor.max_restarts: expected an integer"


ALL_CLASSES = sorted(E.REGISTRY.values(), key=lambda c: c.__name__)


def _sample(cls):
    """An instance of ``cls`` built the way the code raises it (keyword fields set)."""
    kw = {"ConfigError": {"key": "k"}, "ActorNotFound": {"actor": "x@1"},
          "AskTimeout": {"to": "x@1", "op": "get", "timeout_ms": 5.0},
          "RemoteError": {"remote_type": "KeyError", "remote_message": "'k'"},
          "RemoteTimeout": {"remote_type": "TimeoutError"}, "JobFailed": {"exit_code": 3},
          "ScatterGatherIncomplete": {"missing": ["s1"], "partial": {"n": 1}},
          "CollectiveAborted": {"rank": 2}, "CapabilityDenied": {"capability": "kv"}}
    return cls("it went wrong", **kw.get(cls.__name__, {}))


def test_every_plexhpc_error_class_is_registered():
    names = set(E.__all__)
    assert names == set(E.REGISTRY), names ^ set(E.REGISTRY)


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_each_class_crosses_the_wire_as_itself_with_where_it_happened(cls):
    err = E.from_wire(E.to_wire(_sample(cls), rank=3, actor="a@3", op="get",
                                tb="Traceback (most recent call last): ..."))
    assert type(err) is cls and "it went wrong" in str(err)
    assert err.actor in ("a@3", "x@1")  # ActorNotFound keeps the actor it names
    assert err.remote_traceback.startswith("Traceback")
    if cls is not E.CollectiveAborted:  # its rank names the rank that failed
        assert err.rank == 3
    if cls is E.CapabilityDenied:
        assert err.capability == "kv"
    if cls is E.ScatterGatherIncomplete:
        assert err.missing == ["s1"] and err.partial == {"n": 1}


def test_a_foreign_exception_arrives_as_remote_error_naming_its_type():
    err = E.from_wire(E.to_wire(KeyError("k"), rank=1, actor="a@1", op="get"))
    assert type(err) is E.RemoteError and err.remote_type == "KeyError"
    assert err.rank == 1 and err.op == "get"
    err = E.from_wire(E.to_wire(TimeoutError("slow"), rank=1))
    assert type(err) is E.RemoteTimeout and isinstance(err, TimeoutError)


def test_the_origin_is_kept_when_an_error_is_passed_on():
    first = E.from_wire(E.to_wire(E.StateError("disk full"), rank=2, actor="s@2", op="put"))
    again = E.from_wire(E.to_wire(first, rank=0, actor="a@0", op="ask"))
    assert (again.rank, again.actor, again.op) == (2, "s@2", "put")


def test_an_unknown_class_name_becomes_remote_error():
    err = E.from_wire(("NoSuchError", "m", {}, 1, None, None, None))
    assert type(err) is E.RemoteError and err.remote_type == "NoSuchError"
