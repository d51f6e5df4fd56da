"""App config: the TOML file (or dict of the same shape) that says which actors a job runs.

Shape, as in the reference's ``app-config.toml``::

    [app]                         # optional
    name = "hello"
    main = { actor = "driver", op = "run", payload = {}, timeout_ms = 60000 }

    [supervisor]
    strategy = "one_for_one"
    max_restarts = 10
    max_restart_window_seconds = 60

    [[supervisor.children]]
    name = "greeter"
    class = "hello_actors:Greeter"     # module importable from the config's folder
    behavior_kind = "GenServer"
    args = { greeting = "hi" }
    rank = 1                           # or placement = "round_robin" (the default)
    facets = []

Everything is checked before any actor starts; the first problem found raises
:class:`~plexhpc.errors.ConfigError` naming the file, the key and what was expected.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from .actors.spec import BEHAVIOR_KINDS, spec_of
from .errors import ConfigError

__all__ = ["AppConfig", "ChildSpec", "SupervisorSpec", "StateConfig", "MainCall", "load_config",
           "resolve_class", "STRATEGIES"]

STRATEGIES = ("one_for_one", "rest_for_one", "one_for_all")
PLACEMENTS = ("round_robin",)
RESTART_TYPES = ("permanent", "transient", "temporary")

_TOP_KEYS = {"app", "supervisor", "state"}
_STATE_KEYS = {"dir", "rank", "key_file", "retention", "max_deliveries"}
_APP_KEYS = {"name", "main", "drain_timeout_s", "metrics_port", "metrics_addr"}
_MAIN_KEYS = {"actor", "op", "payload", "timeout_ms"}
_SUP_KEYS = {"strategy", "max_restarts", "max_restart_window_seconds", "children",
             "restart_backoff_ms", "restart_backoff_max_ms"}
_CHILD_KEYS = {"name", "class", "behavior_kind", "args", "rank", "placement", "facets",
               "restart", "capabilities", "tenant", "namespace", "role", "type",
               "shutdown_timeout_ms"}


@dataclass
class MainCall:
    """The one ask ``plexhpc run`` makes after start-up; its reply is the job's output."""

    actor: str
    op: str
    payload: dict = field(default_factory=dict)
    timeout_ms: int = 600_000


@dataclass
class ChildSpec:
    """One supervised child, resolved: its class imported and its rank decided."""

    name: str
    class_path: str
    cls: type
    behavior_kind: str
    args: dict
    rank: int
    facets: list
    restart: str = "permanent"
    capabilities: frozenset | None = None
    context: Any = None  # RequestContext the child starts in (None: the default one)
    facet_config: dict = field(default_factory=dict)  # facet type -> validated config
    supervisor: str = "root"  # the name of the supervisor it belongs to
    shutdown_timeout_ms: float = 5000.0  # how long its terminate handler may take


@dataclass
class SupervisorSpec:
    """A supervisor of the tree: its strategy, restart intensity, optional restart
    backoff, and its children (ChildSpec workers and nested SupervisorSpecs) in start
    order."""

    name: str
    strategy: str = "one_for_one"
    max_restarts: int = 3
    window_s: float = 5.0
    backoff_ms: float = 0.0
    backoff_max_ms: float = 5000.0
    children: list = field(default_factory=list)

    def leaves(self) -> list:
        """Every worker under this supervisor, in start order."""
        out = []
        for c in self.children:
            out.extend(c.leaves() if isinstance(c, SupervisorSpec) else [c])
        return out


@dataclass
class StateConfig:
    """Where durable state lives: SQLite files under ``dir`` (created on first use), the
    rank that owns the shared stores (KV, TupleSpace, channels), the signing key's file
    (kept outside ``dir``), how many checkpoints to keep per actor, and how often a
    channel message is delivered before it is dead-lettered."""

    dir: str
    rank: int = 0
    key_file: str | None = None
    retention: int = 2
    max_deliveries: int = 5

    @staticmethod
    def default(app_name: str) -> "StateConfig":
        base = os.environ.get("PLEXHPC_STATE_DIR") or os.path.join(os.getcwd(),
                                                                   ".plexhpc-state")
        return StateConfig(dir=os.path.join(base, app_name))


