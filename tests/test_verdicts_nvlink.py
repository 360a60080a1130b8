"""The ``nvlink`` check over hand-built GpuData: links down, error counters, no NVLink."""

from __future__ import annotations

from typing import Any

import pytest

from burnin.skus import load_skus
from burnin.verdicts import CheckContext, GpuData, Status, registered

H100: dict[str, Any] = {
    "device": 0,
    "kind": "cuda",
    "name": "NVIDIA H100 80GB HBM3",
    "pci_device_id": "2330",
    "nvlink_links_total": 18,
    "nvlink_links_up": 18,
}
A100: dict[str, Any] = {**H100, "name": "NVIDIA A100-SXM4-80GB", "pci_device_id": "20b2"}
A100["nvlink_links_total"] = A100["nvlink_links_up"] = 12
L40S: dict[str, Any] = {
    **H100,
    "name": "NVIDIA L40S",
    "pci_device_id": "26b9",
    "nvlink_links_total": None,
    "nvlink_links_up": None,
}
# A bridged PCIe card: the SKU fixes no link count, NVML's list is the reference.
H100_PCIE: dict[str, Any] = {**H100, "name": "NVIDIA H100 PCIe", "pci_device_id": "2331"}
H100_PCIE["nvlink_links_total"] = H100_PCIE["nvlink_links_up"] = 4
UNKNOWN_PCIE = {**L40S, "name": "Some PCIe card", "pci_device_id": "ffff"}
RUN = [
    {"type": "kernel-start", "kernel": "allreduce", "elapsed_s": 0.0},
    {"type": "result", "kernel": "allreduce", "elapsed_s": 70.0, "metrics": {}},
]


def samples(n: int = 7, **fields: Any) -> list[dict[str, Any]]:
    """n samples 10 s apart under load (from 1 s); a callable value gets the sample's index."""
    return [
        {
            "elapsed_s": 1.0 + 10.0 * i,
            **{k: (v(i) if callable(v) else v) for k, v in fields.items()},
        }
        for i in range(n)
    ]


CLEAN = {
    "nvlink_links_up": 18,
    "nvlink_crc_errors": 5,
    "nvlink_replay_errors": 0,
    "nvlink_recovery_errors": 0,
}


def gpu(inv: dict[str, Any], sampled: list[dict[str, Any]] | None = None, **changes: Any):
    return GpuData(
        node="node-00",
        index=0,
        inventory={**inv, **changes},
        samples=samples(**CLEAN) if sampled is None else sampled,
        records=list(RUN),
        events=[],
        planned_kernels=["allreduce"],
    )


def judge(target: GpuData, **thresholds: Any) -> Any:
    [verdict] = registered()["nvlink"](target, CheckContext(thresholds=thresholds, fleet=[target]))
    return verdict


SCENARIOS = [
    ("healthy H100", gpu(H100), Status.PASS, "none", "18 of 18 NVLink links up"),
    ("healthy A100", gpu(A100, samples(nvlink_links_up=12)), Status.PASS, "none", "12 of 12"),
    ("link down at inventory", gpu(H100, nvlink_links_up=17), Status.FAIL, "reseat", "17 of 18"),
    (
        "link dropped under load",
        gpu(H100, samples(**{**CLEAN, "nvlink_links_up": lambda i: 18 if i < 3 else 16})),
        Status.FAIL,
        "reseat",
        "16 of 18 NVLink links up (H100-SXM5-80GB has 18)",
    ),
    (
        "NVML lists fewer links than the SKU has",
        gpu(H100, samples(nvlink_links_up=12), nvlink_links_total=12, nvlink_links_up=12),
        Status.FAIL,
        "reseat",
        "12 of 18",
    ),
    (
        "a few CRC errors",
        gpu(H100, samples(**{**CLEAN, "nvlink_crc_errors": lambda i: 5 + i})),
        Status.WARN,
        "retest",
        "6 NVLink CRC errors",
    ),
    (
        "CRC storm: 100/s and more",
        gpu(H100, samples(**{**CLEAN, "nvlink_crc_errors": lambda i: 1000 * i})),
        Status.FAIL,
        "reseat",
        "100 NVLink CRC errors per second",
    ),
    (
        "replay errors",
        gpu(H100, samples(**{**CLEAN, "nvlink_replay_errors": lambda i: i // 3})),
        Status.FAIL,
        "reseat",
        "2 NVLink replay errors",
    ),
    (
        "recovery errors",
        gpu(H100, samples(**{**CLEAN, "nvlink_recovery_errors": lambda i: 1 if i > 4 else 0})),
        Status.FAIL,
        "reseat",
        "1 NVLink recovery errors",
    ),
    (
        "a counter reset mid-run counts only rises",
        gpu(H100, samples(**{**CLEAN, "nvlink_crc_errors": lambda i: [9, 9, 0, 0, 0, 0, 0][i]})),
        Status.PASS,
        "none",
        "no NVLink CRC, replay, recovery errors",
    ),
    (
        "inspect snapshot: links only",
        gpu(H100, []),
        Status.PASS,
        "none",
        "not checked: NVLink error counters not sampled",
    ),
    ("L40S has no NVLink", gpu(L40S, samples()), Status.SKIP, "none", "no NVLink on L40S-48GB"),
    (
        "unknown PCIe card without links",
        gpu(UNKNOWN_PCIE, samples()),
        Status.SKIP,
        "none",
        "no NVLink reported",
    ),
    (
        "bridged PCIe card: NVML's list is the reference",
        gpu(H100_PCIE, samples(nvlink_links_up=3)),
        Status.FAIL,
        "reseat",
        "3 of 4 NVLink links up (NVML lists 4)",
    ),
    (
        "SXM card whose NVML reads no link state",
        gpu(H100, samples(), nvlink_links_total=None, nvlink_links_up=None),
        Status.SKIP,
        "none",
        "NVML reported no NVLink link state (18 links expected)",
    ),
]


@pytest.mark.parametrize(
    ("target", "status", "action", "needle"),
    [s[1:] for s in SCENARIOS],
    ids=[s[0] for s in SCENARIOS],
)
def test_nvlink(target: GpuData, status: Status, action: str, needle: str) -> None:
    verdict = judge(target)
    assert (verdict.status, verdict.action) == (status, action), verdict.message
    assert needle in verdict.message


@pytest.mark.parametrize(
    ("thresholds", "status"),
    [
        ({}, Status.WARN),
        ({"nvlink_crc_warn": 10}, Status.PASS),
        ({"nvlink_crc_fail_per_s": 0.05}, Status.FAIL),
    ],
)
def test_nvlink_thresholds(thresholds: dict[str, Any], status: Status) -> None:
    """6 CRC errors over 60 s (0.1/s): a warning by default, the limits move it."""
    target = gpu(H100, samples(**{**CLEAN, "nvlink_crc_errors": lambda i: 5 + i}))
    assert judge(target, **thresholds).status == status


@pytest.mark.parametrize(
    ("key", "links"),
    [
        ("H100-SXM5-80GB", 18),
        ("H200-SXM-141GB", 18),
        ("A100-SXM4-40GB", 12),
        ("V100-SXM2-32GB", 6),
        ("L40S-48GB", 0),
        ("H100-PCIE-80GB", None),
    ],
)
def test_sku_link_counts(key: str, links: int | None) -> None:
    sku = load_skus()[key]
    assert sku.nvlink_links == links
    assert "nvlink_links" in sku.sources
    assert (sku.nvlink_gbps > 0) == (links != 0)
