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


@pytest.mark.parametrize("code, cls", [
    (E.NOT_FOUND, E.ActorNotFound), (E.INVALID, E.InvalidMessage),
    (E.CLOSED, E.NodeClosed), (E.TIMEOUT, E.AskTimeout), (E.REMOTE, E.RemoteError),
])
def test_wire_round_trip_rebuilds_the_right_class(code, cls):
    err = E.from_wire(E.to_wire(code, "msg", remote_type="KeyError", rank=3, actor="a@3",
                                op="get", tb="Traceback..."))
    assert type(err) is cls and str(err) == "msg"


def test_remote_timeout_is_a_timeout_error():
    err = E.from_wire(E.to_wire(E.REMOTE, "m", remote_type="AskTimeout", rank=1))
    assert isinstance(err, E.RemoteTimeout) and isinstance(err, TimeoutError)
    assert err.rank == 1 and err.remote_type == "AskTimeout"
