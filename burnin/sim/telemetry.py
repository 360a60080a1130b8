"""Simulated telemetry: the NVML view of a simulated node, behind the same protocol.

Where no GPU exists (CI, a laptop, a demo), ``burnin run --simulate`` needs cards that look and
fail like real ones through the same :class:`~burnin.telemetry.base.TelemetryClient` protocol
as NVML. :class:`SimulatedTelemetry` reports each :class:`~burnin.sim.model.SimulatedGpu`
of a node as NVML would: identity, firmware and lifetime wear once per run
(:func:`simulated_inventory`), and readings that follow the card's actual load (the shared
:class:`~burnin.sim.model.DeviceActivity` its worker updates, or planned windows where
there is none): temperature and power rise under stress and fall after it, clocks follow the
throttle state, ECC and PCIe replay counters grow with time under load. Every fault a check
judges from telemetry enters here as data: a hot card shows its thermal throttle reasons, a
degraded link its lower generation under load, a lost card raises ``TelemetryError("... GPU is
lost ...")`` and emits XID 79. What NVML cannot report on a board (fans on a passively cooled
card, ECC on a GeForce, row remapping before Ampere) is ``None`` and listed in ``unsupported``.
Readings are deterministic for the scenario's seed, given the times they are taken at.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from burnin.errors import TelemetryError
from burnin.sim.faults import Fault
from burnin.sim.model import (
    GEFORCE_MAX_LIMIT_SHARE,
    IDLE_GDDR_CLOCK_MHZ,
    IDLE_GEFORCE_SM_CLOCK_MHZ,
    IDLE_SM_CLOCK_MHZ,
    IDLE_TEMP_C,
    MAX_FAN_RPM,
    MIN_LIMIT_SHARE,
    TEMP_TAU_S,
    DeviceActivity,
    LoadState,
    SimulatedGpu,
    load_state,
)
from burnin.telemetry.base import DriverInfo, Event, Inventory, Sample, TelemetryClient

# A device whose worker made no progress for this long (simulated seconds) is idle.
IDLE_AFTER_S = 30.0

# XID meanings (NVIDIA XID catalog, docs.nvidia.com/deploy/xid-errors; docs/nvml.md §2.12).
XID_TEXT = {
    13: "Graphics Engine Exception",
    31: "GPU memory page fault",
    43: "GPU stopped processing",
    48: "Double Bit ECC Error",
    63: "ECC page retirement or row remapping recording event",
    64: "ECC page retirement or row remapper recording failure",
    74: "NVLink Error",
    79: "GPU has fallen off the bus",
    92: "High single-bit ECC error rate",
    94: "Contained ECC error",
    95: "Uncontained ECC error",
}
_DRIVER = DriverInfo(
    driver_version="550.90.07",
    nvml_version="12.550.90.07",
    cuda_driver_version="12.4",
    backend="simulated",
)


class SimulatedTelemetry:
    """The TelemetryClient of one simulated node.

    Args:
        gpus: the node's cards, NVML index = position.
        activity: what each card's worker is doing (shared with the workers' seams), on the
            node's clock (seconds since the run's start).
        load: without ``activity``, each card's planned (start_s, end_s) of stress in elapsed
            time; cards without a window stay idle.
        idle_after_s: with ``activity``, how long after its last progress a card counts idle.
        driver: what :meth:`driver_info` reports.
    """

    def __init__(
        self,
        gpus: Sequence[SimulatedGpu],
        *,
        activity: DeviceActivity | None = None,
        load: Mapping[int, tuple[float, float]] | None = None,
        idle_after_s: float = IDLE_AFTER_S,
        driver: DriverInfo = _DRIVER,
    ) -> None:
        self._gpus = list(gpus)
        self._activity = activity
        self._load = dict(load or {})
        self._idle_after_s = idle_after_s
        self._driver = driver
        self._lock = threading.Lock()
        self._energy: dict[int, tuple[float, float, float]] = {}  # t, power_w, joules
        self._emitted: set[tuple[int, int]] = set()

    def device_count(self) -> int:
        return len(self._gpus)

    def driver_info(self) -> DriverInfo:
        return self._driver

    def inventory(self, index: int) -> Inventory:
        return simulated_inventory(self._gpu(index), self._driver)

    def sample(self, index: int, elapsed_s: float) -> Sample:
        gpu = self._gpu(index)
        start, end, loaded = self._phase(index, elapsed_s)
        lost_at = self._lost_at(gpu, start)
        if lost_at is not None and elapsed_s >= lost_at:
            raise TelemetryError(
                f"simulated GPU {index}: GPU is lost (fell off the bus at {lost_at:.1f} s)"
            )
        fields = _reading(gpu, elapsed_s, start, end, loaded)
        fields["index"] = index
        watts = fields["power_w"]
        with self._lock:  # the energy counter integrates power over the sampled times
            last_t, last_w, joules = self._energy.get(index, (elapsed_s, watts, 0.0))
            joules += max(0.0, elapsed_s - last_t) * (last_w + watts) / 2
            self._energy[index] = (max(elapsed_s, last_t), watts, joules)
        return Sample(**fields, energy_j=round(gpu.energy_start_j + joules, 3))

    def events(self, elapsed_s: float) -> list[Event]:
        """XIDs that happened since the previous call (stamped with when they happened)."""
        found = []
        for gpu in self._gpus:
            start, _end, _loaded = self._phase(gpu.index, elapsed_s)
            if start is None:
                continue
            for at, code in self._xids(gpu, start):
                with self._lock:
                    if at > elapsed_s or (gpu.index, code) in self._emitted:
                        continue
                    self._emitted.add((gpu.index, code))
                text = XID_TEXT.get(code, "unknown XID")
                found.append(
                    Event(
                        index=gpu.index,
                        elapsed_s=round(at, 3),
                        kind="xid",
                        code=code,
                        message=f"XID {code}: {text} (simulated)",
                    )
                )
        return sorted(found, key=lambda e: e.elapsed_s)

    def processes(self, index: int) -> list[dict[str, Any]]:
        """Compute processes on the card (the preflight's busy check): none on a simulated one."""
        self._gpu(index)
        return []

    def close(self) -> None:
        return None

    def _gpu(self, index: int) -> SimulatedGpu:
        if not 0 <= index < len(self._gpus):
            raise TelemetryError(f"simulated node has no GPU {index} (0..{len(self._gpus) - 1})")
        return self._gpus[index]

    def _phase(self, index: int, t: float) -> tuple[float | None, float | None, bool]:
        """(start, end, loaded) of the card's stress in elapsed seconds at time ``t``.

        ``start`` None: not started yet; ``end`` None: still under load.
        """
        if self._activity is not None:
            started, last, hung = self._activity.read(index)
            if started is None or started > t:
                return None, None, False
            if hung or t - last <= self._idle_after_s:
                return started, None, True
            return started, last, False
        window = self._load.get(index)
        if window is None or t < window[0]:
            return None, None, False
        start, end = window
        crash_after = self._gpus[index].param("crash", "after_s")
        if crash_after is not None:
            end = min(end, start + float(crash_after))  # the worker died: the card idles
        return (start, None, True) if t < end else (start, end, False)

    @staticmethod
    def _lost_at(gpu: SimulatedGpu, start: float | None) -> float | None:
        after = gpu.param("lost", "after_s")
        return start + float(after) if after is not None and start is not None else None

    def _xids(self, gpu: SimulatedGpu, start: float) -> list[tuple[float, int]]:
        """(time, XID) of every event the card's faults cause, given when its stress began."""
        found: list[tuple[float, int]] = []
        if (code := gpu.param("xid", "code")) is not None:
            found.append((start + 10.0, int(code)))
        if gpu.param("ecc", "uncorrected", 0):
            # An uncorrectable error: XID 48 before Ampere, a contained one (94) after.
            found.append((start + 1.0, 94 if gpu.board.remaps_rows else 48))
        if (lost_at := self._lost_at(gpu, start)) is not None:
            found.append((lost_at, 79))
        return found


def _reading(
    gpu: SimulatedGpu, t: float, start: float | None, end: float | None, loaded: bool
) -> dict[str, Any]:
    """Sample fields of ``gpu`` at time ``t`` (not its energy counter, which needs history)."""
    b, spec = gpu.board, gpu.board.spec
    if start is None:
        idle = load_state(gpu, 0.0)
        state = LoadState(idle.temp_c, idle.power_w, 0.0, ("gpu_idle",))
    elif loaded:
        state = load_state(gpu, t - start)
    else:  # cooling down after its stress ended (finished, crashed or stopped)
        assert end is not None
        hot, idle = load_state(gpu, end - start), load_state(gpu, 0.0)
        temp = idle.temp_c + (hot.temp_c - idle.temp_c) * math.exp(-(t - end) / TEMP_TAU_S)
        state = LoadState(temp, idle.power_w, 0.0, ("gpu_idle",))
    # Counters (ECC, replays) grow with the time spent under load.
    under_s = max(0.0, (t if loaded else end or 0.0) - start) if start is not None else 0.0
    temp_c = round(state.temp_c + 50 * gpu.noise * gpu.jitter(t, 1))  # ±0.5 C at noise 0.01
    # Noise never lifts a reading over the enforced limit: the energy counter integrates these
    # readings, and a card cannot draw more than its limit for long.
    power_w = round(
        min(state.power_w * (1 + 1.5 * gpu.noise * gpu.jitter(t, 2)), gpu.power_limit_w()), 2
    )
    if loaded:
        wobble = 1 + gpu.noise * gpu.jitter(t, 3) / 2
        sm_clock = int(spec.max_sm_clock_mhz * state.clock_share * wobble)
        mem_clock = int(spec.max_mem_clock_mhz * float(gpu.param("hbm-slow", "factor", 1.0)))
        gen = int(gpu.param("pcie-degraded", "gen", b.pcie_gen))
    else:  # idle links downtrain (docs/nvml.md §3.2); HBM keeps its clock, GDDR drops it
        sm_clock = IDLE_GEFORCE_SM_CLOCK_MHZ if b.geforce else IDLE_SM_CLOCK_MHZ
        mem_clock = spec.max_mem_clock_mhz if b.hbm else IDLE_GDDR_CLOCK_MHZ
        gen = 1
    width = int(gpu.param("pcie-degraded", "width", b.pcie_width))
    missing: list[str] = []
    fan: dict[str, Any] = dict.fromkeys(("fan_pct", "fan_rpm", "fan_target_pct"))
    if b.fans:
        share = (temp_c - IDLE_TEMP_C) / max(1.0, spec.loaded_temp_c - IDLE_TEMP_C)
        target = round(min(100.0, max(30.0, 30.0 + 40.0 * share)))
        pct = float(gpu.param("fan", "speed_pct", target))  # a fault holds the fan there
        fan = {"fan_pct": pct, "fan_rpm": int(MAX_FAN_RPM * pct / 100), "fan_target_pct": target}
    else:
        missing += list(fan)
    ecc: dict[str, Any] = dict.fromkeys(("ecc_volatile_sbe", "ecc_volatile_dbe"))
    if b.ecc_enabled:
        per_min = float(gpu.param("ecc", "corrected_per_min", 0.0))
        dbe = int(gpu.param("ecc", "uncorrected", 0)) if under_s >= 1.0 else 0
        ecc = {"ecc_volatile_sbe": int(per_min * under_s / 60), "ecc_volatile_dbe": dbe}
    else:
        missing += list(ecc)
    links: dict[str, Any] = {
        "nvlink_links_up": spec.nvlink_links,
        "nvlink_replay_errors": 0,
        "nvlink_recovery_errors": 0,
        "nvlink_crc_errors": 0,
    }
    if not spec.nvlink_links:
        missing += list(links)
        links = dict.fromkeys(links)
    if not b.hbm:
        missing.append("mem_temp_c")
    used_mib = round(min(b.memory_total_mib, 512 + 0.02 * b.memory_total_mib), 1) if loaded else 0.0
    return dict(
        index=gpu.index,
        elapsed_s=t,
        temp_c=temp_c,
        mem_temp_c=temp_c + 3 if b.hbm else None,
        temp_margin_c=spec.slowdown_temp_c - temp_c,
        power_w=power_w,
        power_limit_w=gpu.power_limit_w(),
        sm_clock_mhz=sm_clock,
        mem_clock_mhz=mem_clock,
        util_pct=100.0 if loaded else 0.0,
        mem_used_mib=used_mib,
        throttle_reasons=state.reasons,
        pcie_gen=gen,
        pcie_width=width,
        pcie_replay_count=int(float(gpu.param("pcie-replay", "per_min", 0.0)) * under_s / 60),
        unsupported=tuple(missing),
        **fan,
        **ecc,
        **links,
    )


def simulated_inventory(gpu: SimulatedGpu, driver: DriverInfo = _DRIVER) -> Inventory:
    """What NVML (plus torch's SM count) reports about ``gpu`` at the start of a run."""
    b, spec = gpu.board, gpu.board.spec
    ident = gpu.fault("identity")
    params = ident.params if ident is not None else {}
    no_ident_param = not any(
        k in params for k in ("memory_mib", "name", "pci_device_id", "sm_count")
    )
    memory = params.get("memory_mib")
    if ident is not None and no_ident_param:
        memory = b.memory_total_mib // 2  # documented default: half the claimed memory
    missing: list[str] = []
    worn = gpu.fault("worn")
    wear_sbe = int(gpu.param("worn", "aggregate_sbe", 0))
    wear_dbe = int(gpu.param("worn", "aggregate_dbe", 0))
    wear_pages = int(gpu.param("worn", "retired_pages", 0))
    vals: dict[str, Any] = {}
    if b.ecc_enabled:
        vals |= {"ecc_aggregate_sbe": wear_sbe, "ecc_aggregate_dbe": wear_dbe}
        vals |= {"ecc_volatile_sbe": 0, "ecc_volatile_dbe": 0}
    else:
        missing += [
            "ecc_aggregate_sbe",
            "ecc_aggregate_dbe",
            "ecc_volatile_sbe",
            "ecc_volatile_dbe",
        ]
    if b.retires_pages:
        sbe = int(gpu.param("retired-pages", "sbe", 0))
        dbe = int(gpu.param("retired-pages", "dbe", 0)) + (wear_pages if worn else 0)
        pending = bool(gpu.param("retired-pages", "pending", False))
        vals |= {
            "retired_pages_sbe": sbe,
            "retired_pages_dbe": dbe,
            "retired_pages_pending": pending,
        }
    else:
        missing += ["retired_pages_sbe", "retired_pages_dbe", "retired_pages_pending"]
    if b.remaps_rows:
        # A worn card's retired pages show up as rows remapped for correctable errors.
        corr = int(gpu.param("row-remap", "correctable", 0)) + (wear_pages if worn else 0)
        vals |= {
            "remapped_rows_correctable": corr,
            "remapped_rows_uncorrectable": int(gpu.param("row-remap", "uncorrectable", 0)),
            "remapped_rows_pending": bool(gpu.param("row-remap", "pending", False)),
            "remapped_rows_failure": bool(gpu.param("row-remap", "failure", False)),
        }
    else:
        missing += [
            "remapped_rows_correctable",
            "remapped_rows_uncorrectable",
            "remapped_rows_pending",
            "remapped_rows_failure",
        ]
    # The bank histogram is not modelled (no public bank counts per SKU).
    missing += [f"remap_banks_{n}" for n in ("max", "high", "partial", "low", "none")]
    if not b.has_inforom:
        missing += ["serial", "board_part_number", "inforom_image_version", "inforom_valid"]
    if not b.fans:
        missing.append("fan_count")
    if not spec.nvlink_links:
        missing += ["nvlink_links_total", "nvlink_links_up"]
    if spec.mem_max_temp_c is None:
        missing.append("mem_max_temp_c")
    if spec.gpu_max_temp_c is None:
        missing.append("gpu_max_temp_c")
    default_w = b.tdp_w
    return Inventory(
        index=gpu.index,
        uuid=gpu.uuid,
        serial=gpu.serial,
        name=str(params.get("name", b.name)),
        board_part_number=spec.board_part_number,
        pci_bus_id=gpu.pci_bus_id,
        pci_device_id=str(params.get("pci_device_id", b.pci_device_id)),
        pci_subsystem_id=spec.pci_subsystem_id,
        vbios_version=str(gpu.param("vbios", "version", spec.vbios_version)),
        inforom_image_version=spec.inforom_image_version,
        inforom_valid=(gpu.fault("inforom-invalid") is None) if b.has_inforom else None,
        memory_total_mib=int(memory if memory is not None else b.memory_total_mib),
        sm_count=int(params.get("sm_count", b.sm_count)) if b.sm_count else None,
        compute_capability=b.compute_capability,
        power_limit_default_w=default_w,
        power_limit_enforced_w=gpu.power_limit_w(),
        power_limit_min_w=round(default_w * MIN_LIMIT_SHARE),
        power_limit_max_w=round(default_w * (GEFORCE_MAX_LIMIT_SHARE if b.geforce else 1.0)),
        max_sm_clock_mhz=spec.max_sm_clock_mhz,
        max_mem_clock_mhz=spec.max_mem_clock_mhz,
        pcie_max_gen=b.pcie_gen,
        pcie_max_width=b.pcie_width,
        pcie_system_max_gen=b.pcie_gen,
        pcie_system_max_width=b.pcie_width,
        pcie_replay_count=0,
        slowdown_temp_c=spec.slowdown_temp_c,
        shutdown_temp_c=spec.shutdown_temp_c,
        gpu_max_temp_c=spec.gpu_max_temp_c,
        mem_max_temp_c=spec.mem_max_temp_c,
        ecc_enabled=b.ecc_enabled if b.ecc_capable else None,
        fan_count=2 if b.fans else None,
        driver_version=driver.driver_version,
        cuda_driver_version=driver.cuda_driver_version,
        total_energy_j=round(gpu.energy_start_j, 3),
        nvlink_links_total=spec.nvlink_links or None,
        nvlink_links_up=spec.nvlink_links or None,
        xid_events_supported=True,
        simulated=True,
        unsupported=tuple(dict.fromkeys(missing)),
        **vals,
    )


class FaultTelemetry:
    """Wraps a telemetry client so an injected ``lost`` fault looks like NVML's ``GPU is lost``.

    The simulated backend models lost cards itself; a test's CPU devices report through the
    null backend, which knows nothing of faults, so the test wraps it: from ``after_s`` seconds
    after the device's planned start, reading that device raises ``TelemetryError("... GPU is
    lost ...")`` while its seam (:class:`~burnin.sim.seam.FaultySeam`) stalls the worker, the
    same pair of symptoms a real lost card shows.
    """

    def __init__(
        self,
        client: TelemetryClient,
        lost_after_s: Mapping[int, float],
        started_s: Mapping[int, float] | None = None,
    ) -> None:
        self._client = client
        self._lost_at_s = {
            index: (started_s or {}).get(index, 0.0) + after_s
            for index, after_s in lost_after_s.items()
        }  # telemetry index -> elapsed_s from which it is lost

    @classmethod
    def wrap(
        cls,
        client: TelemetryClient,
        faults: Mapping[int, Sequence[Fault]],
        started_s: Mapping[int, float] | None = None,
    ) -> TelemetryClient:
        """``client`` itself when no device has a ``lost`` fault, else the wrapper.

        ``faults`` and ``started_s`` are keyed by telemetry index (the CPU fallback's device
        index); a device without a planned start starts at 0.
        """
        lost = {
            index: float(f.params.get("after_s", 5.0))
            for index, found in faults.items()
            for f in found
            if f.kind == "lost"
        }
        return cls(client, lost, started_s) if lost else client

    def _check(self, index: int, elapsed_s: float) -> None:
        lost_at_s = self._lost_at_s.get(index)
        if lost_at_s is not None and elapsed_s >= lost_at_s:
            raise TelemetryError(f"device {index}: GPU is lost (injected lost fault)")

    def sample(self, index: int, elapsed_s: float) -> Sample:
        self._check(index, elapsed_s)
        return self._client.sample(index, elapsed_s)

    def device_count(self) -> int:
        return self._client.device_count()

    def driver_info(self) -> Any:
        return self._client.driver_info()

    def inventory(self, index: int) -> Any:
        return self._client.inventory(index)

    def events(self, elapsed_s: float) -> list[Event]:
        return self._client.events(elapsed_s)

    def close(self) -> None:
        self._client.close()

    def __getattr__(self, name: str) -> Any:
        # Optional backend methods (e.g. ``processes``) pass through unchanged.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._client, name)


def with_faults(faults: Mapping[int, Sequence[Fault]]) -> dict[str, Any]:
    """``Runtime`` arguments that give this node's devices ``faults`` (device index -> faults):
    faulty seams, and the default telemetry wrapped so a ``lost`` card reads as gone."""
    from burnin.runtime import default_telemetry
    from burnin.sim.seam import fault_seams

    def telemetry(devices: Sequence[Any]) -> TelemetryClient:
        return FaultTelemetry.wrap(default_telemetry(devices), faults)

    return {"seam_factories": fault_seams(faults), "telemetry_factory": telemetry}
