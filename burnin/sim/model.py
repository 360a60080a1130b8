"""The device model of simulated fleets: boards per SKU, cards, and how they behave under load.

Shared by the simulated telemetry (what NVML would report, in the parent) and the simulated
device seam (how fast the card computes, in each worker), so both see the same card: a
:class:`Board` is one SKU's datasheet (burnin/skus.py) plus what a card reports beyond it
(clocks, temperature thresholds, firmware strings); a :class:`SimulatedGpu` is one card of a
board with a deterministic identity, a small per-card spread drawn from the scenario's seed
and its faults; :func:`load_state` is its temperature, power, clock and throttle state a given
time into its stress. Everything here is plain, picklable data and pure functions.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from burnin.sim.faults import Fault


@dataclass(frozen=True)
class _BoardSpec:
    max_sm_clock_mhz: int
    max_mem_clock_mhz: int
    shutdown_temp_c: float
    slowdown_temp_c: float
    gpu_max_temp_c: float | None  # "GPU Max Operating Temp" (SW thermal slowdown starts)
    mem_max_temp_c: float | None  # HBM boards only
    loaded_temp_c: float  # steady core temperature of a healthy card under matmul stress
    nvlink_links: int
    vbios_version: str
    board_part_number: str | None  # None on GeForce (nvidia-smi prints N/A)
    inforom_image_version: str | None  # None on GeForce (no InfoROM)
    pci_subsystem_id: str  # 8 hex: subsystem device id, then subsystem vendor id


# What a card reports beyond its datasheet: (max SM MHz, max memory MHz, shutdown C, slowdown C,
# max operating C, memory max C, loaded C, NVLink links). Clocks and thresholds are those of
# public `nvidia-smi -q` printouts where one is cited, else typical of the family (UNVERIFIED):
# H100 SXM 1980/2619 MHz: NVIDIA/DCGM#120; A100-SXM4-40GB 1410/1215 MHz: NVIDIA/nvidia-docker
# #1648; RTX 3090 98/95/93 C: AstraExt/astra-monitor#131 (also docs/nvml.md §2.4). Loaded
# temperatures are modelling assumptions (air-cooled racks run 60-75 C under stress).
_SPECS: dict[str, tuple[int, int, float, float, float | None, float | None, float, int]] = {
    "V100-SXM2-16GB": (1530, 877, 90, 87, 83, 85, 68, 6),
    "V100-SXM2-32GB": (1530, 877, 90, 87, 83, 85, 68, 6),
    "V100-PCIE-16GB": (1380, 877, 90, 87, 83, 85, 72, 0),
    "V100-PCIE-32GB": (1380, 877, 90, 87, 83, 85, 72, 0),
    "A100-SXM4-40GB": (1410, 1215, 92, 89, 85, 95, 66, 12),
    "A100-SXM4-80GB": (1410, 1593, 92, 89, 85, 95, 66, 12),
    "A100-PCIE-40GB": (1410, 1215, 92, 89, 85, 95, 72, 0),
    "A100-PCIE-80GB": (1410, 1512, 92, 89, 85, 95, 72, 0),
    "H100-SXM5-80GB": (1980, 2619, 92, 89, 87, 95, 64, 18),
    "H100-PCIE-80GB": (1755, 1593, 92, 89, 87, 95, 70, 0),
    "H100-NVL-94GB": (1785, 2619, 92, 89, 87, 95, 70, 0),
    "H200-SXM-141GB": (1980, 3201, 92, 89, 87, 95, 64, 18),
    "H200-NVL-141GB": (1785, 3201, 92, 89, 87, 95, 70, 0),
    "L40S-48GB": (2520, 9001, 95, 92, 89, None, 72, 0),
    "A10-24GB": (1695, 6251, 98, 95, 93, None, 74, 0),
    "L4-24GB": (2040, 6251, 95, 92, 89, None, 70, 0),
    "RTX-4090-24GB": (3120, 10501, 92, 89, 87, None, 68, 0),
    "RTX-3090-24GB": (2100, 9751, 98, 95, 93, None, 72, 0),
}
# Board identity: "VBIOS part-number InfoROM-image PCI-subsystem-id" ("-" = N/A, as on
# GeForce). Cited: A100-SXM4-80GB VBIOS 92.00.45.00.05 (NVIDIA/CUDALibrarySamples#104);
# V100-SXM2-16GB VBIOS, part and InfoROM (NVIDIA/nvidia-docker#914); A10 subsystem 1482 (DCGM
# diag-skus via docs/nvml.md §4). The rest are illustrative, in nvidia-smi's format: a simulated
# card needs them, its same-SKU peers share them, only the `vbios` fault changes one.
_FIRMWARE: dict[str, str] = {
    "V100-SXM2-16GB": "88.00.18.00.01 692-2G503-0202-000 G503.0202.00.01 124910de",
    "V100-SXM2-32GB": "88.00.80.00.01 692-2G503-0203-000 G503.0203.00.04 124a10de",
    "V100-PCIE-16GB": "88.00.4F.00.09 900-2G500-0000-000 G500.0200.00.03 121410de",
    "V100-PCIE-32GB": "88.00.80.00.06 900-2G500-0010-000 G500.0202.00.02 124a10de",
    "A100-SXM4-40GB": "92.00.19.00.10 692-2G506-0200-002 G506.0200.00.04 134f10de",
    "A100-SXM4-80GB": "92.00.45.00.05 692-2G506-0210-002 G506.0210.00.03 147f10de",
    "A100-PCIE-40GB": "92.00.25.00.08 900-21001-0000-000 1001.0200.00.03 145f10de",
    "A100-PCIE-80GB": "92.00.90.00.04 900-21001-0020-000 1001.0230.00.01 151f10de",
    "H100-SXM5-80GB": "96.00.74.00.0D 692-2G520-0200-000 G520.0200.00.05 16c110de",
    "H100-PCIE-80GB": "96.00.30.00.01 900-21010-0000-000 1010.0200.00.02 16c110de",
    "H100-NVL-94GB": "96.00.A5.00.01 900-21010-0010-000 1010.0210.00.01 16d110de",
    "H200-SXM-141GB": "96.00.99.00.01 692-2G520-0280-000 G520.0280.00.01 18c110de",
    "H200-NVL-141GB": "96.00.AF.00.02 900-21010-0040-000 1010.0240.00.01 18d110de",
    "L40S-48GB": "95.02.66.00.02 900-2G133-0080-000 G133.0200.00.05 185110de",
    "A10-24GB": "94.02.5C.00.02 900-2G133-0000-000 G133.0210.00.02 148210de",
    "L4-24GB": "95.04.29.00.06 900-2G193-0000-001 G193.0200.00.01 16ca10de",
    "RTX-4090-24GB": "95.02.18.80.87 - - 16f310de",
    "RTX-3090-24GB": "94.02.42.00.A9 - - 147d10de",
}
# A SKU added to the table later without a board entry still simulates, with these values.
_DEFAULT_SPEC = (1800, 2000, 92.0, 89.0, 87.0, 95.0, 68.0, 0)
_DEFAULT_FIRMWARE = "90.00.00.00.01 - - 000010de"


def _board_spec(key: str) -> _BoardSpec:
    vbios, part, inforom, subsystem = _FIRMWARE.get(key, _DEFAULT_FIRMWARE).split()
    return _BoardSpec(
        *_SPECS.get(key, _DEFAULT_SPEC),
        vbios_version=vbios,
        board_part_number=None if part == "-" else part,
        inforom_image_version=None if inforom == "-" else inforom,
        pci_subsystem_id=subsystem,
    )


# Modelling assumptions (no public per-SKU source): a matmul burn-in draws close to the power
# cap (DCGM's targeted_power aims at the TDP, docs/nvml.md §3.4); an idle card draws about a tenth.
_LOADED_POWER_SHARE = 0.92
_IDLE_POWER_SHARE = 0.10
# Power limit range: A100-SXM4-40GB min 100 W of 400 W (nvidia-docker#1648); GeForce may be
# raised ~10 % above default (RTX 3090: 385 of 350 W, astra-monitor#131).
MIN_LIMIT_SHARE = 0.25
GEFORCE_MAX_LIMIT_SHARE = 1.1
IDLE_TEMP_C = 32.0  # assumption: a datacenter inlet of ~25 C plus an idle card's rise
IDLE_SM_CLOCK_MHZ = 345  # H100 idle in NVIDIA/DCGM#120
IDLE_GEFORCE_SM_CLOCK_MHZ = 210  # GeForce idle in mrirecon/bart#323
IDLE_GDDR_CLOCK_MHZ = 405  # GDDR idle memory clock in mrirecon/bart#323 (HBM stays at max)
_LOADED_CLOCK_SHARE = 0.95  # boost clock held under a power-bound matmul (assumption)
TEMP_TAU_S = 15.0  # thermal time constant: cards settle within ~60 s (bradrlaw/ai-server#15)
_POWER_TAU_S = 2.0
THERMAL_HOLD_S = 20.0  # how long SW thermal slowdown holds a failing card (assumption)
MAX_FAN_RPM = 3000  # assumption for a GeForce open-air cooler
# Per-lane PCIe throughput after encoding, GB/s (PCIe base specifications, gen 1-6).
PCIE_LANE_GBPS = {1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563}
_MASK = (1 << 64) - 1


@dataclass(frozen=True, kw_only=True)
class Board:
    """Everything a genuine, healthy card of one SKU reports (datasheet + board constants)."""

    key: str
    name: str
    pci_device_id: str
    memory_total_mib: int
    sm_count: int | None
    compute_capability: str | None
    tdp_w: float
    pcie_gen: int
    pcie_width: int
    spec: _BoardSpec
    geforce: bool
    hbm: bool
    fans: bool
    ecc_capable: bool
    peak_tflops: Mapping[str, float] = field(hash=False)
    peak_membw_gbps: float
    dcgm_min_membw_gbps: float | None
    nvlink_gbps: float

    @property
    def has_inforom(self) -> bool:
        return not self.geforce  # serial, part number and InfoROM read N/A on GeForce

    @property
    def ecc_enabled(self) -> bool:
        # RTX 4090 is ECC capable but ships with it off (docs/nvml.md §2.9): no ECC counters then.
        return self.ecc_capable and not self.geforce

    @property
    def remaps_rows(self) -> bool:
        # Row remapping: GA100, GA10x, AD10x, GH100 (docs/nvml.md §3.1); GeForce shows N/A.
        return self._cc >= 8.0 and not self.geforce

    @property
    def retires_pages(self) -> bool:
        return self._cc < 8.0 and self.ecc_enabled  # Kepler..Volta page retirement

    @property
    def _cc(self) -> float:
        return float(self.compute_capability or "9.0")

    @property
    def loaded_power_w(self) -> float:
        return self.tdp_w * _LOADED_POWER_SHARE

    @property
    def achieved_membw_gbps(self) -> float:
        """What a copy kernel reaches: DCGM's minimum is 0.75 × measured (docs/nvml.md §4), else
        0.8 × peak (the typical achieved shares there are 0.76-0.88)."""
        if self.dcgm_min_membw_gbps:
            return self.dcgm_min_membw_gbps / 0.75
        return self.peak_membw_gbps * 0.8


def board_for(key: str, sku: Any = None) -> Board:
    """The board model of SKU ``key`` (``sku``: its burnin.skus.Sku, looked up if None)."""
    if sku is None:
        from burnin.skus import get_sku

        sku = get_sku(key)
    name = sku.nvml_names[0]
    return Board(
        key=key,
        name=name,
        pci_device_id=sku.pci_device_ids[0],
        memory_total_mib=int(sku.memory_total_mib or sku.memory_gib_nominal * 1024),
        sm_count=sku.sm_count,
        compute_capability=sku.compute_capability,
        tdp_w=float(sku.tdp_w),
        pcie_gen=int(sku.pcie_gen),
        pcie_width=int(sku.pcie_width),
        spec=_board_spec(key),
        geforce="GeForce" in name,
        hbm=str(sku.memory_type).upper().startswith("HBM"),
        fans=bool(sku.fans),
        ecc_capable=bool(sku.ecc_capable),
        peak_tflops=dict(sku.peak_tflops),
        peak_membw_gbps=float(sku.peak_membw_gbps),
        dcgm_min_membw_gbps=sku.dcgm_min_membw_gbps,
        nvlink_gbps=float(sku.nvlink_gbps or 0.0),
    )


@dataclass(frozen=True, kw_only=True)
class SimulatedGpu:
    """One simulated card: its board, identity, per-card spread and faults (picklable)."""

    node: int
    index: int  # NVML index within its node
    board: Board
    faults: tuple[Fault, ...] = ()
    serial: str | None
    uuid: str
    pci_bus_id: str
    noise: float = 0.0
    key: int = 0  # 64-bit hash of (seed, node, index): the per-card noise stream
    perf_scale: float = 1.0  # silicon lottery: relative speed of this card
    temp_offset_c: float = 0.0
    power_scale: float = 1.0
    energy_start_j: float = 0.0

    def fault(self, kind: str) -> Fault | None:
        return next((f for f in self.faults if f.kind == kind), None)

    def param(self, kind: str, name: str, default: Any = None) -> Any:
        fault = self.fault(kind)
        return fault.params.get(name, default) if fault is not None else default

    def jitter(self, t: float, channel: int) -> float:
        """Deterministic noise in [-1, 1) for this card at time ``t`` (0 when noise is 0)."""
        if not self.noise:
            return 0.0
        x = self.key ^ ((int(t * 1000) * 0x9E3779B97F4A7C15) & _MASK) ^ (channel << 56)
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
        return ((x ^ (x >> 31)) / 2.0**63) - 1.0

    def power_limit_w(self) -> float:
        return float(self.param("power-cap", "limit_w", self.board.tdp_w))

    def hot_temp_c(self) -> float:
        """The temperature this card settles at under stress."""
        spec = self.board.spec
        if self.fault("thermal") is not None:
            return float(self.param("thermal", "max_temp_c"))
        hot = spec.loaded_temp_c + self.temp_offset_c
        if self.fault("fan") is not None:
            # Fans stopped: ~20 C hotter, held just under the SW-slowdown line by the firmware.
            hot = min(hot + 20.0, (spec.gpu_max_temp_c or spec.slowdown_temp_c) - 1.0)
        return hot


def identity(seed: int, node: int, index: int) -> tuple[int, str, str]:
    """(noise key, serial, UUID) of a card; deterministic, so a twin's serial can be copied."""
    digest = hashlib.sha256(f"burnin-sim/{seed}/{node}/{index}".encode()).digest()
    key = int.from_bytes(digest[:8], "big")
    serial = "1" + str(int.from_bytes(digest[8:16], "big") % 10**12).zfill(12)  # 13 digits
    h = digest[16:32].hex()
    return key, serial, f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


