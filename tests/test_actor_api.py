"""The decorator API without any node: specs, state, payload-to-argument mapping."""

import pytest

from plexhpc import actor, handler, init_handler, state, terminate_handler
from plexhpc.actors.spec import CALL, CAST, spec_of
from plexhpc.errors import InvalidMessage


@actor
class Agent:
    name: str = state(default="agent")
    messages: list = state(default_factory=list)
    limit: int = 3  # annotated plain default counts as state too

    @init_handler
    def on_init(self, config):
        self.name = config["args"].get("name", self.name)

    @handler("chat")
    def chat(self, message: str, session_id: str = "") -> dict:
        self.messages.append(message)
        return {"echo": message, "session": session_id}

    @handler("note", "cast")
    def note(self, text: str = "") -> None:
        self.messages.append(text)

    @handler("anything")
    def anything(self, **payload):
        return payload

    @terminate_handler
    def bye(self, reason):
        self.messages.append(reason)


def test_spec_records_handlers_kinds_and_hooks():
    spec = spec_of(Agent)
    assert spec.kind == "GenServer"
    assert spec.handlers["chat"].kind == CALL
    assert spec.handlers["note"].kind == CAST
    assert spec.init is Agent.on_init and spec.terminate is Agent.bye
    assert set(spec.fields) == {"name", "messages", "limit"}


def test_each_instance_gets_fresh_state():
    spec = spec_of(Agent)
    a, b = spec.new_instance("a@0"), spec.new_instance("b@0")
    a.messages.append("x")
    assert b.messages == [] and a.messages == ["x"]
    assert a.actor_id == "a@0" and a.name == "agent" and a.limit == 3


def test_payload_keys_map_to_arguments_extras_ignored_defaults_apply():
    h = spec_of(Agent).handlers["chat"]
    inst = spec_of(Agent).new_instance("a@0")
    assert h.invoke(inst, {"message": "hi", "op": "chat", "junk": 1}) == {
        "echo": "hi", "session": ""}
    assert h.invoke(inst, {"message": "hi", "session_id": "s1"})["session"] == "s1"


def test_missing_required_argument_is_refused_before_the_handler_runs():
    h = spec_of(Agent).handlers["chat"]
    inst = spec_of(Agent).new_instance("a@0")
    with pytest.raises(InvalidMessage, match=r"requires payload keys \['message'\]"):
        h.invoke(inst, {"session_id": "s"})
    with pytest.raises(InvalidMessage):
        h.invoke(inst, None)
    assert inst.messages == []  # untouched


def test_var_keyword_handler_receives_the_whole_payload():
    h = spec_of(Agent).handlers["anything"]
    assert h.invoke(spec_of(Agent).new_instance("a@0"), {"a": 1, "b": 2}) == {"a": 1, "b": 2}


def test_class_stays_usable_without_a_node():
    a = Agent()
    assert a.chat("direct") == {"echo": "direct", "session": ""}


def test_mutable_default_is_rejected_with_advice():
    with pytest.raises(TypeError, match="default_factory"):
        state(default=[])


def test_state_default_and_factory_are_exclusive():
    with pytest.raises(TypeError):
        state(default=1, default_factory=int)


def test_handler_needs_an_op_and_a_known_kind():
    with pytest.raises(TypeError):
        handler("")
    with pytest.raises(ValueError, match="'call' or 'cast'"):
        handler("x", "sometimes")


def test_init_handler_works_with_and_without_parentheses():
    @actor
    class A:
        @init_handler()
        def start(self, config):
            pass
    assert spec_of(A).init is A.start


def test_actor_with_facets_argument_and_subclass_spec():
    @actor(facets=["durability"])
    class Base:
        @handler("a")
        def a(self):
            return "a"

    class Child(Base):
        @handler("b")
        def b(self):
            return "b"

    assert spec_of(Base).facets == ("durability",)
    assert set(spec_of(Child).handlers) == {"a", "b"}


def test_undecorated_class_is_not_an_actor():
    class Plain:
        pass
    with pytest.raises(TypeError, match="@actor"):
        spec_of(Plain)
