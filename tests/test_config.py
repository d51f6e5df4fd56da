"""App config validation: every mistake names the file, the key and what was expected."""

import textwrap

import pytest

from plexhpc.config import load_config
from plexhpc.errors import ConfigError

GOOD = """
[app]
name = "demo"
main = { actor = "a", op = "run", payload = { n = 1 } }

[supervisor]
strategy = "one_for_one"
max_restarts = 4
max_restart_window_seconds = 30

[[supervisor.children]]
name = "a"
class = "cfg_actors:A"
args = { x = 1 }
rank = 1

[[supervisor.children]]
name = "b"
class = "cfg_actors:A"
placement = "round_robin"

[[supervisor.children]]
name = "c"
class = "cfg_actors:A"
"""

ACTORS = """
from plexhpc import actor, handler

@actor
class A:
    @handler("run")
    def run(self, n: int = 0):
        return n

class NotAnActor:
    pass
"""


@pytest.fixture
def app(tmp_path):
    (tmp_path / "cfg_actors.py").write_text(ACTORS)

    def write(text, name="app.toml"):
        p = tmp_path / name
        p.write_text(textwrap.dedent(text))
        return str(p)
    return write


def test_a_good_config_loads_with_ranks_resolved(app):
    cfg = load_config(app(GOOD), world_size=2)
    assert cfg.name == "demo" and cfg.max_restarts == 4
    assert [(c.name, c.rank) for c in cfg.children] == [("a", 1), ("b", 0), ("c", 1)]
    assert cfg.children[0].args == {"x": 1}
    assert cfg.main.actor == "a" and cfg.main.payload == {"n": 1}



def test_dict_config_has_the_same_shape():
    cfg = load_config({"supervisor": {"children": []}}, world_size=4)
    assert cfg.children == [] and cfg.strategy == "one_for_one"


@pytest.mark.parametrize("text, key, expected", [
    ('[supervisor]\nstrategy = "whatever"\n', "supervisor.strategy", "expected one of"),
    ('[supervisor]\nstrategy = "one_for_none"\n', "supervisor.strategy", "expected one of"),
    ('[supervisor]\nrestart_backoff_ms = -1\n', "supervisor.restart_backoff_ms",
     "milliseconds >= 0"),
    ('[supervisor]\nmax_restarts = -1\n', "supervisor.max_restarts", "integer >= 0"),
    ('[supervisor]\nmax_restart_window_seconds = 0\n',
     "supervisor.max_restart_window_seconds", "> 0"),
    ('[supervisor]\nbogus = 1\n', "supervisor.bogus", "unknown key"),
    ('[bogus]\n', "bogus", "unknown key"),
    ('[[supervisor.children]]\nclass = "cfg_actors:A"\n', "supervisor.children[0].name",
     "non-empty string"),
    ('[[supervisor.children]]\nname = "a"\n', "class", "missing key 'class'"),
    ('[[supervisor.children]]\nname = "a"\nclass = "cfg_actors:Nope"\n', "class",
     "has no class 'Nope'"),
    ('[[supervisor.children]]\nname = "a"\nclass = "no_such_module:A"\n', "class",
     "cannot import module 'no_such_module'"),
    ('[[supervisor.children]]\nname = "a"\nclass = "cfg_actors"\n', "class",
     "module:Class"),
    ('[[supervisor.children]]\nname = "a"\nclass = "cfg_actors:NotAnActor"\n', "class",
     "not an actor class"),
    ('[[supervisor.children]]\nname = "a"\nclass = "cfg_actors:A"\nrank = 5\n', "rank",
     "rank 5 is out of range: the job has 2 rank(s)"),
    ('[[supervisor.children]]\nname = "a"\nclass = "cfg_actors:A"\nrank = 0\n'
     'placement = "round_robin"\n', "rank", "either rank or placement"),
    ('[[supervisor.children]]\nname = "a"\nclass = "cfg_actors:A"\nplacement = "magic"\n',
     "placement", "expected one of"),
    ('[[supervisor.children]]\nname = "a"\nclass = "cfg_actors:A"\nbehavior_kind = "GenFSM"\n',
     "behavior_kind", "is a GenServer actor, not GenFSM"),
    ('[[supervisor.children]]\nname = "a"\nclass = "cfg_actors:A"\nbehavior_kind = "Nope"\n',
     "behavior_kind", "expected one of"),
    ('[[supervisor.children]]\nname = "a"\nclass = "cfg_actors:A"\nargs = 3\n', "args",
     "expected a table"),
    ('[[supervisor.children]]\nname = "a"\nclass = "cfg_actors:A"\nfacets = ["teleport"]\n',
     "facets[0]", "unknown facet"),
    ('[[supervisor.children]]\nname = "a"\nclass = "cfg_actors:A"\nfacets = ["telepathy"]\n',
     "facets[0]", "unknown facet"),
    ('[[supervisor.children]]\nname = "a"\nclass = "cfg_actors:A"\n'
     'facets = [{type = "durability", config = {checkpoint_interval = 0}}]\n',
     "checkpoint_interval", "integer >= 1"),
    ('[[supervisor.children]]\nname = "a"\nclass = "cfg_actors:A"\n'
     'facets = [{type = "virtual_actor", config = {idle_timeout = "soon"}}]\n',
     "idle_timeout", "duration like"),
    ('[[supervisor.children]]\nname = "a"\nclass = "cfg_actors:A"\n'
     'capabilities = ["kv", "teleport"]\n', "capabilities", "unknown capabilities"),
    ('[[supervisor.children]]\nname = "a"\nclass = "cfg_actors:A"\ntenant = ""\n',
     "supervisor.children[0]", "tenant must be a non-empty str"),
    ('[state]\nrank = 7\n', "state.rank", "out of range"),
    ('[app]\nmetrics_port = 80\n', "app.metrics_port", "expected a port"),
    ('[state]\ncolour = 7\n', "state.colour", "unknown key"),
    ('[[supervisor.children]]\nname = "a"\nclass = "cfg_actors:A"\nrestart = "sometimes"\n',
     "restart", "expected one of"),
    ('[[supervisor.children]]\nname = "a@b"\nclass = "cfg_actors:A"\n', "name", "'@'"),
    ('[[supervisor.children]]\nname = "a"\nclass = "cfg_actors:A"\n'
     '[[supervisor.children]]\nname = "a"\nclass = "cfg_actors:A"\n', "name",
     "duplicate child name"),
    ('[app]\nmain = { actor = "ghost", op = "run" }\n', "app.main.actor",
     "name of a child"),
    ('[app]\nwhat = 1\n', "app.what", "unknown key"),
])
def test_each_mistake_names_file_key_and_expectation(app, text, key, expected):
    path = app(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, world_size=2)
    msg = str(info.value)
    assert msg.startswith(path), msg
    assert key in msg and expected in msg, msg


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(str(tmp_path / "nope.toml"), world_size=1)


def test_bad_toml(app):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(app("[supervisor\n"), world_size=1)
