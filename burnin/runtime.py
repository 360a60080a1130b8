"""The world a command runs in, injected through ``ctx.obj``: host, clock, devices, telemetry.

Production code gets :class:`Runtime` with real defaults; tests pass their own (fake telemetry,
device seams that carry faults, a fixed host name) to ``CliRunner.invoke(..., obj=...)``, and a
simulated fleet builds one per node (burnin/sim/run.py). What tells a GPU node from a CPU-only
one is injectable too (the driver's device node, the pynvml module, the CUDA devices), and
:func:`discover` turns it into the run's devices plus the evidence the ``gpu-count`` and
``telemetry`` checks judge (:mod:`burnin.verdicts.evidence`): the cards the driver lists that
CUDA does not show, a shortfall against ``run.expect_gpus``, and GPUs nobody watched.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from burnin.clock import Timeline, WallTimeline
from burnin.config import RunConfig
from burnin.devices import (
    GPU_KINDS,
    Device,
    DriverCard,
    cuda_devices,
    missing_cards,
    select,
)
from burnin.errors import TelemetryError
from burnin.telemetry.base import DriverInfo, TelemetryClient
from burnin.telemetry.null import NullTelemetry

if TYPE_CHECKING:
    from burnin.plan import Plan

log = logging.getLogger("burnin")

# The NVIDIA kernel driver's control device: present wherever the driver is loaded, with or
# without a usable GPU (CUDA Installation Guide for Linux, "Device Node Verification").
NVIDIACTL = "/dev/nvidiactl"


def load_pynvml() -> Any:
    """The pynvml module of nvidia-ml-py (ImportError where it is not installed)."""
    import pynvml

    return pynvml


class UnwatchedTelemetry(NullTelemetry):
    """A GPU run's telemetry where NVML could not start: no sensor, and the reason why."""

    def __init__(self, count: int, reason: str) -> None:
        super().__init__(count)
        self.reason = reason

    def driver_info(self) -> DriverInfo:
        return DriverInfo(backend="none (NVML unavailable)", extra={"nvml_error": self.reason})


def open_nvml(load_nvml: Callable[[], Any]) -> TelemetryClient:
    """NVML through ``load_nvml``'s module.

    Raises:
        TelemetryError: pynvml is not installed or NVML cannot start (no driver, no library).
    """
    from burnin.telemetry.nvml import NvmlTelemetry

    try:
        module = load_nvml()
    except ImportError as exc:
        raise TelemetryError(f"pynvml (nvidia-ml-py) is not installed: {exc}") from exc
    return NvmlTelemetry(module=module)


def default_telemetry(
    devices: Sequence[Device], load_nvml: Callable[[], Any] = load_pynvml
) -> TelemetryClient:
    """NVML for GPUs (an unwatched null backend, with the reason, if NVML cannot start);
    the null backend for the CPU."""
    if devices and devices[0].kind in GPU_KINDS:
        try:
            return open_nvml(load_nvml)
        except TelemetryError as exc:
            log.warning("NVML unavailable, the GPUs run unwatched: %s", exc)
            return UnwatchedTelemetry(len(devices), str(exc))
    return NullTelemetry(len(devices))


@dataclass
class Runtime:
    hostname: str = field(default_factory=socket.gethostname)
    # The default serves NVML through ``nvml_module`` (see __post_init__).
    telemetry_factory: Callable[[Sequence[Device]], TelemetryClient] = default_telemetry
    cuda_devices: Callable[[], list[Device]] | None = None  # None = ask torch
    cpu_count: int = field(default_factory=lambda: os.cpu_count() or 1)
    monotonic: Callable[[], float] = time.monotonic
    wall_time: Callable[[], float] = time.time
    # Launcher variables (RANK, SLURM_NODEID, ...) for the node's ramp offset, and
    # CUDA_VISIBLE_DEVICES for the GPUs CUDA should show; tests inject theirs.
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    # Is there an NVIDIA driver: its device node (``path_exists(NVIDIACTL)``), and the pynvml
    # module NVML is read through (tests pass tests/fake_pynvml.FakeNvml).
    path_exists: Callable[[str], bool] = os.path.exists
    nvml_module: Callable[[], Any] = load_pynvml
    # The run's time (burnin.clock): None = the host's clock (``monotonic``); a simulated fleet
    # injects its virtual one.
    timeline: Callable[[Plan], Timeline] | None = None
    # Per device index, a picklable ``(seed=...) -> DeviceSeam`` (absent: kernels.base.DeviceSeam,
    # a real device); a simulated fleet's devices and a test's faulty ones come in here.
    seam_factories: Mapping[int, Callable[..., Any]] = field(default_factory=dict)
    # Whether the node's run writes its own reports (False where a caller merges several
    # nodes' stores and reports once, as a simulated fleet does).
    node_reports: bool = True
    # Tests only: seconds a multi-node run's cross-node stage adds inside each timed transfer
    # of this node (a slow link, burnin/rack_collectives.py); 0 in production.
    rack_link_delay_s: float = 0.0

    def __post_init__(self) -> None:
        if self.telemetry_factory is default_telemetry:
            self.telemetry_factory = functools.partial(
                default_telemetry, load_nvml=self.nvml_module
            )

    def build_timeline(self, plan: Plan) -> Timeline:
        """The timeline of one node's run of ``plan``."""
        if self.timeline is not None:
            return self.timeline(plan)
        return WallTimeline(self.monotonic)


