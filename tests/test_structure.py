"""The structure the code must keep, checked from the source (an AST walk, no imports):

- no module reads another module's underscore names (``obj._x`` where ``_x`` is not
  defined in the reading module, or ``from m import _x``): each part owns its state and
  is used through its public interface;
- no import cycle among plexhpc's modules, lazy (function-level) imports included: the
  layers import downwards only.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "plexhpc"

#: underscore names that are public API of the standard library or of namedtuples
_STDLIB_UNDERSCORE = {"_exit", "_getframe", "_make", "_asdict", "_replace", "_fields",
                      "_current_frames"}


def _modules() -> dict:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_pkg)
    return out


MODULES = _modules()


def _defined_names(tree) -> set:
    """Underscore names this module defines itself (functions, classes, attributes it
    assigns on any object, module globals)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                names.add(a.asname or a.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and node.value.startswith("_") and node.value.isidentifier():
            names.add(node.value)  # __slots__ entries
    return names


def _private_reads(path: Path) -> list:
    tree = ast.parse(path.read_text(), str(path))
    own = _defined_names(tree)
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__") and node.attr not in _STDLIB_UNDERSCORE:
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            if node.attr in own:
                continue
            bad.append(f"{path.relative_to(PKG.parent)}:{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    bad.append(f"{path.relative_to(PKG.parent)}:{node.lineno}: "
                               f"import {a.name}")
    return bad


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(mod: str) -> set:
    path, is_pkg = MODULES[mod]
    tree = ast.parse(path.read_text(), str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "plexhpc":
                    out.add(_known(a.name))
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(mod, is_pkg, node)
            if target.split(".")[0] != "plexhpc":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.add(sub if sub in MODULES else _known(target))
    out.discard(mod)
    out.discard(None)
    return out


def _known(name: str):
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _cycles(graph: dict) -> list:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_reads_another_modules_private_names():
    bad = [b for mod, (path, _) in MODULES.items() for b in _private_reads(path)]
    assert not bad, "private names read across modules:\n" + "\n".join(bad)


def test_no_import_cycles():
    graph = {mod: _imports(mod) for mod in MODULES}
    # a package's __init__ re-exporting its modules is not a cycle with them: drop the
    # edges from a module to the packages above it (Python has imported those first)
    for mod, deps in graph.items():
        graph[mod] = {d for d in deps if not mod.startswith(d + ".")}
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checks_see_the_code():
    """The walk finds the modules and their imports (a check that sees nothing passes
    trivially)."""
    assert "plexhpc.runtime.node" in MODULES and len(MODULES) > 40
    assert "plexhpc.runtime.executor" in _imports("plexhpc.runtime.node")
    sample = ast.parse("x._hidden\nself._mine\nfrom a import _b\n")
    reads = [n.attr for n in ast.walk(sample) if isinstance(n, ast.Attribute)]
    assert reads == ["_hidden", "_mine"]
