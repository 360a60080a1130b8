"""benchmarks/gpu_lane.sh, the GPU lane in one command: valid bash, and one clear line (never a
traceback) with a non-zero exit where the machine cannot run it. Its GPU steps themselves run on
a GPU machine only (benchmarks/README.md, "The GPU lane")."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LANE = ROOT / "benchmarks" / "gpu_lane.sh"


def test_the_lane_is_executable_bash() -> None:
    assert os.access(LANE, os.X_OK)
    assert LANE.read_text().startswith("#!/usr/bin/env bash\n")
    done = subprocess.run(["bash", "-n", str(LANE)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def _python_without_torch(tmp_path: Path) -> str:
    """The interpreter without any site-packages (-S), so without torch."""
    wrapper = tmp_path / "python-isolated"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -I -S "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("python", "reason"),
    [
        (lambda tmp: sys.executable, "no CUDA GPU visible to torch"),
        (_python_without_torch, "torch cannot be imported (ModuleNotFoundError"),
        (lambda tmp: str(tmp / "no-such-python"), "no-such-python"),
    ],
    ids=["cpu-only torch", "no torch", "no interpreter"],
)
def test_without_a_gpu_the_lane_says_why_in_one_line(
    tmp_path: Path, python: Callable[[Path], str], reason: str
) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the lane would run")
    if shutil.which("timeout") is None:
        pytest.skip("timeout(1) is missing")
    out = tmp_path / "lane-out"
    env = {**os.environ, "PYTHON": python(tmp_path), "OUT": str(out)}
    done = subprocess.run(
        [str(LANE)], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )
    lines = (done.stdout + done.stderr).splitlines()
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(lines) == 1 and lines[0].startswith("gpu_lane: "), lines
    assert reason in lines[0] and "needs an NVIDIA GPU" in lines[0]
    assert "Traceback" not in lines[0]
    assert not out.exists()  # nothing written where nothing ran
    assert not list(tmp_path.glob("gpu-lane-*"))