@dataclass(frozen=True, kw_only=True)
class Discovery:
    """The run's devices and telemetry, and the evidence about the node's GPUs."""

    devices: list[Device]
    note: str
    client: TelemetryClient
    gpu_run: bool  # GPUs (real or simulated) rather than the CPU fallback
    source: str | None = None  # what showed the driver: "NVML", "/dev/nvidiactl", telemetry
    listed: int | None = None  # GPUs the driver lists (None = it could not say)
    visible: int = 0  # GPUs CUDA shows, before --gpus narrows the run
    wanted: int = 0  # GPUs that should be visible: the driver's count, or run.expect_gpus
    expected: int = 0  # run.expect_gpus (0 = no expectation)
    missing: tuple[DriverCard, ...] = ()
    unwatched: str | None = None  # why the GPUs run without telemetry (None = watched)
    cuda_visible: str | None = None

    def annotate(
        self, inventory: dict[int, dict[str, Any]], devices: Sequence[Device]
    ) -> dict[int, dict[str, Any]]:
        """The inventory records with the evidence added: on each GPU, the node's count and
        whether its telemetry was watched; one record per missing card after the last GPU."""
        if not self.gpu_run:
            return inventory
        count = {
            "visible": self.visible,
            "listed": self.listed,
            "expected": self.expected,
            "wanted": self.wanted,
            "source": self.source,
            "cuda_visible_devices": self.cuda_visible,
        }
        out = dict(inventory)
        for dev in devices:
            watched = self.unwatched is None and dev.telemetry_index is not None
            reason = self.unwatched or "the telemetry backend does not list this card"
            out[dev.index] = {
                **out.get(dev.index, {"device": dev.index, "kind": dev.kind}),
                "gpu_count": count,
                "telemetry_watched": watched,
                **({} if watched else {"telemetry_unwatched": reason}),
            }
        kind = devices[0].kind if devices else "cuda"
        first = max((d.index for d in devices), default=-1) + 1
        first = max(first, self.visible)
        for offset, card in enumerate(self.missing):
            index = first + offset
            out[index] = {
                "device": index,
                "kind": kind,
                # Not under "name": identity checks must not judge (or pass) an absent card.
                "name": "missing GPU",
                "nvml_name": card.name,
                "uuid": card.uuid,
                "serial": card.serial,
                "pci_bus_id": card.pci_bus_id,
                "nvml_index": card.nvml_index,
                "missing": True,
                "gpu_count": count,
                "unsupported": [],
            }
        return out


def _driver_cards(client: TelemetryClient, found: Sequence[Device]) -> list[DriverCard] | None:
    """The cards a telemetry backend lists; None where it cannot list them.

    Each card is asked on its own: one lost or unpowered card costs only its own identity. The
    run's own cards are found by UUID or PCI bus id and not read again (their inventory is read
    once, for the run); only the others are read, to name a card CUDA does not show. A card whose
    identity cannot be read is taken for one of the run's cards NVML could not find, while there
    are such cards, since CUDA does show those.
    """
    try:
        count = client.device_count()
    except TelemetryError as exc:
        log.warning("cannot list the driver's GPUs: %s", exc)
        return None
    find = getattr(client, "find_index", None)
    identity = getattr(client, "identity", None)

    def read_identity(index: int) -> dict[str, Any]:
        if identity is not None:
            return dict(identity(index))
        inv = client.inventory(index)
        return {
            "name": inv.name,
            "uuid": inv.uuid,
            "serial": inv.serial,
            "pci_bus_id": inv.pci_bus_id,
        }

    known: dict[int, Device] = {}
    unfound: list[Device] = []
    for device in found:
        try:
            index = find(device.uuid, device.pci_bus_id) if find is not None else None
        except TelemetryError:
            index = None
        if index is None:
            unfound.append(device)
        else:
            known[index] = device
    cards = []
    for i in range(count):
        dev = known.get(i)
        if dev is None:
            try:
                card = read_identity(i)
            except TelemetryError as exc:
                log.warning("cannot read the identity of NVML GPU %d: %s", i, exc)
                dev = unfound.pop(0) if unfound else None
                if dev is None:
                    cards.append(DriverCard(nvml_index=i))
                    continue
            else:
                cards.append(DriverCard(nvml_index=i, **card))
                continue
        cards.append(
            DriverCard(nvml_index=i, name=dev.name, uuid=dev.uuid, pci_bus_id=dev.pci_bus_id)
        )
    return cards


