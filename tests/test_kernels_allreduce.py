"""The all-reduce kernel: its formulas and schedule, real gloo groups of CPU ranks (healthy,
corrupted, slow link, a missing rank, a rank that dies), and ``burnin run`` end to end."""

from __future__ import annotations

import json
import os
import queue
import time
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from burnin.cli import cli
from burnin.config import load_config
from burnin.kernels.allreduce import Allreduce, NodePlan, node_plan
from burnin.kernels.base import DeviceSeam, KernelContext
from burnin.kernels.collectives import (
    backend_for,
    bandwidth_gbps,
    bus_factor,
    expected_value,
    pair_rounds,
    typical_pair_gbps,
)
from burnin.runtime import Runtime
from burnin.sim.seam import FaultySeam
from burnin.supervisor import mp_context
from burnin.verdicts.network import isolate

# Tiny sizes: every rank is a process on two shared cores.
SMALL = {
    "cpu_sizes_bytes": (4096, 65536),
    "cpu_pair_size_bytes": 65536,
    "iterations": 5,
    "warmup": 1,
    "batch_s": 0.05,
    "timeout_s": 10.0,
}


# -- formulas and schedule ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ranks", "factor"), [(1, 0.0), (2, 1.0), (3, 4 / 3), (4, 1.5), (8, 1.75), (16, 1.875)]
)
def test_bus_factor_is_nccl_tests_2_n_minus_1_over_n(ranks: int, factor: float) -> None:
    assert bus_factor(ranks) == pytest.approx(factor)


@pytest.mark.parametrize(
    ("size_bytes", "seconds", "ranks", "algbw", "busbw"),
    [
        (10**9, 1.0, 8, 1.0, 1.75),  # GB = 1e9 bytes, not GiB
        (1 << 30, 0.005, 8, 214.748, 375.809),
        (1 << 20, 1e-3, 2, 1.048576, 1.048576),  # a pair: busbw = algbw
        (4096, 0.0, 4, 0.0, 0.0),  # no time measured: no bandwidth, never a division error
    ],
)
def test_bandwidth_gbps(
    size_bytes: int, seconds: float, ranks: int, algbw: float, busbw: float
) -> None:
    got = bandwidth_gbps(size_bytes, seconds, ranks)
    assert got == pytest.approx((algbw, busbw), rel=1e-5)


def test_backend_is_chosen_in_one_place() -> None:
    assert (backend_for("cuda"), backend_for("cpu"), backend_for("simulated")) == (
        "nccl",
        "gloo",
        "gloo",
    )


@pytest.mark.parametrize("n", range(2, 10))
def test_pair_rounds_cover_every_pair_once_without_overlap(n: int) -> None:
    rounds = pair_rounds(n)
    flat = [p for r in rounds for p in r]
    assert sorted(flat) == list(combinations(range(n), 2))
    for rnd in rounds:
        devices = [d for p in rnd for d in p]
        assert len(devices) == len(set(devices))
    assert len(rounds) == (n - 1 if n % 2 == 0 else n)


@pytest.mark.parametrize(
    ("table", "typical"),
    [
        ({(0, 1): 10.0, (0, 2): 10.0, (1, 2): 20.0}, 20.0),  # gpu0 slow: median pair is 10
        ({(0, 1): 5.0}, 5.0),
        ({}, 0.0),
    ],
)
def test_typical_pair_is_the_median_best_pair(
    table: dict[tuple[int, int], float], typical: float
) -> None:
    assert typical_pair_gbps(table) == typical


def test_expected_values_are_small_exact_integers() -> None:
    values = [expected_value(i, list(range(8)), seed=3) for i in range(200)]
    assert all(v == int(v) and abs(v) <= 6 * 8 for v in values)
    assert len(set(values)) > 5  # varied, so a lost or doubled contribution shows


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("kernels.allreduce.cpu_sizes_bytes=[0]", "kernels.allreduce.cpu_sizes_bytes"),
        ("kernels.allreduce.sizes_bytes=[]", "kernels.allreduce.sizes_bytes"),
        ("kernels.allreduce.iterations=0", "kernels.allreduce.iterations"),
        ("kernels.allreduce.timeout_s=-1", "kernels.allreduce.timeout_s"),
    ],
)
def test_bad_kernel_config_names_the_key(override: str, key: str) -> None:
    result = CliRunner().invoke(
        cli, ["plan", "--device", "cpu", "--set", override], obj=Runtime(cuda_devices=lambda: [])
    )
    assert result.exit_code == 2 and key in result.output, result.output


