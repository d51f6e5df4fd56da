"""Actor classes of the pytest-mpi suite (tests/mpi), spawned by the tests themselves.

Every test starts its own job, so these actors start fresh in each test; they report
where they run so a test can check that a message really crossed ranks.
"""

import os

from plexhpc import actor, handler, host, init_handler, state, terminate_handler


@actor
class Echo:
    """Says where it runs, forwards asks to other actors, counts casts."""

    notes: list = state(default_factory=list)
    held: list = state(default_factory=list)

    @handler("whoami")
    def whoami(self):
        return {"id": host.self_id(), "rank": host.rank(), "pid": os.getpid()}

    @handler("relay")
    def relay(self, to: str, op: str = "whoami", payload: dict = None,
              timeout_ms: int = 5000):
        """Ask ``to`` from inside this handler (actor to actor, across ranks)."""
        return host.ask(to, op, payload or {}, timeout_ms)

    @handler("note", "cast")
    def note(self, i: int = 0):
        self.notes.append(i)

    @handler("notes")
    def get_notes(self):
        return list(self.notes)

    @handler("tell")
    def tell(self, to: str, count: int):
        """Cast ``count`` notes to ``to`` from this actor (actor-to-actor sends)."""
        for i in range(count):
            host.send(to, "note", {"i": i})
        return count

    @handler("hold")
    def hold(self):
        """Do not answer (yet): the ask times out while this rank keeps serving."""
        self.held.append(host.defer_reply())

    @handler("release")
    def release(self):
        """Answer the held asks now (too late: their callers gave up)."""
        for token in self.held:
            host.reply(token, "late")
        count, self.held = len(self.held), []
        return count

    @handler("fail")
    def fail(self, message: str = "failed on purpose"):
        raise ValueError(message)


@actor
class Member:
    """Joins a process group when it starts; can join and leave more on request."""

    @init_handler
    def on_init(self, config):
        host.process_groups.join(config["args"].get("group", "members"))

    @handler("join")
    def join(self, group: str):
        host.process_groups.join(group)
        return True

    @handler("leave")
    def leave(self, group: str):
        return host.process_groups.leave(group)

    @handler("members")
    def members(self, group: str = "members"):
        """The group as this actor's rank sees it."""
        return host.process_groups.members(group)


@actor
class Recorder:
    """Collects ``record`` casts (a stopped actor's terminate handler sends one)."""

    seen: list = state(default_factory=list)

    @handler("record", "cast")
    def record(self, what: str):
        self.seen.append(what)

    @handler("seen")
    def get_seen(self):
        return list(self.seen)


@actor
class Reporter:
    """Tells the ``recorder`` actor that it stopped, from its terminate handler."""

    @handler("whoami")
    def whoami(self):
        return {"id": host.self_id(), "rank": host.rank()}

    @terminate_handler
    def on_stop(self, reason):
        host.send("recorder", "record", {"what": f"{host.self_id()} stopped: {reason}"})


@actor
class Counter:
    """A counter that starts at ``args.start`` (a static child of a marker's app)."""

    count: int = state(default=0)

    @init_handler
    def on_init(self, config):
        self.count = config["args"].get("start", 0)

    @handler("add")
    def add(self, n: int = 1):
        self.count += n
        return {"count": self.count, "rank": host.rank()}
