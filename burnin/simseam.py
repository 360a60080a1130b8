"""The device seam of a simulated GPU: a SKU's speed, the scenario's faults, simulated time.

A simulated GPU computes on the CPU, so its kernels' verifications are real, but the time the
CPU takes says nothing about the card. :class:`SimulatedSeam` sits where kernels read a step's
device time (``kernels.base.DeviceSeam.device_time_s``) and answers with what a card of the
scenario's SKU would take (burnin.telemetry.simmodel), with per-card spread, per-call noise and
the ``slow``/``hbm-slow``/``slow-link``/``pcie-degraded``/thermal/power faults, so reports show
an H100's TFLOP/s and GB/s. :class:`ScaledClock` is the run's simulated clock: the parent, its
sampler and every worker read it, so a profile's minutes pass in a few wall seconds, and it
stands still while a worker process starts. Workers unpickle this module, so it imports
nothing heavy.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from burnin.faults import Fault
from burnin.kernels.base import DeviceSeam
from burnin.telemetry.simmodel import PCIE_LANE_GBPS, DeviceActivity, SimulatedGpu, load_state

# Achieved share of the dense datasheet peak for matmul: an H100 SXM reaches 790-800 of 989.4
# bf16 TFLOP/s on 8192³ (issue 4's target); the same share is assumed for every SKU and dtype.
MATMUL_EFFICIENCY = 0.8
# Achieved share of the link's rate for pinned host<->device copies: Azure NHC fails H100 nodes
# below 52 GB/s on Gen5 x16 (63 GB/s), typical nodes reach ~53-55 (nvml.md §3.2). Fraction.
PCIE_EFFICIENCY = 0.85
# All-reduce bus bandwidth per GB/s of marketed (bidirectional) NVLink bandwidth: DGX H100
# nccl-tests reach ~400-480 GB/s busbw on 900 GB/s NVLink (assumption from public results).
NVLINK_BUSBW_SHARE = 0.45


@dataclasses.dataclass(frozen=True)
class ScaledClock:
    """A monotonic clock running ``scale`` times faster than ``time.monotonic`` (picklable).

    With ``shared`` (see :func:`holdable_clock`) the clock can be held: while any holder holds
    it, simulated time stands still in every process that reads it. The supervisor holds it
    while it starts a worker, because starting a process is the harness's time, not the
    card's: unheld, a start that takes 0.1 s of wall time on a busy host is 6 s of simulated
    time at 60x, and the ramp, the thermal model and the all-reduce rendezvous would shift
    with the host's load.
    """

    scale: float
    origin: float = dataclasses.field(default_factory=time.monotonic)
    # [sequence, holders, wall time held since, wall seconds held before]; a seqlock: the
    # parent's threads write (odd sequence while writing), every process reads.
    shared: Any = None

    def __call__(self) -> float:
        wall = time.monotonic()
        if self.shared is not None:
            wall -= self._held_s(wall)
        return self.origin + (wall - self.origin) * self.scale

    def _held_s(self, wall: float) -> float:
        s = self.shared
        while True:
            seq = s[0]
            holders, since, before = s[1], s[2], s[3]
            if seq == s[0] and not int(seq) % 2:
                return before + (wall - since if holders else 0.0)

    def hold(self) -> None:
        """Stop simulated time until the matching :meth:`release` (holds nest)."""
        self._update(+1)

    def release(self) -> None:
        self._update(-1)

    def _update(self, delta: int) -> None:
        if self.shared is None:
            return
        with _HOLD_LOCK:
            s, now = self.shared, time.monotonic()
            holders = int(s[1])
            if holders + delta < 0:
                return  # a release without a hold: nothing to undo
            s[0] += 1
            if delta > 0 and holders == 0:
                s[2] = now
            elif delta < 0 and holders == 1:
                s[3] += now - s[2]
            s[1] = holders + delta
            s[0] += 1

    def sleep(self, simulated_s: float) -> None:
        if simulated_s > 0:
            time.sleep(simulated_s / self.scale)


def holdable_clock(scale: float) -> ScaledClock:
    """A :class:`ScaledClock` that can be held, shared with worker processes as they start."""
    from burnin.supervisor import mp_context

    return ScaledClock(scale, shared=mp_context().RawArray("d", 4))


# Only the parent's threads hold and release the clock; one lock orders their writes.
_HOLD_LOCK = threading.Lock()


class SimulatedSeam(DeviceSeam):
    """The device seam of one simulated GPU (built in its worker by a picklable partial).

    ``device_time_s`` returns what the card's SKU model takes for ``work`` (flops for matmul,
    bytes for membw, pcie and allreduce) with the card's spread, per-call noise and the
    ``slow``/``hbm-slow``/``slow-link``/``pcie-degraded`` faults, and paces the caller so each
    call occupies its share of simulated time. ``corrupt`` is the base seam's, with an ``sdc``
    rate scaled to the number of device verifications one CPU verification stands for. The
    base ``check_faults`` realises ``hang``, ``crash`` and ``lost`` on the simulated clock.
    """

    def __init__(
        self,
        faults: Sequence[Fault],
        seed: int,
        *,
        gpu: SimulatedGpu,
        clock: ScaledClock,
        pace_s: Mapping[str, float],
        dtypes: Mapping[str, str],
        device_batches: float = 1.0,
        activity: DeviceActivity | None = None,
    ) -> None:
        super().__init__(scaled_sdc(faults, device_batches), seed)
        self.gpu = gpu
        self._clock = clock
        self._pace_s = dict(pace_s)
        self._dtypes = dict(dtypes)
        self._started = self._mark = clock()
        self._calls = 0
        self._activity = activity
        if activity is not None:
            activity.started(gpu.index, self._started)

    def check_faults(self, elapsed_s: float) -> None:
        """Record progress for the node's telemetry, then realise hang/crash/lost faults."""
        if self._activity is not None:
            self._activity.busy(self.gpu.index, self._clock())
            hang = self.faults.get("hang")
            if hang is not None and elapsed_s >= float(hang.params.get("after_s", 5.0)):
                self._activity.hung(self.gpu.index)  # a stuck kernel keeps the card busy
        super().check_faults(elapsed_s)

    def delay_s(self, elapsed_s: float, kernel: str = "matmul") -> float:
        return 0.0  # slowness is in the model's time, not in a sleep of the CPU's

    def device_time_s(self, kernel: str, elapsed_s: float, work: float) -> float:
        rate = self.rate(kernel)
        self._pace(kernel)
        if self._activity is not None:
            self._activity.busy(self.gpu.index, self._clock())
        if rate is None or work <= 0:
            return elapsed_s  # a kernel the model does not know: the measured time
        self._calls += 1
        wobble = 1.0 + self.gpu.noise * self.gpu.jitter(self._calls, 4)
        return work / (rate * wobble)

    def rate(self, kernel: str) -> float | None:
        """Work per second of this card for ``kernel`` right now (None = not modelled)."""
        gpu, board = self.gpu, self.gpu.board
        if kernel == "matmul":
            dtype = self._dtypes.get("matmul", "fp32")
            peak = board.peak_tflops.get(dtype) or board.peak_tflops.get("fp32") or 1.0
            state = load_state(gpu, self._clock() - self._started)
            clocks = state.clock_share / load_state(_healthy(gpu), 0.0).clock_share
            slow = float(gpu.param("slow", "factor", 1.0))
            return peak * 1e12 * MATMUL_EFFICIENCY * gpu.perf_scale * slow * clocks
        if kernel in ("membw", "memtest"):
            slow = float(gpu.param("hbm-slow", "factor", 1.0))
            return board.achieved_membw_gbps * 1e9 * gpu.perf_scale * slow
        if kernel == "pcie":
            return _pcie_gbps(gpu) * PCIE_EFFICIENCY * 1e9
        if kernel == "allreduce":
            busbw = board.nvlink_gbps * NVLINK_BUSBW_SHARE or _pcie_gbps(gpu) * PCIE_EFFICIENCY
            return busbw * 1e9 * float(gpu.param("slow-link", "factor", 1.0))
        return None

    def _pace(self, kernel: str) -> None:
        pace = self._pace_s.get(kernel)
        if not pace:
            return
        now = self._clock()
        target = max(self._mark + pace, now)
        self._clock.sleep(target - now)
        self._mark = target


def _healthy(gpu: SimulatedGpu) -> SimulatedGpu:
    return dataclasses.replace(gpu, faults=())


def _pcie_gbps(gpu: SimulatedGpu) -> float:
    gen = int(gpu.param("pcie-degraded", "gen", gpu.board.pcie_gen))
    width = int(gpu.param("pcie-degraded", "width", gpu.board.pcie_width))
    return PCIE_LANE_GBPS.get(gen, PCIE_LANE_GBPS[1]) * width


def scaled_sdc(faults: Sequence[Fault], device_batches: float) -> tuple[Fault, ...]:
    """Faults with the ``sdc`` rate of one CPU verification standing for ``device_batches``.

    A real card verifies every batch (~0.1 s); one simulated verification covers many of them,
    so it finds corruption if any of those would: 1 - (1 - rate)^device_batches.
    """
    out = []
    for fault in faults:
        if fault.kind == "sdc" and device_batches > 1:
            rate = float(fault.params.get("rate", 0.05))
            scaled = 1.0 - (1.0 - rate) ** device_batches
            fault = Fault(fault.kind, {**fault.params, "rate": scaled})
        out.append(fault)
    return tuple(out)
