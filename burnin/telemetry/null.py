"""The CPU fallback's telemetry: identity only, every sensor "not supported".

A CPU has no NVML, so samples carry no readings and list every sensor in ``unsupported``; the
checks that need a sensor then report themselves as skipped, never as passed.
"""

from __future__ import annotations

import platform

import burnin
from burnin.telemetry.base import DriverInfo, Event, Inventory, Sample

_SENSORS = (
    "temp_c",
    "power_w",
    "energy_j",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "util_pct",
    "mem_used_mib",
    "fan_pct",
    "ecc_volatile_sbe",
    "ecc_volatile_dbe",
    "pcie_gen",
    "pcie_width",
    "pcie_replay_count",
    "throttle_reasons",
)


class NullTelemetry:
    """Telemetry for ``count`` logical CPU devices."""

    def __init__(self, count: int) -> None:
        self._count = count

    def device_count(self) -> int:
        return self._count

    def driver_info(self) -> DriverInfo:
        return DriverInfo(
            backend="none (CPU fallback)",
            extra={"platform": platform.platform(), "burnin": burnin.__version__},
        )

    def inventory(self, index: int) -> Inventory:
        name = platform.processor() or platform.machine() or "cpu"
        return Inventory(
            index=index,
            name=f"CPU fallback ({name})",
            unsupported=(
                "uuid",
                "serial",
                "pci_device_id",
                "vbios_version",
                "memory_total_mib",
                "power_limit_default_w",
            ),
        )

    def sample(self, index: int, elapsed_s: float) -> Sample:
        return Sample(index=index, elapsed_s=elapsed_s, unsupported=_SENSORS)

    def events(self, elapsed_s: float) -> list[Event]:
        return []

    def close(self) -> None:
        return None
