"""The simulator stays out of production code: no production module imports ``burnin.sim``.

Every module of burnin/ outside burnin/sim/, of kernels/ and of reports/ is parsed (ast, so an
import inside a function counts as much as one at the top) and its imports are checked. The one
exception is the command line, the place that wires the product together: it may reach the
simulator's entry point (``burnin.sim.run``) inside the ``--simulate`` code path, never at
import time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = sorted(
    p
    for folder in ("burnin", "kernels", "reports")
    for p in (ROOT / folder).rglob("*.py")
    if "sim" not in p.relative_to(ROOT).parts[1:-1] and p.parent.name != "sim"
)
# The command line may start a simulated fleet through this entry point, lazily.
CLI = ROOT / "burnin" / "cli.py"
CLI_ENTRY = "burnin.sim.run"


def imports(path: Path) -> list[tuple[str, bool]]:
    """(module imported, at module level) for every import statement of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, id(node) in top))
            # ``from burnin import sim`` imports the package too.
            found += [(f"{node.module}.{alias.name}", id(node) in top) for alias in node.names]
    return found


def _is_sim(module: str) -> bool:
    return module == "burnin.sim" or module.startswith("burnin.sim.")


def test_the_walk_sees_production_and_not_the_simulator() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in PRODUCTION}
    assert {"burnin/runner.py", "burnin/supervisor.py", "kernels/base.py"} <= names
    assert not any(n.startswith("burnin/sim/") for n in names)
    assert any(_is_sim(m) for m, _top in imports(ROOT / "burnin" / "sim" / "run.py"))


@pytest.mark.parametrize("path", PRODUCTION, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_production_module_imports_nothing_from_the_simulator(path: Path) -> None:
    found = [(m, top) for m, top in imports(path) if _is_sim(m)]
    if path == CLI:
        entry = [m for m, top in found if m.split(".")[:3] == CLI_ENTRY.split(".") and not top]
        assert len(entry) == len(found), found
    else:
        assert not found, f"{path.relative_to(ROOT)} imports {sorted({m for m, _ in found})}"
