"""Process groups: named sets of actors, seen from every rank (like Erlang's ``pg``).

Each rank keeps a full replica of the membership. A join or leave is applied locally at
once and announced to every other rank on the same FIFO channel as that rank's actor
messages, so an actor that joins and then messages another rank is always seen as a
member there before its message arrives. Replicas converge; two ranks may briefly
disagree about a change made on a third rank (eventual consistency, as in ``pg``).

Members are listed in a stable order, by (rank, join sequence), so ``first()`` names the
same actor on every rank once the replicas agree. An actor leaves all its groups when it
stops or crashes; a restarted actor joins again from its init handler.
"""

from __future__ import annotations

import itertools

__all__ = ["GroupRegistry"]


class GroupRegistry:
    """This rank's replica of the cluster's process groups."""

    def __init__(self, rank: int, system):
        self.rank = rank
        self._system = system
        self._groups: dict[str, dict[str, tuple]] = {}
        self._sorted: dict[str, list] = {}
        self._seq = itertools.count(1)
        system.register("pg", lambda src, item: self._apply(item), owner="process groups",
                        payload="(join|leave, group, actor id, rank, join seq)")

    # ---- changes --------------------------------------------------------------------

    def join(self, cell, group: str) -> None:
        _check_group(group)
        if cell.id in self._groups.get(group, ()):
            return
        item = ("join", group, cell.id, self.rank, next(self._seq))
        self._apply(item)
        if cell.groups is None:
            cell.groups = set()
        cell.groups.add(group)
        self._announce(item)

    def leave(self, cell, group: str) -> bool:
        _check_group(group)
        if cell.id not in self._groups.get(group, ()):
            return False
        item = ("leave", group, cell.id, self.rank, 0)
        self._apply(item)
        if cell.groups:
            cell.groups.discard(group)
        self._announce(item)
        return True

    def leave_all(self, cell) -> None:
        for group in list(cell.groups or ()):
            self.leave(cell, group)
        cell.groups = None

    def _apply(self, item) -> None:
        what, group, aid, rank, seq = item
        members = self._groups.get(group)
        if what == "join":
            if members is None:
                members = self._groups[group] = {}
            members[aid] = (rank, seq)
        elif members is not None:
            members.pop(aid, None)
            if not members:
                del self._groups[group]
        self._sorted.pop(group, None)

    def _announce(self, item) -> None:
        self._system.broadcast("pg", item)

    # ---- queries --------------------------------------------------------------------

    def members(self, group: str) -> list:
        """Member ids in stable (rank, join order) order; [] for an unknown group."""
        _check_group(group)
        cached = self._sorted.get(group)
        if cached is None:
            members = self._groups.get(group)
            if not members:
                return []
            cached = self._sorted[group] = [a for a, _ in sorted(members.items(),
                                                                  key=lambda kv: kv[1])]
        return list(cached)

    def first(self, group: str):
        """The first member, or None if the group is empty."""
        m = self.members(group)
        return m[0] if m else None

    def local_members(self, group: str) -> list:
        rank = self.rank
        return [a for a in self.members(group) if self._groups[group][a][0] == rank]

    def groups(self) -> list:
        return sorted(self._groups)


def _check_group(group) -> None:
    if not isinstance(group, str) or not group:
        raise ValueError(f"a process group name is a non-empty str, got {group!r}")
