"""Device discovery: the CUDA GPUs torch can see, or the CPU as N logical devices.

CUDA enumeration respects ``CUDA_VISIBLE_DEVICES`` (torch does); NVML enumerates every GPU in
its own order, so each CUDA device is matched to its NVML index by UUID, then PCI bus id, never
by position. Where no GPU exists the CPU stands in as ``cpu.devices`` logical devices, and the
run says so in its output and report.
"""

from __future__ import annotations

import platform
import re
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
            # CUDA builds of torch set the three PCI fields together; torch's stub of
            # _CudaDeviceProperties lists none of them (hasattr covers pci_bus_id only).
            domain, device = props.pci_domain_id, props.pci_device_id  # type: ignore[attr-defined]
            bus = f"{domain:08x}:{props.pci_bus_id:02x}:{device:02x}.0"
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
    driver: str | None = None,
) -> tuple[list[Device], str]:
    """Choose the run's devices; returns (devices, a note for the output and report).

    The CPU stands in only where no NVIDIA driver exists at all (``driver`` is None): a node
    whose driver is present (``driver`` names the evidence, e.g. "NVML lists 8 GPU(s)") but
    whose GPUs CUDA cannot see gets no devices, and its missing cards fail ``gpu-count``
    (:mod:`burnin.verdicts.evidence`) instead of a CPU run passing in their place.

    Raises:
        DeviceError: ``--device cuda`` without a driver or CUDA, ``--gpus`` naming a missing
            GPU, or ``--gpus`` on the CPU fallback (there is no GPU to choose).
    """
    cuda = cuda_devices() if found_cuda is None and preference != "cpu" else (found_cuda or [])
    if not cuda and preference != "cpu" and driver is not None:
        return [], (
            f"NVIDIA driver present ({driver}) but CUDA sees no GPU: nothing to stress, "
            "the missing cards fail gpu-count"
        )
    if preference == "cuda" and not cuda:
        raise DeviceError(
            "--device cuda: no CUDA GPU is visible (check the driver and "
            "CUDA_VISIBLE_DEVICES), or use --device cpu"
        )
    if preference == "cpu" or not cuda:
        if gpus:
            raise DeviceError(
                f"--gpus {','.join(map(str, gpus))}: the CPU fallback has no GPUs to choose "
                f"({'--device cpu' if preference == 'cpu' else 'no NVIDIA driver on this node'}); "
                "drop --gpus (run.gpus), or set the CPU devices with --set cpu.devices=N"
            )
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


GPU_KINDS = ("cuda", "simulated")  # devices that stand for a GPU (a simulated one computes on CPU)
# CUDA_VISIBLE_DEVICES: a comma-separated list of device ordinals or UUIDs ("GPU-<uuid>", any
# unique prefix); CUDA stops reading at the first invalid entry (CUDA C++ Programming Guide,
# "CUDA Environment Variables").
_VISIBLE_ENTRY = re.compile(r"^(?:[0-9]+|GPU-[0-9a-fA-F-]+|MIG-[0-9A-Za-z/-]+)$")


@dataclass(frozen=True, kw_only=True)
class DriverCard:
    """A GPU the driver (NVML) lists, or a card expected but not listed (``nvml_index`` None)."""

    nvml_index: int | None = None
    name: str | None = None
    uuid: str | None = None
    serial: str | None = None
    pci_bus_id: str | None = None


def _same_card(dev: Device, card: DriverCard) -> bool:
    """The matching rule of :func:`match_telemetry`: UUID, then PCI bus id."""
    if dev.uuid and card.uuid and dev.uuid.lower() == card.uuid.lower():
        return True
    return bool(
        dev.pci_bus_id
        and card.pci_bus_id
        and dev.pci_bus_id.lower().endswith(card.pci_bus_id.lower()[-12:])
    )


def missing_cards(
    visible: Sequence[Device], cards: Sequence[DriverCard], cuda_visible: str | None = None
) -> tuple[list[DriverCard], int]:
    """The driver's cards that CUDA does not show, and how many CUDA should show.

    Every listed card should be visible, except where ``CUDA_VISIBLE_DEVICES`` narrows the set:
    then as many as it names, and of those only the cards it names by UUID can be told apart
    (an ordinal follows CUDA's enumeration order, not NVML's). A shortfall with no card to name
    is returned as anonymous cards (``nvml_index`` None), so every missing card has an entry.

    Args:
        visible: the GPUs CUDA shows (all of them, before ``--gpus`` narrows the run).
        cards: the GPUs the driver lists, in NVML order.
        cuda_visible: the value of ``CUDA_VISIBLE_DEVICES``, None where unset.

    Returns:
        (missing cards, the number of GPUs CUDA should show).
    """
    unseen = [c for c in cards if not any(_same_card(d, c) for d in visible)]
    if cuda_visible is None:
        return unseen, len(cards)
    entries = []
    for entry in (e.strip() for e in cuda_visible.split(",")):
        if not _VISIBLE_ENTRY.match(entry):
            break
        entries.append(entry)
    wanted = min(len(entries), len(cards))
    named = [
        c
        for c in unseen
        if c.uuid and any(e.startswith("GPU-") and c.uuid.startswith(e) for e in entries)
    ]
    anonymous = max(0, wanted - len(visible) - len(named))
    return [*named, *(DriverCard() for _ in range(anonymous))], wanted
