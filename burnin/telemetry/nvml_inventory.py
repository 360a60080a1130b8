"""NVML inventory of one card: identity, firmware, modes, placement and lifetime wear, read once.

Part of the NVML backend: :class:`burnin.telemetry.nvml.NvmlTelemetry` owns pynvml, the handles
and the per-field error handling (:class:`~burnin.telemetry.nvml.Reads`); this module turns one
card's getters into an :class:`Inventory`. Besides identity and wear it reads the two modes that
decide whether a whole-card burn-in can run at all (MIG mode: a MIG slice is not the card its
datasheet describes; compute mode: a prohibited or exclusively held card cannot be used), and
where the card sits (the CPUs and NUMA node close to it) so workers can be placed. All reads,
never a setter. Calls and enum values: nvidia-ml-py 13.615.71 ``pynvml.py``, NVIDIA ``nvml.h``.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

from burnin.telemetry.base import Inventory
from burnin.telemetry.nvml_reads import (
    _AGGREGATE,
    _CLOCK_MEM,
    _CLOCK_SM,
    _CORRECTED,
    _UNCORRECTED,
    _VOLATILE,
    Reads,
    cuda_version,
    watts,
)

if TYPE_CHECKING:
    from burnin.telemetry.nvml import NvmlTelemetry

_THRESHOLDS = (  # NVML_TEMPERATURE_THRESHOLD_{SHUTDOWN, SLOWDOWN, MEM_MAX, GPU_MAX}
    ("shutdown_temp_c", 0),
    ("slowdown_temp_c", 1),
    ("mem_max_temp_c", 2),
    ("gpu_max_temp_c", 3),
)
_RETIRED_SBE, _RETIRED_DBE = 0, 1  # NVML_PAGE_RETIREMENT_CAUSE_{MULTIPLE_SINGLE_BIT, DOUBLE_BIT}
_MIG_ENABLE = 1  # NVML_DEVICE_MIG_ENABLE (nvmlDeviceGetMigMode's current mode)
# NVML_COMPUTEMODE_*; EXCLUSIVE_THREAD (1) is "Support Removed" in pynvml.py but still named.
COMPUTE_MODES = {0: "default", 1: "exclusive-thread", 2: "prohibited", 3: "exclusive-process"}
# nvmlDeviceGetCpuAffinity fills an array of 64-bit words (pynvml.py passes c_ulonglong), one
# bit per CPU: CPU i is bit i % 64 of word i // 64.
_CPU_WORD_BITS = 64


def read_identity(client: NvmlTelemetry, index: int) -> dict[str, str | None]:
    """Name, UUID, serial and PCI bus id of card ``index``, and nothing else: enough to name a
    card the run does not use, without watching it (no XID registration)."""
    n, h, read = client.nvml, client.handle(index), Reads(client, index)
    pci = read("pci_bus_id", n.nvmlDeviceGetPciInfo, h)
    return {
        "name": read("name", n.nvmlDeviceGetName, h),
        "uuid": read("uuid", n.nvmlDeviceGetUUID, h),
        "serial": read("serial", n.nvmlDeviceGetSerial, h),
        "pci_bus_id": pci.busId if pci else None,
    }


def read_inventory(client: NvmlTelemetry, index: int) -> Inventory:
    """Every inventory field of card ``index``; each getter on its own (see ``Reads``)."""
    n, h, read = client.nvml, client.handle(index), Reads(client, index)
    pci = read(("pci_device_id", "pci_subsystem_id", "pci_bus_id"), n.nvmlDeviceGetPciInfo, h)
    mem = read("memory_total_mib", n.nvmlDeviceGetMemoryInfo, h)
    cc = read("compute_capability", n.nvmlDeviceGetCudaComputeCapability, h)
    limits = read(
        ("power_limit_min_w", "power_limit_max_w"),
        n.nvmlDeviceGetPowerManagementLimitConstraints,
        h,
    )
    ecc_mode = read("ecc_enabled", n.nvmlDeviceGetEccMode, h)
    remap = read(
        (
            "remapped_rows_correctable",
            "remapped_rows_uncorrectable",
            "remapped_rows_pending",
            "remapped_rows_failure",
        ),
        n.nvmlDeviceGetRemappedRows,
        h,
    )
    hist = read(
        tuple(f"remap_banks_{b}" for b in ("max", "high", "partial", "low", "none")),
        n.nvmlDeviceGetRowRemapperHistogram,
        h,
    )
    pages_sbe = read("retired_pages_sbe", n.nvmlDeviceGetRetiredPages, h, _RETIRED_SBE)
    pages_dbe = read("retired_pages_dbe", n.nvmlDeviceGetRetiredPages, h, _RETIRED_DBE)
    pending = read("retired_pages_pending", n.nvmlDeviceGetRetiredPagesPendingStatus, h)
    energy_mj = read("total_energy_j", n.nvmlDeviceGetTotalEnergyConsumption, h)
    fans = client.fan_count(index, h)
    if fans is None:
        read.drop("fan_count")
    links = client.nvlinks(index, h)
    if not links:
        read.drop(("nvlink_links_total", "nvlink_links_up"))
    client.watch_xids((index,))
    thresholds = {
        name: read(name, n.nvmlDeviceGetTemperatureThreshold, h, kind) for name, kind in _THRESHOLDS
    }
    read.drop("sm_count")  # nvml.h: nvmlDeviceGetAttributes serves MIG handles only; CUDA adds it
    return Inventory(
        index=index,
        uuid=read("uuid", n.nvmlDeviceGetUUID, h),
        serial=read("serial", n.nvmlDeviceGetSerial, h),
        name=read("name", n.nvmlDeviceGetName, h),
        board_part_number=read("board_part_number", n.nvmlDeviceGetBoardPartNumber, h),
        pci_bus_id=pci.busId if pci else None,
        # pciDeviceId holds the device id in the upper 16 bits, the vendor id below.
        pci_device_id=f"{(pci.pciDeviceId >> 16) & 0xFFFF:04x}" if pci else None,
        pci_subsystem_id=f"{pci.pciSubSystemId & 0xFFFFFFFF:08x}" if pci else None,
        vbios_version=read("vbios_version", n.nvmlDeviceGetVbiosVersion, h),
        inforom_image_version=read("inforom_image_version", n.nvmlDeviceGetInforomImageVersion, h),
        inforom_valid=_inforom_valid(client, read, h),
        memory_total_mib=int(mem.total // 2**20) if mem else None,
        compute_capability=f"{cc[0]}.{cc[1]}" if cc else None,
        power_limit_default_w=watts(
            read("power_limit_default_w", n.nvmlDeviceGetPowerManagementDefaultLimit, h)
        ),
        power_limit_enforced_w=watts(
            read("power_limit_enforced_w", n.nvmlDeviceGetEnforcedPowerLimit, h)
        ),
        power_limit_min_w=watts(limits[0]) if limits else None,
        power_limit_max_w=watts(limits[1]) if limits else None,
        max_sm_clock_mhz=read("max_sm_clock_mhz", n.nvmlDeviceGetMaxClockInfo, h, _CLOCK_SM),
        max_mem_clock_mhz=read("max_mem_clock_mhz", n.nvmlDeviceGetMaxClockInfo, h, _CLOCK_MEM),
        pcie_max_gen=read("pcie_max_gen", n.nvmlDeviceGetGpuMaxPcieLinkGeneration, h),
        # NVML has no card-only width: the max width is "device and system" (nvml.h).
        pcie_max_width=read("pcie_max_width", n.nvmlDeviceGetMaxPcieLinkWidth, h),
        pcie_system_max_gen=read("pcie_system_max_gen", n.nvmlDeviceGetMaxPcieLinkGeneration, h),
        pcie_system_max_width=read("pcie_system_max_width", n.nvmlDeviceGetMaxPcieLinkWidth, h),
        pcie_replay_count=read("pcie_replay_count", n.nvmlDeviceGetPcieReplayCounter, h),
        slowdown_temp_c=thresholds["slowdown_temp_c"],
        shutdown_temp_c=thresholds["shutdown_temp_c"],
        gpu_max_temp_c=thresholds["gpu_max_temp_c"],
        mem_max_temp_c=thresholds["mem_max_temp_c"],
        ecc_enabled=bool(ecc_mode[0]) if ecc_mode else None,
        fan_count=fans,
        driver_version=client.system(n.nvmlSystemGetDriverVersion),
        cuda_driver_version=cuda_version(client.system(n.nvmlSystemGetCudaDriverVersion)),
        ecc_aggregate_sbe=client.ecc(read, "ecc_aggregate_sbe", h, _CORRECTED, _AGGREGATE),
        ecc_aggregate_dbe=client.ecc(read, "ecc_aggregate_dbe", h, _UNCORRECTED, _AGGREGATE),
        ecc_volatile_sbe=client.ecc(read, "ecc_volatile_sbe", h, _CORRECTED, _VOLATILE),
        ecc_volatile_dbe=client.ecc(read, "ecc_volatile_dbe", h, _UNCORRECTED, _VOLATILE),
        retired_pages_sbe=len(pages_sbe) if pages_sbe is not None else None,
        retired_pages_dbe=len(pages_dbe) if pages_dbe is not None else None,
        retired_pages_pending=bool(pending) if pending is not None else None,
        remapped_rows_correctable=int(remap[0]) if remap else None,
        remapped_rows_uncorrectable=int(remap[1]) if remap else None,
        remapped_rows_pending=bool(remap[2]) if remap else None,
        remapped_rows_failure=bool(remap[3]) if remap else None,
        remap_banks_max=hist.max if hist else None,
        remap_banks_high=hist.high if hist else None,
        remap_banks_partial=hist.partial if hist else None,
        remap_banks_low=hist.low if hist else None,
        remap_banks_none=hist.none if hist else None,
        total_energy_j=energy_mj / 1000 if energy_mj is not None else None,
        nvlink_links_total=len(links) if links else None,
        nvlink_links_up=client.links_up(h, links) if links else None,
        xid_events_supported=client.xid_supported(index),
        mig_mode=_mig_mode(read, n, h),
        compute_mode=_compute_mode(read, n, h),
        cpu_affinity=_cpu_affinity(read, n, h),
        numa_node=_numa_node(read, n, h),
        unsupported=read.unsupported(),
        failed=read.errors(),
    )


def _inforom_valid(client: NvmlTelemetry, read: Reads, handle: Any) -> bool | None:
    n = client.nvml
    try:
        n.nvmlDeviceValidateInforom(handle)
    except n.NVMLError_CorruptedInforom:
        return False
    except client.fatal_errors:
        raise
    except client.soft_errors:
        read.drop("inforom_valid")
        return None
    except n.NVMLError as exc:
        read.drop("inforom_valid", f"nvmlDeviceValidateInforom: {exc}")
        return None
    return True


def _mig_mode(read: Reads, n: Any, handle: Any) -> str | None:
    """The current MIG mode (the pending one takes effect only after a reset)."""
    modes = read("mig_mode", n.nvmlDeviceGetMigMode, handle)
    if modes is None:
        return None
    return "enabled" if int(modes[0]) == _MIG_ENABLE else "disabled"


def _compute_mode(read: Reads, n: Any, handle: Any) -> str | None:
    mode = read("compute_mode", n.nvmlDeviceGetComputeMode, handle)
    if mode is None:
        return None
    return COMPUTE_MODES.get(int(mode), f"unknown ({int(mode)})")


def cpu_words() -> int:
    """Words of the CPU bitmask that cover every CPU of this host."""
    return max(1, math.ceil((os.cpu_count() or 1) / _CPU_WORD_BITS))


def _cpu_affinity(read: Reads, n: Any, handle: Any) -> tuple[int, ...] | None:
    """Sorted ids of the CPUs NVML calls close to the card; None where it cannot tell."""
    words = read("cpu_affinity", n.nvmlDeviceGetCpuAffinity, handle, cpu_words())
    if words is None:
        return None
    cpus = tuple(
        i * _CPU_WORD_BITS + bit
        for i, word in enumerate(words)
        for bit in range(_CPU_WORD_BITS)
        if int(word) >> bit & 1
    )
    if not cpus:  # an empty mask places nothing: "not reported", not "no CPU"
        read.drop("cpu_affinity")
        return None
    return cpus


def _numa_node(read: Reads, n: Any, handle: Any) -> int | None:
    getter = getattr(n, "nvmlDeviceGetNumaNodeId", None)  # absent from older bindings
    if getter is None:
        read.drop("numa_node")
        return None
    node = read("numa_node", getter, handle)
    if node is not None and int(node) < 0:  # a negative id names no node
        read.drop("numa_node")
        return None
    return int(node) if node is not None else None
