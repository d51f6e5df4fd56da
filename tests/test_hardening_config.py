"""Issue 10, config: every number finite (no bool where a number is expected), app.name
a safe label, the top level a table, [state] durability, the metrics token file."""

from __future__ import annotations

import math
import os

import pytest

from plexhpc.config import load_config
from plexhpc.errors import ConfigError

CHILD = {"name": "a", "class": "hard_storage_actors:Prober"}


@pytest.fixture(autouse=True)
def scenarios_on_path(monkeypatch):
    import sys
    here = os.path.join(os.path.dirname(__file__), "scenarios")
    monkeypatch.setattr(sys, "path", [here, *sys.path])


def cfg(app=None, sup=None, state=None, child=None):
    raw = {"supervisor": {"children": [dict(CHILD, **(child or {}))], **(sup or {})}}
    if app is not None:
        raw["app"] = app
    if state is not None:
        raw["state"] = state
    return raw


BAD_NUMBERS = [math.nan, math.inf, -math.inf, True, False, 10 ** 400, "5"]


@pytest.mark.parametrize("value", BAD_NUMBERS)
@pytest.mark.parametrize("where, build", [
    ("app.drain_timeout_s", lambda v: cfg(app={"drain_timeout_s": v})),
    ("app.main.timeout_ms", lambda v: cfg(app={"main": {"actor": "a", "op": "x",
                                                         "timeout_ms": v}})),
    ("supervisor.max_restart_window_seconds",
     lambda v: cfg(sup={"max_restart_window_seconds": v})),
    ("supervisor.max_restarts", lambda v: cfg(sup={"max_restarts": v})),
    ("supervisor.restart_backoff_ms", lambda v: cfg(sup={"restart_backoff_ms": v})),
    ("supervisor.restart_backoff_max_ms", lambda v: cfg(sup={"restart_backoff_max_ms": v})),
    ("shutdown_timeout_ms", lambda v: cfg(child={"shutdown_timeout_ms": v})),
    ("state.retention", lambda v: cfg(state={"retention": v})),
    ("state.max_deliveries", lambda v: cfg(state={"max_deliveries": v})),
    ("state.rank", lambda v: cfg(state={"rank": v})),
    ("idle_timeout", lambda v: cfg(child={"facets": [{"type": "virtual_actor", "config": {
        "idle_timeout": v}}]})),
    ("checkpoint_interval", lambda v: cfg(child={"facets": [{"type": "durability", "config": {
        "checkpoint_interval": v}}]})),
])
def test_numbers_must_be_finite_and_not_bool(where, build, value):
    if value == "5" and where == "idle_timeout":
        pytest.skip("a duration may be a string such as \"5\" (milliseconds)")
    with pytest.raises(ConfigError) as info:
        load_config(build(value), world_size=2)
    assert where in str(info.value)


@pytest.mark.parametrize("value", ["1e400h", "99999999999999999999h", "inf", "nan"])
def test_duration_strings_past_a_year_or_not_numbers_are_refused(value):
    with pytest.raises(ConfigError, match="idle_timeout"):
        load_config(cfg(child={"facets": [{"type": "virtual_actor", "config": {
            "idle_timeout": value}}]}), world_size=1)


def test_reasonable_numbers_still_load():
    c = load_config(cfg(app={"drain_timeout_s": 2.5, "main": {"actor": "a", "op": "x",
                                                              "timeout_ms": 1000}},
                        sup={"max_restart_window_seconds": 0.5, "restart_backoff_ms": 10},
                        state={"retention": 3}), world_size=2)
    assert c.main.timeout_ms == 1000 and c.drain_timeout_s == 2.5 and c.state.retention == 3


@pytest.mark.parametrize("name", ["../../x", "..", ".", "a/b", "a\\b", "", "x\x00y",
                                  "white space", "é", "a" * 200, 5, None])
def test_app_name_must_be_a_safe_label(name):
    with pytest.raises(ConfigError, match="app.name"):
        load_config(cfg(app={"name": name}), world_size=1)


@pytest.mark.parametrize("name", ["hello", "my-app_2.0", "A.b-c"])
def test_safe_app_names_load_and_stay_under_the_state_base(name, monkeypatch, tmp_path):
    monkeypatch.setenv("PLEXHPC_STATE_DIR", str(tmp_path))
    c = load_config(cfg(app={"name": name}), world_size=1)
    assert os.path.dirname(c.state.dir) == str(tmp_path)


def test_a_file_name_that_is_not_a_safe_label_gives_a_safe_default(tmp_path):
    path = tmp_path / "my app (copy).toml"
    path.write_text('[[supervisor.children]]\nname = "a"\n'
                    'class = "hard_storage_actors:Prober"\n')
    c = load_config(str(path), world_size=1)
    assert c.name == "my_app__copy_"


@pytest.mark.parametrize("source", [[1, 2], 42, None, ("a",), b"bytes"])
def test_a_top_level_that_is_not_a_table_or_a_path_is_a_config_error(source):
    with pytest.raises(ConfigError, match="expected"):
        load_config(source, world_size=1)


def test_a_toml_array_at_the_top_is_a_config_error(tmp_path):
    # TOML's top level is always a table; a dict whose values are not tables is refused
    with pytest.raises(ConfigError, match="app"):
        load_config({"app": [1, 2]}, world_size=1)


# --- [state] durability ---------------------------------------------------------------

def test_durability_defaults_to_normal_and_full_is_accepted():
    assert load_config(cfg(), world_size=1).state.durability == "normal"
    assert load_config(cfg(state={"durability": "full"}), world_size=1
                       ).state.durability == "full"


@pytest.mark.parametrize("value", ["FULL", "off", "", 1, True, None])
def test_an_unknown_durability_is_refused(value):
    with pytest.raises(ConfigError, match="state.durability"):
        load_config(cfg(state={"durability": value}), world_size=1)


def test_full_durability_reaches_sqlite(tmp_path):
    from plexhpc.storage.db import open_db
    for setting, level in (("normal", 1), ("full", 2)):
        conn = open_db(str(tmp_path / f"{setting}.sqlite"), durability=setting)
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == level
        conn.close()


# --- [app] metrics_token_file ---------------------------------------------------------

def token_file(tmp_path, mode=0o600, text="s3cret-token\n"):
    path = tmp_path / "metrics.token"
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def test_a_metrics_token_file_is_read_and_kept_out_of_the_repr(tmp_path):
    c = load_config(cfg(app={"metrics_port": 9400,
                             "metrics_token_file": token_file(tmp_path)}), world_size=1)
    assert c.metrics_token == "s3cret-token"
    assert "s3cret" not in repr(c)


@pytest.mark.parametrize("mode, words", [(0o620, "chmod 600"), (0o602, "chmod 600")])
def test_an_unsafe_metrics_token_file_is_refused(tmp_path, mode, words):
    with pytest.raises(ConfigError, match=words):
        load_config(cfg(app={"metrics_token_file": token_file(tmp_path, mode)}),
                    world_size=1)


@pytest.mark.parametrize("text", ["", "\n", "has space", "x" * 5000])
def test_a_metrics_token_must_be_one_printable_word(tmp_path, text):
    with pytest.raises(ConfigError, match="app.metrics_token_file"):
        load_config(cfg(app={"metrics_token_file": token_file(tmp_path, text=text)}),
                    world_size=1)


def test_a_missing_metrics_token_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="app.metrics_token_file"):
        load_config(cfg(app={"metrics_token_file": str(tmp_path / "nope")}), world_size=1)
