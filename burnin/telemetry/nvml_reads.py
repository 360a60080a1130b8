"""One NVML reading's bookkeeping, shared by the NVML backend and its inventory reader.

:class:`Reads` calls each getter on its own and names what it could not read (``unsupported``,
and ``failed`` with the error logged once per card and field); the enum values and unit helpers
are those both :mod:`burnin.telemetry.nvml` and :mod:`burnin.telemetry.nvml_inventory` use.
Imports no pynvml: the client it is given holds the module. Enum values: nvidia-ml-py
13.615.71 ``pynvml.py`` and NVIDIA's ``nvml.h``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from burnin.telemetry.nvml import NvmlTelemetry

_CLOCK_SM, _CLOCK_MEM = 1, 2  # NVML_CLOCK_SM, NVML_CLOCK_MEM
_CORRECTED, _UNCORRECTED = 0, 1  # NVML_MEMORY_ERROR_TYPE_*
_VOLATILE, _AGGREGATE = 0, 1  # NVML_VOLATILE_ECC, NVML_AGGREGATE_ECC


class Reads:
    """One reading of one card: each getter on its own, and what it could not read, by name."""

    def __init__(self, client: NvmlTelemetry, index: int) -> None:
        self.client, self.index = client, index
        self.missing: list[str] = []
        self.failed: list[str] = []

    def __call__(self, names: str | tuple[str, ...], fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, or None with ``names`` dropped from this reading."""
        try:
            return fn(*args)
        except self.client.fatal_errors:
            raise
        except self.client.soft_errors:
            self.drop(names)
        except self.client.nvml.NVMLError as exc:
            self.drop(names, f"{getattr(fn, '__name__', 'NVML')}: {exc}")
        return None

    def drop(
        self, names: str | tuple[str, ...], error: str | None = None, *, failed: bool = True
    ) -> None:
        """Mark ``names`` not reported; with ``error``, logged once per field (and ``failed``)."""
        names = (names,) if isinstance(names, str) else names
        self.missing.extend(names)
        if error is not None:
            if failed:
                self.failed.extend(names)
            self.client.warn_once(self.index, names, error)

    def unsupported(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.missing))

    def errors(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.failed))


def watts(milliwatts: Any) -> float | None:
    return milliwatts / 1000 if milliwatts is not None else None


def cuda_version(encoded: Any) -> str | None:
    """12040 -> "12.4" (major * 1000 + minor * 10, the CUDA convention)."""
    if not encoded:
        return None
    return f"{encoded // 1000}.{encoded % 1000 // 10}"
