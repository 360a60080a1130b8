"""NVML backend: the only module that imports ``pynvml`` (from the nvidia-ml-py distribution).

Every ``pynvml.NVMLError`` becomes a :class:`TelemetryError` through one decorator, except
``NotSupported`` (and the other "this card cannot tell" codes), which becomes ``None`` plus the
field's name in ``unsupported``: a GeForce card without an InfoROM has no serial and no
lifetime ECC counters, and a check must see "not reported", never a zero. Only getters are
called: burnin never changes a clock, a power limit, persistence, ECC or MIG mode, never resets a
card and never clears a counter (a test fails on any ``nvmlDeviceSet*``/``Reset*``/``Clear*``).
XIDs arrive through the NVML event API, polled with a zero timeout so the sampler never blocks.
``pynvml`` is imported when the backend is created, so nothing else in burnin pays for it.
API names and enum values: reference/nvml.md §2 (nvidia-ml-py 13.615.71).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from burnin.errors import TelemetryError
from burnin.telemetry.base import DriverInfo, Event, Inventory, Sample

T = TypeVar("T")

# Enum values from nvml.h (reference/nvml.md §2.4, §2.7, §2.9, §2.10, §2.12-2.14).
_TEMP_GPU = 0  # NVML_TEMPERATURE_GPU
_THRESHOLDS = (  # NVML_TEMPERATURE_THRESHOLD_{SHUTDOWN, SLOWDOWN, MEM_MAX, GPU_MAX}
    ("shutdown_temp_c", 0),
    ("slowdown_temp_c", 1),
    ("mem_max_temp_c", 2),
    ("gpu_max_temp_c", 3),
)
_CLOCK_SM, _CLOCK_MEM = 1, 2  # NVML_CLOCK_SM, NVML_CLOCK_MEM
_CORRECTED, _UNCORRECTED = 0, 1  # NVML_MEMORY_ERROR_TYPE_*
_VOLATILE, _AGGREGATE = 0, 1  # NVML_VOLATILE_ECC, NVML_AGGREGATE_ECC
_RETIRED_SBE, _RETIRED_DBE = 0, 1  # NVML_PAGE_RETIREMENT_CAUSE_{MULTIPLE_SINGLE_BIT, DOUBLE_BIT}
# Field values API ids (pynvml NVML_FI_DEV_*): one call reads them all, each with its own status.
_FI_MEMORY_TEMP = 82  # NVML_FI_DEV_MEMORY_TEMP
_FI_NVLINK_TOTALS = (  # error counters summed over all links
    ("nvlink_crc_flit", 38),  # NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL
    ("nvlink_crc_data", 45),  # NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL
    ("nvlink_replay_errors", 52),  # NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL
    ("nvlink_recovery_errors", 59),  # NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL
)
_EVENT_XID = 0x8  # nvmlEventTypeXidCriticalError; eventData = the XID number
_NVLINK_MAX_LINKS = 36  # NVML_NVLINK_MAX_LINKS in nvidia-ml-py 13.615.71
# A wait with timeout 0 returns at once; the cap bounds one poll even if a card storms XIDs.
_MAX_EVENTS_PER_POLL = 256
# c_nvmlFieldValue_t.valueType -> the union member holding the value (pynvml c_nvmlValue_t).
_VALUE_MEMBER = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")

# Clock-event ("throttle") reason bits -> canonical names (nvml.h; reference/nvml.md §2.7).
THROTTLE_BITS: tuple[tuple[int, str], ...] = (
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks_setting"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"),
    (0x080, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
    (0x200, "board_limit"),
    (0x400, "reliability"),
)
_KNOWN_BITS = functools.reduce(lambda acc, item: acc | item[0], THROTTLE_BITS, 0)


def throttle_names(mask: int) -> tuple[str, ...]:
    """Names of the clock-event reason bits set in ``mask``; unknown bits as ``bit_0x...``."""
    names = [name for bit, name in THROTTLE_BITS if mask & bit]
    rest = mask & ~_KNOWN_BITS
    names += [f"bit_{1 << i:#x}" for i in range(64) if rest >> i & 1]
    return tuple(names)


def nvml_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Turn any NVMLError escaping ``fn`` into a TelemetryError naming the method."""

    @functools.wraps(fn)
    def wrapper(self: NvmlTelemetry, *args: Any, **kwargs: Any) -> T:
        try:
            return fn(self, *args, **kwargs)
        except self.nvml.NVMLError as exc:
            raise TelemetryError(f"NVML {fn.__name__}: {exc}") from exc

    return wrapper


