"""NVML backend: the only package that imports ``pynvml`` (from the nvidia-ml-py distribution).

Each reading calls every getter on its own. ``NotSupported`` (and the other "this card cannot
tell" codes) makes that one field ``None`` and names it in ``unsupported``, never a zero; any
other error of one getter drops that one field too, names it in ``failed`` and is logged once per
card and field, so one broken sensor never hides the others. Only errors that mean the card or
the library is gone (GPU lost, reset required, driver not loaded) fail a whole reading, as one
:class:`TelemetryError` through one decorator. A run finds each of its cards by UUID, then PCI
bus id (:meth:`NvmlTelemetry.find_index`): NVML enumerates every GPU of the node, including cards
hidden by ``CUDA_VISIBLE_DEVICES``, lost or unpowered, and those must not matter to the others.
Only getters are called: never a clock, power limit, persistence, ECC or MIG change, a reset or a
counter clear (a test fails on any ``nvmlDeviceSet*``/``Reset*``/``Clear*``). XIDs arrive through
the NVML event API, polled with a zero timeout so the sampler never blocks. The inventory lives
in :mod:`burnin.telemetry.nvml_inventory`, one reading's bookkeeping in
:mod:`burnin.telemetry.nvml_reads`. API names and enum values: nvidia-ml-py 13.615.71
``pynvml.py`` and NVIDIA's ``nvml.h``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from burnin.errors import TelemetryError
from burnin.telemetry.base import DriverInfo, Event, Inventory, Sample
from burnin.telemetry.nvml_reads import (
    _CLOCK_MEM,
    _CLOCK_SM,
    _CORRECTED,
    _UNCORRECTED,
    _VOLATILE,
    Reads,
    cuda_version,
    watts,
)

T = TypeVar("T")
log = logging.getLogger("burnin")

# Enum values from nvml.h (as pynvml.py 13.615.71 defines them).
_TEMP_GPU = 0  # NVML_TEMPERATURE_GPU
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
# "This card cannot tell": the field is not reported, nothing is wrong.
_SOFT_ERRORS = (
    "NVMLError_NotSupported",
    "NVMLError_NoPermission",
    "NVMLError_FunctionNotFound",  # the installed driver lacks the symbol
    "NVMLError_NoData",
    "NVMLError_Deprecated",
)
# The card or the library is gone: no field of this reading can be trusted.
_FATAL_ERRORS = (
    "NVMLError_GpuIsLost",
    "NVMLError_ResetRequired",
    "NVMLError_Uninitialized",
    "NVMLError_DriverNotLoaded",
)
# nvmlDeviceGetTemperatureV errors after which this card keeps to nvmlDeviceGetTemperature.
_NO_TEMPERATURE_V = (*_SOFT_ERRORS, "NVMLError_ArgumentVersionMismatch")

# Clock-event ("throttle") reason bits -> canonical names (nvml.h nvmlClocksEventReason*).
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


def _error_classes(module: Any, names: Iterable[str]) -> tuple[type[Exception], ...]:
    return tuple(getattr(module, name) for name in names if hasattr(module, name))


class NvmlTelemetry:
    """Reads cards through NVML; ``module`` lets tests pass a fake with pynvml's API."""

    def __init__(self, module: Any = None) -> None:
        if module is None:
            import pynvml

            module = pynvml
        self.nvml = module
        self.soft_errors = _error_classes(module, _SOFT_ERRORS)
        self.fatal_errors = _error_classes(module, _FATAL_ERRORS)
        self._no_temperature_v = _error_classes(module, _NO_TEMPERATURE_V)
        try:
            module.nvmlInit()
        except module.NVMLError as exc:
            raise TelemetryError(f"NVML could not start: {exc}") from exc
        self._handles: dict[int, Any] = {}
        self._fans: dict[int, int | None] = {}
        self._links: dict[int, tuple[int, ...]] = {}
        self._temperature_v: dict[int, bool] = {}  # False: the card has no TemperatureV
        self._warned: set[tuple[int, str]] = set()
        self._warn_lock = threading.Lock()
        # Event sets are not thread-safe (nvml.h); inventory and the sampler may both touch it.
        self._event_lock = threading.Lock()
        self._event_set: Any = None
        self._events_tried = False
        self._xid_tried: set[int] = set()
        self._xid_devices: set[int] = set()

    # -- plumbing --------------------------------------------------------------------------

    def handle(self, index: int) -> Any:
        if index not in self._handles:
            self._handles[index] = self.nvml.nvmlDeviceGetHandleByIndex(index)
        return self._handles[index]

    def warn_once(self, index: int, names: Iterable[str], error: str) -> None:
        """Log a failed read once per card and field: the sampler repeats it every interval."""
        with self._warn_lock:
            new = [name for name in names if (index, name) not in self._warned]
            self._warned.update((index, name) for name in new)
        if new:
            where = f"GPU {index}" if index >= 0 else "node"
            log.warning("NVML %s: %s not read (%s)", where, ", ".join(new), error)

    def system(self, fn: Callable[[], Any]) -> Any:
        """A node-wide value, None where this driver cannot tell or the read failed (logged)."""
        try:
            return fn()
        except self.fatal_errors:
            raise
        except self.soft_errors:
            return None
        except self.nvml.NVMLError as exc:
            self.warn_once(-1, (fn.__name__,), str(exc))
            return None

    def _fields(self, read: Reads, handle: Any, wanted: dict[str, int]) -> dict[str, Any]:
        """Several field values in one call: name -> value, None (and missing) where absent."""
        names = tuple(wanted)
        values = read(names, self.nvml.nvmlDeviceGetFieldValues, handle, list(wanted.values()))
        out: dict[str, Any] = dict.fromkeys(names)
        for name, value in zip(names, values if values is not None else (), strict=False):
            # The call succeeds as a whole; each field has its own return code (nvml.h).
            if value.nvmlReturn != 0 or not 0 <= value.valueType < len(_VALUE_MEMBER):
                read.drop(name)
                continue
            out[name] = getattr(value.value, _VALUE_MEMBER[value.valueType])
        return out

    def fan_count(self, index: int, handle: Any) -> int | None:
        if index not in self._fans:
            count = Reads(self, index)("fan_count", self.nvml.nvmlDeviceGetNumFans, handle)
            self._fans[index] = int(count) if count is not None else None
        return self._fans[index]

    def _link_state(self, handle: Any, link: int) -> int | None:
        """A link's state; None past the card's last link (InvalidArgument) or where it cannot
        tell: any answer but a lost card only means this link cannot be watched."""
        try:
            return int(self.nvml.nvmlDeviceGetNvLinkState(handle, link))
        except self.fatal_errors:
            raise
        except self.nvml.NVMLError:
            return None

    def nvlinks(self, index: int, handle: Any) -> tuple[int, ...]:
        """Link indices NVML reports a state for (cached: links do not come and go)."""
        if index not in self._links:
            count = getattr(self.nvml, "NVML_NVLINK_MAX_LINKS", _NVLINK_MAX_LINKS)
            self._links[index] = tuple(
                link for link in range(count) if self._link_state(handle, link) is not None
            )
        return self._links[index]

    def links_up(self, handle: Any, links: tuple[int, ...]) -> int:
        return sum(1 for link in links if self._link_state(handle, link))

    def ecc(self, read: Reads, name: str, handle: Any, kind: int, counter: int) -> int | None:
        value = read(name, self.nvml.nvmlDeviceGetTotalEccErrors, handle, kind, counter)
        return int(value) if value is not None else None

    def watch_xids(self, indices: Iterable[int]) -> None:
        """Register these cards for XID events, once each; a card that cannot stays unwatched."""
        n = self.nvml
        with self._event_lock:
            if not self._events_tried:
                self._events_tried = True
                with contextlib.suppress(n.NVMLError):
                    self._event_set = n.nvmlEventSetCreate()
            if self._event_set is None:
                return
            for index in indices:
                if index in self._xid_tried:
                    continue
                self._xid_tried.add(index)
                # XIDs are an extra: a card that cannot register keeps its inventory and samples.
                try:
                    handle = self.handle(index)
                    if n.nvmlDeviceGetSupportedEventTypes(handle) & _EVENT_XID:
                        n.nvmlDeviceRegisterEvents(handle, _EVENT_XID, self._event_set)
                        self._xid_devices.add(index)
                except n.NVMLError:
                    continue

    def xid_supported(self, index: int) -> bool:
        return index in self._xid_devices

    # -- the protocol ------------------------------------------------------------------------

    @nvml_errors
    def device_count(self) -> int:
        return int(self.nvml.nvmlDeviceGetCount())

    @nvml_errors
    def find_index(self, uuid: str | None, pci_bus_id: str | None) -> int | None:
        """The NVML index of the card with this UUID, else this PCI bus id.

        Only this card is asked: another card of the node that is lost, hidden or unpowered
        does not matter. Returns None when neither identity is given.

        Raises:
            TelemetryError: NVML has no card with either identity (the message says why).
        """
        n, tried = self.nvml, []
        lookups = (
            ("UUID", uuid, n.nvmlDeviceGetHandleByUUID),
            ("PCI bus id", pci_bus_id, n.nvmlDeviceGetHandleByPciBusId),
        )
        for what, key, lookup in lookups:
            if not key:
                continue
            try:
                handle = lookup(key)
                index = int(n.nvmlDeviceGetIndex(handle))
            except n.NVMLError as exc:
                tried.append(f"{what} {key}: {exc}")
                continue
            self._handles[index] = handle
            return index
        if tried:
            raise TelemetryError(f"no NVML device for {'; '.join(tried)}")
        return None

    @nvml_errors
    def driver_info(self) -> DriverInfo:
        n = self.nvml
        return DriverInfo(
            driver_version=self.system(n.nvmlSystemGetDriverVersion),
            nvml_version=self.system(n.nvmlSystemGetNVMLVersion),
            cuda_driver_version=cuda_version(self.system(n.nvmlSystemGetCudaDriverVersion)),
            backend="nvml",
        )

    @nvml_errors
    def inventory(self, index: int) -> Inventory:
        from burnin.telemetry.nvml_inventory import read_inventory

        return read_inventory(self, index)

    @nvml_errors
    def identity(self, index: int) -> dict[str, str | None]:
        from burnin.telemetry.nvml_inventory import read_identity

        return read_identity(self, index)

    @nvml_errors
    def sample(self, index: int, elapsed_s: float) -> Sample:
        n, h, read = self.nvml, self.handle(index), Reads(self, index)
        util = read("util_pct", n.nvmlDeviceGetUtilizationRates, h)
        mem = read("mem_used_mib", n.nvmlDeviceGetMemoryInfo, h)
        energy_mj = read("energy_j", n.nvmlDeviceGetTotalEnergyConsumption, h)
        fields = self._fields(read, h, {"mem_temp_c": _FI_MEMORY_TEMP, **dict(_FI_NVLINK_TOTALS)})
        mem_temp = fields["mem_temp_c"]
        if mem_temp == 0:
            # GeForce GDDR6X answers 0 for this field (nsfminer#150): no sensor, not 0 C.
            read.drop("mem_temp_c")
            mem_temp = None
        fan_pct = fan_rpm = fan_target = None
        if self.fan_count(index, h):
            fan_pct = read("fan_pct", n.nvmlDeviceGetFanSpeed, h)
            fan_rpm = read("fan_rpm", n.nvmlDeviceGetFanSpeedRPM, h)
            fan_target = read("fan_target_pct", n.nvmlDeviceGetTargetFanSpeed, h, 0)
        else:
            read.drop(("fan_pct", "fan_rpm", "fan_target_pct"))
        links = self.nvlinks(index, h)
        if not links:
            read.drop("nvlink_links_up")
        crc = [fields.pop(name) for name in ("nvlink_crc_flit", "nvlink_crc_data")]
        if None in crc:
            read.drop("nvlink_crc_errors")
        for parts in (read.missing, read.failed):
            parts[:] = [m for m in parts if m not in ("nvlink_crc_flit", "nvlink_crc_data")]
        return Sample(
            index=index,
            elapsed_s=elapsed_s,
            temp_c=self._temperature(read, h),
            mem_temp_c=mem_temp,
            temp_margin_c=read("temp_margin_c", n.nvmlDeviceGetMarginTemperature, h),
            power_w=watts(read("power_w", n.nvmlDeviceGetPowerUsage, h)),
            power_limit_w=watts(read("power_limit_w", n.nvmlDeviceGetEnforcedPowerLimit, h)),
            energy_j=energy_mj / 1000 if energy_mj is not None else None,
            sm_clock_mhz=read("sm_clock_mhz", n.nvmlDeviceGetClockInfo, h, _CLOCK_SM),
            mem_clock_mhz=read("mem_clock_mhz", n.nvmlDeviceGetClockInfo, h, _CLOCK_MEM),
            util_pct=util.gpu if util is not None else None,
            mem_used_mib=mem.used / 2**20 if mem is not None else None,
            fan_pct=fan_pct,
            fan_rpm=fan_rpm,
            fan_target_pct=fan_target,
            throttle_reasons=self._throttle(read, h),
            ecc_volatile_sbe=self.ecc(read, "ecc_volatile_sbe", h, _CORRECTED, _VOLATILE),
            ecc_volatile_dbe=self.ecc(read, "ecc_volatile_dbe", h, _UNCORRECTED, _VOLATILE),
            pcie_gen=read("pcie_gen", n.nvmlDeviceGetCurrPcieLinkGeneration, h),
            pcie_width=read("pcie_width", n.nvmlDeviceGetCurrPcieLinkWidth, h),
            pcie_replay_count=read("pcie_replay_count", n.nvmlDeviceGetPcieReplayCounter, h),
            nvlink_links_up=self.links_up(h, links) if links else None,
            nvlink_replay_errors=fields["nvlink_replay_errors"],
            nvlink_recovery_errors=fields["nvlink_recovery_errors"],
            nvlink_crc_errors=None if None in crc else int(crc[0]) + int(crc[1]),
            unsupported=read.unsupported(),
            failed=read.errors(),
        )

    @nvml_errors
    def events(self, elapsed_s: float) -> list[Event]:
        """XIDs seen since the previous call; never blocks (wait timeout 0, bounded loop).

        Cards are registered as their inventory is read; a caller that never read one gets
        every card of the node.
        """
        if not self._xid_tried:
            self.watch_xids(range(int(self.nvml.nvmlDeviceGetCount())))
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
        n, handle = self.nvml, self.handle(index)
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

    def _temperature(self, read: Reads, handle: Any) -> int | None:
        """GPU temperature (C): nvmlDeviceGetTemperatureV, else the deprecated call (pynvml.py:
        "will be removed in CUDA 14.0"), which older drivers and bindings still need. The guard
        goes blind only when both fail, and the log says so once."""
        n, index, errors = self.nvml, read.index, []
        getter_v = getattr(n, "nvmlDeviceGetTemperatureV", None)
        if getter_v is not None and self._temperature_v.get(index, True):
            try:
                return int(getter_v(handle, _TEMP_GPU))
            except self.fatal_errors:
                raise
            except n.NVMLError as exc:
                if isinstance(exc, self._no_temperature_v):
                    self._temperature_v[index] = False
                errors.append(f"nvmlDeviceGetTemperatureV: {exc}")
        try:
            return int(n.nvmlDeviceGetTemperature(handle, _TEMP_GPU))
        except self.fatal_errors:
            raise
        except n.NVMLError as exc:
            errors.append(f"nvmlDeviceGetTemperature: {exc}")
            hard = not isinstance(exc, self.soft_errors)
        why = "; ".join(errors) + "; the thermal guard cannot watch this card"
        read.drop("temp_c", why, failed=hard)
        return None

    def _throttle(self, read: Reads, handle: Any) -> tuple[str, ...]:
        n = self.nvml
        # The "Throttle" name is deprecated (removed in CUDA 14); old drivers lack the new one.
        getter = getattr(n, "nvmlDeviceGetCurrentClocksEventReasons", None)
        mask = None
        if getter is not None:
            try:
                mask = getter(handle)
            except self.fatal_errors:
                raise
            except n.NVMLError:
                pass
        if mask is None:
            mask = read("throttle_reasons", n.nvmlDeviceGetCurrentClocksThrottleReasons, handle)
        return throttle_names(int(mask)) if mask is not None else ()
