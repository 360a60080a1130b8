"""pcie kernel: the CPU fallback runs the same code as host-to-host copies and says so; the
node's devices measure one at a time, and pcie next to the all-reduce cannot deadlock."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from burnin.cli import cli
from burnin.kernels.base import DeviceSeam, KernelContext
from burnin.kernels.pcie import Pcie
from burnin.runtime import Runtime
from burnin.supervisor import mp_context


def run(device: str, config: Pcie.Config, duration_s: float) -> dict[str, Any]:
    ctx = KernelContext(
        device=torch.device(device),
        device_index=0,
        node="test",
        config=config,
        duration_s=duration_s,
        seed=1234,
        seam=DeviceSeam(seed=1),
        emit=lambda record: None,
    )
    return Pcie().run(ctx)


def test_cpu_fallback_copies_host_memory_and_labels_it_host_only() -> None:
    result = run("cpu", Pcie.Config(cpu_size_mib=2, batch_s=0.01), 0.1)
    assert result["link"] == "host-only" and result["pinned"] is False
    assert result["metrics"]["pcie_h2d_gbps"] > 0 and result["metrics"]["pcie_d2h_gbps"] > 0
    # Even a short run checks the round trip once.
    assert result["verifications"] >= 1 and result["wrong_elements"] == 0


class LinkModel(DeviceSeam):
    def device_time_s(self, kernel: str, elapsed_s: float, work: float) -> float:
        return work / 25e9 if kernel == "pcie" else elapsed_s


def test_bandwidth_is_bytes_over_device_time() -> None:
    ctx = KernelContext(
        device=torch.device("cpu"),
        device_index=0,
        node="test",
        config=Pcie.Config(cpu_size_mib=1, batch_s=0.005),
        duration_s=0.02,
        seed=1,
        seam=LinkModel(seed=1),
        emit=lambda record: None,
    )
    result = Pcie().run(ctx)
    assert result["metrics"]["pcie_h2d_gbps"] == pytest.approx(25.0)
    assert result["metrics"]["pcie_d2h_gbps"] == pytest.approx(25.0)


@pytest.mark.gpu
def test_gpu_pinned_copies_cross_the_link() -> None:
    result = run("cuda", Pcie.Config(size_mib=64), 0.5)
    assert result["link"] == "pcie" and result["pinned"] is True
    assert result["metrics"]["pcie_h2d_gbps"] > 1 and result["wrong_elements"] == 0


class TickClock:
    """A clock shared by processes that moves one tick per reading: readings from different
    processes are totally ordered, so overlapping windows would show whatever the host's speed."""

    def __init__(self) -> None:
        self.value = mp_context().Value("q", 0)

    def __call__(self) -> float:
        with self.value.get_lock():
            self.value.value += 1
            return float(self.value.value)


def _measure(dev: int, meet_dir: str, clock: TickClock, out: Any) -> None:
    torch.set_num_threads(1)
    ctx = KernelContext(
        device=torch.device("cpu"),
        device_index=dev,
        node="node-p",
        config=Pcie.Config(cpu_size_mib=1, batch_s=0.001, warmup_steps=0),
        duration_s=40.0,  # ticks: a slice of 10 per device
        seed=dev,
        seam=DeviceSeam(seed=dev),
        emit=lambda record: None,
        monotonic=clock,
        peers={"meet_dir": meet_dir, "devices": [0, 1, 2, 3]},
    )
    out.put(Pcie().run(ctx))


@pytest.mark.slow
def test_the_nodes_devices_measure_one_at_a_time(tmp_path: Path) -> None:
    ctx = mp_context()
    clock, out = TickClock(), ctx.Queue()
    procs = [ctx.Process(target=_measure, args=(d, str(tmp_path), clock, out)) for d in range(4)]
    for proc in procs:
        proc.start()
    try:
        results = [out.get(timeout=120) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=10)
    windows = sorted((r["lock"]["held_from"], r["lock"]["held_to"]) for r in results)
    assert all(start < end for start, end in windows)
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert end < start, windows  # no two measurements overlap
    assert all(r["lock"]["shared_by"] == 4 for r in results)


def test_without_a_run_directory_there_is_nobody_to_wait_for() -> None:
    result = run("cpu", Pcie.Config(cpu_size_mib=1, batch_s=0.005), 0.02)
    assert result["lock"]["waited_s"] == 0.0 and result["lock"]["shared_by"] == 1


@pytest.mark.slow
def test_pcie_and_allreduce_together_on_four_devices_complete(tmp_path: Path) -> None:
    """pcie holds the node's lock only while it measures and the all-reduce never takes it,
    so the devices queueing for the lock and those waiting in the rendezvous cannot deadlock."""
    args = [
        "run", "--device", "cpu", "--duration", "2s", "--quiet", "--out", str(tmp_path),
        "--set", "cpu.devices=4", "--set", 'run.kernels=["pcie","allreduce"]',
        "--set", "kernels.pcie.cpu_size_mib=1", "--set", "kernels.pcie.batch_s=0.01",
        "--set", "kernels.allreduce.cpu_sizes_bytes=[4096]",
        "--set", "kernels.allreduce.pairwise=false",
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args, obj=Runtime(hostname="n", cuda_devices=lambda: []))
    assert result.exit_code == 0, result.output
    run_dir = next(tmp_path.iterdir())
    records = [
        json.loads(x) for x in (run_dir / "nodes/n/results.jsonl").read_text().split("\n") if x
    ]
    pcie = [r for r in records if r["type"] == "result" and r["kernel"] == "pcie"]
    allreduce = [r for r in records if r["type"] == "result" and r["kernel"] == "allreduce"]
    assert len(pcie) == 4 and len(allreduce) == 4
    assert all("error" not in r and r["world_size"] == 4 for r in allreduce)
    # time.monotonic is one clock for every process of the host: the windows must not overlap.
    windows = sorted((r["lock"]["held_from"], r["lock"]["held_to"]) for r in pcie)
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert end <= start, windows
    assert os.path.exists(run_dir / "nodes/n/pcie.lock")
