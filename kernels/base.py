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
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Fault:
    """A fault to inject at the device seam (plain picklable data): its kind and parameters.

    The kinds, their parameters and defaults are the simulator's fault registry
    (burnin/sim/faults.py); tests attach faults to the CPU fallback's devices the same way.
    """

    kind: str
    params: dict[str, Any] = field(default_factory=dict)


class DeviceSeam:
    """Injects the planned faults of one device where results leave the device."""

    def __init__(self, faults: Sequence[Fault], seed: int) -> None:
        self.faults = {f.kind: f for f in faults}
        self._rng = random.Random(seed)
        self._sdc_step: int | None = None
        self._sdc_decision = False
        self._memory_pass: int | None = None
        self._memory_hits_now: list[tuple[int, int, str]] = []

    def corrupt(self, result: Any, step: int) -> Any:
        """Return ``result`` (a torch tensor) as a faulty card would deliver it.

        Corruption flips one raw bit (adding 1 would round away in bf16 at large magnitudes).
        Every result verified at the same ``step`` shares one decision, so an ``sdc`` rate is
        the share of verifications that find corruption, however many products each checks.
        """
        constant = self.faults.get("sdc-constant")
        if constant is not None:
            result = result.clone()
            flat = result.view(-1)
            # Always the same element, always the same wrong value: a self-compare passes.
            _flip_bit(flat, flat.numel() // 3, _mantissa_bits(result) - 1)
            return result
        sdc = self.faults.get("sdc")
        if sdc is not None and self._sdc_hit(step, float(sdc.params.get("rate", 0.05))):
            result = result.clone()
            flat = result.view(-1)
            pos = self._rng.randrange(flat.numel())
            _flip_bit(flat, pos, self._rng.randrange(_mantissa_bits(result)))
            return result
        return result

    def _sdc_hit(self, step: int, rate: float) -> bool:
        if self._sdc_step != step:
            self._sdc_step, self._sdc_decision = step, self._rng.random() < rate
        return self._sdc_decision

    def read_back(self, words: Any, offset_bytes: int, region_bytes: int, pass_id: int) -> Any:
        """Return ``words`` (an integer tensor read back from a tested region) as a faulty card
        would deliver it: ``stuck-bit`` pins one bit at ``offset_bytes`` of the region on every
        read, ``bitflip`` flips one random bit of the region in a ``rate`` share of passes.

        Args:
            words: the chunk read back (int32 or int64 view of device memory).
            offset_bytes: where ``words[0]`` sits in the tested region.
            region_bytes: the size of the whole tested region.
            pass_id: the write/verify pass; every chunk of one pass shares one decision.
        """
        hits = self._memory_hits(region_bytes, pass_id)
        if not hits:
            return words
        size = words.element_size()
        end = offset_bytes + words.numel() * size
        faulty = words
        for at_byte, bit, mode in hits:
            if not offset_bytes <= at_byte < end:
                continue
            if faulty is words:
                faulty = words.clone()
            index = (at_byte - offset_bytes) // size
            bit_in_word = (at_byte % size) * 8 + bit  # little-endian byte order
            mask = _signed(1 << bit_in_word, size * 8)
            word = int(faulty[index])
            if mode == "set":
                word |= mask
            elif mode == "clear":
                word &= ~mask
            else:
                word ^= mask
            faulty[index] = _signed(word, size * 8)
        return faulty

    def _memory_hits(self, region_bytes: int, pass_id: int) -> list[tuple[int, int, str]]:
        if self._memory_pass != pass_id:
            hits: list[tuple[int, int, str]] = []
            stuck = self.faults.get("stuck-bit")
            if stuck is not None:
                mode = "set" if int(stuck.params.get("value", 1)) else "clear"
                # The offset is defined within the tested region, whatever its size on this
                # device: wrap it, or a stuck bit past a small (CPU) region would go unseen.
                at_byte = int(stuck.params.get("offset_bytes", 4096))
                at_byte = at_byte % region_bytes if region_bytes > 0 else at_byte
                hits.append((at_byte, int(stuck.params.get("bit", 0)), mode))
            flip = self.faults.get("bitflip")
            rate = float(flip.params.get("rate", 0.05)) if flip is not None else 0.0
            if region_bytes > 0 and self._rng.random() < rate:
                hits.append((self._rng.randrange(region_bytes), self._rng.randrange(8), "flip"))
            self._memory_pass, self._memory_hits_now = pass_id, hits
        return self._memory_hits_now

    def clock(self, start_s: float) -> Callable[[], float]:
        """The device's clock, for a device whose planned start is ``start_s`` on the run clock.

        A real device's time is the host's monotonic clock (``start_s`` is when it was meant to
        start, not when it did). A simulated device (burnin/sim/seam.py) answers with its own
        clock, which starts at ``start_s`` and advances by the modelled time of its work.
        """
        return time.monotonic

    def batch_steps(self, kernel: str, measured: int) -> int:
        """Steps per timed batch of ``kernel``; ``measured`` fills ``batch_s`` on this host.

        A real device runs what fills its batch time. A simulated device's batch stands for a
        slice of its modelled time whatever the CPU computes, so it answers a fixed count and
        the records stay the same on a fast or a loaded host.
        """
        return measured

    def delay_s(self, elapsed_s: float, kernel: str = "matmul") -> float:
        """Extra time a slow card would have taken for a step that took ``elapsed_s``.

        ``slow`` slows compute (matmul), ``hbm-slow`` slows device memory (membw).
        """
        slow = self.faults.get(_SLOW_FAULT.get(kernel, "slow"))
        if slow is None:
            return 0.0
        factor = float(slow.params.get("factor", 0.85))
        return elapsed_s * (1.0 / factor - 1.0) if 0 < factor < 1 else 0.0

    def device_time_s(self, kernel: str, elapsed_s: float, work: float) -> float:
        """The time the device took for ``work`` (flops or bytes) measured as ``elapsed_s``.

        A real device's time is what was measured (a slow fault has already slept its extra
        share). The simulator overrides this to return its SKU model's time, so a simulated
        H100 reports an H100's throughput while the CPU still computes every verified result.
        A ``slow-link`` fault stretches this device's all-reduce time by ``1/factor`` (the
        kernel takes the slowest rank's time, so every group with this device slows down).
        """
        link = self.faults.get("slow-link") if kernel == "allreduce" else None
        factor = float(link.params.get("factor", 0.5)) if link is not None else 1.0
        return elapsed_s / factor if 0 < factor < 1 else elapsed_s

    def check_faults(self, elapsed_s: float) -> None:
        """Realise the lifecycle faults once the device has run ``after_s`` seconds.

        The worker calls this on every heartbeat with the time since the device started.
        ``crash`` ends the process at once with :data:`CRASH_EXIT_CODE`, as a driver fault
        would; ``hang`` and ``lost`` stop the device answering (this call never returns), so
        the heartbeat stops and the parent's watchdog must notice. For ``lost`` the telemetry
        side reports the card gone as well (the simulated backend, or the runner's fault hook
        on the CPU), which is what tells a lost card from a hung one.
        """
        crash = self.faults.get("crash")
        if crash is not None and elapsed_s >= float(crash.params.get("after_s", 5.0)):
            os._exit(CRASH_EXIT_CODE)
        for kind in ("hang", "lost"):
            fault = self.faults.get(kind)
            if fault is not None and elapsed_s >= float(fault.params.get("after_s", 5.0)):
                while True:  # a stalled card never answers again; only a kill ends this
                    time.sleep(3600)


# Exit status of a worker whose device "crashed" (EX_SOFTWARE from sysexits.h): any non-zero
# status is a crash to the runner; a fixed one lets tests tell an injected crash from a bug.
CRASH_EXIT_CODE = 70

# Which slow-down fault a kernel's timing feels: compute or device memory.
_SLOW_FAULT = {"matmul": "slow", "membw": "hbm-slow"}


def _mantissa_bits(tensor: Any) -> int:
    """Explicit mantissa bits of a float tensor's dtype (flip targets that change the value)."""
    import torch

    if not tensor.is_floating_point():
        return tensor.element_size() * 8 - 1
    return int(torch.finfo(tensor.dtype).eps ** -1).bit_length() - 1


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _flip_bit(flat: Any, pos: int, bit: int) -> None:
    """XOR one bit of element ``pos`` of a 1-D tensor, in its raw representation."""
    import torch

    size = flat.element_size()
    raw = flat.view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[size])
    flipped = int(raw[pos]) ^ (1 << bit)
    raw[pos] = flipped if size == 1 else _signed(flipped, size * 8)


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
