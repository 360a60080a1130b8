"""Faults to inject at the device seam, as plain picklable data.

A fault never lives inside a check: the simulator and tests attach faults to a device, and the
kernels' :class:`burnin.kernels.base.DeviceSeam` (or the simulated telemetry backend) applies them
where data leaves the device. The kinds and their parameters are DESIGN.md's scenario table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from burnin.errors import InputError

# kind -> documented default parameters (DESIGN.md, "Simulated fleets").
FAULT_KINDS: dict[str, dict[str, Any]] = {
    "sdc": {"rate": 0.05},
    "sdc-constant": {},
    "slow": {"factor": 0.85},
    "hbm-slow": {"factor": 0.8},
    "thermal": {"max_temp_c": 95.0},
    "power-cap": {"limit_w": 300.0},
    "pcie-degraded": {"gen": 3, "width": 8},
    "pcie-replay": {"per_min": 100.0},
    "ecc": {"corrected_per_min": 100.0, "uncorrected": 1},
    "retired-pages": {"sbe": 10, "dbe": 20, "pending": True},
    "row-remap": {"correctable": 10, "uncorrectable": 4, "pending": True, "failure": False},
    "xid": {"code": 79},
    "fan": {"speed_pct": 0.0},
    "slow-link": {"factor": 0.5},
    "hang": {"after_s": 5.0},
    "crash": {"after_s": 5.0},
    "lost": {"after_s": 5.0},
    "identity": {},
    "duplicate-serial": {"twin_node": 0, "twin_gpu": 0},
    "vbios": {"version": "00.00.00.00.00"},
    "inforom-invalid": {},
    "worn": {"aggregate_sbe": 5000, "aggregate_dbe": 3, "retired_pages": 12},
    # Device-memory faults for memtest (expected check: sdc). stuck-bit pins bit `bit` (0-7) of
    # the byte at `offset_bytes` of the tested region to `value` on every read; bitflip flips
    # one random bit of the region in a `rate` share of write/verify passes.
    "stuck-bit": {"offset_bytes": 4096, "bit": 0, "value": 1},
    "bitflip": {"rate": 0.05},
}


@dataclass(frozen=True)
class Fault:
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


def make_fault(kind: str, params: dict[str, Any] | None = None, where: str = "fault") -> Fault:
    """Build a fault with defaults filled in; an unknown kind or parameter is an InputError."""
    if kind not in FAULT_KINDS:
        raise InputError(f"{where}: unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})")
    merged = dict(FAULT_KINDS[kind])
    for key, value in (params or {}).items():
        identity_keys = {"memory_mib", "name", "pci_device_id", "sm_count"}
        if key not in merged and not (kind == "identity" and key in identity_keys):
            raise InputError(f"{where}: fault {kind!r} has no parameter {key!r}")
        merged[key] = value
    return Fault(kind, merged)