# PCI bus ids of a DGX H100's eight GPUs (the HGX baseboard layout); others count on.
_BUSES = (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)


def build_gpu(
    board: Board,
    *,
    seed: int,
    node: int,
    index: int,
    noise: float,
    faults: Sequence[Fault] = (),
    twin_serial: str | None = None,
) -> SimulatedGpu:
    """A card with its identity, per-card spread (scaled by ``noise``) and faults."""
    key, serial, uuid = identity(seed, node, index)
    bus = _BUSES[index] if index < len(_BUSES) else 0xE0 + index
    spread = [(((key >> (8 * i)) & 0xFF) / 127.5 - 1.0) for i in range(4)]  # 4 × [-1, 1]
    return SimulatedGpu(
        node=node,
        index=index,
        board=board,
        faults=tuple(faults),
        serial=(twin_serial or serial) if board.has_inforom else None,
        uuid=uuid,
        pci_bus_id=f"00000000:{bus:02X}:00.0",
        noise=noise,
        key=key,
        perf_scale=1.0 + noise * spread[0],
        temp_offset_c=150.0 * noise * spread[1],  # ±1.5 C at the default noise of 0.01
        power_scale=1.0 + noise * spread[2],
        # Lifetime energy counter since the driver loaded: 1-20 days at idle power.
        energy_start_j=(1 + 19 * (spread[3] + 1) / 2) * 86400 * board.tdp_w * _IDLE_POWER_SHARE,
    )


