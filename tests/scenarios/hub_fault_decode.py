"""Messages that pickle on the sender but do not unpickle on the receiver (issue 10).

``Bad`` is an exception whose ``__init__`` takes two arguments: pickle stores only
``args`` (one), so rebuilding it raises TypeError on the receiving rank. Rank 0 drives;
the actors that return or receive ``Bad`` live on rank 1. Each case records what the
asker got, and the job must keep answering afterwards. Rank 0 prints one RESULT line.
"""

import json

import plexhpc
from plexhpc import actor, handler, host, state
from scenario_util import err


class Bad(Exception):
    """Pickles fine, cannot be unpickled (two-argument ``__init__``)."""

    def __init__(self, a, b):
        super().__init__(a)


def what(e):
    return None if e is None else [type(e).__name__, str(e)]


@actor
class Replier:
    """On rank 1: returns unpicklable values, records what it receives."""

    seen: list = state(default_factory=list)

    @handler("bad")
    def bad(self):
        return Bad("x", "y")

    @handler("bad_after_cast")
    def bad_after_cast(self, to: str):
        # one batch back to rank 0: a good cast, then the reply that cannot be decoded
        host.send(to, "rec", {"i": 99})
        return {"value": Bad("x", "y")}

    @handler("good")
    def good(self):
        return "fine"

    @handler("rec", "cast")
    def rec(self, i: int, data=None):
        self.seen.append(i)

    @handler("echo")
    def echo(self, data=None):
        return "echoed"

    @handler("seen")
    def get_seen(self):
        return list(self.seen)


@actor
class Mixer:
    """On rank 0: sends one batch that mixes undecodable envelopes with good ones."""

    seen: list = state(default_factory=list)

    @handler("rec", "cast")
    def rec(self, i: int, data=None):
        self.seen.append(i)

    @handler("seen")
    def get_seen(self):
        return list(self.seen)

    @handler("mix")
    def mix(self, to: str):
        # all of these leave in one batch when this handler parks on the ask below
        host.send(to, "rec", {"i": 1})
        host.send(to, "rec", {"i": 2, "data": Bad("a", "b")})
        host.send(to, "rec", {"i": 3})
        out = {"bad_ask": what(err(lambda: host.ask(to, "echo", {"data": Bad("a", "b")},
                                                    5000)))}
        out["seen"] = host.ask(to, "seen", timeout_ms=5000)
        return out

    @handler("ask_bad")
    def ask_bad(self, to: str):
        return what(err(lambda: host.ask(to, "bad", timeout_ms=5000)))


def main():
    cfg = {"supervisor": {"children": [
        {"name": "mixer", "class": "hub_fault_decode:Mixer", "rank": 0},
        {"name": "replier", "class": "hub_fault_decode:Replier", "rank": 1},
        {"name": "sink", "class": "hub_fault_decode:Replier", "rank": 1}]}}
    out = {}
    with plexhpc.start(cfg) as job:
        if not job.is_driver:
            return
        # the reply from rank 1 cannot be unpickled on rank 0: the asker gets an error
        out["driver_bad_reply"] = what(err(lambda: job.ask("replier", "bad",
                                                           timeout_ms=5000)))
        out["after_driver"] = job.ask("replier", "good", timeout_ms=5000)
        out["handler_bad_reply"] = job.ask("mixer", "ask_bad", {"to": "replier"}, 10000)
        # a reply batch mixing a good cast with the bad reply: the cast arrives
        out["mixed_reply"] = what(err(lambda: job.ask(
            "replier", "bad_after_cast", {"to": "mixer"}, 5000)))
        out["mixer_seen"] = job.ask("mixer", "seen", timeout_ms=5000)
        # an ask whose payload cannot be unpickled on rank 1
        out["bad_payload_ask"] = what(err(lambda: job.ask(
            "replier", "echo", {"data": Bad("a", "b")}, 5000)))
        # a cast whose payload cannot be unpickled: dropped there, nothing else lost
        job.send("sink", "rec", {"i": 7, "data": Bad("a", "b")})
        job.send("sink", "rec", {"i": 8})
        out["cast_seen"] = job.ask("sink", "seen", timeout_ms=5000)
        # one batch mixing bad casts and a bad ask with good casts
        out["mix"] = job.ask("mixer", "mix", {"to": "sink"}, 20000)
        out["still_up"] = job.ask("replier", "good", timeout_ms=5000)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
