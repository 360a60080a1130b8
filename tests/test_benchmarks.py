"""The ratio benchmarks run end to end at a tiny size and print their contract: ``ratio=`` last.

Only the output format is asserted here; the ratios themselves are measurements, recorded with
their machine and date in benchmarks/RESULTS.md, not timed tests.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("script", "size", "columns"),
    [
        ("bench_matmul.py", "32", ["bare_value", "harness", "effective", "verify_overhead"]),
        ("bench_membw.py", "1", ["bare_value", "harness", "triad"]),
    ],
)
def test_benchmark_prints_rounds_and_ratio_last(script: str, size: str, columns: list[str]) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / script),
            "--device",
            "cpu",
            "--size",
            size,
            "--seconds",
            "0.05",
            "--rounds",
            "2",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    assert out[0].startswith(f"# {script[:-3]} device=cpu") and "date=" in out[0]
    header = out[1].split()
    assert header[:2] == ["#", "round"] and header[2:] == [*columns, "ratio"]
    rounds = [line.split() for line in out[2:4]]
    assert [r[0] for r in rounds] == ["1", "2"] and all(len(r) == len(header) - 1 for r in rounds)
    assert all(float(v) > 0 for r in rounds for v in r[1:])
    assert out[-2].startswith("# median:")
    assert re.fullmatch(r"ratio=\d+\.\d{4}", out[-1])


def test_benchmark_rejects_a_missing_gpu() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_matmul.py"), "--device", "cuda"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0 and "no CUDA GPU" in run.stderr


def test_simulate_benchmark_prints_wall_seconds_gpus_and_passes() -> None:
    """The simulated-fleet benchmark's contract on the smallest fleet; the time is not judged."""
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_simulate.py"),
            "--nodes",
            "1",
            "--gpus-per-node",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout.splitlines()
    assert out[0].startswith("# bench_simulate nodes=1 gpus_per_node=2") and "date=" in out[0]
    assert re.fullmatch(r"wall_s=\d+\.\d gpus=2 pass=2", out[-1])
