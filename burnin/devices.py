"""Device discovery: the CUDA GPUs torch can see, or the CPU as N logical devices.

CUDA enumeration respects ``CUDA_VISIBLE_DEVICES`` (torch does); NVML enumerates every GPU in
its own order, so each CUDA device is matched to its NVML index by UUID, then PCI bus id, never
by position. Where no GPU exists the CPU stands in as ``cpu.devices`` logical devices, and the
run says so in its output and report.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import dataclass

from burnin.errors import DeviceError


@dataclass(frozen=True, kw_only=True)
class Device:
    index: int  # position in this run: the "gpu" number in records and reports
    kind: str  # "cuda" or "cpu"
    name: str
    torch_index: int | None = None  # CUDA ordinal (after CUDA_VISIBLE_DEVICES)
    telemetry_index: int | None = None  # NVML (or simulated) index, None for the CPU
    uuid: str | None = None
    pci_bus_id: str | None = None
    sm_count: int | None = None  # CUDA multiProcessorCount (NVML has none for a whole card)

    @property
    def torch_device(self) -> str:
        return f"cuda:{self.torch_index}" if self.kind == "cuda" else "cpu"


def cpu_devices(count: int) -> list[Device]:
    name = platform.processor() or platform.machine() or "cpu"
    return [Device(index=i, kind="cpu", name=f"CPU fallback ({name})") for i in range(count)]


def cuda_devices() -> list[Device]:
    """GPUs visible to torch, in CUDA order; [] where CUDA is absent."""
    import torch

    if not torch.cuda.is_available():
        return []
    found = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        uuid = getattr(props, "uuid", None)
        bus = None
        if hasattr(props, "pci_bus_id"):
            bus = f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
        found.append(
            Device(
                index=i,
                kind="cuda",
                name=props.name,
                torch_index=i,
                uuid=f"GPU-{uuid}" if uuid else None,
                pci_bus_id=bus,
                sm_count=int(props.multi_processor_count),
            )
        )
    return found


def select(
    preference: str,
    gpus: Sequence[int],
    cpu_count: int,
    found_cuda: list[Device] | None = None,
) -> tuple[list[Device], str]:
    """Choose the run's devices; returns (devices, a note for the output and report).

    Raises:
        DeviceError: ``--device cuda`` without CUDA, or ``--gpus`` naming a missing GPU.
    """
    cuda = cuda_devices() if found_cuda is None and preference != "cpu" else (found_cuda or [])
    if preference == "cuda" and not cuda:
        raise DeviceError(
            "--device cuda: no CUDA GPU is visible (check the driver and "
            "CUDA_VISIBLE_DEVICES), or use --device cpu"
        )
    if preference == "cpu" or not cuda:
        note = (
            "no CUDA GPU found: running on the CPU fallback"
            if preference == "auto"
            else ("running on the CPU fallback as requested")
        )
        return cpu_devices(cpu_count), f"{note} ({cpu_count} logical device(s))"
    if gpus:
        missing = [g for g in gpus if g not in range(len(cuda))]
        if missing:
            raise DeviceError(f"--gpus: no GPU {missing[0]} (visible: 0..{len(cuda) - 1})")
        cuda = [cuda[g] for g in gpus]
    simulated = all(d.kind == "simulated" for d in cuda)  # a --simulate fleet's GPUs
    return cuda, f"{len(cuda)} {'simulated' if simulated else 'CUDA'} GPU(s)"


def match_telemetry(
    devices: list[Device], ids: list[tuple[str | None, str | None]]
) -> list[Device]:
    """Attach NVML indices to CUDA devices by UUID, then by PCI bus id.

    ``ids`` holds each NVML index's (uuid, pci_bus_id); an index whose identity could not be
    read is ``(None, None)`` and matches nothing, so one unreadable card costs only itself.
    """
    from dataclasses import replace

    matched = []
    for dev in devices:
        nvml = None
        for j, (uuid, bus) in enumerate(ids):
            if (dev.uuid and uuid and dev.uuid.lower() == uuid.lower()) or (
                dev.pci_bus_id and bus and dev.pci_bus_id.lower().endswith(bus.lower()[-12:])
            ):
                nvml = j
                break
        matched.append(replace(dev, telemetry_index=nvml))
    return matched
