"""The import graph of burnin: no cycle, and upstream stages never import downstream ones.

Every module of ``burnin/``, ``kernels/`` (``burnin.kernels``) and ``reports/``
(``burnin.reports``) is parsed with ``ast``; an edge is an import of another burnin module.
Imports inside functions count as well as those at module level: a lazy import is a runtime
dependency that runs as soon as the function does, and putting an import inside a function is
exactly how a cycle hides (two modules each importing the other lazily still need each other).
Imports under ``if TYPE_CHECKING:`` do not count: they never run and only name types. An edge
goes to the module named, not to its parent packages: Python runs a package's ``__init__``
before any of its modules, but that is the package machinery, not a dependency the module
declares, and a registry package whose ``__init__`` imports its built-ins would otherwise be
a cycle by construction.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"burnin": ROOT / "burnin", "burnin.kernels": ROOT / "kernels"}
PACKAGES["burnin.reports"] = ROOT / "reports"


def _modules() -> dict[str, Path]:
    """Module name -> file, with the installed names of kernels/ and reports/ (package-dir)."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking(node):
            yield from (i for n in node.orelse for i in _imports(ast.Module([n], [])))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node)


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    base = node.module or ""
    if node.level:  # relative: resolve against this module's package
        is_package = MODULES[module].name == "__init__.py"
        parts = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
        base = ".".join([*parts, base] if base else parts)
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        yield sub if sub in MODULES else base


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges[name] = {
            t for node in _imports(tree) for t in _targets(name, node) if t in MODULES and t != name
        }
    return edges


GRAPH = graph()


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in GRAPH.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_graph_sees_the_package() -> None:
    assert {"burnin.cli", "burnin.verdicts", "burnin.verdicts.sdc"} <= set(GRAPH)
    assert {"burnin.kernels.matmul", "burnin.reports.context"} <= set(GRAPH)
    assert "burnin.verdicts.sdc" in GRAPH["burnin.verdicts"]  # a package imports its checks
    # A lazy (function-level) import counts: the CLI imports its commands' modules lazily.
    assert "burnin.runner" in GRAPH["burnin.cli"]


@pytest.mark.parametrize(
    ("edges", "cycle"),
    [
        ({"a": {"b"}, "b": {"a"}}, ["a", "b"]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, ["a", "b", "c"]),
        ({"a": {"b"}, "b": set()}, None),
    ],
)
def test_cycle_finder(edges: dict[str, set[str]], cycle: list[str] | None) -> None:
    assert _cycles(edges) == ([cycle] if cycle else [])


def test_no_import_cycle() -> None:
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize(
    ("upstream", "downstream"),
    [
        ("burnin.plan", "burnin.reports"),
        ("burnin.inspect", "burnin.reports"),
        ("burnin.verdicts", "burnin.reports"),
        ("burnin.verdicts", "burnin.runner"),
        ("burnin.inventory", "burnin.verdicts"),
        ("burnin.store", "burnin.verdicts"),
        ("burnin.kernels", "burnin.store"),
        ("burnin.kernels", "burnin.verdicts"),
    ],
)
def test_upstream_never_imports_downstream(upstream: str, downstream: str) -> None:
    sources = [m for m in GRAPH if m == upstream or m.startswith(f"{upstream}.")]
    bad = {
        (m, t)
        for m in sources
        for t in reachable(m)
        if t == downstream or t.startswith(f"{downstream}.")
    }
    assert not bad, sorted(bad)


def test_check_modules_import_the_model_not_the_package() -> None:
    # The package imports every check; a check importing the package back would be a cycle.
    checks = [m for m in GRAPH if m.startswith("burnin.verdicts.")]
    assert all("burnin.verdicts" not in GRAPH[m] for m in checks)


def test_kernels_do_not_read_the_manifest() -> None:
    # Peers and the node's plan reach a kernel through its KernelContext (the worker reads
    # the run directory), so a kernel runs the same with or without a store.
    for name, path in MODULES.items():
        if name.startswith("burnin.kernels"):
            assert "manifest" not in path.read_text(encoding="utf-8"), name
