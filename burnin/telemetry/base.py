"""The hardware seam: what every telemetry backend (NVML, simulated, null) returns.

Everything burnin knows about a card passes through the :class:`TelemetryClient` protocol as
small frozen dataclasses with units in their field names. A value the hardware cannot report is
``None`` and its field name is listed in ``unsupported`` ("not reported"), never a zero, so a
check can tell "no errors" from "could not read the error counter"; a field whose read raised
an error (rather than "not supported") is also named in ``failed``. Backends raise
:class:`burnin.errors.TelemetryError` and nothing else. A backend may also offer
``find_index(uuid, pci_bus_id) -> int | None``, the telemetry index of one card looked up by
identity, so that a run touches only its own cards (see ``burnin.runner``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, kw_only=True)
class Inventory:
    """Identity, firmware and lifetime-wear facts of one card (read once per run)."""

    index: int
    uuid: str | None = None
    serial: str | None = None
    name: str | None = None
    board_part_number: str | None = None
    pci_bus_id: str | None = None
    pci_device_id: str | None = None  # 4 lowercase hex digits, e.g. "2330"
    pci_subsystem_id: str | None = None  # 8 lowercase hex digits
    vbios_version: str | None = None
    inforom_image_version: str | None = None
    inforom_valid: bool | None = None
    memory_total_mib: int | None = None
    sm_count: int | None = None
    compute_capability: str | None = None
    power_limit_default_w: float | None = None
    power_limit_enforced_w: float | None = None
    power_limit_min_w: float | None = None
    power_limit_max_w: float | None = None
    max_sm_clock_mhz: int | None = None
    max_mem_clock_mhz: int | None = None
    pcie_max_gen: int | None = None  # what the card itself supports
    pcie_max_width: int | None = None
    slowdown_temp_c: float | None = None
    shutdown_temp_c: float | None = None
    ecc_enabled: bool | None = None
    fan_count: int | None = None
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    # Lifetime (aggregate) counters: evidence of a previous owner's use.
    ecc_aggregate_sbe: int | None = None
    ecc_aggregate_dbe: int | None = None
    retired_pages_sbe: int | None = None
    retired_pages_dbe: int | None = None
    retired_pages_pending: bool | None = None
    remapped_rows_correctable: int | None = None
    remapped_rows_uncorrectable: int | None = None
    remapped_rows_pending: bool | None = None
    remapped_rows_failure: bool | None = None
    total_energy_j: float | None = None
    # Added for issue 5 (inventory and screening); all optional, None = not reported.
    pcie_system_max_gen: int | None = None  # card and slot together (nvmlDeviceGetMaxPcie*)
    pcie_system_max_width: int | None = None
    gpu_max_temp_c: float | None = None  # "may be throttled below base clock" threshold
    mem_max_temp_c: float | None = None  # memory SW-slowdown threshold
    ecc_volatile_sbe: int | None = None  # since the last driver load (a snapshot for inspect)
    ecc_volatile_dbe: int | None = None
    # Row-remapper bank histogram: banks by spare rows left (nvmlDeviceGetRowRemapperHistogram).
    remap_banks_max: int | None = None
    remap_banks_high: int | None = None
    remap_banks_partial: int | None = None
    remap_banks_low: int | None = None
    remap_banks_none: int | None = None
    nvlink_links_total: int | None = None  # links NVML reports a state for
    nvlink_links_up: int | None = None
    pcie_replay_count: int | None = None  # since the last reset
    xid_events_supported: bool | None = None  # XID events registered through the NVML event API
    # Added for dump screening (burnin.smi_dump); None = not reported.
    pcie_current_gen: int | None = None  # link at read time; an idle link may be downshifted
    pcie_current_width: int | None = None
    gpu_part_number: str | None = None  # the GPU chip's part number, e.g. "2321-886-A1"
    processes: tuple[str, ...] | None = None  # names of processes on the card; () = none ran
    # Modes that decide whether a whole-card burn-in can run at all (read only, never set).
    mig_mode: str | None = None  # "enabled" / "disabled" (current mode; None = no MIG support)
    compute_mode: str | None = None  # "default", "exclusive-process", "prohibited"
    # Placement facts for the workers: CPUs and NUMA node close to the card.
    cpu_affinity: tuple[int, ...] | None = None  # sorted CPU ids (nvmlDeviceGetCpuAffinity)
    numa_node: int | None = None
    simulated: bool = False
    unsupported: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()  # of ``unsupported``: reads that raised an error (logged)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One telemetry reading of one card; ``elapsed_s`` counts from the start of the run."""

    index: int
    elapsed_s: float
    temp_c: float | None = None
    mem_temp_c: float | None = None
    power_w: float | None = None
    energy_j: float | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    util_pct: float | None = None
    mem_used_mib: float | None = None
    fan_pct: float | None = None
    throttle_reasons: tuple[str, ...] = ()
    ecc_volatile_sbe: int | None = None
    ecc_volatile_dbe: int | None = None
    pcie_gen: int | None = None
    pcie_width: int | None = None
    pcie_replay_count: int | None = None
    # Added for issue 5; all optional, None = not reported.
    temp_margin_c: float | None = None  # distance to the nearest slowdown threshold
    power_limit_w: float | None = None  # enforced power limit at this moment
    fan_rpm: int | None = None  # measured speed of fan 0 (fan_pct is the *intended* speed)
    fan_target_pct: float | None = None
    nvlink_links_up: int | None = None
    nvlink_replay_errors: int | None = None  # summed over links, since the last reset
    nvlink_recovery_errors: int | None = None
    nvlink_crc_errors: int | None = None  # CRC flit + CRC data
    unsupported: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()  # of ``unsupported``: reads that raised an error (logged)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@dataclass(frozen=True, kw_only=True)
class Event:
    """Something the card reported asynchronously (an XID) or the harness observed."""

    index: int
    elapsed_s: float
    kind: str  # "xid", "lost", ...
    code: int | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@dataclass(frozen=True, kw_only=True)
class DriverInfo:
    driver_version: str | None = None
    nvml_version: str | None = None
    cuda_driver_version: str | None = None
    backend: str = "null"
    extra: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@runtime_checkable
class TelemetryClient(Protocol):
    """Read-only access to the cards of one node.

    Invariants: indices are NVML indices ``0..device_count()-1``; no method changes any card
    setting; every failure is a ``TelemetryError``; methods may be called from a sampler thread
    while workers run (NVML is thread-safe).
    """

    def device_count(self) -> int: ...

    def driver_info(self) -> DriverInfo: ...

    def inventory(self, index: int) -> Inventory: ...

    def sample(self, index: int, elapsed_s: float) -> Sample: ...

    def events(self, elapsed_s: float) -> list[Event]:
        """Return events seen since the previous call (non-blocking)."""
        ...

    def close(self) -> None: ...


def _to_dict(obj: Any) -> dict[str, Any]:
    out = dataclasses.asdict(obj)
    for key, value in out.items():
        if isinstance(value, tuple):
            out[key] = list(value)
    return out


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a record dataclass from a dict written by ``to_dict``, ignoring unknown keys."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            continue
        if isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)
