"""What a kernel gets to work with: its device, a record sink, a clock, and the fault seam.

A kernel's ``run(ctx)`` stresses ``ctx.device`` for ``ctx.duration_s``, calls ``ctx.heartbeat()``
after every step (the watchdog reads it), emits plain-dict records through ``ctx.emit`` as it
goes (so a crash loses nothing already measured) and returns one summary record. The
:class:`DeviceSeam` is the only place faults enter: it sits where data comes back from the
device, so the checks downstream see a corrupted or slow card exactly as they would see a real
one. Timing uses CUDA events on a GPU and ``perf_counter`` on the CPU.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from burnin.faults import Fault


class DeviceSeam:
    """Injects the planned faults of one device where results leave the device."""

    def __init__(self, faults: Sequence[Fault], seed: int) -> None:
        self.faults = {f.kind: f for f in faults}
        self._rng = random.Random(seed)

    def corrupt(self, result: Any, step: int) -> Any:
        """Return ``result`` (a torch tensor) as a faulty card would deliver it."""
        constant = self.faults.get("sdc-constant")
        if constant is not None:
            result = result.clone()
            flat = result.view(-1)
            # Always the same element, always the same wrong value: a self-compare passes.
            flat[flat.numel() // 3] += 1
            return result
        sdc = self.faults.get("sdc")
        if sdc is not None and self._rng.random() < float(sdc.params.get("rate", 0.05)):
            result = result.clone()
            flat = result.view(-1)
            pos = self._rng.randrange(flat.numel())
            flat[pos] += 1 + self._rng.randrange(7)
            return result
        return result

    def delay_s(self, elapsed_s: float) -> float:
        """Extra time a slow card would have taken for a step that took ``elapsed_s``."""
        slow = self.faults.get("slow")
        if slow is None:
            return 0.0
        factor = float(slow.params.get("factor", 0.85))
        return elapsed_s * (1.0 / factor - 1.0) if 0 < factor < 1 else 0.0

    def device_time_s(self, kernel: str, elapsed_s: float, work: float) -> float:
        """The time the device took for ``work`` (flops or bytes) measured as ``elapsed_s``.

        A real device's time is what was measured (a slow fault has already slept its extra
        share). The simulator overrides this to return its SKU model's time, so a simulated
        H100 reports an H100's throughput while the CPU still computes every verified result.
        """
        return elapsed_s


@dataclass(kw_only=True)
class KernelContext:
    device: Any  # torch.device
    device_index: int
    node: str
    config: Any
    duration_s: float
    seed: int
    seam: DeviceSeam
    emit: Callable[[dict[str, Any]], None]
    heartbeat: Callable[[], None] = lambda: None
    should_stop: Callable[[], bool] = lambda: False
    monotonic: Callable[[], float] = time.monotonic
    peers: dict[str, Any] = field(default_factory=dict)

    @property
    def is_cuda(self) -> bool:
        return getattr(self.device, "type", "cpu") == "cuda"


class StepTimer:
    """Times one device step: CUDA events on a GPU (after the work is queued), else perf_counter."""

    def __init__(self, ctx: KernelContext) -> None:
        self._cuda = ctx.is_cuda
        if self._cuda:
            import torch

            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)
        self._t0 = 0.0

    def start(self) -> None:
        if self._cuda:
            self._start.record()
        else:
            self._t0 = time.perf_counter()

    def stop_s(self) -> float:
        if self._cuda:
            self._end.record()
            self._end.synchronize()
            return self._start.elapsed_time(self._end) / 1000.0
        return time.perf_counter() - self._t0


def summarize(values: Sequence[float]) -> dict[str, float]:
    """min / p50 / p99 / max / mean / cv of per-step values (empty -> {})."""
    if not values:
        return {}
    ordered = sorted(values)
    n = len(ordered)
    mean = sum(ordered) / n
    var = sum((v - mean) ** 2 for v in ordered) / n
    return {
        "min": ordered[0],
        "p50": _percentile(ordered, 50),
        "p99": _percentile(ordered, 99),
        "max": ordered[-1],
        "mean": mean,
        "cv": math.sqrt(var) / mean if mean else 0.0,
    }


def _percentile(ordered: Sequence[float], pct: float) -> float:
    rank = (len(ordered) - 1) * pct / 100.0
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)
