"""How failures reach the driver: remote exceptions, unknown actors, timeouts."""

import time

import pytest

from plexhpc import ActorNotFound, AskTimeout, RemoteError

from mpi_actors import Echo

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(30)]


def test_a_raising_handler_arrives_as_remote_error_naming_rank_and_actor(plex):
    aid = plex.spawn(Echo, rank=plex.last_rank)
    with pytest.raises(RemoteError) as caught:
        plex.driver.ask(aid, "fail", {"message": "kaboom"})
    err = caught.value
    assert err.rank == plex.last_rank
    assert err.actor == aid
    assert err.remote_type == "ValueError"
    assert "kaboom" in str(err)
    assert plex.driver.ask(aid, "whoami")["id"] == aid  # the actor still answers


def test_a_remote_error_crosses_two_hops(plex):
    front = plex.spawn(Echo, rank=0)
    back = plex.spawn(Echo, rank=plex.last_rank)
    with pytest.raises(RemoteError) as caught:
        plex.driver.ask(front, "relay", {"to": back, "op": "fail",
                                         "payload": {"message": "deep"}})
    assert "deep" in str(caught.value)


def test_an_unknown_actor_raises_actor_not_found(plex):
    with pytest.raises(ActorNotFound):
        plex.driver.ask("nobody", "whoami")
    with pytest.raises(ActorNotFound):
        plex.driver.ask(f"ghost@{plex.last_rank}", "whoami")
    with pytest.raises(ActorNotFound):
        plex.driver.resolve("nobody")


def test_an_unanswered_ask_raises_ask_timeout_and_a_late_reply_is_dropped(plex):
    aid = plex.spawn(Echo, rank=plex.last_rank)
    t0 = time.monotonic()
    with pytest.raises(AskTimeout) as caught:
        plex.driver.ask(aid, "hold", timeout_ms=50)
    assert time.monotonic() - t0 < 1.5  # the deadline, not the (never) reply
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.op == "hold" and caught.value.timeout_ms == 50
    assert plex.driver.ask(aid, "release") == 1  # the late reply goes nowhere
    assert plex.driver.ask(aid, "whoami")["id"] == aid
