"""A fake of the ``pynvml`` module (nvidia-ml-py): the same function names, constants and
``NVMLError`` classes, backed by per-device values a test sets.

Pass an instance as ``NvmlTelemetry(module=FakeNvml([FakeGpu(...), ...]))``. Any device value
set to :data:`NOT_SUPPORTED` raises ``NVMLError_NotSupported``; set to an ``NVMLError``
instance, it raises that. ``FakeGpu.handle_error`` makes every handle lookup of that card (by
index, UUID or PCI bus id) raise, as a lost or unpowered GPU does that NVML still counts;
``FakeNvml(missing=(...))`` leaves functions out, as an older nvidia-ml-py does. Every call is
recorded in ``calls`` (name, args), so a test can prove that no setter, reset or clear was ever
called; such functions exist here only to fail loudly.
Names and values mirror pynvml.py 13.615.71 (``tests/test_telemetry_nvml.py`` checks them
against the installed binding's source text without importing it).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

NOT_SUPPORTED = object()

# Return codes (pynvml NVML_ERROR_*); the class names follow pynvml's generated names.
NVML_SUCCESS = 0
_ERRORS = {
    "NVMLError_Uninitialized": 1,
    "NVMLError_InvalidArgument": 2,
    "NVMLError_NotSupported": 3,
    "NVMLError_NoPermission": 4,
    "NVMLError_NotFound": 6,
    "NVMLError_InsufficientPower": 8,
    "NVMLError_DriverNotLoaded": 9,
    "NVMLError_Timeout": 10,
    "NVMLError_LibraryNotFound": 12,
    "NVMLError_FunctionNotFound": 13,
    "NVMLError_CorruptedInforom": 14,
    "NVMLError_GpuIsLost": 15,
    "NVMLError_ResetRequired": 16,
    "NVMLError_NoData": 21,
    "NVMLError_ArgumentVersionMismatch": 25,
    "NVMLError_Deprecated": 26,
    "NVMLError_Unknown": 999,
}


class NVMLError(Exception):
    """Base class; ``value`` is the NVML return code, as in pynvml."""

    value = 999

    def __init__(self, value: int | None = None) -> None:
        if value is not None:
            self.value = value
        super().__init__(self.value)

    def __str__(self) -> str:
        return f"NVML error {self.value} ({type(self).__name__})"


_CLASSES: dict[int, type[NVMLError]] = {}
for _name, _code in _ERRORS.items():
    _CLASSES[_code] = type(_name, (NVMLError,), {"value": _code})
    globals()[_name] = _CLASSES[_code]


def nvmlExceptionClass(code: int) -> type[NVMLError]:
    return _CLASSES.get(code, NVMLError)


def error(name: str) -> NVMLError:
    """An instance of the named error class, e.g. ``error("NVMLError_GpuIsLost")``."""
    return globals()[name]()


# Constants nvml.py relies on (values as in pynvml.py 13.615.71).
CONSTANTS: dict[str, int] = {
    "NVML_TEMPERATURE_GPU": 0,
    "NVML_TEMPERATURE_THRESHOLD_SHUTDOWN": 0,
    "NVML_TEMPERATURE_THRESHOLD_SLOWDOWN": 1,
    "NVML_TEMPERATURE_THRESHOLD_MEM_MAX": 2,
    "NVML_TEMPERATURE_THRESHOLD_GPU_MAX": 3,
    "NVML_CLOCK_SM": 1,
    "NVML_CLOCK_MEM": 2,
    "NVML_MEMORY_ERROR_TYPE_CORRECTED": 0,
    "NVML_MEMORY_ERROR_TYPE_UNCORRECTED": 1,
    "NVML_VOLATILE_ECC": 0,
    "NVML_AGGREGATE_ECC": 1,
    "NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS": 0,
    "NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR": 1,
    "NVML_FI_DEV_MEMORY_TEMP": 82,
    "nvmlEventTypeXidCriticalError": 0x8,
    "NVML_NVLINK_MAX_LINKS": 36,
    "NVML_NVLINK_ERROR_DL_REPLAY": 0,
    "NVML_NVLINK_ERROR_DL_RECOVERY": 1,
    "NVML_NVLINK_ERROR_DL_CRC_FLIT": 2,
    "NVML_NVLINK_ERROR_DL_CRC_DATA": 3,
    "NVML_VALUE_TYPE_UNSIGNED_INT": 1,
    "NVML_DEVICE_MIG_DISABLE": 0,
    "NVML_DEVICE_MIG_ENABLE": 1,
    "NVML_COMPUTEMODE_DEFAULT": 0,
    "NVML_COMPUTEMODE_EXCLUSIVE_THREAD": 1,
    "NVML_COMPUTEMODE_PROHIBITED": 2,
    "NVML_COMPUTEMODE_EXCLUSIVE_PROCESS": 3,
    "nvmlTemperature_v1": 0x100000C,
}


@dataclass
class FakeGpu:
    """Values one fake card reports; units as NVML returns them (mW, mJ, bytes)."""

    name: Any = "NVIDIA H100 80GB HBM3"
    uuid: Any = "GPU-11111111-2222-3333-4444-555555555555"
    serial: Any = "1654822019876"
    board_part_number: Any = "692-2G520-0200-000"
    pci_device_id: int = 0x233010DE  # device id in the upper 16 bits
    pci_subsystem_id: int = 0x16C110DE
    bus_id: str = "00000000:18:00.0"
    vbios: Any = "96.00.74.00.01"
    inforom_image: Any = "G520.0200.00.05"
    inforom: Any = None  # None = valid; NOT_SUPPORTED or an NVMLError instance otherwise
    memory_total: Any = 81559 * 2**20
    memory_used: int = 512 * 2**20
    compute_capability: Any = (9, 0)
    power_default_mw: Any = 700_000
    power_enforced_mw: Any = 700_000
    power_constraints_mw: Any = (200_000, 700_000)
    max_clocks: dict[int, Any] = field(default_factory=lambda: {1: 1980, 2: 2619})
    clocks: dict[int, Any] = field(default_factory=lambda: {1: 1980, 2: 2619})
    gpu_max_pcie_gen: Any = 5
    max_pcie_gen: Any = 5
    max_pcie_width: Any = 16
    pcie_gen: Any = 5
    pcie_width: Any = 16
    pcie_replay: Any = 0
    temp: Any = 45  # nvmlDeviceGetTemperature (deprecated)
    temp_v: Any = None  # nvmlDeviceGetTemperatureV; None = the same as ``temp``
    thresholds: dict[int, Any] = field(default_factory=lambda: {0: 92, 1: 89, 2: 95, 3: 87})
    mem_temp: Any = 50  # field NVML_FI_DEV_MEMORY_TEMP
    margin: Any = 40
    ecc_mode: Any = (1, 1)
    ecc: dict[tuple[int, int], Any] = field(
        default_factory=lambda: {(0, 0): 0, (1, 0): 0, (0, 1): 0, (1, 1): 0}
    )
    retired_pages: dict[int, Any] = field(default_factory=lambda: {0: [], 1: []})
    retired_pending: Any = 0
    remapped_rows: Any = (0, 0, 0, 0)
    remap_histogram: Any = (640, 0, 0, 0, 0)  # max, high, partial, low, none
    fans: Any = NOT_SUPPORTED  # passively cooled datacenter card
    fan_speed: Any = NOT_SUPPORTED
    fan_rpm: Any = NOT_SUPPORTED
    fan_target: Any = NOT_SUPPORTED
    power_mw: Any = 350_000
    energy_mj: Any = 123_456_789
    utilization: Any = (97, 60)
    throttle: Any = 0
    throttle_new_api: bool = True  # False: the driver lacks the ClocksEvent name
    nvlinks: Any = field(default_factory=lambda: [1] * 18)
    # NVML_FI_DEV_NVLINK_*_TOTAL field id -> value (38 CRC flit, 45 CRC data, 52 replay,
    # 59 recovery); NotSupported when the card has no NVLink.
    nvlink_totals: dict[int, Any] = field(default_factory=lambda: {38: 0, 45: 0, 52: 0, 59: 0})
    supported_events: Any = 0x8 | 0x1 | 0x2
    register_error: Any = None
    xids: deque[int] = field(default_factory=deque)
    # (pid, used GPU memory in bytes or None, process name or NOT_SUPPORTED)
    processes: list[tuple[int, Any, Any]] = field(default_factory=list)
    mig_mode: Any = (0, 0)  # [current, pending]; NOT_SUPPORTED on a card without MIG
    compute_mode: Any = 0  # NVML_COMPUTEMODE_*
    cpu_affinity: Any = field(default_factory=lambda: [0xFFFF])  # 64-bit words: CPUs 0-15
    numa_node: Any = 0
    # Raised by every handle lookup of this card (by index, UUID or PCI bus id): a lost,
    # unpowered or otherwise unreachable GPU that NVML still counts.
    handle_error: Any = None


class FakeNvml:
    """The module object: ``FakeNvml([FakeGpu(), ...])`` stands in for ``import pynvml``."""

    NVMLError = NVMLError
    nvmlExceptionClass = staticmethod(nvmlExceptionClass)

    def __init__(
        self,
        gpus: list[FakeGpu] | None = None,
        *,
        driver: str = "550.54.15",
        cuda: int = 12040,
        init_error: NVMLError | None = None,
        missing: tuple[str, ...] = (),
    ) -> None:
        # Functions this binding lacks (an older nvidia-ml-py): reading them is AttributeError.
        self.missing = frozenset(missing)
        self.gpus = list(gpus if gpus is not None else [FakeGpu()])
        self.driver, self.cuda = driver, cuda
        self.init_error = init_error
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.event_sets: list[dict[str, Any]] = []
        self.wait_timeouts: list[int] = []
        self.initialized = False
        for name, cls in ((n, globals()[n]) for n in _ERRORS):
            setattr(self, name, cls)
        for name, value in CONSTANTS.items():
            setattr(self, name, value)

    # -- helpers -----------------------------------------------------------------------------

    def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    @staticmethod
    def _give(value: Any) -> Any:
        if value is NOT_SUPPORTED:
            raise _CLASSES[3]()
        if isinstance(value, NVMLError):
            raise value
        return value

    def _gpu(self, handle: Any) -> FakeGpu:
        return self.gpus[handle.index]

    def nvmlDeviceGetComputeRunningProcesses(self, h: Any) -> list[Any]:
        self._call("nvmlDeviceGetComputeRunningProcesses", h)
        return [
            SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used, _ in self._gpu(h).processes
        ]

    def nvmlSystemGetProcessName(self, pid: int) -> str:
        self._call("nvmlSystemGetProcessName", pid)
        for gpu in self.gpus:
            for proc_pid, _, name in gpu.processes:
                if proc_pid == pid:
                    return self._give(name)
        raise _CLASSES[6]()  # NVML_ERROR_NOT_FOUND

    def queue_xid(self, index: int, code: int) -> None:
        self.gpus[index].xids.append(code)

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("nvml") and name in object.__getattribute__(self, "missing"):
            raise AttributeError(name)
        return object.__getattribute__(self, name)

    def __getattr__(self, name: str) -> Any:
        # Fail loudly on anything that would change a card, and on any name this fake lacks.
        if name.startswith(("nvmlDeviceSet", "nvmlDeviceReset", "nvmlDeviceClear")):

            def forbidden(*args: Any) -> None:
                self.calls.append((name, args))
                raise AssertionError(f"burnin called the NVML setter {name}")

            return forbidden
        raise AttributeError(name)

    # -- lifecycle and system ------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self._call("nvmlInit")
        if self.init_error is not None:
            raise self.init_error
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self._call("nvmlShutdown")
        self.initialized = False

    def nvmlSystemGetDriverVersion(self) -> str:
        self._call("nvmlSystemGetDriverVersion")
        return self.driver

    def nvmlSystemGetNVMLVersion(self) -> str:
        self._call("nvmlSystemGetNVMLVersion")
        return "12.550.54.15"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._call("nvmlSystemGetCudaDriverVersion")
        return self._give(self.cuda)

    def nvmlDeviceGetCount(self) -> int:
        self._call("nvmlDeviceGetCount")
        return len(self.gpus)

    def _handle_of(self, index: int) -> Any:
        self._give(self.gpus[index].handle_error)
        return SimpleNamespace(index=index)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        self._call("nvmlDeviceGetHandleByIndex", index)
        if not 0 <= index < len(self.gpus):
            raise _CLASSES[2]()
        return self._handle_of(index)

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> Any:
        self._call("nvmlDeviceGetHandleByUUID", uuid)
        for index, g in enumerate(self.gpus):
            if g.uuid == uuid:
                return self._handle_of(index)
        raise _CLASSES[6]()  # NVML_ERROR_NOT_FOUND

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str) -> Any:
        self._call("nvmlDeviceGetHandleByPciBusId", bus_id)
        for index, g in enumerate(self.gpus):
            if _bus_key(g.bus_id) == _bus_key(bus_id):
                return self._handle_of(index)
        raise _CLASSES[6]()

    def nvmlDeviceGetIndex(self, handle: Any) -> int:
        self._call("nvmlDeviceGetIndex", handle)
        return handle.index

    # -- identity --------------------------------------------------------------------------------

    def nvmlDeviceGetPciInfo(self, h: Any) -> Any:
        self._call("nvmlDeviceGetPciInfo", h)
        g = self._gpu(h)
        return SimpleNamespace(
            busId=g.bus_id, pciDeviceId=g.pci_device_id, pciSubSystemId=g.pci_subsystem_id
        )

    def nvmlDeviceValidateInforom(self, h: Any) -> None:
        self._call("nvmlDeviceValidateInforom", h)
        self._give(self._gpu(h).inforom)

    def nvmlDeviceGetMemoryInfo(self, h: Any) -> Any:
        self._call("nvmlDeviceGetMemoryInfo", h)
        g = self._gpu(h)
        total = self._give(g.memory_total)
        return SimpleNamespace(total=total, used=g.memory_used, free=total - g.memory_used)

    # -- power, clocks, PCIe ---------------------------------------------------------------------

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h: Any) -> list[int]:
        self._call("nvmlDeviceGetPowerManagementLimitConstraints", h)
        return list(self._give(self._gpu(h).power_constraints_mw))

    def nvmlDeviceGetMaxClockInfo(self, h: Any, kind: int) -> int:
        self._call("nvmlDeviceGetMaxClockInfo", h, kind)
        return self._give(self._gpu(h).max_clocks.get(kind, NOT_SUPPORTED))

    def nvmlDeviceGetClockInfo(self, h: Any, kind: int) -> int:
        self._call("nvmlDeviceGetClockInfo", h, kind)
        return self._give(self._gpu(h).clocks.get(kind, NOT_SUPPORTED))

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: Any) -> int:
        self._call("nvmlDeviceGetCurrentClocksEventReasons", h)
        g = self._gpu(h)
        if not g.throttle_new_api:
            raise _CLASSES[13]()
        return self._give(g.throttle)

    def nvmlDeviceGetUtilizationRates(self, h: Any) -> Any:
        self._call("nvmlDeviceGetUtilizationRates", h)
        gpu, memory = self._give(self._gpu(h).utilization)
        return SimpleNamespace(gpu=gpu, memory=memory)

    # -- thermal and fans -------------------------------------------------------------------

    def nvmlDeviceGetTemperatureV(self, h: Any, sensor: int, version: int = 0x100000C) -> int:
        self._call("nvmlDeviceGetTemperatureV", h, sensor)
        if version != 0x100000C:  # nvmlTemperature_v1, the only version pynvml knows
            raise _CLASSES[25]()
        g = self._gpu(h)
        return self._give(g.temp if g.temp_v is None else g.temp_v)

    def nvmlDeviceGetTemperatureThreshold(self, h: Any, kind: int) -> int:
        self._call("nvmlDeviceGetTemperatureThreshold", h, kind)
        return self._give(self._gpu(h).thresholds.get(kind, NOT_SUPPORTED))

    def nvmlDeviceGetFieldValues(self, h: Any, ids: list[Any]) -> list[Any]:
        self._call("nvmlDeviceGetFieldValues", h, tuple(ids))
        out = []
        g = self._gpu(h)
        for field_id in ids:
            if field_id == 82:
                value = g.mem_temp
            elif g.nvlinks is NOT_SUPPORTED:
                value = NOT_SUPPORTED
            else:
                value = g.nvlink_totals.get(field_id, NOT_SUPPORTED)
            ok = value is not NOT_SUPPORTED and not isinstance(value, NVMLError)
            out.append(
                SimpleNamespace(
                    fieldId=field_id,
                    nvmlReturn=0 if ok else 3,
                    valueType=1,
                    value=SimpleNamespace(uiVal=value if ok else 0),
                )
            )
        return out

    # -- modes and placement ---------------------------------------------------------------------

    def nvmlDeviceGetMigMode(self, h: Any) -> list[int]:
        self._call("nvmlDeviceGetMigMode", h)
        return list(self._give(self._gpu(h).mig_mode))

    def nvmlDeviceGetCpuAffinity(self, h: Any, cpu_set_size: int) -> list[int]:
        self._call("nvmlDeviceGetCpuAffinity", h, cpu_set_size)
        words = list(self._give(self._gpu(h).cpu_affinity))
        # NVML fills exactly cpuSetSize words: missing ones are 0, extra CPUs are cut off.
        return (words + [0] * cpu_set_size)[:cpu_set_size]

    # -- memory errors ---------------------------------------------------------------------------

    def nvmlDeviceGetEccMode(self, h: Any) -> list[int]:
        self._call("nvmlDeviceGetEccMode", h)
        return list(self._give(self._gpu(h).ecc_mode))

    def nvmlDeviceGetTotalEccErrors(self, h: Any, kind: int, counter: int) -> int:
        self._call("nvmlDeviceGetTotalEccErrors", h, kind, counter)
        return self._give(self._gpu(h).ecc.get((kind, counter), NOT_SUPPORTED))

    def nvmlDeviceGetRetiredPages(self, h: Any, cause: int) -> list[int]:
        self._call("nvmlDeviceGetRetiredPages", h, cause)
        return list(self._give(self._gpu(h).retired_pages.get(cause, NOT_SUPPORTED)))

    def nvmlDeviceGetRemappedRows(self, h: Any) -> tuple[int, int, int, int]:
        self._call("nvmlDeviceGetRemappedRows", h)
        return tuple(self._give(self._gpu(h).remapped_rows))

    def nvmlDeviceGetRowRemapperHistogram(self, h: Any) -> Any:
        self._call("nvmlDeviceGetRowRemapperHistogram", h)
        values = self._give(self._gpu(h).remap_histogram)
        return SimpleNamespace(
            **dict(zip(("max", "high", "partial", "low", "none"), values, strict=True))
        )

    # -- NVLink ----------------------------------------------------------------------------------

    def _link(self, h: Any, link: int) -> Any:
        links = self._give(self._gpu(h).nvlinks)
        if not 0 <= link < len(links):
            raise _CLASSES[2]()
        return links[link]

    def nvmlDeviceGetNvLinkState(self, h: Any, link: int) -> int:
        self._call("nvmlDeviceGetNvLinkState", h, link)
        return self._give(self._link(h, link))

    # -- events ----------------------------------------------------------------------------------

    def nvmlEventSetCreate(self) -> dict[str, Any]:
        self._call("nvmlEventSetCreate")
        event_set: dict[str, Any] = {"devices": [], "freed": False}
        self.event_sets.append(event_set)
        return event_set

    def nvmlDeviceRegisterEvents(self, h: Any, mask: int, event_set: dict[str, Any]) -> None:
        self._call("nvmlDeviceRegisterEvents", h, mask)
        self._give(self._gpu(h).register_error)
        event_set["devices"].append((h.index, mask))

    def nvmlEventSetWait(self, event_set: dict[str, Any], timeout_ms: int) -> Any:
        self._call("nvmlEventSetWait", timeout_ms)
        self.wait_timeouts.append(timeout_ms)
        for index, mask in event_set["devices"]:
            gpu = self.gpus[index]
            if mask & 0x8 and gpu.xids:
                return SimpleNamespace(
                    device=SimpleNamespace(index=index),
                    eventType=0x8,
                    eventData=gpu.xids.popleft(),
                    gpuInstanceId=0,
                    computeInstanceId=0,
                )
        raise _CLASSES[10]()

    def nvmlEventSetFree(self, event_set: dict[str, Any]) -> None:
        self._call("nvmlEventSetFree")
        event_set["freed"] = True

    # -- test helpers ------------------------------------------------------------------------------

    def called(self, name: str) -> int:
        return sum(1 for called, _ in self.calls if called == name)


# Getters that answer one FakeGpu attribute as it is (extra arguments, e.g. a sensor or a fan
# index, are recorded but do not change the answer): NVML function -> attribute.
_PLAIN_GETTERS = {
    "nvmlDeviceGetName": "name",
    "nvmlDeviceGetUUID": "uuid",
    "nvmlDeviceGetSerial": "serial",
    "nvmlDeviceGetBoardPartNumber": "board_part_number",
    "nvmlDeviceGetVbiosVersion": "vbios",
    "nvmlDeviceGetInforomImageVersion": "inforom_image",
    "nvmlDeviceGetCudaComputeCapability": "compute_capability",
    "nvmlDeviceGetPowerManagementDefaultLimit": "power_default_mw",
    "nvmlDeviceGetEnforcedPowerLimit": "power_enforced_mw",
    "nvmlDeviceGetPowerUsage": "power_mw",
    "nvmlDeviceGetTotalEnergyConsumption": "energy_mj",
    "nvmlDeviceGetCurrentClocksThrottleReasons": "throttle",
    "nvmlDeviceGetGpuMaxPcieLinkGeneration": "gpu_max_pcie_gen",
    "nvmlDeviceGetMaxPcieLinkGeneration": "max_pcie_gen",
    "nvmlDeviceGetMaxPcieLinkWidth": "max_pcie_width",
    "nvmlDeviceGetCurrPcieLinkGeneration": "pcie_gen",
    "nvmlDeviceGetCurrPcieLinkWidth": "pcie_width",
    "nvmlDeviceGetPcieReplayCounter": "pcie_replay",
    "nvmlDeviceGetTemperature": "temp",
    "nvmlDeviceGetMarginTemperature": "margin",
    "nvmlDeviceGetNumFans": "fans",
    "nvmlDeviceGetFanSpeed": "fan_speed",
    "nvmlDeviceGetFanSpeedRPM": "fan_rpm",
    "nvmlDeviceGetTargetFanSpeed": "fan_target",
    "nvmlDeviceGetComputeMode": "compute_mode",
    "nvmlDeviceGetNumaNodeId": "numa_node",
    "nvmlDeviceGetRetiredPagesPendingStatus": "retired_pending",
    "nvmlDeviceGetSupportedEventTypes": "supported_events",
}


def _plain_getter(name: str, attr: str) -> Any:
    def getter(self: FakeNvml, h: Any, *args: Any) -> Any:
        self._call(name, h, *args)
        return self._give(getattr(self._gpu(h), attr))

    getter.__name__ = name
    return getter


for _getter, _attr in _PLAIN_GETTERS.items():
    setattr(FakeNvml, _getter, _plain_getter(_getter, _attr))


def _bus_key(bus_id: str) -> tuple[int, ...]:
    """A comparable PCI address: 0000:18:00.0, 00000000:18:00.0 and 18:00.0 are one (nvml.h)."""
    parts = bus_id.replace(".", ":").split(":")
    numbers = [int(p, 16) for p in parts]
    if len(numbers) == 3:  # bus:device.function, domain 0
        numbers.insert(0, 0)
    return tuple(numbers)


def gpu(**changes: Any) -> FakeGpu:
    """A healthy H100 SXM5 with ``changes`` applied."""
    return dataclasses.replace(FakeGpu(), **changes)
