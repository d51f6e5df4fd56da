"""Spawning actors on chosen ranks, finding them by name, stopping them."""

import pytest

from plexhpc import ActorNotFound

from mpi_actors import Echo, Recorder, Reporter

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(30)]


def test_spawn_on_the_last_rank_by_name_then_stop(plex):
    driver = plex.driver
    aid = plex.spawn(Echo, name="worker", rank=plex.last_rank)
    assert aid == f"worker@{plex.last_rank}"
    assert driver.resolve("worker") == aid
    # another actor on the driver's rank finds it by name too
    helper = plex.spawn(Echo, rank=0)
    assert driver.ask(helper, "relay", {"to": "worker"})["id"] == aid
    driver.stop(aid)
    with pytest.raises(ActorNotFound):
        driver.ask(aid, "whoami")


def test_stop_runs_the_terminate_handler(plex):
    plex.spawn(Recorder, name="recorder", rank=0)
    reporter = plex.spawn(Reporter, rank=plex.last_rank)
    plex.driver.stop(reporter)
    seen = plex.wait_until(lambda: plex.driver.ask("recorder", "seen"),
                           what="the reporter's terminate handler")
    assert seen == [f"{reporter} stopped: normal"]


def test_spawn_each_then_stop_each(plex):
    ids = plex.spawn_each(Echo, name="e")
    assert ids == [f"e{r}@{r}" for r in plex.ranks]
    plex.stop_each(ids)
    for aid in ids:
        with pytest.raises(ActorNotFound):
            plex.driver.ask(aid, "whoami")


@pytest.mark.parametrize("round", [1, 2])
def test_every_test_gets_a_fresh_job(plex, round):
    # the same name in two tests: a job shared between them would refuse the second
    assert plex.spawn(Echo, name="solo", rank=plex.last_rank) == f"solo@{plex.last_rank}"
