"""Actors for the request-isolation tests: handlers that take **kwargs, built-in
behaviours (GenEvent, Workflow), and an actor that crashes on request."""

from plexhpc import (actor, event_actor, handler, host, init_handler, query_handler,
                     run_handler, signal_handler, state, workflow_actor)


@actor
class Kw:
    inits: int = state(default=0)

    @init_handler
    def on_init(self, config):
        self.inits += 1

    @handler("kw")
    def kw(self, **kw):
        return sorted(kw)

    @handler("inits")
    def get_inits(self):
        return self.inits

    @handler("ask_with")
    def ask_with(self, to: str, timeout_ms=5000):
        return host.ask(to, "inits", {}, timeout_ms)


@actor
class Crashy:
    @handler("crash")
    def crash(self):
        raise RuntimeError("crash on request")

    @handler("ping")
    def ping(self):
        return "pong"


@event_actor
class Bus:
    count: int = state(default=0)

    @handler("evt", "cast")
    def on_evt(self, kind: str):
        self.count += 1

    @handler("stats")
    def stats(self):
        return self.count


@workflow_actor
class Flow:
    notes: list = state(default_factory=list)

    @run_handler
    def run(self, n: int = 1):
        return {"n": n}

    @signal_handler("note")
    def note(self, text: str):
        self.notes.append(text)
        return {"status": "ok"}

    @query_handler("notes")
    def q_notes(self):
        return list(self.notes)
