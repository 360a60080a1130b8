"""The world a command runs in, injected through ``ctx.obj``: host, clock, devices, telemetry.

Production code gets :class:`Runtime` with real defaults; tests pass their own (fake telemetry,
device seams that carry faults, a fixed host name) to ``CliRunner.invoke(..., obj=...)``, and a
simulated fleet builds one per node (burnin/sim/run.py).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from burnin.clock import Timeline, WallTimeline
from burnin.devices import Device
from burnin.errors import TelemetryError
from burnin.telemetry.base import TelemetryClient

if TYPE_CHECKING:
    from burnin.plan import Plan

log = logging.getLogger("burnin")


def default_telemetry(devices: Sequence[Device]) -> TelemetryClient:
    """NVML for CUDA devices (the null backend if NVML cannot start), null for the CPU."""
    from burnin.telemetry.null import NullTelemetry

    if devices and devices[0].kind == "cuda":
        try:
            from burnin.telemetry.nvml import NvmlTelemetry

            return NvmlTelemetry()
        except (TelemetryError, ImportError) as exc:
            log.warning("NVML unavailable, running without telemetry: %s", exc)
    return NullTelemetry(len(devices))


@dataclass
class Runtime:
    hostname: str = field(default_factory=socket.gethostname)
    telemetry_factory: Callable[[Sequence[Device]], TelemetryClient] = default_telemetry
    cuda_devices: Callable[[], list[Device]] | None = None  # None = ask torch
    cpu_count: int = field(default_factory=lambda: os.cpu_count() or 1)
    monotonic: Callable[[], float] = time.monotonic
    wall_time: Callable[[], float] = time.time
    # Launcher variables (RANK, SLURM_NODEID, ...) for the node's ramp offset; tests inject theirs.
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    # The run's time (burnin.clock): None = the host's clock (``monotonic``); a simulated fleet
    # injects its virtual one.
    timeline: Callable[[Plan], Timeline] | None = None
    # Per device index, a picklable ``(seed=...) -> DeviceSeam`` (absent: kernels.base.DeviceSeam,
    # a real device); a simulated fleet's devices and a test's faulty ones come in here.
    seam_factories: dict[int, Callable[..., Any]] = field(default_factory=dict)
    # Whether the node's run writes its own reports (False where a caller merges several
    # nodes' stores and reports once, as a simulated fleet does).
    node_reports: bool = True

    def build_timeline(self, plan: Plan) -> Timeline:
        """The timeline of one node's run of ``plan``."""
        if self.timeline is not None:
            return self.timeline(plan)
        return WallTimeline(self.monotonic)