def test_config_accepts_sizes_from_toml_lists() -> None:
    cfg = load_config(None, ["kernels.allreduce.cpu_sizes_bytes=[64, 1024]"])
    assert cfg.kernels["allreduce"].cpu_sizes_bytes == (64, 1024)


# -- which devices meet ----------------------------------------------------------------------


def _ctx(index: int = 0, peers: dict[str, Any] | None = None, **kw: Any) -> KernelContext:
    return KernelContext(
        device="cpu",
        device_index=index,
        node="node-t",
        config=Allreduce.Config(**kw),
        duration_s=0.5,
        seed=3,
        seam=DeviceSeam(seed=0),
        emit=lambda record: None,
        peers=peers or {},
    )


def test_node_plan_comes_from_the_manifest(tmp_path: Path) -> None:
    plan = [
        {"node": "node-t", "device": 0, "kernels": ["matmul", "allreduce"], "start_offset_s": 0},
        {"node": "node-t", "device": 1, "kernels": ["matmul", "allreduce"], "start_offset_s": 5},
        {"node": "node-t", "device": 2, "kernels": ["matmul"], "start_offset_s": 10},
        {"node": "other", "device": 3, "kernels": ["allreduce"], "start_offset_s": 0},
    ]
    config = {"watchdog": {"timeout_s": 20.0}}
    (tmp_path / "manifest.json").write_text(json.dumps({"plan": plan, "config": config}))
    assert node_plan(_ctx(1, {"run_dir": str(tmp_path)})) == NodePlan([0, 1], 5.0, 20.0)
    assert node_plan(_ctx(0, {"devices": [2, 0], "run_dir": "x"})) == NodePlan([0, 2])
    assert node_plan(_ctx(0)) == NodePlan([0])  # outside a run: alone
    with pytest.raises(ValueError, match="cannot read the node's plan"):
        node_plan(_ctx(0, {"run_dir": str(tmp_path / "missing")}))


@pytest.mark.parametrize("peers", [{}, {"devices": [4], "run_dir": "/nonexistent"}])
def test_a_lone_device_skips_with_the_reason(peers: dict[str, Any]) -> None:
    result = Allreduce().run(_ctx(4, peers))
    assert result["type"] == "result" and result["kernel"] == "allreduce"
    assert "needs at least 2 devices" in result["skipped"] and result["metrics"] == {}


# -- real gloo groups of CPU ranks -------------------------------------------------------------


class CrashingSeam(FaultySeam):
    """A card that dies on its first timed all-reduce, after the group has formed."""

    def device_time_s(self, kernel: str, elapsed_s: float, work: float) -> float:
        os._exit(70)


