"""Process groups: membership seen cluster-wide, leaving, and stopped members."""

import pytest

from mpi_actors import Member

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(30)]


def test_a_group_spans_every_rank_and_looks_the_same_everywhere(plex):
    ids = plex.spawn_each(Member)
    # joins are announced to every rank: wait for them to arrive, then compare
    plex.wait_until(lambda: plex.driver.members("members") == ids, what="every member")
    plex.wait_until(lambda: plex.ask_each(ids, "members") == [ids] * plex.size,
                    what="the same membership on every rank")


def test_leaving_and_stopping_shrink_the_group(plex):
    ids = plex.spawn_each(Member)
    plex.wait_until(lambda: plex.driver.members("members") == ids, what="every member")
    assert plex.driver.ask(ids[-1], "leave", {"group": "members"}) is True
    plex.wait_until(lambda: plex.driver.members("members") == ids[:-1], what="the leave")
    plex.driver.stop(ids[0])
    plex.wait_until(lambda: plex.driver.members("members") == ids[1:-1],
                    what="the stopped member gone")


def test_an_unknown_group_has_no_members(plex):
    assert plex.driver.members("nobody-joined-this") == []