@dataclass(frozen=True)
class LoadState:
    temp_c: float
    power_w: float
    clock_share: float  # SM clock / max SM clock
    reasons: tuple[str, ...]


def load_state(gpu: SimulatedGpu, under_load_s: float) -> LoadState:
    """The card ``under_load_s`` seconds into its stress (first-order lags from idle)."""
    b, spec = gpu.board, gpu.board.spec
    idle_c, hot_c = IDLE_TEMP_C + gpu.temp_offset_c / 2, gpu.hot_temp_c()
    held = spec.gpu_max_temp_c
    s = under_load_s
    if held is not None and hot_c > held > idle_c:
        # Past its max operating temperature the driver's SW thermal slowdown holds the card
        # there for a while (THERMAL_HOLD_S) before a failing cooler lets it climb on.
        reach_s = -TEMP_TAU_S * math.log(1 - (held - idle_c) / (hot_c - idle_c))
        s = s if s < reach_s else reach_s if s < reach_s + THERMAL_HOLD_S else s - THERMAL_HOLD_S
    temp = idle_c + (hot_c - idle_c) * (1 - math.exp(-s / TEMP_TAU_S))
    clock, reasons = _LOADED_CLOCK_SHARE, []
    power = b.loaded_power_w * gpu.power_scale
    if temp >= spec.slowdown_temp_c:
        clock *= 0.5  # HW slowdown cuts clocks by half or more (nvml.h, docs/nvml.md §2.7)
        power *= 0.6
        reasons += ["hw_slowdown", "hw_thermal_slowdown"]
    elif spec.gpu_max_temp_c is not None and temp >= spec.gpu_max_temp_c:
        clock *= 0.85
        reasons.append("sw_thermal_slowdown")
    limit = gpu.power_limit_w()
    if power > limit:
        # Dynamic power grows roughly with f·V², V with f: clocks drop with the cube root.
        clock *= (limit / power) ** (1 / 3)
        power = limit
        reasons.append("sw_power_cap")
    rise = 1 - math.exp(-under_load_s / _POWER_TAU_S)
    idle_w = b.tdp_w * _IDLE_POWER_SHARE
    return LoadState(temp, idle_w + (power - idle_w) * rise, clock, tuple(reasons))