@dataclass
class AppConfig:
    """A validated app config, the same on every rank."""

    name: str
    path: str | None
    strategy: str = "one_for_one"
    max_restarts: int = 3
    max_restart_window_seconds: float = 5.0
    children: list = field(default_factory=list)
    main: MainCall | None = None
    drain_timeout_s: float = 5.0
    metrics_port: int | None = None  # rank r serves Prometheus text on metrics_port + r
    metrics_addr: str = "127.0.0.1"
    state: "StateConfig" = None  # type: ignore[assignment]
    tree: "SupervisorSpec" = None  # type: ignore[assignment]

    def __post_init__(self):
        if self.state is None:
            self.state = StateConfig.default(self.name)
        if self.tree is None:
            self.tree = SupervisorSpec("root", self.strategy, self.max_restarts,
                                       self.max_restart_window_seconds,
                                       children=list(self.children))

    def children_on(self, rank: int) -> list:
        return [c for c in self.children if c.rank == rank]


def resolve_class(class_path: str, *, base_dir: str | None = None, where: str = "class",
                  path: str | None = None) -> type:
    """Import ``"module:Class"``; the module may live in ``base_dir`` (the config's folder)."""
    if not isinstance(class_path, str) or ":" not in class_path:
        raise ConfigError(f"expected \"module:Class\", got {class_path!r}", path=path, key=where)
    mod_name, _, qual = class_path.partition(":")
    if base_dir and base_dir not in sys.path:
        sys.path.insert(0, base_dir)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import module {mod_name!r} for {class_path!r} ({exc}); it must be "
            f"importable from the config's folder ({base_dir}) or the Python path",
            path=path, key=where) from exc
    obj: Any = mod
    for part in qual.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(f"module {mod_name!r} has no class {qual!r}", path=path, key=where)
    try:
        spec_of(obj)
    except TypeError as exc:
        raise ConfigError(f"{class_path!r} is not an actor class (decorate it with @actor)",
                          path=path, key=where) from exc
    return obj


def _expect(cond: bool, message: str, path, key):
    if not cond:
        raise ConfigError(message, path=path, key=key)


def _check_keys(table: dict, allowed: set, path, where: str):
    for k in table:
        if k not in allowed:
            raise ConfigError(f"unknown key {k!r}; expected one of {sorted(allowed)}",
                              path=path, key=f"{where}.{k}" if where else k)


def load_config(source: str | os.PathLike | dict, *, world_size: int) -> AppConfig:
    """Read and validate an app config for a job of ``world_size`` ranks.

    ``source`` is a path to a TOML file or a dict of the same shape. Raises
    :class:`ConfigError` on the first problem.
    """
    path = None
    base_dir = os.getcwd()
    if isinstance(source, dict):
        raw = source
    else:
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise ConfigError("file not found (expected an app config TOML file)", path=path)
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", path=path) from exc
        base_dir = os.path.dirname(os.path.abspath(path))
    _expect(isinstance(raw, dict), f"expected a table, got {type(raw).__name__}", path, None)
    _check_keys(raw, _TOP_KEYS, path, "")

    app = raw.get("app", {})
    _expect(isinstance(app, dict), "expected a table", path, "app")
    _check_keys(app, _APP_KEYS, path, "app")
    name = app.get("name", os.path.splitext(os.path.basename(path))[0] if path else "app")
    _expect(isinstance(name, str) and name, "expected a non-empty string", path, "app.name")
    drain = app.get("drain_timeout_s", 5.0)
    _expect(isinstance(drain, (int, float)) and not isinstance(drain, bool) and drain >= 0,
            f"expected a number of seconds >= 0, got {drain!r}", path, "app.drain_timeout_s")
    mport = app.get("metrics_port")
    _expect(mport is None or (isinstance(mport, int) and not isinstance(mport, bool)
                              and 1024 <= mport and mport + world_size - 1 <= 65535),
            f"expected a port in 1024..{65536 - world_size} (rank r serves on "
            f"metrics_port + r), got {mport!r}", path, "app.metrics_port")
    maddr = app.get("metrics_addr", "127.0.0.1")
    _expect(isinstance(maddr, str) and maddr, "expected an address to listen on, like "
            "\"127.0.0.1\" or \"0.0.0.0\"", path, "app.metrics_addr")

    sup = raw.get("supervisor", {})
    _expect(isinstance(sup, dict), "expected a table", path, "supervisor")
    children: list[ChildSpec] = []
    seen: set = set()
    ctx = {"path": path, "base_dir": base_dir, "world_size": world_size, "rr": 0,
           "children": children, "seen": seen}
    tree = _parse_supervisor(sup, "supervisor", "root", None, ctx)

    main = None
    if "main" in app:
        m = app["main"]
        _expect(isinstance(m, dict), "expected a table {actor = ..., op = ...}", path, "app.main")
        _check_keys(m, _MAIN_KEYS, path, "app.main")
        _expect(isinstance(m.get("actor"), str) and m.get("actor") in seen,
                f"expected the name of a child, got {m.get('actor')!r}", path, "app.main.actor")
        _expect(isinstance(m.get("op"), str) and m.get("op"), "expected an op name",
                path, "app.main.op")
        payload = m.get("payload", {})
        _expect(isinstance(payload, dict), "expected a table", path, "app.main.payload")
        tmo = m.get("timeout_ms", 600_000)
        _expect(isinstance(tmo, int) and tmo > 0, f"expected milliseconds > 0, got {tmo!r}",
                path, "app.main.timeout_ms")
        main = MainCall(m["actor"], m["op"], payload, tmo)

    state = _load_state(raw.get("state", {}), name, path, base_dir, world_size)
    return AppConfig(name=name, path=path, strategy=tree.strategy,
                     max_restarts=tree.max_restarts,
                     max_restart_window_seconds=tree.window_s, children=children, main=main,
                     drain_timeout_s=float(drain), state=state, tree=tree,
                     metrics_port=mport, metrics_addr=maddr)


