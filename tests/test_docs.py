"""The documentation names only what exists: every repository path in backticks, every link.

docs/*.md name modules, tests and data files as backticked repository paths
(`burnin/store.py`, `reports/templates/`); each must exist in the checkout, so a renamed or
removed file fails here instead of leaving the docs pointing at nothing. A path counts as a
repository path when its first folder is one of the repository's own top-level folders; a
placeholder (`nodes/<node>/results.jsonl`) or a glob (`configs/scenarios/*.toml`) is checked up
to its first wildcard. Every relative link target of a Markdown link must exist as well.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
TOP_LEVEL = ("benchmarks", "burnin", "configs", "docs", "kernels", "reports", "tests")

# docs/tools.md quotes other projects' files by their paths in those projects (SuperBench's
# and DCGM's documentation), which are not files of this repository.
UPSTREAM = {
    "tools.md": {
        "docs/cli.md",
        "docs/superbench-config.mdx",
        "docs/ug1main.md",
        "docs/user-tutorial/benchmarks/micro-benchmarks.md",
        "docs/user-tutorial/data-diagnosis.md",
    }
}

_BACKTICKED = re.compile(r"`([^`\s]+)`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_WILDCARD = re.compile(r"[<*{\[]")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _cut(token: str) -> str:
    """A path up to its first wildcard, as the folder that holds it."""
    if not _WILDCARD.search(token):
        return token
    return _WILDCARD.split(token, 1)[0].rsplit("/", 1)[0] + "/"


def _is_repo_path(token: str) -> bool:
    return "/" in token and token.split("/", 1)[0] in TOP_LEVEL


def repo_paths(text: str) -> list[str]:
    """The repository paths ``text`` names: backticked in prose, and every path-like word of a
    diagram (a fenced block without a language); code blocks of a language are examples."""
    found = []
    for lang, body in _FENCE.findall(text):
        if not lang:
            words = (w.strip(",;:()") for w in body.split())
            found += [_cut(w) for w in words if _is_repo_path(w)]
    prose = _FENCE.sub("", text)
    found += [_cut(t) for t in _BACKTICKED.findall(prose) if _is_repo_path(t)]
    return found


def link_targets(text: str) -> list[str]:
    """The relative link targets of ``text``, without their ``#anchor``."""
    out = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        out.append(target.split("#", 1)[0])
    return out


@pytest.mark.parametrize(
    ("text", "paths"),
    [
        (
            "see `burnin/store.py` and `reports/templates/`",
            ["burnin/store.py", "reports/templates/"],
        ),
        ("`configs/scenarios/*.toml`, `nodes/<node>/x`", ["configs/scenarios/"]),
        ("`burnin/<x>.py`", ["burnin/"]),
        ("`burnin run`, `run.kernels`, `report.json`, `burnin`", []),
        (
            "```\nstore  burnin/store.py,\n```\n```python\n# kernels/toy.py\n```",
            ["burnin/store.py"],
        ),
    ],
)
def test_repo_paths_finds_backticked_paths(text: str, paths: list[str]) -> None:
    assert repo_paths(text) == paths


@pytest.mark.parametrize(
    ("text", "targets"),
    [
        ("[a](nvml.md) [b](contracts.md#exit-codes)", ["nvml.md", "contracts.md"]),
        ("[u](https://docs.nvidia.com/x) [s](#top)", []),
    ],
)
def test_link_targets_keeps_relative_links(text: str, targets: list[str]) -> None:
    assert link_targets(text) == targets


def test_docs_folder_holds_the_guides() -> None:
    names = {p.name for p in DOCS}
    assert {"architecture.md", "extending.md", "contracts.md", "nvml.md"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_every_named_repository_path_exists(doc: Path) -> None:
    skip = UPSTREAM.get(doc.name, set())
    named = [p for p in repo_paths(doc.read_text(encoding="utf-8")) if p not in skip]
    missing = sorted({p for p in named if not (ROOT / p).exists()})
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_every_link_target_exists(doc: Path) -> None:
    targets = link_targets(doc.read_text(encoding="utf-8"))
    missing = sorted({t for t in targets if not (doc.parent / t).exists()})
    assert not missing, f"{doc.name} links to files that do not exist: {missing}"


def test_architecture_names_most_modules() -> None:
    # The architecture guide is the map of the code: it names every production package.
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for folder in ("burnin/telemetry/", "burnin/verdicts/", "burnin/history/", "burnin/launch/"):
        assert folder in text, folder
