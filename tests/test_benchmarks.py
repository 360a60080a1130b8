"""The ratio benchmarks run end to end at a tiny size and print their contract: ``ratio=`` last.

Only the output format is asserted here; the ratios themselves are measurements, recorded with
their machine and date in benchmarks/RESULTS.md, not timed tests.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "size", "columns", "before_ratio"),
    [
        (
            "bench_matmul.py",
            "32",
            ["bare_value", "harness", "unverified_harness", "verify_overhead", "effective"],
            "verify_overhead",
        ),
        ("bench_membw.py", "1", ["bare_value", "harness", "triad"], None),
        ("bench_allreduce.py", "4096", ["bare_value", "harness"], None),
    ],
)
def test_benchmark_prints_rounds_and_ratio_last(
    script: str, size: str, columns: list[str], before_ratio: str | None
) -> None:
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
    # The sampler runs in its own process, on the timed device (the null backend on a CPU).
    assert (
        out[1].startswith("# telemetry: NullTelemetry on the CPU") and "separate process" in out[1]
    )
    header = out[2].split()
    assert header[:2] == ["#", "round"] and header[2:] == [*columns, "ratio"]
    rounds = [line.split() for line in out[3:5]]
    assert [r[0] for r in rounds] == ["1", "2"] and all(len(r) == len(header) - 1 for r in rounds)
    positive = [c for c in columns if c != "verify_overhead"]  # a difference: noise can flip it
    assert all(float(r[1 + columns.index(c)]) > 0 for r in rounds for c in positive)
    tail = out[-3:] if before_ratio else out[-2:]
    assert tail[0].startswith("# median")
    if before_ratio:
        assert re.fullmatch(rf"{before_ratio}=-?\d+\.\d{{4}}", tail[1])
    assert re.fullmatch(r"ratio=\d+\.\d{4}", out[-1])


@pytest.mark.slow
@pytest.mark.parametrize(
    "script", ["bench_matmul.py", "bench_membw.py", "bench_sampling.py", "bench_allreduce.py"]
)
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_benchmark_rejects_a_missing_gpu(script: str, device: str) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--device", device],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0 and "no CUDA GPU" in run.stderr


@pytest.mark.gpu
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_gpu_benchmark_runs_with_or_without_an_index(device: str) -> None:
    # torch.cuda.set_device needs an index: "cuda" alone must still run, on the current GPU,
    # and the sampler must find that GPU's NVML handle by its UUID.
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_membw.py"),
            "--device",
            device,
            "--size",
            "64",
            "--seconds",
            "0.2",
            "--rounds",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout.splitlines()
    assert "device=cuda:0" in out[0]
    assert out[1].startswith("# telemetry:") and "GPU-" in out[1], out[1]
    assert re.fullmatch(r"ratio=\d+\.\d{4}", out[-1])


def test_nvml_uuid_matches_what_nvml_reports() -> None:
    # NVML spells a GPU's UUID "GPU-" + the 8-4-4-4-12 hex form of its 16 bytes.
    import uuid

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import _common

    raw = bytes(range(16))

    class Props:
        class uuid_type:
            bytes = raw

        uuid = uuid_type()

    class FakeCuda:
        @staticmethod
        def get_device_properties(index: int) -> Any:
            return Props()

    class FakeTorch:
        cuda = FakeCuda()

    assert _common.nvml_uuid(FakeTorch(), 3) == f"GPU-{uuid.UUID(bytes=raw)}"
    assert _common.nvml_uuid(FakeTorch(), 3) == "GPU-00010203-0405-0607-0809-0a0b0c0d0e0f"


@pytest.mark.slow
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
