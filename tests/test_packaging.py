"""Packaging: namespaced kernels/reports resolve to this repository; light commands stay light."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("module", "folder"),
    [
        ("burnin.kernels", "kernels"),
        ("burnin.reports", "reports"),
        ("burnin.configs", "configs"),
        ("burnin", "burnin"),
    ],
)
def test_namespaced_packages_resolve_inside_this_repo(module: str, folder: str) -> None:
    imported = __import__(module, fromlist=["_"])
    assert Path(imported.__file__).resolve().parent == ROOT / folder


def test_no_top_level_kernels_or_reports_package() -> None:
    # PyPI's unrelated `kernels` / `reports` must never be what burnin imports.
    for name in ("kernels", "reports"):
        assert all(
            not (Path(p) / name / "__init__.py").exists() or Path(p) == ROOT
            for p in sys.path
            if p and Path(p).is_dir() and Path(p) != ROOT / "tests"
        )


def _modules_after(code: str) -> set[str]:
    script = textwrap.dedent(code) + "\nimport sys\nprint(' '.join(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


HEAVY = {"torch", "pynvml"}


def test_help_imports_neither_torch_nor_pynvml() -> None:
    loaded = _modules_after("""
        from click.testing import CliRunner
        from burnin.cli import cli
        for args in (["--help"], ["run", "--help"], ["report", "--help"], ["kernels"], ["checks"]):
            assert CliRunner().invoke(cli, args).exit_code == 0
    """)
    assert not HEAVY & loaded


@pytest.mark.slow
def test_report_imports_neither_torch_nor_pynvml(tmp_path: Path) -> None:
    loaded = _modules_after(f"""
        import sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from click.testing import CliRunner
        from burnin.cli import cli
        from fakes import write_run
        run_dir = write_run(__import__('pathlib').Path({str(tmp_path)!r}))
        result = CliRunner().invoke(cli, ["report", str(run_dir)])
        assert result.exit_code == 0, result.output
        assert (run_dir / "report.html").exists()
    """)
    assert not HEAVY & loaded
    assert "burnin.reports.html" in loaded


def test_console_script_declared() -> None:
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert data["project"]["scripts"]["burnin"] == "burnin.cli:main"
    deps = " ".join(data["project"]["dependencies"])
    assert "nvidia-ml-py" in deps
    assert not any(
        d.split(">")[0].split("=")[0].strip() == "pynvml" for d in data["project"]["dependencies"]
    )