def _parse_supervisor(sup: dict, where: str, name: str, parent, ctx) -> "SupervisorSpec":
    """A [supervisor] table (or a nested ``type = "supervisor"`` child), recursively:
    its children are appended to ``ctx["children"]`` in start order."""
    path = ctx["path"]
    allowed = _SUP_KEYS | ({"name", "type"} if parent is not None else set())
    _check_keys(sup, allowed, path, where)
    strategy = sup.get("strategy", "one_for_one")
    _expect(strategy in STRATEGIES, f"expected one of {list(STRATEGIES)}, got {strategy!r}",
            path, f"{where}.strategy")
    max_restarts = sup.get("max_restarts", 3)
    _expect(isinstance(max_restarts, int) and not isinstance(max_restarts, bool)
            and max_restarts >= 0, f"expected an integer >= 0, got {max_restarts!r}",
            path, f"{where}.max_restarts")
    window = sup.get("max_restart_window_seconds", 5)
    _expect(isinstance(window, (int, float)) and not isinstance(window, bool) and window > 0,
            f"expected a number of seconds > 0, got {window!r}",
            path, f"{where}.max_restart_window_seconds")
    backoff = {}
    for key in ("restart_backoff_ms", "restart_backoff_max_ms"):
        v = sup.get(key, 0 if key == "restart_backoff_ms" else 5000)
        _expect(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0,
                f"expected milliseconds >= 0, got {v!r}", path, f"{where}.{key}")
        backoff[key] = float(v)
    spec = SupervisorSpec(name, strategy, max_restarts, float(window),
                          backoff["restart_backoff_ms"], backoff["restart_backoff_max_ms"])
    raw_children = sup.get("children", [])
    _expect(isinstance(raw_children, list), "expected an array of tables "
            f"([[{where}.children]])", path, f"{where}.children")
    for i, ch in enumerate(raw_children):
        cwhere = f"{where}.children[{i}]"
        _expect(isinstance(ch, dict), "expected a table", path, cwhere)
        cname = ch.get("name")
        _expect(isinstance(cname, str) and cname, "expected a non-empty string",
                path, f"{cwhere}.name")
        _expect("@" not in cname and not cname.startswith("$"),
                f"names may not contain '@' or start with '$', got {cname!r}",
                path, f"{cwhere}.name")
        _expect(cname not in ctx["seen"], f"duplicate child name {cname!r}", path,
                f"{cwhere}.name")
        ctx["seen"].add(cname)
        if ch.get("type") == "supervisor":
            spec.children.append(_parse_supervisor(ch, f"{cwhere} ({cname})", cname, spec,
                                                   ctx))
            continue
        _expect("type" not in ch or ch["type"] == "worker", "type must be \"worker\" (the "
                f"default) or \"supervisor\", got {ch.get('type')!r}", path, f"{cwhere}.type")
        child = _parse_child(ch, f"{cwhere} ({cname})", cname, ctx)
        child.supervisor = name
        spec.children.append(child)
        ctx["children"].append(child)
    return spec