def _rank(
    dev: int,
    devices: list[int],
    run_dir: str,
    cfg: dict[str, Any],
    faults: list[tuple[str, dict[str, Any]]],
    crash: bool,
    duration_s: float,
    watchdog_s: float | None,
    out: Any,
) -> None:
    import torch

    from burnin.sim.faults import make_fault

    torch.set_num_threads(1)
    device = torch.device(f"cuda:{dev}" if cfg.pop("_cuda", False) else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    seam = (CrashingSeam if crash else FaultySeam)([make_fault(k, p) for k, p in faults], dev)
    ctx = KernelContext(
        device=device,
        device_index=dev,
        node="node-t",
        config=Allreduce.Config(**cfg),
        duration_s=duration_s,
        seed=3,
        seam=seam,
        emit=lambda record: None,
        peers={"run_dir": run_dir, "devices": devices, "watchdog_s": watchdog_s},
    )
    out.put((dev, Allreduce().run(ctx)))


def run_ranks(
    tmp_path: Path,
    devices: list[int],
    *,
    start: list[int] | None = None,
    faults: dict[int, list[tuple[str, dict[str, Any]]]] | None = None,
    crash: tuple[int, ...] = (),
    duration_s: float = 0.3,
    watchdog_s: float | None = None,
    **cfg: Any,
) -> dict[int, dict[str, Any]]:
    """Run the kernel in one process per device (forkserver, torch preloaded); their results."""
    mp = mp_context()
    out = mp.Queue()
    procs = [
        mp.Process(
            target=_rank,
            args=(
                d,
                devices,
                str(tmp_path),
                {**SMALL, **cfg},
                (faults or {}).get(d, []),
                d in crash,
                duration_s,
                watchdog_s,
                out,
            ),
            daemon=True,
        )
        for d in (start if start is not None else devices)
    ]
    for proc in procs:
        proc.start()
    results: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + 90
    try:
        while len(results) < len(procs) - len(crash) and time.monotonic() < deadline:
            try:
                dev, result = out.get(timeout=0.5)
                results[dev] = result
            except queue.Empty:
                if not any(p.is_alive() for p in procs) and out.empty():
                    break
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
    return results


def test_healthy_group_is_exact_and_agrees_on_bandwidth(tmp_path: Path) -> None:
    results = run_ranks(tmp_path, [0, 1, 2], duration_s=2.0)
    assert sorted(results) == [0, 1, 2]
    for dev, r in results.items():
        assert "error" not in r, r["error"]
        assert r["backend"] == "gloo" and r["world_size"] == 3 and r["rank"] == dev
        assert r["wrong"] == 0 and r["verifications"] >= 2 + 2  # 2 sizes, 2 pairs per rank
        assert [s["size_bytes"] for s in r["sizes"]] == [4096, 65536]
        assert [p["devices"] for p in r["pairs"]] == [[0, 1], [0, 2], [1, 2]]
        assert r["stress"]["batches"] >= 1
        for row in r["sizes"]:
            algbw = row["size_bytes"] / (row["time_us"] * 1e-6) / 1e9
            assert row["algbw_gbps"] == pytest.approx(algbw)
            assert row["busbw_gbps"] == pytest.approx(algbw * 4 / 3)
    # One figure per group: the slowest rank's time, the same on every rank.
    assert len({r["metrics"]["allreduce_busbw_gbps"] for r in results.values()}) == 1
    assert len({json.dumps(r["pairs"]) for r in results.values()}) == 1
    assert not list(tmp_path.glob("nodes/*/allreduce-*.store"))  # the last one out cleans up


def test_corrupted_results_are_counted_on_that_rank(tmp_path: Path) -> None:
    results = run_ranks(tmp_path, [0, 1, 2], faults={1: [("sdc-constant", {})]})
    assert results[1]["wrong"] > 0
    assert results[1]["failed_verifications"] == results[1]["verifications"]
    assert results[1]["sizes"][0]["locations"][0]["index"] == 1024 // 3
    assert results[0]["wrong"] == results[2]["wrong"] == 0
    wrong_pairs = {tuple(p["devices"]) for p in results[0]["pairs"] if p["wrong"]}
    assert wrong_pairs == {(0, 1), (1, 2)}


def test_a_slow_link_slows_every_pair_of_that_gpu(tmp_path: Path) -> None:
    # The link is 10x slower; the test blames a device below half the typical pair, not the
    # product's 0.9. Four ranks timing 64 KiB calls on two shared cores drift by more than 10 %
    # between pairs measured a second apart, even as the best of 20 calls (seen in CI: gpu0
    # blamed at 0.9); the factor-10 gap leaves a factor-5 margin over that noise.
    results = run_ranks(
        tmp_path,
        [0, 1, 2, 3],
        faults={2: [("slow-link", {"factor": 0.1})]},
        iterations=20,
    )
    pairs = {tuple(p["devices"]): p["busbw_gbps"] for p in results[0]["pairs"]}
    found = isolate(pairs, warn_ratio=0.5)
    assert set(found.culprits) == {2}
    assert found.culprits[2] < 0.2  # about 0.1: every pair of gpu2 is stretched 10x


def test_a_missing_device_is_left_out_and_the_rest_go_on(tmp_path: Path) -> None:
    # timeout_s is 10 s, but the watchdog (1.25 s here) caps the wait at 0.8 × its timeout.
    started = time.monotonic()
    results = run_ranks(tmp_path, [0, 1, 2], start=[0, 1], watchdog_s=1.25, pairwise=False)
    assert time.monotonic() - started < 8
    for r in results.values():
        assert "error" not in r and r["members"] == [0, 1] and r["missing"] == [2]
        assert r["world_size"] == 2 and r["pairs"] == [] and r["wrong"] == 0


def test_a_rank_that_dies_mid_run_cannot_hang_the_others(tmp_path: Path) -> None:
    started = time.monotonic()
    results = run_ranks(tmp_path, [0, 1], crash=(1,), timeout_s=3.0)
    assert time.monotonic() - started < 30
    assert "sweep" in results[0]["error"] and results[0]["members"] == [0, 1]


@pytest.mark.gpu
def test_nccl_group_on_real_gpus(tmp_path: Path) -> None:
    import torch

    count = torch.cuda.device_count()
    if count < 2:
        pytest.skip("needs 2 CUDA GPUs or more")
    devices = list(range(min(count, 4)))
    results = run_ranks(
        tmp_path, devices, _cuda=True, sizes_bytes=(1 << 20, 1 << 26), pair_size_bytes=1 << 24
    )
    assert sorted(results) == devices
    for r in results.values():
        assert "error" not in r, r["error"]
        assert r["backend"] == "nccl" and r["wrong"] == 0 and r["world_size"] == len(devices)
        assert r["metrics"]["allreduce_busbw_gbps"] > 1.0  # NVLink or PCIe: GB/s, not MB/s
        n = len(devices)
        assert len(r["pairs"]) == (n * (n - 1) // 2 if n > 2 else 0)


# -- burnin run end to end ---------------------------------------------------------------------

RUN = ["run", "--device", "cpu", "--duration", "2s", "--quiet"]
SETS = [
    "--set",
    'run.kernels=["matmul","allreduce"]',
    "--set",
    "kernels.matmul.cpu_size=64",
    "--set",
    "kernels.allreduce.cpu_sizes_bytes=[4096,65536]",
    "--set",
    "telemetry.interval_s=0.5",
]


def _run(tmp_path: Path, devices: int) -> tuple[Any, dict[str, Any], Path]:
    args = [*RUN, *SETS, "--set", f"cpu.devices={devices}", "--out", str(tmp_path)]
    result = CliRunner().invoke(
        cli, args, obj=Runtime(hostname="test-node", cuda_devices=lambda: [])
    )
    run_dir = next(tmp_path.iterdir())
    report = json.loads((run_dir / "report.json").read_text())
    return result, report, run_dir


def test_burnin_run_with_allreduce_on_three_cpu_devices(tmp_path: Path) -> None:
    result, report, run_dir = _run(tmp_path, 3)
    assert result.exit_code == 0, result.output
    (node,) = report["nodes"]
    assert node["allreduce_busbw_gbps"] > 0 and node["allreduce"]["world_size"] == 3
    for gpu in report["gpus"]:
        verdicts = {v["check"]: v for v in gpu["verdicts"]}
        assert verdicts["allreduce"]["status"] == "PASS", verdicts["allreduce"]
        assert verdicts["slow-link"]["status"] == "SKIP"  # CPU fallback: not judged
        assert gpu["metrics"]["allreduce_busbw_gbps"] == node["allreduce_busbw_gbps"]
    assert 'id="allreduce-test-node"' in (run_dir / "report.html").read_text()
    assert not list(run_dir.glob("nodes/*/allreduce-*.store"))


def test_burnin_run_on_one_device_skips_the_allreduce(tmp_path: Path) -> None:
    result, report, _ = _run(tmp_path, 1)
    assert result.exit_code == 0, result.output
    (gpu,) = report["gpus"]
    verdicts = {v["check"]: v for v in gpu["verdicts"]}
    assert verdicts["allreduce"]["status"] == "SKIP"
    assert "needs at least 2 devices" in verdicts["allreduce"]["message"]
    assert report["nodes"][0]["allreduce_busbw_gbps"] is None
