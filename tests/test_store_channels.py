"""plexhpc.storage.channels: durable at-least-once queues, checked against a model."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule

from plexhpc.errors import InvalidMessage, UnknownLease
from plexhpc.storage import channels as channels_mod
from plexhpc.storage.channels import ChannelStore
from plexhpc.storage.db import open_db

S = ("tenant", "ns")
MAX = 3


class Clock:
    def __init__(self, t: int = 10_000):
        self.t = t

    def __call__(self) -> int:
        return self.t


# --- the model ------------------------------------------------------------------------------

class Msg:
    def __init__(self, msg_id, payload, msg_type):
        self.msg_id = msg_id
        self.payload = payload
        self.msg_type = msg_type
        self.deliveries = 0
        self.lease_until = None  # None: never leased or requeued
        self.state = "live"      # live | acked | dead


class Model:
    """What a channel should do, in a few plain lines."""

    def __init__(self, max_deliveries):
        self.max = max_deliveries
        self.msgs: list[Msg] = []  # in send order
        self.idem: dict[str, str] = {}
        self.now = 0

    def leased(self, m):
        return m.state == "live" and m.lease_until is not None and m.lease_until > self.now

    def exhausted(self, m):  # its last lease ran out: dead, however lazily the store notices
        return (m.state == "live" and m.lease_until is not None
                and m.lease_until <= self.now and m.deliveries >= self.max)

    def ready(self, m):
        return m.state == "live" and not self.leased(m) and not self.exhausted(m)

    def receive(self, visibility):
        for m in self.msgs:
            if self.ready(m):
                m.deliveries += 1
                m.lease_until = self.now + visibility
                return m
        return None

    def depth(self):
        return {"ready": sum(self.ready(m) for m in self.msgs),
                "leased": sum(self.leased(m) for m in self.msgs),
                "dead": sum(m.state == "dead" or self.exhausted(m) for m in self.msgs)}

    def next_ready_in_ms(self):
        if any(self.ready(m) for m in self.msgs):
            return 0
        ends = [m.lease_until - self.now for m in self.msgs
                if self.leased(m) and m.deliveries < self.max]
        return min(ends) if ends else None


class ChannelMachine(RuleBasedStateMachine):
    """Random sends, receives, acks, nacks, flushes, restarts and clock steps: the store
    and the model must agree on every answer, and no message is ever lost or doubled."""

    ids = Bundle("ids")

    def __init__(self):
        super().__init__()
        self.conn = open_db(":memory:")
        self.clock = Clock()
        self.defer = True
        self.store = ChannelStore(self.conn, now_ms=self.clock, max_deliveries=MAX)
        self.model = Model(MAX)
        self.model.now = self.clock.t
        self.by_id: dict[str, Msg] = {}
        self.counter = 0

    def teardown(self):
        self.conn.close()

    @rule(target=ids, idem=st.none() | st.sampled_from(["k1", "k2", "k3"]),
          msg_type=st.sampled_from(["a", "b"]))
    def send(self, idem, msg_type):
        self.counter += 1
        payload = {"n": self.counter, "t": (self.counter, "x")}
        msg_id = self.store.send(S, "q", msg_type, payload, idempotency_key=idem)
        if idem is not None and idem in self.model.idem:
            assert msg_id == self.model.idem[idem]  # the first send's id; nothing enqueued
            return msg_id
        assert msg_id not in self.by_id
        m = Msg(msg_id, payload, msg_type)
        self.model.msgs.append(m)
        self.by_id[msg_id] = m
        if idem is not None:
            self.model.idem[idem] = msg_id
        return msg_id

    @rule(visibility=st.sampled_from([1, 5, 20, 100]))
    def receive(self, visibility):
        got = self.store.receive(S, "q", visibility)
        want = self.model.receive(visibility)
        if want is None:
            assert got is None
            return
        assert got is not None and got["msg_id"] == want.msg_id
        assert got["payload"] == want.payload and got["msg_type"] == want.msg_type
        assert got["delivery_count"] == want.deliveries
        assert got["enqueued_at_ms"] <= self.clock.t

    @rule(msg_id=ids)
    def ack(self, msg_id):
        m = self.by_id[msg_id]
        if self.model.leased(m):
            self.store.ack(S, "q", msg_id)
            m.state = "acked"
        else:
            with pytest.raises(UnknownLease):
                self.store.ack(S, "q", msg_id)

    @rule(msg_id=ids, requeue=st.booleans())
    def nack(self, msg_id, requeue):
        m = self.by_id[msg_id]
        if self.model.leased(m):
            self.store.nack(S, "q", msg_id, requeue=requeue)
            if not requeue or m.deliveries >= MAX:
                m.state = "dead"
            else:
                m.lease_until = None
        else:
            with pytest.raises(UnknownLease):
                self.store.nack(S, "q", msg_id, requeue=requeue)

    @rule(ms=st.sampled_from([0, 1, 3, 7, 20, 60, 150]))
    def advance(self, ms):
        self.clock.t += ms
        self.model.now = self.clock.t

    @rule()
    def flush(self):
        self.store.flush()

    @rule(defer=st.booleans())
    def restart_cleanly(self, defer):
        """A new store on the same database (a restarted node that flushed first)."""
        self.store.flush()
        self.store = ChannelStore(self.conn, now_ms=self.clock, max_deliveries=MAX,
                                  defer_acks=defer)

    @precondition(lambda self: self.model.msgs)
    @rule(data=st.data())
    def ack_an_unknown_id(self, data):
        bad = data.draw(st.sampled_from(["", "x", "1", "1.", ".abc", "99999.abc"])
                        | st.sampled_from(list(self.by_id)).map(lambda i: i[:-1] + "z"))
        with pytest.raises(UnknownLease):
            self.store.ack(S, "q", bad)

    @invariant()
    def depth_matches(self):
        assert self.store.depth(S, "q") == self.model.depth()

    @invariant()
    def nothing_lost_or_doubled(self):
        depth = self.store.depth(S, "q")
        acked = sum(m.state == "acked" for m in self.model.msgs)
        assert depth["ready"] + depth["leased"] + depth["dead"] + acked == len(self.model.msgs)
        dead = [d["msg_id"] for d in self.store.dead_letters(S, "q", limit=10_000)]
        assert len(dead) == len(set(dead))
        assert set(dead) == {m.msg_id for m in self.model.msgs
                             if m.state == "dead" or self.model.exhausted(m)}
        rows = [r[0] for r in self.conn.execute("SELECT seq FROM channel_msg")]
        assert len(rows) == depth["ready"] + depth["leased"]

    @invariant()
    def next_ready_matches(self):
        assert self.store.next_ready_in_ms(S, "q") == self.model.next_ready_in_ms()


ChannelMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=50,
                                            deadline=None)
test_channel_store_matches_the_model = ChannelMachine.TestCase


# --- examples -------------------------------------------------------------------------------

@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def conn():
    c = open_db(":memory:")
    yield c
    c.close()


@pytest.fixture
def ch(conn, clock):
    return ChannelStore(conn, now_ms=clock, max_deliveries=MAX)


def test_send_receive_ack(ch, clock):
    sent = ch.send(S, "q", "greet", {"name": "ada", "tags": ("a", "b")})
    assert ch.depth(S, "q") == {"ready": 1, "leased": 0, "dead": 0}
    m = ch.receive(S, "q", 1000)
    assert m == {"msg_id": sent, "msg_type": "greet",
                 "payload": {"name": "ada", "tags": ("a", "b")},
                 "delivery_count": 1, "enqueued_at_ms": clock.t}
    assert ch.depth(S, "q") == {"ready": 0, "leased": 1, "dead": 0}
    assert ch.receive(S, "q", 1000) is None
    ch.ack(S, "q", sent)
    assert ch.depth(S, "q") == {"ready": 0, "leased": 0, "dead": 0}
    with pytest.raises(UnknownLease, match="came twice"):
        ch.ack(S, "q", sent)


def test_fifo_and_skipping_leased_messages(ch):
    ids = [ch.send(S, "q", "t", i) for i in range(5)]
    first = ch.receive(S, "q", 100)
    second = ch.receive(S, "q", 100)
    assert [first["payload"], second["payload"]] == [0, 1]
    ch.nack(S, "q", first["msg_id"])  # back at its place in the line
    assert ch.receive(S, "q", 100)["msg_id"] == ids[0]
    assert ch.receive(S, "q", 100)["msg_id"] == ids[2]


def test_an_expired_lease_is_redelivered_in_its_place(ch, clock):
    a = ch.send(S, "q", "t", "a")
    b = ch.send(S, "q", "t", "b")
    assert ch.receive(S, "q", 50)["msg_id"] == a
    clock.t += 50
    again = ch.receive(S, "q", 50)
    assert again["msg_id"] == a and again["delivery_count"] == 2
    with pytest.raises(UnknownLease):
        ch.ack(S, "q", b)  # b was never leased
    clock.t += 50
    with pytest.raises(UnknownLease, match="expired"):
        ch.ack(S, "q", a)


def test_dead_letter_after_max_deliveries(ch, clock):
    msg_id = ch.send(S, "q", "poison", {"p": 1})
    for n in range(1, MAX + 1):
        m = ch.receive(S, "q", 10)
        assert m["msg_id"] == msg_id and m["delivery_count"] == n
        clock.t += 10  # the consumer died; the lease runs out
    assert ch.receive(S, "q", 10) is None
    assert ch.depth(S, "q") == {"ready": 0, "leased": 0, "dead": 1}
    dead = ch.dead_letters(S, "q")
    assert [(d["msg_id"], d["delivery_count"], d["payload"]) for d in dead] == [
        (msg_id, MAX, {"p": 1})]
    assert ch.next_ready_in_ms(S, "q") is None


def test_dead_letters_do_not_block_the_line(ch, clock):
    poison = ch.send(S, "q", "t", "poison")
    for _ in range(MAX):
        ch.receive(S, "q", 10)
        clock.t += 10
    good = ch.send(S, "q", "t", "good")
    assert ch.receive(S, "q", 10)["msg_id"] == good  # the poison is buried on the way
    assert [d["msg_id"] for d in ch.dead_letters(S, "q")] == [poison]


def test_nack_without_requeue_dead_letters_at_once(ch):
    msg_id = ch.send(S, "q", "t", 1)
    ch.receive(S, "q", 100)
    ch.nack(S, "q", msg_id, requeue=False)
    assert ch.depth(S, "q") == {"ready": 0, "leased": 0, "dead": 1}
    with pytest.raises(UnknownLease):
        ch.nack(S, "q", msg_id)


def test_nack_requeue_of_the_last_delivery_dead_letters(ch):
    msg_id = ch.send(S, "q", "t", 1)
    for _ in range(MAX - 1):
        ch.receive(S, "q", 100)
        ch.nack(S, "q", msg_id)
    ch.receive(S, "q", 100)
    ch.nack(S, "q", msg_id, requeue=True)
    assert ch.depth(S, "q")["dead"] == 1


def test_unknown_leases(ch):
    msg_id = ch.send(S, "q", "t", 1)
    for bad in [msg_id, "nonsense", "", "12.ab", None, 5, "\u00b2.ab", "9" * 5000 + ".x"]:
        with pytest.raises(UnknownLease):
            ch.ack(S, "q", bad)
        with pytest.raises(UnknownLease):
            ch.nack(S, "q", bad)
    m = ch.receive(S, "q", 100)
    with pytest.raises(UnknownLease):
        ch.ack(S, "other", m["msg_id"])  # the right id on another channel
    with pytest.raises(UnknownLease):
        ch.ack(("tenant", "other"), "q", m["msg_id"])
    ch.ack(S, "q", m["msg_id"])


def test_idempotent_send(ch):
    first = ch.send(S, "q", "t", 1, idempotency_key="order-7")
    assert ch.send(S, "q", "t", 2, idempotency_key="order-7") == first
    other = ch.send(S, "q2", "t", 3, idempotency_key="order-7")  # another channel
    assert other != first
    assert ch.depth(S, "q")["ready"] == 1
    m = ch.receive(S, "q", 100)
    assert m["payload"] == 1
    ch.ack(S, "q", m["msg_id"])
    assert ch.send(S, "q", "t", 4, idempotency_key="order-7") == first  # even after ack
    assert ch.depth(S, "q") == {"ready": 0, "leased": 0, "dead": 0}


def test_idempotency_keys_count_for_a_window_then_are_forgotten(conn, clock):
    ch = ChannelStore(conn, now_ms=clock, idempotency_window_ms=1000)
    first = ch.send(S, "q", "t", 1, idempotency_key="k")
    clock.t += 999
    assert ch.send(S, "q", "t", 2, idempotency_key="k") == first  # inside the window
    clock.t += 2
    again = ch.send(S, "q", "t", 3, idempotency_key="k")             # a day later, say
    assert again != first
    assert ch.send(S, "q", "t", 4, idempotency_key="k") == again
    for i in range(300):  # old keys are pruned as sends go on
        ch.send(S, "q", "t", i, idempotency_key=f"n{i}")
        clock.t += 10
    (kept,) = conn.execute("SELECT COUNT(*) FROM channel_idem").fetchone()
    assert kept < 200
    with pytest.raises(InvalidMessage, match="idempotency_window_ms"):
        ChannelStore(conn, idempotency_window_ms=0)


def test_channels_and_scopes_are_separate(ch):
    ch.send(("a", "b"), "c", "t", 1)
    ch.send(("a",), "b", "t", 2)     # would collide if scope and channel were joined naively
    ch.send(("a", "b\x00c"), "c", "t", 3)
    ch.send(("a", "b"), "c\x00", "t", 4)
    assert ch.receive(("a",), "b", 10)["payload"] == 2
    assert ch.receive(("a", "b"), "c", 10)["payload"] == 1
    assert ch.receive(("a", "b"), "c", 10) is None
    assert ch.receive(("a", "b\x00c"), "c", 10)["payload"] == 3
    assert ch.receive(("a", "b"), "c\x00", 10)["payload"] == 4


def test_next_ready_in_ms(ch, clock):
    assert ch.next_ready_in_ms(S, "q") is None
    msg_id = ch.send(S, "q", "t", 1)
    assert ch.next_ready_in_ms(S, "q") == 0
    ch.receive(S, "q", 300)
    assert ch.next_ready_in_ms(S, "q") == 300
    clock.t += 100
    assert ch.next_ready_in_ms(S, "q") == 200
    ch.ack(S, "q", msg_id)
    assert ch.next_ready_in_ms(S, "q") is None


@pytest.mark.parametrize("call", [
    lambda ch: ch.send(S, "", "t", 1),
    lambda ch: ch.send(S, "q", "", 1),
    lambda ch: ch.send(["a"], "q", "t", 1),
    lambda ch: ch.send(S, "q", "t", 1, idempotency_key=""),
    lambda ch: ch.receive(S, "q", 0),
    lambda ch: ch.receive(S, "q", 1.5),
    lambda ch: ch.dead_letters(S, "q", limit=-1),
    lambda ch: ChannelStore(ch._conn, max_deliveries=0),
])
def test_bad_arguments(ch, call):
    with pytest.raises(InvalidMessage):
        call(ch)


def test_unstorable_payload(ch):
    with pytest.raises(TypeError, match=r"payload\['f'\]"):
        ch.send(S, "q", "t", {"f": print})


# --- durability ----------------------------------------------------------------------------

def test_messages_and_leases_survive_a_restart(tmp_path, clock):
    path = str(tmp_path / "ch.db")
    conn = open_db(path)
    ch = ChannelStore(conn, now_ms=clock)
    ids = [ch.send(S, "q", "t", i) for i in range(3)]
    leased = ch.receive(S, "q", 100)
    done = ch.receive(S, "q", 100)
    ch.ack(S, "q", done["msg_id"])
    ch.flush()
    conn.close()

    conn = open_db(path)
    try:
        ch = ChannelStore(conn, now_ms=clock)
        assert ch.depth(S, "q") == {"ready": 1, "leased": 1, "dead": 0}
        assert ch.receive(S, "q", 100)["msg_id"] == ids[2]
        ch.ack(S, "q", leased["msg_id"])  # a lease taken before the restart still acks
        clock.t += 100
        assert ch.receive(S, "q", 100)["delivery_count"] == 2  # ids[2] again
    finally:
        conn.close()


def test_an_ack_lost_in_a_crash_means_a_redelivery_never_a_loss(tmp_path, clock):
    path = str(tmp_path / "ch.db")
    conn = open_db(path)
    ch = ChannelStore(conn, now_ms=clock)
    msg_id = ch.send(S, "q", "t", "x")
    ch.ack(S, "q", ch.receive(S, "q", 100)["msg_id"])
    conn.close()  # no flush: the held-back ack is lost, as in a crash

    conn = open_db(path)
    try:
        ch = ChannelStore(conn, now_ms=clock)
        assert ch.depth(S, "q") == {"ready": 0, "leased": 1, "dead": 0}
        clock.t += 100
        again = ch.receive(S, "q", 100)
        assert again["msg_id"] == msg_id and again["delivery_count"] == 2
    finally:
        conn.close()


def test_without_deferral_every_ack_is_on_disk_at_once(tmp_path, clock):
    path = str(tmp_path / "ch.db")
    conn = open_db(path)
    ch = ChannelStore(conn, now_ms=clock, defer_acks=False)
    ch.send(S, "q", "t", "x")
    ch.ack(S, "q", ch.receive(S, "q", 100)["msg_id"])
    conn.close()
    conn = open_db(path)
    try:
        assert ChannelStore(conn, now_ms=clock).depth(S, "q") == {"ready": 0, "leased": 0,
                                                                   "dead": 0}
    finally:
        conn.close()


def test_held_back_acks_are_written_by_the_next_call(conn, clock):
    ch = ChannelStore(conn, now_ms=clock)
    rows = lambda: conn.execute("SELECT COUNT(*) FROM channel_msg").fetchone()[0]  # noqa: E731
    ch.send(S, "q", "t", 1)
    ch.ack(S, "q", ch.receive(S, "q", 1000)["msg_id"])
    assert rows() == 1                   # held back ...
    ch.send(S, "other", "t", 2)
    assert rows() == 1                   # ... written with the send (which added one)
    ch.ack(S, "other", ch.receive(S, "other", 1000)["msg_id"])
    assert rows() == 1
    ch.flush()
    assert rows() == 0


def test_many_acks_are_written_in_batches(conn, clock):
    ch = ChannelStore(conn, now_ms=clock)
    for i in range(600):
        ch.send(S, "q", "t", i)
    leased = [ch.receive(S, "q", 10_000)["msg_id"] for _ in range(600)]
    for msg_id in leased:
        ch.ack(S, "q", msg_id)
    count = conn.execute("SELECT COUNT(*) FROM channel_msg").fetchone()[0]
    assert count <= 600 - 256  # written without any other call
    assert ch.depth(S, "q") == {"ready": 0, "leased": 0, "dead": 0}


def test_two_stores_on_one_database(conn, clock):
    """A lease taken through one store can be acked through another (checked in SQL, as
    after a restart); each store refuses a second ack of its own."""
    a = ChannelStore(conn, now_ms=clock)
    b = ChannelStore(conn, now_ms=clock)
    first = a.send(S, "q", "t", 1)
    second = a.send(S, "q", "t", 2)
    assert a.receive(S, "q", 100)["msg_id"] == first
    assert a.receive(S, "q", 100)["msg_id"] == second
    b.ack(S, "q", first)   # not b's lease: checked and deleted in SQL
    a.ack(S, "q", second)  # a's own lease: checked in memory, written later
    assert b.depth(S, "q") == {"ready": 0, "leased": 1, "dead": 0}  # a holds its ack back
    with pytest.raises(UnknownLease):
        b.ack(S, "q", first)
    with pytest.raises(UnknownLease):
        a.ack(S, "q", second)  # (writes a's held-back ack first)
    assert b.depth(S, "q") == {"ready": 0, "leased": 0, "dead": 0}
    with pytest.raises(UnknownLease):
        b.ack(S, "q", second)


def test_works_without_returning_support(conn, clock, monkeypatch):
    """Older SQLite (< 3.35) has no RETURNING: the same behaviour in a transaction."""
    monkeypatch.setattr(channels_mod, "_RETURNING", False)
    ch = ChannelStore(conn, now_ms=clock, max_deliveries=2)
    msg_id = ch.send(S, "q", "t", {"x": 1})
    m = ch.receive(S, "q", 10)
    assert m["msg_id"] == msg_id and m["delivery_count"] == 1
    clock.t += 10
    assert ch.receive(S, "q", 10)["delivery_count"] == 2
    clock.t += 10
    assert ch.receive(S, "q", 10) is None
    assert ch.depth(S, "q") == {"ready": 0, "leased": 0, "dead": 1}
    ok = ch.send(S, "q", "t", 2)
    ch.ack(S, "q", ch.receive(S, "q", 10)["msg_id"])
    assert ch.receive(S, "q", 10) is None and ok
