"""Behaviors, contexts, capabilities and facets as declared (no node needed)."""

import pytest

from plexhpc import (ConfigError, InvalidMessage, event_actor, fsm_actor, handler,
                     query_handler, run_handler, signal_handler, state, workflow_actor)
from plexhpc.actors.spec import spec_of
from plexhpc.config import SupervisorSpec, load_config
from plexhpc.context import DEFAULT_CONTEXT, check_capabilities, make_context
from plexhpc.actors.facets import parse_facets


@fsm_actor(states=["idle", "busy"], initial="idle", transitions={"idle": ["busy"],
                                                                 "busy": ["idle"]})
class Light:
    @handler("go", states=["idle"])
    def go(self):
        self.fsm_state = "busy"
        return "went"

    @handler("teleport")
    def teleport(self):
        self.work.append("half done")
        self.fsm_state = "nowhere"
        return "teleported"

    work: list = state(default_factory=list)


def test_fsm_validates_and_rolls_back_without_a_node():
    light = Light()
    spec = spec_of(Light)
    assert light.fsm_state == "idle"
    assert spec.handlers["go"].invoke(light, {}) == "went"
    assert light.fsm_state == "busy" and light.fsm_transitions == 1
    refused = spec.handlers["go"].invoke(light, {})
    assert refused["status"] == "rejected" and refused["state"] == "busy"
    bad = spec.handlers["teleport"].invoke(light, {})
    assert bad["status"] == "rejected" and light.fsm_state == "busy"
    assert light.work == []  # everything the refused handler changed is undone
    assert spec.handlers["transition"].invoke(light, {"to": "idle"})["status"] == "ok"
    assert spec.handlers["get_state"].invoke(light, {}) == {"status": "ok", "state": "idle",
                                                            "transitions": 2}


@pytest.mark.parametrize("kwargs, message", [
    ({"states": [], "initial": "a"}, "non-empty list"),
    ({"states": ["a", "a"], "initial": "a"}, "duplicate"),
    ({"states": ["a"], "initial": "b"}, "initial state 'b'"),
    ({"states": ["a"], "initial": "a", "transitions": {"a": ["z"]}}, r"unknown states \['z'\]"),
])
def test_fsm_declaration_errors(kwargs, message):
    with pytest.raises(TypeError, match=message):
        @fsm_actor(**kwargs)
        class Bad:
            pass


def test_event_actor_collects_every_handler_of_an_event():
    @event_actor
    class Log:
        seen: list = state(default_factory=list)

        @handler("evt", "cast")
        def one(self, x=0):
            self.seen.append(("one", x))

        @handler("evt", "cast")
        def two(self, x=0):
            self.seen.append(("two", x))

    log = Log()
    spec = spec_of(Log)
    assert {"evt", "subscribe", "unsubscribe"} <= set(spec.handlers)
    spec.handlers["subscribe"].invoke(log, {"subscriber": "other@1", "events": ["evt"]})
    assert log.event_subscribers == {"other@1": ["evt"]}


def test_workflow_declaration():
    @workflow_actor
    class Flow:
        @run_handler
        def run(self, n: int = 1):
            return n

        @signal_handler("stop")
        def stop(self):
            pass

        @query_handler("where")
        def where(self):
            return "here"

    spec = spec_of(Flow)
    assert {"workflow_run", "workflow_status", "workflow_signal:stop",
            "workflow_query:where"} <= set(spec.handlers)
    with pytest.raises(TypeError, match="needs a @run_handler"):
        @workflow_actor
        class NoRun:
            pass


def test_contexts_and_capabilities():
    assert make_context() is None
    ctx = make_context("acme")
    assert ctx == ("acme", "default", "anonymous") and type(ctx) is tuple  # wire form
    assert DEFAULT_CONTEXT.tenant == "default" and DEFAULT_CONTEXT.scope == ("default",
                                                                             "default")
    for bad in ("", "x" * 200, "a\nb", 5):
        with pytest.raises(InvalidMessage):
            make_context(bad)
    assert check_capabilities(None, "w") is None
    assert check_capabilities(["kv", "ts"], "w") == frozenset({"kv", "ts"})
    with pytest.raises(ConfigError, match="unknown capabilities"):
        check_capabilities(["kv", "root"], "w")


def test_facets_parse_durations_and_refuse_bad_config():
    f = parse_facets(["metrics", {"type": "virtual_actor", "config": {"idle_timeout": "2m"}},
                      {"type": "durability", "config": {"checkpoint_interval": 3}}], "f")
    assert f["virtual_actor"] == {"idle_timeout_ms": 120000.0, "activation_strategy": "lazy"}
    assert f["durability"] == {"checkpoint_interval": 3, "on_corrupt": "fresh"}
    assert f["metrics"] == {}
    for bad, msg in ((["durability", "durability"], "given twice"),
                     ([{"type": "timer", "config": {"x": 1}}], "unknown key"),
                     ([{"type": "virtual_actor", "config": {"idle_timeout": 0}}], "> 0"),
                     ([{"type": "durability", "config": {"on_corrupt": "ignore"}}],
                      "on_corrupt")):
        with pytest.raises(ConfigError, match=msg):
            parse_facets(bad, "f")


def test_nested_supervisors_from_config():
    actor_cls = "plexhpc.apps.inference.actors:InferenceWorker"  # any importable actor
    cfg = load_config({"supervisor": {"strategy": "one_for_all", "children": [
        {"name": "a", "class": actor_cls},
        {"name": "inner", "type": "supervisor", "strategy": "rest_for_one",
         "restart_backoff_ms": 50, "children": [
             {"name": "b", "class": actor_cls, "restart": "transient"},
             {"name": "c", "class": actor_cls}]}]}}, world_size=2)
    assert [c.name for c in cfg.children] == ["a", "b", "c"]
    assert [c.supervisor for c in cfg.children] == ["root", "inner", "inner"]
    inner = cfg.tree.children[1]
    assert isinstance(inner, SupervisorSpec) and inner.strategy == "rest_for_one"
    assert inner.backoff_ms == 50 and [c.name for c in inner.leaves()] == ["b", "c"]
    with pytest.raises(ConfigError, match="duplicate child name"):
        load_config({"supervisor": {"children": [
            {"name": "a", "class": actor_cls},
            {"name": "x", "type": "supervisor", "children": [
                {"name": "a", "class": actor_cls}]}]}}, world_size=1)
