"""pcie kernel: the CPU fallback runs the same code as host-to-host copies and says so."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from burnin.kernels.base import DeviceSeam, KernelContext
from burnin.kernels.pcie import Pcie


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
