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
import math
import os
import re
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
_STATE_KEYS = {"dir", "rank", "key_file", "retention", "max_deliveries", "durability"}
_APP_KEYS = {"name", "main", "drain_timeout_s", "metrics_port", "metrics_addr",
             "metrics_token_file"}
#: ``[state] durability``: what a committed write survives (plexhpc.storage.db)
DURABILITY = ("normal", "full")

#: the longest timeout or delay a config may give: a week, as every runtime timeout
_WEEK_S = 7 * 24 * 3600
_WEEK_MS = _WEEK_S * 1000
#: an app name is a label: it names the state directory under its base, so it may
#: hold no path separator and may not be "." or ".."
_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,100}")
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
    durability: str = "normal"  # or "full": see plexhpc.storage.db

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
    metrics_token_file: str | None = None
    # the bearer token a scrape must present (read from metrics_token_file; never shown)
    metrics_token: str | None = field(default=None, repr=False)
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


def _shown(v) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 64:
        return f"an int of {v.bit_length()} bits"
    return repr(v)


def _number(v, path, key: str, *, what: str, low, high, low_ok: bool = True,
            integer: bool = False):
    """``v`` if it is a finite number (an int if ``integer``; a bool is neither) with
    ``low <= v`` (``low < v`` unless ``low_ok``) and ``v <= high``; else ConfigError."""
    ok = not isinstance(v, bool) and isinstance(v, int if integer else (int, float))
    if ok and isinstance(v, float):
        ok = math.isfinite(v)
    if ok:
        ok = (low <= v if low_ok else low < v) and v <= high
    _expect(ok, f"expected {what} {'>=' if low_ok else '>'} {low} and at most {high}, "
            f"got {_shown(v)}", path, key)
    return v


def _app_name(app: dict, path) -> str:
    """``app.name``, or a safe label made of the config file's name."""
    if "name" not in app:
        stem = os.path.splitext(os.path.basename(path))[0] if path else "app"
        name = re.sub(r"[^A-Za-z0-9._-]", "_", stem)[:100]
        return "app" if name in ("", ".", "..") else name
    name = app["name"]
    _expect(isinstance(name, str) and _NAME_RE.fullmatch(name) is not None
            and name not in (".", ".."),
            f"expected a name of 1 to 100 letters, digits, '.', '_' or '-' (it names the "
            f"state directory, so no path separators, not '.' or '..'), got {name!r}",
            path, "app.name")
    return name