class NvmlTelemetry:
    """Reads cards through NVML; ``module`` lets tests pass a fake with pynvml's API."""

    def __init__(self, module: Any = None) -> None:
        if module is None:
            import pynvml as module
        self.nvml = module
        self._soft_errors: tuple[type, ...] = tuple(
            getattr(module, name)
            for name in (
                "NVMLError_NotSupported",
                "NVMLError_NoPermission",
                "NVMLError_FunctionNotFound",
                "NVMLError_NoData",
                "NVMLError_Deprecated",
            )
            if hasattr(module, name)
        )
        # Asking for an NVLink index past the card's last link answers InvalidArgument.
        self._link_errors = (*self._soft_errors, module.NVMLError_InvalidArgument)
        try:
            module.nvmlInit()
        except module.NVMLError as exc:
            raise TelemetryError(f"NVML could not start: {exc}") from exc
        self._handles: dict[int, Any] = {}
        self._fans: dict[int, int | None] = {}
        self._links: dict[int, tuple[int, ...]] = {}
        # Event sets are not thread-safe (nvml.h); inventory and the sampler may both touch it.
        self._event_lock = threading.Lock()
        self._event_set: Any = None
        self._events_tried = False
        self._xid_devices: set[int] = set()

    # -- plumbing --------------------------------------------------------------------------

    def _handle(self, index: int) -> Any:
        if index not in self._handles:
            self._handles[index] = self.nvml.nvmlDeviceGetHandleByIndex(index)
        return self._handles[index]

    def _read(
        self, missing: list[str], names: str | tuple[str, ...], fn: Callable[..., Any], *args: Any
    ) -> Any:
        """``fn(*args)``, or None with ``names`` recorded as unsupported on a soft error."""
        try:
            return fn(*args)
        except self._soft_errors:
            missing.extend((names,) if isinstance(names, str) else names)
            return None

    def _fields(self, missing: list[str], handle: Any, wanted: dict[str, int]) -> dict[str, Any]:
        """Several field values in one call: name -> value, None (and missing) where absent."""
        names = tuple(wanted)
        values = self._read(
            missing, names, self.nvml.nvmlDeviceGetFieldValues, handle, list(wanted.values())
        )
        out: dict[str, Any] = dict.fromkeys(names)
        for name, value in zip(names, values if values is not None else (), strict=False):
            # The call succeeds as a whole; each field has its own return code (nvml.md §2.14).
            if value.nvmlReturn != 0 or not 0 <= value.valueType < len(_VALUE_MEMBER):
                missing.append(name)
                continue
            out[name] = getattr(value.value, _VALUE_MEMBER[value.valueType])
        return out

    def _fan_count(self, index: int, handle: Any) -> int | None:
        if index not in self._fans:
            ignored: list[str] = []
            count = self._read(ignored, "fan_count", self.nvml.nvmlDeviceGetNumFans, handle)
            self._fans[index] = int(count) if count is not None else None
        return self._fans[index]

    def _nvlinks(self, index: int, handle: Any) -> tuple[int, ...]:
        """Link indices NVML reports a state for (cached: links do not come and go)."""
        if index not in self._links:
            found = []
            for link in range(getattr(self.nvml, "NVML_NVLINK_MAX_LINKS", _NVLINK_MAX_LINKS)):
                try:
                    self.nvml.nvmlDeviceGetNvLinkState(handle, link)
                except self._link_errors:
                    continue
                found.append(link)
            self._links[index] = tuple(found)
        return self._links[index]

    def _ensure_events(self) -> None:
        """Create the event set and register every card for XIDs, once."""
        with self._event_lock:
            if self._events_tried:
                return
            self._events_tried = True
            n = self.nvml
            try:
                event_set = n.nvmlEventSetCreate()
            except n.NVMLError:
                return
            # XIDs are an extra: a card that cannot register keeps its inventory and samples.
            for index in range(int(n.nvmlDeviceGetCount())):
                try:
                    handle = self._handle(index)
                    if n.nvmlDeviceGetSupportedEventTypes(handle) & _EVENT_XID:
                        n.nvmlDeviceRegisterEvents(handle, _EVENT_XID, event_set)
                        self._xid_devices.add(index)
                except n.NVMLError:
                    continue
            self._event_set = event_set

    # -- the protocol ------------------------------------------------------------------------

    @nvml_errors
    def device_count(self) -> int:
        return int(self.nvml.nvmlDeviceGetCount())

    @nvml_errors
    def driver_info(self) -> DriverInfo:
        missing: list[str] = []
        n = self.nvml
        return DriverInfo(
            driver_version=self._read(missing, "driver", n.nvmlSystemGetDriverVersion),
            nvml_version=self._read(missing, "nvml", n.nvmlSystemGetNVMLVersion),
            cuda_driver_version=_cuda_version(
                self._read(missing, "cuda", n.nvmlSystemGetCudaDriverVersion)
            ),
            backend="nvml",
        )

    @nvml_errors
    def inventory(self, index: int) -> Inventory:
        n, h, miss = self.nvml, self._handle(index), []
        read = functools.partial(self._read, miss)
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
        fans = self._fan_count(index, h)
        if fans is None:
            miss.append("fan_count")
        links = self._nvlinks(index, h)
        if not links:
            miss.extend(("nvlink_links_total", "nvlink_links_up"))
        self._ensure_events()
        cuda = self._read([], "cuda", n.nvmlSystemGetCudaDriverVersion)
        thresholds = {
            name: read(name, n.nvmlDeviceGetTemperatureThreshold, h, kind)
            for name, kind in _THRESHOLDS
        }
        miss.append("sm_count")  # NVML has no full-GPU SM count (nvml.md §2.15); torch adds it
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
            inforom_image_version=read(
                "inforom_image_version", n.nvmlDeviceGetInforomImageVersion, h
            ),
            inforom_valid=self._inforom_valid(miss, h),
            memory_total_mib=int(mem.total // 2**20) if mem else None,
            compute_capability=f"{cc[0]}.{cc[1]}" if cc else None,
            power_limit_default_w=_watts(
                read("power_limit_default_w", n.nvmlDeviceGetPowerManagementDefaultLimit, h)
            ),
            power_limit_enforced_w=_watts(
                read("power_limit_enforced_w", n.nvmlDeviceGetEnforcedPowerLimit, h)
            ),
            power_limit_min_w=_watts(limits[0]) if limits else None,
            power_limit_max_w=_watts(limits[1]) if limits else None,
            max_sm_clock_mhz=read("max_sm_clock_mhz", n.nvmlDeviceGetMaxClockInfo, h, _CLOCK_SM),
            max_mem_clock_mhz=read("max_mem_clock_mhz", n.nvmlDeviceGetMaxClockInfo, h, _CLOCK_MEM),
            pcie_max_gen=read("pcie_max_gen", n.nvmlDeviceGetGpuMaxPcieLinkGeneration, h),
            # NVML has no card-only width: the max width is "device and system" (nvml.md §2.3).
            pcie_max_width=read("pcie_max_width", n.nvmlDeviceGetMaxPcieLinkWidth, h),
            pcie_system_max_gen=read(
                "pcie_system_max_gen", n.nvmlDeviceGetMaxPcieLinkGeneration, h
            ),
            pcie_system_max_width=read("pcie_system_max_width", n.nvmlDeviceGetMaxPcieLinkWidth, h),
            pcie_replay_count=read("pcie_replay_count", n.nvmlDeviceGetPcieReplayCounter, h),
            slowdown_temp_c=thresholds["slowdown_temp_c"],
            shutdown_temp_c=thresholds["shutdown_temp_c"],
            gpu_max_temp_c=thresholds["gpu_max_temp_c"],
            mem_max_temp_c=thresholds["mem_max_temp_c"],
            ecc_enabled=bool(ecc_mode[0]) if ecc_mode else None,
            fan_count=fans,
            driver_version=self._read([], "driver", n.nvmlSystemGetDriverVersion),
            cuda_driver_version=_cuda_version(cuda),
            ecc_aggregate_sbe=self._ecc(miss, "ecc_aggregate_sbe", h, _CORRECTED, _AGGREGATE),
            ecc_aggregate_dbe=self._ecc(miss, "ecc_aggregate_dbe", h, _UNCORRECTED, _AGGREGATE),
            ecc_volatile_sbe=self._ecc(miss, "ecc_volatile_sbe", h, _CORRECTED, _VOLATILE),
            ecc_volatile_dbe=self._ecc(miss, "ecc_volatile_dbe", h, _UNCORRECTED, _VOLATILE),
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
            nvlink_links_up=self._links_up(h, links) if links else None,
            xid_events_supported=index in self._xid_devices,
            unsupported=tuple(dict.fromkeys(miss)),
        )

    @nvml_errors
    def sample(self, index: int, elapsed_s: float) -> Sample:
        n, h, miss = self.nvml, self._handle(index), []
        read = functools.partial(self._read, miss)
        util = read("util_pct", n.nvmlDeviceGetUtilizationRates, h)
        mem = read("mem_used_mib", n.nvmlDeviceGetMemoryInfo, h)
        energy_mj = read("energy_j", n.nvmlDeviceGetTotalEnergyConsumption, h)
        fields = self._fields(miss, h, {"mem_temp_c": _FI_MEMORY_TEMP, **dict(_FI_NVLINK_TOTALS)})
        mem_temp = fields["mem_temp_c"]
        if mem_temp == 0:
            # GeForce GDDR6X answers 0 for this field (nvml.md §2.4, nsfminer#150): no sensor.
            miss.append("mem_temp_c")
            mem_temp = None
        fan_pct = fan_rpm = fan_target = None
        if self._fan_count(index, h):
            fan_pct = read("fan_pct", n.nvmlDeviceGetFanSpeed, h)
            fan_rpm = read("fan_rpm", n.nvmlDeviceGetFanSpeedRPM, h)
            fan_target = read("fan_target_pct", n.nvmlDeviceGetTargetFanSpeed, h, 0)
        else:
            miss.extend(("fan_pct", "fan_rpm", "fan_target_pct"))
        links = self._nvlinks(index, h)
        if not links:
            miss.append("nvlink_links_up")
        crc = [fields.pop(name) for name in ("nvlink_crc_flit", "nvlink_crc_data")]
        if None in crc:
            miss.append("nvlink_crc_errors")
        miss[:] = [m for m in miss if m not in ("nvlink_crc_flit", "nvlink_crc_data")]
        return Sample(
            index=index,
            elapsed_s=elapsed_s,
            temp_c=read("temp_c", n.nvmlDeviceGetTemperature, h, _TEMP_GPU),
            mem_temp_c=mem_temp,
            temp_margin_c=read("temp_margin_c", n.nvmlDeviceGetMarginTemperature, h),
            power_w=_watts(read("power_w", n.nvmlDeviceGetPowerUsage, h)),
            power_limit_w=_watts(read("power_limit_w", n.nvmlDeviceGetEnforcedPowerLimit, h)),
            energy_j=energy_mj / 1000 if energy_mj is not None else None,
            sm_clock_mhz=read("sm_clock_mhz", n.nvmlDeviceGetClockInfo, h, _CLOCK_SM),
            mem_clock_mhz=read("mem_clock_mhz", n.nvmlDeviceGetClockInfo, h, _CLOCK_MEM),
            util_pct=util.gpu if util is not None else None,
            mem_used_mib=mem.used / 2**20 if mem is not None else None,
            fan_pct=fan_pct,
            fan_rpm=fan_rpm,
            fan_target_pct=fan_target,
            throttle_reasons=self._throttle(miss, h),
            ecc_volatile_sbe=self._ecc(miss, "ecc_volatile_sbe", h, _CORRECTED, _VOLATILE),
            ecc_volatile_dbe=self._ecc(miss, "ecc_volatile_dbe", h, _UNCORRECTED, _VOLATILE),
            pcie_gen=read("pcie_gen", n.nvmlDeviceGetCurrPcieLinkGeneration, h),
            pcie_width=read("pcie_width", n.nvmlDeviceGetCurrPcieLinkWidth, h),
            pcie_replay_count=read("pcie_replay_count", n.nvmlDeviceGetPcieReplayCounter, h),
            nvlink_links_up=self._links_up(h, links) if links else None,
            nvlink_replay_errors=fields["nvlink_replay_errors"],
            nvlink_recovery_errors=fields["nvlink_recovery_errors"],
            nvlink_crc_errors=None if None in crc else int(crc[0]) + int(crc[1]),
            unsupported=tuple(dict.fromkeys(miss)),
        )

    @nvml_errors
    def events(self, elapsed_s: float) -> list[Event]:
        """XIDs seen since the previous call; never blocks (wait timeout 0, bounded loop)."""
        self._ensure_events()
        n, found = self.nvml, []
        with self._event_lock:
            if self._event_set is None:
                return []
            for _ in range(_MAX_EVENTS_PER_POLL):
                try:
                    data = n.nvmlEventSetWait(self._event_set, 0)
                except n.NVMLError_Timeout:
                    break
                if not data.eventType & _EVENT_XID:
                    continue
                code = int(data.eventData)
                what = "unknown XID" if code == 999 else f"XID {code}"
                found.append(
                    Event(
                        index=int(n.nvmlDeviceGetIndex(data.device)),
                        elapsed_s=elapsed_s,
                        kind="xid",
                        code=code,
                        message=f"{what} reported by the driver",
                    )
                )
        return found

    @nvml_errors
    def processes(self, index: int) -> list[dict[str, Any]]:
        """Compute processes on the card (for preflight): pid, name, used_memory_mib."""
        n, handle = self.nvml, self._handle(index)
        found = []
        for proc in n.nvmlDeviceGetComputeRunningProcesses(handle):
            # A process of another container or user, or one that just exited, may not be
            # nameable: keep its pid rather than lose the whole list.
            try:
                name = n.nvmlSystemGetProcessName(proc.pid)
            except n.NVMLError:
                name = None
            used = getattr(proc, "usedGpuMemory", None)
            found.append(
                {
                    "pid": int(proc.pid),
                    "name": name or f"pid {proc.pid}",
                    "used_memory_mib": used / 2**20 if isinstance(used, int) else None,
                }
            )
        return found

    def close(self) -> None:
        with self._event_lock, contextlib.suppress(self.nvml.NVMLError):
            if self._event_set is not None:
                self.nvml.nvmlEventSetFree(self._event_set)
                self._event_set = None
        with contextlib.suppress(self.nvml.NVMLError):
            self.nvml.nvmlShutdown()

    # -- multi-call readings ---------------------------------------------------------------

    def _inforom_valid(self, missing: list[str], handle: Any) -> bool | None:
        try:
            self.nvml.nvmlDeviceValidateInforom(handle)
        except self.nvml.NVMLError_CorruptedInforom:
            return False
        except self._soft_errors:
            missing.append("inforom_valid")
            return None
        return True

    def _ecc(self, missing: list[str], name: str, handle: Any, kind: int, counter: int) -> Any:
        value = self._read(
            missing, name, self.nvml.nvmlDeviceGetTotalEccErrors, handle, kind, counter
        )
        return int(value) if value is not None else None

    def _throttle(self, missing: list[str], handle: Any) -> tuple[str, ...]:
        n = self.nvml
        # The "Throttle" name is deprecated (removed in CUDA 14); old drivers lack the new one.
        getter = getattr(n, "nvmlDeviceGetCurrentClocksEventReasons", None)
        mask = self._read([], "throttle_reasons", getter, handle) if getter else None
        if mask is None:
            mask = self._read(
                missing, "throttle_reasons", n.nvmlDeviceGetCurrentClocksThrottleReasons, handle
            )
        return throttle_names(int(mask)) if mask is not None else ()

    def _links_up(self, handle: Any, links: tuple[int, ...]) -> int:
        up = 0
        for link in links:
            with contextlib.suppress(*self._link_errors):
                up += 1 if self.nvml.nvmlDeviceGetNvLinkState(handle, link) else 0
        return up


def _watts(milliwatts: Any) -> float | None:
    return milliwatts / 1000 if milliwatts is not None else None


def _cuda_version(encoded: Any) -> str | None:
    """12040 -> "12.4" (major * 1000 + minor * 10, the CUDA convention; nvml.md §2.1)."""
    if not encoded:
        return None
    return f"{encoded // 1000}.{encoded % 1000 // 10}"