def _probe_driver(runtime: Runtime) -> tuple[str | None, TelemetryClient | None, str]:
    """Is an NVIDIA driver here though CUDA shows no GPU: (evidence, NVML client, NVML error)."""
    try:
        client = open_nvml(runtime.nvml_module)
    except TelemetryError as exc:
        source = NVIDIACTL if runtime.path_exists(NVIDIACTL) else None
        return source, None, str(exc)
    return "NVML", client, ""


def discover(config: RunConfig, runtime: Runtime) -> Discovery:
    """Choose the run's devices, open their telemetry and gather the GPU-count evidence.

    Raises:
        DeviceError: see :func:`burnin.devices.select`.
    """
    preference = config.run.device
    found: list[Device] = []
    if preference != "cpu":
        found = runtime.cuda_devices() if runtime.cuda_devices is not None else cuda_devices()
    probe: tuple[str | None, TelemetryClient | None, str] = (None, None, "")
    if preference != "cpu" and not found:
        probe = _probe_driver(runtime)
    source, nvml, nvml_error = probe
    try:
        devices, note = select(
            preference, config.run.gpus, config.cpu.devices, found, driver=source
        )
    except BaseException:
        if nvml is not None:
            nvml.close()
        raise
    if devices and devices[0].kind not in GPU_KINDS:
        return Discovery(
            devices=devices, note=note, client=runtime.telemetry_factory(devices), gpu_run=False
        )
    if devices:
        client = runtime.telemetry_factory(devices)
        unwatched = getattr(client, "reason", None) if isinstance(client, NullTelemetry) else None
        if isinstance(client, NullTelemetry) and unwatched is None:
            unwatched = "the run's telemetry backend reads no sensor"
        source = _backend(client) if unwatched is None else None
    else:
        client = nvml if nvml is not None else UnwatchedTelemetry(0, nvml_error)
        unwatched = None if nvml is not None else nvml_error
    cards = _driver_cards(client, found) if unwatched is None else None
    cuda_visible = runtime.env.get("CUDA_VISIBLE_DEVICES")
    missing, wanted = missing_cards(found, cards or [], cuda_visible)
    if not found and not missing:
        # A driver without a GPU CUDA can use: at least one card is missing, name unknown.
        missing = [DriverCard()]
    expected = config.run.expect_gpus
    short = expected - len(found) - len(missing)
    missing = [*missing, *(DriverCard() for _ in range(max(0, short)))]
    if missing:
        note += (
            f"; {len(missing)} GPU(s) missing (CUDA shows {len(found)}, "
            f"{_wanted(cards, expected)}): {', '.join(describe_card(c) for c in missing)}"
        )
        log.warning("%s", note)
    return Discovery(
        devices=devices,
        note=note,
        client=client,
        gpu_run=True,
        source=source,
        listed=len(cards) if cards is not None else None,
        visible=len(found),
        wanted=max(wanted, expected),
        expected=expected,
        missing=tuple(missing),
        unwatched=unwatched,
        cuda_visible=cuda_visible,
    )


def _wanted(cards: list[DriverCard] | None, expected: int) -> str:
    parts = [f"the driver lists {len(cards)}"] if cards is not None else []
    parts += [f"--expect-gpus {expected}"] if expected else []
    return ", ".join(parts) or "the driver is present"


def _backend(client: TelemetryClient) -> str:
    """Who listed the GPUs: "NVML", or e.g. "simulated telemetry" in a simulation."""
    try:
        backend = client.driver_info().backend
    except TelemetryError:
        return "telemetry"
    return "NVML" if backend == "nvml" else f"{backend} telemetry"


def describe_card(card: DriverCard) -> str:
    """A missing card in words: its PCI bus id and serial where the driver knows them."""
    if card.nvml_index is None:
        return "a card the driver does not list"
    parts = [f"NVML index {card.nvml_index}"]
    parts += [f"PCI {card.pci_bus_id}"] if card.pci_bus_id else []
    parts += [f"serial {card.serial}"] if card.serial else []
    return " ".join(parts)