class DeviceActivity:
    """Each simulated device's time and state, shared by its worker's seam and the node.

    A real card's telemetry shows load because the card is loaded; a simulated card's model
    learns it from here. Each device's seam publishes its virtual clock (seconds since the
    node's start, advanced by the modelled time of the work it ran) and whether it stalled; the
    node's sampler records up to which instant it has sampled the device, and the supervisor
    when the device's worker ended. So telemetry at an instant is a function of the device's
    own history, never of when the host got round to it. One shared array of doubles, a few
    slots per device, each slot with one writer. Picklable while a worker process is being
    started (multiprocessing shared memory).
    """

    _STARTED, _BUSY, _HUNG, _CLOCK, _SAMPLED, _STATE, _WALL, _FAILED = range(8)
    _SLOTS = 8
    RUNNING, STALLED, ENDED = 0.0, 1.0, 2.0

    def __init__(self, count: int) -> None:
        from burnin.supervisor import mp_context

        self.count = count
        self._values = mp_context().RawArray("d", self._SLOTS * max(count, 1))
        for slot in range(count):
            self._set(slot, self._STARTED, -1.0)

    def _set(self, slot: int, field: int, value: float) -> None:
        self._values[self._SLOTS * slot + field] = value

    def _get(self, slot: int, field: int) -> float:
        return float(self._values[self._SLOTS * slot + field])

    def planned(self, slot: int, start_s: float) -> None:
        """Before the worker exists: the device's time is its planned start."""
        self._set(slot, self._CLOCK, start_s)

    def started(self, slot: int, now: float) -> None:
        self._set(slot, self._STARTED, now)
        self.busy(slot, now)

    def busy(self, slot: int, now: float) -> None:
        """The device worked up to ``now`` (its clock, published to the sampler)."""
        self._set(slot, self._BUSY, now)
        self._set(slot, self._CLOCK, now)
        self._set(slot, self._WALL, time.monotonic())

    def hung(self, slot: int) -> None:
        """The card hangs busy: it never progresses again, and telemetry shows it loaded."""
        self._set(slot, self._HUNG, 1.0)
        self.stalled(slot)

    def stalled(self, slot: int) -> None:
        """The device stopped answering at its current clock (hang, lost)."""
        self._set(slot, self._STATE, self.STALLED)

    def failed(self, slot: int) -> None:
        """The device's fault struck (hang, lost, crash): it may never reach a collective."""
        self._set(slot, self._FAILED, 1.0)

    def has_failed(self, slot: int) -> bool:
        return bool(self._get(slot, self._FAILED))

    def any_failed(self) -> bool:
        """Whether a device of the node failed and its worker is not gone yet, so a wait on
        that peer may never end by itself."""
        return any(
            self.has_failed(slot) and self.state(slot) != self.ENDED for slot in range(self.count)
        )

    def ended(self, slot: int, now: float) -> None:
        """The device's worker is gone; ``now`` is the instant it counts as gone."""
        self._set(slot, self._CLOCK, max(now, self.clock(slot)))
        self._set(slot, self._STATE, self.ENDED)

    def sampled_to(self, slot: int, now: float) -> None:
        self._set(slot, self._SAMPLED, now)

    def clock(self, slot: int) -> float:
        return self._get(slot, self._CLOCK)

    def sampled(self, slot: int) -> float:
        return self._get(slot, self._SAMPLED)

    def state(self, slot: int) -> float:
        return self._get(slot, self._STATE)

    def quiet_wall_s(self, slot: int) -> float:
        """Wall seconds since the device's clock last moved (0 before it ever moved)."""
        wall = self._get(slot, self._WALL)
        return time.monotonic() - wall if wall else 0.0

    def read(self, slot: int) -> tuple[float | None, float, bool]:
        """(start or None if never started, last progress, hung) on the node's clock."""
        start = self._get(slot, self._STARTED)
        return (
            (start if start >= 0 else None),
            self._get(slot, self._BUSY),
            bool(self._get(slot, self._HUNG)),
        )
