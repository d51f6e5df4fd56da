"""The hello app: two actors on two ranks showing ask, send, send_after and groups."""

import time

from plexhpc import actor, handler, host, init_handler, state


@actor
class Greeter:
    """Answers greetings and counts the casts it receives."""

    greeting: str = state(default="hello")
    greeted: int = state(default=0)
    notes: list = state(default_factory=list)

    @init_handler
    def on_init(self, config: dict) -> None:
        self.greeting = config["args"].get("greeting", self.greeting)
        host.process_groups.join("svc:greeter")

    @handler("greet")
    def greet(self, name: str = "world") -> dict:
        self.greeted += 1
        return {"text": f"{self.greeting}, {name}!", "from": host.self_id(),
                "rank": host.rank(), "greeted": self.greeted}

    @handler("note", "cast")
    def note(self, text: str = "") -> None:
        self.notes.append(text)

    @handler("stats")
    def stats(self) -> dict:
        return {"greeted": self.greeted, "notes": len(self.notes)}


@actor
class Pinger:
    """The app's main actor: finds the greeter through a process group and talks to it."""

    ticks: int = state(default=0)

    @handler("tick", "cast")
    def tick(self) -> None:
        self.ticks += 1

    @handler("run")
    def run(self, rounds: int = 1000) -> dict:
        greeter = host.process_groups.first("svc:greeter")
        first = host.ask(greeter, "greet", {"name": f"rank {host.rank()}"})
        t0 = time.perf_counter()
        for i in range(rounds):
            host.ask(greeter, "greet", {"name": str(i)})
        ask_us = (time.perf_counter() - t0) / max(rounds, 1) * 1e6
        for i in range(rounds):
            host.send(greeter, "note", {"text": f"note {i}"})
        host.send_after(50, "tick")
        stats = host.ask(greeter, "stats")  # FIFO: arrives after every note above
        return {
            "pinger": host.self_id(),
            "greeter": greeter,
            "first_reply": first,
            "asks": rounds + 1,
            "mean_ask_us": round(ask_us, 1),
            "casts_seen_by_greeter": stats["notes"],
            "greeter_stats": stats,
        }
