"""Asks and sends between the driver and actors, and between actors on different ranks.

Size-agnostic: "the last rank" is another process on 2 or 4 ranks and the driver's own
rank on 1, so every test runs (and means something) on 1, 2 and 4 ranks.
"""

import pytest

from mpi_actors import Echo

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(30)]


def test_the_driver_reaches_an_actor_on_every_rank(plex):
    ids = plex.spawn_each(Echo)
    replies = plex.ask_each(ids, "whoami")
    assert [r["rank"] for r in replies] == list(plex.ranks)
    assert [r["id"] for r in replies] == ids
    assert len({r["pid"] for r in replies}) == plex.size  # one process per rank


def test_actors_ask_each_other_across_ranks(plex):
    first = plex.spawn(Echo, rank=0)
    last = plex.spawn(Echo, rank=plex.last_rank)
    driver = plex.driver
    assert driver.ask(first, "relay", {"to": last})["rank"] == plex.last_rank
    assert driver.ask(last, "relay", {"to": first})["rank"] == 0


def test_sends_from_the_driver_arrive_in_order_before_a_later_ask(plex):
    target = plex.spawn(Echo, rank=plex.last_rank)
    for i in range(20):
        plex.driver.send(target, "note", {"i": i})
    assert plex.driver.ask(target, "notes") == list(range(20))


def test_an_actor_sends_to_an_actor_on_another_rank(plex):
    sender = plex.spawn(Echo, rank=0)
    receiver = plex.spawn(Echo, rank=plex.last_rank)
    assert plex.driver.ask(sender, "tell", {"to": receiver, "count": 5}) == 5
    notes = plex.wait_until(lambda: plex.driver.ask(receiver, "notes") == list(range(5)),
                            what="5 notes at the receiver")
    assert notes


@pytest.mark.plexhpc_app({"app": {"name": "counters"}, "supervisor": {"children": [
    {"name": "c0", "class": "mpi_actors:Counter", "args": {"start": 10}},
    {"name": "c1", "class": "mpi_actors:Counter", "args": {"start": 20}}]}})
def test_static_children_of_the_marker_app_answer_by_name(plex_driver):
    # round-robin placement: c1 lands on rank 1, or on rank 0 when there is one rank
    assert plex_driver.ask("c0", "add", {"n": 1}) == {"count": 11, "rank": 0}
    assert plex_driver.ask("c1", "add", {"n": 2}) == {"count": 22, "rank": 1 % plex_driver.size}
    assert plex_driver.resolve("c1") == f"c1@{1 % plex_driver.size}"