def _metrics_token(token_file, path, base_dir) -> tuple:
    """``(file, token)`` of ``[app] metrics_token_file``: a private file (as the state
    key: see plexhpc.storage.keys.check_private_file) holding one printable word."""
    if token_file is None:
        return None, None
    key = "app.metrics_token_file"
    _expect(isinstance(token_file, str) and token_file, "expected a file path", path, key)
    full = os.path.join(base_dir, os.path.expanduser(token_file))
    from .errors import StateError
    from .storage.keys import check_private_file
    try:
        with open(full, "rb") as fh:
            check_private_file(os.fstat(fh.fileno()), full, "metrics token")
            data = fh.read(4097)
    except StateError as exc:
        raise ConfigError(str(exc), path=path, key=key) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the metrics token file {full}: {exc}", path=path,
                          key=key) from None
    token = data.strip()
    _expect(0 < len(token) <= 4096 and all(33 <= b < 127 for b in token),
            f"the metrics token file {full} must hold one token of 1 to 4096 printable "
            f"ASCII characters without spaces (e.g. made with `openssl rand -hex 32`)",
            path, key)
    return full, token.decode("ascii")


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
    elif isinstance(source, (str, os.PathLike)) and not isinstance(source, bytes):
        path = os.fspath(source)
        if not isinstance(path, str) or not os.path.isfile(path):
            raise ConfigError("file not found (expected an app config TOML file)", path=path)
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", path=path) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the config: {exc}", path=path) from exc
        base_dir = os.path.dirname(os.path.abspath(path))
    else:
        raise ConfigError(f"expected the path of an app config TOML file or a dict (a "
                          f"table) of the same shape, got {type(source).__name__}")
    _expect(isinstance(raw, dict), f"expected a table, got {type(raw).__name__}", path, None)
    _check_keys(raw, _TOP_KEYS, path, "")

    app = raw.get("app", {})
    _expect(isinstance(app, dict), f"expected a table, got {type(app).__name__}", path, "app")
    _check_keys(app, _APP_KEYS, path, "app")
    name = _app_name(app, path)
    drain = _number(app.get("drain_timeout_s", 5.0), path, "app.drain_timeout_s",
                    what="a number of seconds", low=0, high=_WEEK_S)
    mport = app.get("metrics_port")
    _expect(mport is None or (isinstance(mport, int) and not isinstance(mport, bool)
                              and 1024 <= mport and mport + world_size - 1 <= 65535),
            f"expected a port in 1024..{65536 - world_size} (rank r serves on "
            f"metrics_port + r), got {mport!r}", path, "app.metrics_port")
    maddr = app.get("metrics_addr", "127.0.0.1")
    _expect(isinstance(maddr, str) and maddr, "expected an address to listen on, like "
            "\"127.0.0.1\" or \"0.0.0.0\"", path, "app.metrics_addr")
    token_file, token = _metrics_token(app.get("metrics_token_file"), path, base_dir)

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
        tmo = _number(m.get("timeout_ms", 600_000), path, "app.main.timeout_ms",
                      what="an integer of milliseconds", low=0, low_ok=False,
                      high=_WEEK_MS, integer=True)
        main = MainCall(m["actor"], m["op"], payload, tmo)

    state = _load_state(raw.get("state", {}), name, path, base_dir, world_size)
    return AppConfig(name=name, path=path, strategy=tree.strategy,
                     max_restarts=tree.max_restarts,
                     max_restart_window_seconds=tree.window_s, children=children, main=main,
                     drain_timeout_s=float(drain), state=state, tree=tree,
                     metrics_port=mport, metrics_addr=maddr,
                     metrics_token_file=token_file, metrics_token=token)


def _parse_supervisor(sup: dict, where: str, name: str, parent, ctx) -> "SupervisorSpec":
    """A [supervisor] table (or a nested ``type = "supervisor"`` child), recursively:
    its children are appended to ``ctx["children"]`` in start order."""
    path = ctx["path"]
    allowed = _SUP_KEYS | ({"name", "type"} if parent is not None else set())
    _check_keys(sup, allowed, path, where)
    strategy = sup.get("strategy", "one_for_one")
    _expect(strategy in STRATEGIES, f"expected one of {list(STRATEGIES)}, got {strategy!r}",
            path, f"{where}.strategy")
    max_restarts = _number(sup.get("max_restarts", 3), path, f"{where}.max_restarts",
                           what="an integer", low=0, high=1_000_000_000, integer=True)
    window = _number(sup.get("max_restart_window_seconds", 5), path,
                     f"{where}.max_restart_window_seconds", what="a number of seconds",
                     low=0, low_ok=False, high=_WEEK_S)
    backoff = {}
    for key in ("restart_backoff_ms", "restart_backoff_max_ms"):
        v = _number(sup.get(key, 0 if key == "restart_backoff_ms" else 5000), path,
                    f"{where}.{key}", what="milliseconds", low=0, high=_WEEK_MS)
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
    shutdown_ms = _number(ch.get("shutdown_timeout_ms", 5000), path,
                          f"{where}.shutdown_timeout_ms", what="milliseconds", low=0,
                          high=_WEEK_MS)
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
    for key, low, high in (("rank", 0, 2 ** 31), ("retention", 1, 1_000_000),
                           ("max_deliveries", 1, 1_000_000)):
        if key in st:
            setattr(cfg, key, _number(st[key], path, f"state.{key}", what="an integer",
                                      low=low, high=high, integer=True))
    if "durability" in st:
        _expect(st["durability"] in DURABILITY, f"expected one of {list(DURABILITY)} "
                "(\"normal\": a commit survives a crash of the process; \"full\": a "
                f"power cut too, at an fsync per commit), got {st['durability']!r}",
                path, "state.durability")
        cfg.durability = st["durability"]
    _expect(cfg.rank < world_size, f"rank {cfg.rank} is out of range: the job has "
            f"{world_size} rank(s)", path, "state.rank")
    return cfg
