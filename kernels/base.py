"""What a kernel gets to work with: its device, a record sink, a clock, and the device seam.

A kernel's ``run(ctx)`` stresses ``ctx.device`` for ``ctx.duration_s``, calls ``ctx.heartbeat()``
after every step (the watchdog reads it), emits plain-dict records through ``ctx.emit`` as it
goes (so a crash loses nothing already measured) and returns one summary record. The
:class:`DeviceSeam` sits where data and time come back from the device: the one place a
modelled device (the simulator's, a test's faulty one) differs from a real one, so the checks
downstream see a corrupted or slow card exactly as they would see a real one. Timing uses CUDA
events on a GPU and ``perf_counter`` on the CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


class DeviceSeam:
    """Where results and time come back from one device: the hook for a modelled device.

    On a real device every method passes through: results as the device computed them, the
    time that was measured, the host's clock. The simulator (burnin/sim/seam.py) overrides
    them with a device model (its SKU's speed, its own clock, the faults it carries), so the
    kernels and the checks downstream run unchanged on a card that does not exist, and see a
    corrupted or slow one exactly as they would see a real one.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def clock(self, start_s: float) -> Callable[[], float]:
        """The device's clock, for a device whose planned start is ``start_s`` on the run clock.

        A real device's time is the host's monotonic clock (``start_s`` is when it was meant to
        start, not when it did). A simulated device answers with its own clock, which starts at
        ``start_s`` and advances by the modelled time of its work.
        """
        return time.monotonic

    def batch_steps(self, kernel: str, measured: int) -> int:
        """Steps per timed batch of ``kernel``; ``measured`` fills ``batch_s`` on this host.

        A real device runs what fills its batch time. A simulated device's batch stands for a
        slice of its modelled time whatever the CPU computes, so it answers a fixed count and
        the records stay the same on a fast or a loaded host.
        """
        return measured

    def shares_host(self, kernel: str) -> bool:
        """Whether ``kernel`` on this device shares the host with the node's other devices, so
        they take turns to measure (kernels/pcie.py). A real device does: every GPU copying at
        once splits the host's memory and root-complex bandwidth. A modelled device's rate does
        not depend on what the others do, so it measures for the kernel's whole time."""
        return True

    def may_never_come(self, devices: Sequence[int]) -> bool:
        """Whether the node's ``devices`` that have not arrived at a rendezvous may never come,
        so the wait ends at its wall-clock timeout (kernels/allreduce.py). On hardware they
        may; a modelled node knows its failed and finished (e.g. guard-stopped) devices, and a
        healthy one arrives however late the host launched it."""
        return True

    def corrupt(self, result: Any, step: int, index: int = 0, count: int = 1) -> Any:
        """``result`` (a torch tensor) as the device delivers it: the ``index``-th of ``count``
        results of one kind that leave the device at ``step`` (a batch's products, in order)."""
        return result

    def read_back(self, words: Any, offset_bytes: int, region_bytes: int, pass_id: int) -> Any:
        """``words`` read back from a tested region as the device delivers them.

        Args:
            words: the chunk read back (int32 or int64 view of device memory).
            offset_bytes: where ``words[0]`` sits in the tested region.
            region_bytes: the size of the whole tested region.
            pass_id: the write/verify pass; every chunk of one pass belongs to it.
        """
        return words

    def delay_s(self, elapsed_s: float, kernel: str = "matmul") -> float:
        """Extra seconds to wait after a step that took ``elapsed_s`` (a slowed device)."""
        return 0.0

    def device_time_s(self, kernel: str, elapsed_s: float, work: float) -> float:
        """The time the device took for ``work`` (flops or bytes) measured as ``elapsed_s``.

        A real device's time is what was measured. A simulated device returns its model's
        time, so a simulated H100 reports an H100's throughput while the CPU still computes
        every verified result.
        """
        return elapsed_s

    def check_faults(self, elapsed_s: float) -> None:
        """Called at every heartbeat with the time since the device started: where a modelled
        device crashes, hangs or falls off the bus. A real device has nothing to do here."""
        return None


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


def share_field() -> Any:
    """A kernel Config's ``share``: its weight in ``run.duration_s`` (each planned kernel runs
    for duration × share / the sum of shares; see ``burnin.plan.kernel_durations``)."""
    return field(default=1.0, metadata={"min": 0.01, "max": 1000.0})


def calibrate_batches(
    ctx: KernelContext, ops: dict[str, Callable[[], Any]], warmup_steps: int, batch_s: float
) -> tuple[StepTimer, dict[str, int]]:
    """Warm each op up and size its batch so that one batch of every op takes ``batch_s``.

    Returns the timer (reused by the timed loop) and the number of calls per batch by op.
    """
    timer = StepTimer(ctx)
    batch = {}
    for name, op in ops.items():
        for _ in range(max(warmup_steps, 1)):
            op()
        timer.start()
        op()
        measured = max(1, int(batch_s / len(ops) / max(timer.stop_s(), 1e-6)))
        batch[name] = ctx.seam.batch_steps(name, measured)
    return timer, batch


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
