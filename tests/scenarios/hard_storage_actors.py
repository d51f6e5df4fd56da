"""Actors of the storage-hardening scenarios: each builds a malformed state request on
its own rank (values no wire format carries, such as ints past 64 bits) and reports
the error it got back as data."""

from plexhpc import actor, handler, host


#: the inputs of issue 10 that killed the state rank, by name
PROBES = {
    "ack_huge_seq": lambda: host.channel.ack("q", "99999999999999999999.x"),
    "ttl_1e300": lambda: host.kv_put_with_ttl("k", 1, 1e300),
    "list_limit_1e30": lambda: host.kv_list(limit=10 ** 30),
    "dead_letters_2_64": lambda: host.channel.dead_letters("q", limit=2 ** 64),
    "receive_visibility_huge": lambda: host.channel.receive("q", visibility_ms=10 ** 30),
}


@actor
class Prober:
    """``probe`` runs one named input; ``alive`` proves the state rank still answers."""

    @handler("probe")
    def probe(self, case: str):
        try:
            PROBES[case]()
        except Exception as exc:  # noqa: BLE001 - the test wants the type and text
            return [type(exc).__name__, str(exc)]
        return None

    @handler("alive")
    def alive(self, n: int):
        host.kv_put("alive", n)
        host.channel.send("alive-q", "t", {"n": n})
        msg = host.channel.receive("alive-q")
        host.channel.ack("alive-q", msg["msg_id"])
        return [host.kv_get("alive"), msg["payload"]["n"]]
