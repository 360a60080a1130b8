"""NVML backend: the only module that imports ``pynvml`` (from the nvidia-ml-py distribution).

Every ``pynvml.NVMLError`` becomes a :class:`TelemetryError`, except ``NotSupported`` (and the
other "this card cannot tell" codes), which becomes ``None`` plus the field's name in
``unsupported``. Only getters are called: burnin never changes a clock, a power limit,
persistence, ECC or MIG mode, and never resets a card. ``pynvml`` is imported when the backend is
created, so nothing else in burnin pays for it. API facts: reference/nvml.md §2.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from burnin.errors import TelemetryError
from burnin.telemetry.base import DriverInfo, Event, Inventory, Sample

T = TypeVar("T")

# NVML_TEMPERATURE_GPU, thresholds SHUTDOWN / SLOWDOWN (nvml.h, reference/nvml.md §2.4).
_TEMP_GPU, _THRESH_SHUTDOWN, _THRESH_SLOWDOWN = 0, 0, 1
# nvmlMemoryErrorType / nvmlEccCounterType: CORRECTED=0, UNCORRECTED=1; VOLATILE=0, AGGREGATE=1.
_CORRECTED, _UNCORRECTED, _VOLATILE, _AGGREGATE = 0, 1, 0, 1


def nvml_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Turn any NVMLError escaping ``fn`` into a TelemetryError."""

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
        try:
            module.nvmlInit()
        except module.NVMLError as exc:
            raise TelemetryError(f"NVML could not start: {exc}") from exc
        self._handles: dict[int, Any] = {}

    def _handle(self, index: int) -> Any:
        if index not in self._handles:
            self._handles[index] = self.nvml.nvmlDeviceGetHandleByIndex(index)
        return self._handles[index]

    def _read(self, missing: list[str], name: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except self._soft_errors:
            missing.append(name)
            return None

    @nvml_errors
    def device_count(self) -> int:
        return int(self.nvml.nvmlDeviceGetCount())

    @nvml_errors
    def driver_info(self) -> DriverInfo:
        missing: list[str] = []
        cuda = self._read(missing, "cuda", self.nvml.nvmlSystemGetCudaDriverVersion)
        return DriverInfo(
            driver_version=self._read(missing, "driver", self.nvml.nvmlSystemGetDriverVersion),
            nvml_version=self._read(missing, "nvml", self.nvml.nvmlSystemGetNVMLVersion),
            cuda_driver_version=f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda else None,
            backend="nvml",
        )

    @nvml_errors
    def inventory(self, index: int) -> Inventory:
        n, h, miss = self.nvml, self._handle(index), []
        pci = self._read(miss, "pci_device_id", n.nvmlDeviceGetPciInfo, h)
        mem = self._read(miss, "memory_total_mib", n.nvmlDeviceGetMemoryInfo, h)
        default_mw = self._read(
            miss, "power_limit_default_w", n.nvmlDeviceGetPowerManagementDefaultLimit, h
        )
        enforced_mw = self._read(
            miss, "power_limit_enforced_w", n.nvmlDeviceGetEnforcedPowerLimit, h
        )
        return Inventory(
            index=index,
            uuid=self._read(miss, "uuid", n.nvmlDeviceGetUUID, h),
            serial=self._read(miss, "serial", n.nvmlDeviceGetSerial, h),
            name=self._read(miss, "name", n.nvmlDeviceGetName, h),
            board_part_number=self._read(
                miss, "board_part_number", n.nvmlDeviceGetBoardPartNumber, h
            ),
            pci_bus_id=pci.busId if pci else None,
            pci_device_id=f"{(pci.pciDeviceId >> 16) & 0xFFFF:04x}" if pci else None,
            pci_subsystem_id=f"{pci.pciSubSystemId & 0xFFFFFFFF:08x}" if pci else None,
            vbios_version=self._read(miss, "vbios_version", n.nvmlDeviceGetVbiosVersion, h),
            memory_total_mib=int(mem.total // 2**20) if mem else None,
            power_limit_default_w=default_mw / 1000 if default_mw is not None else None,
            power_limit_enforced_w=enforced_mw / 1000 if enforced_mw is not None else None,
            slowdown_temp_c=self._read(
                miss, "slowdown_temp_c", n.nvmlDeviceGetTemperatureThreshold, h, _THRESH_SLOWDOWN
            ),
            shutdown_temp_c=self._read(
                miss, "shutdown_temp_c", n.nvmlDeviceGetTemperatureThreshold, h, _THRESH_SHUTDOWN
            ),
            unsupported=tuple(miss),
        )

    @nvml_errors
    def sample(self, index: int, elapsed_s: float) -> Sample:
        n, h, miss = self.nvml, self._handle(index), []
        power_mw = self._read(miss, "power_w", n.nvmlDeviceGetPowerUsage, h)
        util = self._read(miss, "util_pct", n.nvmlDeviceGetUtilizationRates, h)
        mem = self._read(miss, "mem_used_mib", n.nvmlDeviceGetMemoryInfo, h)
        return Sample(
            index=index,
            elapsed_s=elapsed_s,
            temp_c=self._read(miss, "temp_c", n.nvmlDeviceGetTemperature, h, _TEMP_GPU),
            power_w=power_mw / 1000 if power_mw is not None else None,
            sm_clock_mhz=self._read(
                miss, "sm_clock_mhz", n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_SM
            ),
            util_pct=util.gpu if util is not None else None,
            mem_used_mib=mem.used / 2**20 if mem is not None else None,
            ecc_volatile_sbe=self._read(
                miss, "ecc_volatile_sbe", n.nvmlDeviceGetTotalEccErrors, h, _CORRECTED, _VOLATILE
            ),
            ecc_volatile_dbe=self._read(
                miss, "ecc_volatile_dbe", n.nvmlDeviceGetTotalEccErrors, h, _UNCORRECTED, _VOLATILE
            ),
            unsupported=tuple(miss),
        )

    def events(self, elapsed_s: float) -> list[Event]:
        return []

    def close(self) -> None:
        with contextlib.suppress(self.nvml.NVMLError):
            self.nvml.nvmlShutdown()