def _parse_child(ch: dict, where: str, cname: str, ctx) -> "ChildSpec":
    path, world_size = ctx["path"], ctx["world_size"]
    _check_keys(ch, _CHILD_KEYS, path, where)
    _expect("class" in ch, "missing key 'class' (expected \"module:Class\")",
            path, f"{where}.class")
    cls = resolve_class(ch["class"], base_dir=ctx["base_dir"], where=f"{where}.class",
                        path=path)
    spec = spec_of(cls)
    kind = ch.get("behavior_kind", spec.kind)
    _expect(kind in BEHAVIOR_KINDS, f"expected one of {list(BEHAVIOR_KINDS)}, got {kind!r}",
            path, f"{where}.behavior_kind")
    _expect(kind == spec.kind, f"{ch['class']} is a {spec.kind} actor, not {kind}",
            path, f"{where}.behavior_kind")
    args = ch.get("args", {})
    _expect(isinstance(args, dict), f"expected a table, got {type(args).__name__}",
            path, f"{where}.args")
    if "rank" in ch and "placement" in ch:
        raise ConfigError("give either rank or placement, not both", path=path,
                          key=f"{where}.rank")
    if "rank" in ch:
        rank = ch["rank"]
        _expect(isinstance(rank, int) and not isinstance(rank, bool),
                f"expected an integer rank, got {rank!r}", path, f"{where}.rank")
        _expect(0 <= rank < world_size,
                f"rank {rank} is out of range: the job has {world_size} rank(s), so "
                f"expected 0..{world_size - 1} (launch with mpiexec -n {rank + 1} or more)",
                path, f"{where}.rank")
    else:
        placement = ch.get("placement", "round_robin")
        _expect(placement in PLACEMENTS,
                f"expected one of {list(PLACEMENTS)}, got {placement!r}",
                path, f"{where}.placement")
        rank = ctx["rr"] % world_size
        ctx["rr"] += 1
    restart = ch.get("restart", "permanent")
    _expect(restart in RESTART_TYPES, f"expected one of {list(RESTART_TYPES)}, got "
            f"{restart!r}", path, f"{where}.restart")
    shutdown_ms = ch.get("shutdown_timeout_ms", 5000)
    _expect(isinstance(shutdown_ms, (int, float)) and not isinstance(shutdown_ms, bool)
            and shutdown_ms >= 0, f"expected milliseconds >= 0, got {shutdown_ms!r}", path,
            f"{where}.shutdown_timeout_ms")
    from .context import check_capabilities, make_context
    from .actors.facets import parse_facets
    facets = ch["facets"] if "facets" in ch else list(spec.facets)
    try:
        facet_config = parse_facets(facets, f"{where}.facets")
        caps = check_capabilities(ch.get("capabilities"), f"{where}.capabilities")
        cctx = make_context(ch.get("tenant"), ch.get("namespace"), f"actor:{cname}") if (
            "tenant" in ch or "namespace" in ch) else None
    except ConfigError as exc:
        raise ConfigError(str(exc), path=path) from None
    except ValueError as exc:
        raise ConfigError(str(exc), path=path, key=where) from None
    child = ChildSpec(cname, ch["class"], cls, kind, args, rank, facets, restart, caps, cctx,
                      facet_config)
    child.shutdown_timeout_ms = float(shutdown_ms)
    return child


def _load_state(st, app_name, path, base_dir, world_size) -> StateConfig:
    _expect(isinstance(st, dict), "expected a table", path, "state")
    _check_keys(st, _STATE_KEYS, path, "state")
    cfg = StateConfig.default(app_name)
    if "dir" in st:
        _expect(isinstance(st["dir"], str) and st["dir"], "expected a directory path",
                path, "state.dir")
        cfg.dir = os.path.join(base_dir, os.path.expanduser(st["dir"]))
    if "key_file" in st:
        _expect(isinstance(st["key_file"], str) and st["key_file"], "expected a file path",
                path, "state.key_file")
        cfg.key_file = os.path.join(base_dir, os.path.expanduser(st["key_file"]))
    for key, low in (("rank", 0), ("retention", 1), ("max_deliveries", 1)):
        if key in st:
            v = st[key]
            _expect(isinstance(v, int) and not isinstance(v, bool) and v >= low,
                    f"expected an integer >= {low}, got {v!r}", path, f"state.{key}")
            setattr(cfg, key, v)
    _expect(cfg.rank < world_size, f"rank {cfg.rank} is out of range: the job has "
            f"{world_size} rank(s)", path, "state.rank")
    return cfg
