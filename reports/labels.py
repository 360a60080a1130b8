"""The one table of human labels: metric key -> the name and unit a technician reads, and a format.

Every figure the HTML report shows by key (a device's ``metrics``, the per-SKU distributions,
the pull list) goes through :func:`label` and :func:`fmt`, so ``matmul_bf16_peak_fraction``
reads "bf16 matmul, fraction of datasheet peak" with "87 %", and the same key reads the same
everywhere. :func:`export` gives the table as plain rows for other outputs (report.json
consumers, dashboards) so they label figures the same way. Keys not in the table (a new kernel's
metric) still render: their name is the key with spaces and the number gets three significant
digits, never a crash.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Label:
    name: str
    unit: str  # "" for a count or a plain number
    fmt: str  # a format spec; "%" = a fraction shown as a percentage


_DTYPES = ("bf16", "fp16", "tf32", "fp32", "fp64", "fp8", "int8")

LABELS: dict[str, Label] = {
    "matmul_tflops": Label("matmul throughput (main dtype)", "TFLOP/s", ".1f"),
    "matmul_tflops_min": Label("matmul throughput, slowest step", "TFLOP/s", ".1f"),
    "matmul_tflops_p99": Label("matmul throughput, p99", "TFLOP/s", ".1f"),
    "matmul_tflops_cv": Label("matmul throughput variation (cv)", "", "%"),
    "matmul_verify_overhead": Label("share of matmul time spent verifying", "", "%"),
    "membw_gbps": Label("device memory bandwidth", "GB/s", ".0f"),
    "membw_copy_gbps": Label("device memory bandwidth, copy", "GB/s", ".0f"),
    "membw_copy_gbps_cv": Label("memory copy variation (cv)", "", "%"),
    "membw_triad_gbps": Label("device memory bandwidth, triad", "GB/s", ".0f"),
    "membw_peak_fraction": Label("device memory bandwidth, fraction of datasheet peak", "", "%"),
    "memtest_gib": Label("memory tested", "GiB", ".1f"),
    "memtest_passes": Label("memtest passes", "", "d"),
    "memtest_bad_words": Label("memtest bad words", "", "d"),
    "memtest_gbps": Label("memtest speed", "GB/s", ".0f"),
    "pcie_h2d_gbps": Label("PCIe host to device", "GB/s", ".1f"),
    "pcie_d2h_gbps": Label("PCIe device to host", "GB/s", ".1f"),
    "pcie_h2d_gbps_min": Label("PCIe host to device, slowest", "GB/s", ".1f"),
    "pcie_d2h_gbps_min": Label("PCIe device to host, slowest", "GB/s", ".1f"),
    "pcie_link_fraction": Label("PCIe copies, fraction of the link's rate", "", "%"),
    "allreduce_busbw_gbps": Label("all-reduce bus bandwidth (largest size)", "GB/s", ".1f"),
    "allreduce_avg_busbw_gbps": Label("all-reduce bus bandwidth (mean over sizes)", "GB/s", ".1f"),
    "allreduce_stress_busbw_gbps": Label("all-reduce bus bandwidth under stress", "GB/s", ".1f"),
    "max_temp_c": Label("peak temperature", "°C", ".0f"),
    "max_sm_clock_mhz": Label("highest SM clock", "MHz", ".0f"),
    "max_mem_clock_mhz": Label("highest memory clock", "MHz", ".0f"),
    "energy_kwh": Label("energy used", "kWh", ".3f"),
    "tflops_per_w": Label("matmul throughput per watt", "TFLOP/s per W", ".2f"),
    "mean_power_w": Label("mean power under load", "W", ".0f"),
    "temp_c": Label("temperature", "°C", ".0f"),
    "power_w": Label("power", "W", ".0f"),
    "sm_clock_mhz": Label("SM clock", "MHz", ".0f"),
}
for _d in _DTYPES:
    LABELS[f"matmul_{_d}_peak_fraction"] = Label(
        f"{_d} matmul, fraction of datasheet peak", "", "%"
    )
    LABELS[f"matmul_{_d}_tflops"] = Label(f"{_d} matmul throughput", "TFLOP/s", ".1f")

_PEAK = re.compile(r"^matmul_([a-z0-9]+)_peak_fraction$")


def label(key: str) -> Label:
    """The label of ``key``; an unknown key reads as its words (``foo_bar_gbps``: GB/s)."""
    found = LABELS.get(key)
    if found is not None:
        return found
    match = _PEAK.match(key)
    if match:
        return Label(f"{match.group(1)} matmul, fraction of datasheet peak", "", "%")
    for suffix, unit in (("_gbps", "GB/s"), ("_tflops", "TFLOP/s"), ("_c", "°C"), ("_w", "W")):
        if key.endswith(suffix):
            return Label(key[: -len(suffix)].replace("_", " "), unit, ".3g")
    return Label(key.replace("_", " "), "", ".3g")


def fmt(key: str, value: Any) -> str:
    """``value`` rounded as ``key``'s label says, with its unit ("87 %", "612 GB/s", "n/a")."""
    if value is None or isinstance(value, bool):
        return "n/a" if value is None else str(value)
    if not isinstance(value, int | float):
        return str(value)
    spec = label(key)
    if spec.fmt == "%":
        return f"{value * 100:.0f} %" if abs(value) >= 0.1 else f"{value * 100:.1f} %"
    text = f"{int(value):d}" if spec.fmt == "d" else format(value, spec.fmt)
    return f"{text} {spec.unit}" if spec.unit else text


def export() -> list[dict[str, Any]]:
    """The table as plain rows (``key``, ``name``, ``unit``, ``fmt``), sorted by key."""
    return [{"key": k, **asdict(v)} for k, v in sorted(LABELS.items())]
