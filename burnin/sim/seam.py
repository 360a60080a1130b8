"""The device seam of a simulated GPU: a SKU's speed, the scenario's faults, simulated time.

A simulated GPU computes on the CPU, so its kernels' verifications are real, but the time the
CPU takes says nothing about the card. :class:`SimulatedSeam` sits where kernels read a step's
device time (``kernels.base.DeviceSeam.device_time_s``) and answers with what a card of the
scenario's SKU would take (burnin.sim.model), with per-card spread, per-call noise and
the ``slow``/``hbm-slow``/``slow-link``/``pcie-degraded``/thermal/power faults, so reports show
an H100's TFLOP/s and GB/s. The seam also keeps the device's clock (burnin/sim/clock.py):
each call advances it by the modelled time of the work it stands for, and it is the clock the
worker stamps records, checks deadlines and beats with. Workers unpickle this module, so it
imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from burnin.kernels.base import DeviceSeam
from burnin.sim.faults import Fault
from burnin.sim.model import PCIE_LANE_GBPS, DeviceActivity, SimulatedGpu, load_state


class FaultySeam(DeviceSeam):
    """A device carrying faults: injects them where results and time leave the device.

    Tests attach it to the CPU fallback's devices (``Runtime.seam_factories``, built with
    :func:`fault_seams`); :class:`SimulatedSeam` builds on it for a simulated card.
    """

    def __init__(self, faults: Sequence[Fault], seed: int = 0) -> None:
        super().__init__(seed)
        self.faults = {f.kind: f for f in faults}
        self._rng = random.Random(seed)
        self._sdc_step: int | None = None
        self._sdc_decision = False
        self._sdc_victims: dict[int, int] = {}  # count -> the index corrupted at this step
        self._sdc_flips: dict[tuple[int, int], tuple[int, int]] = {}  # -> (element, bit)
        self._memory_pass: int | None = None
        self._memory_hits_now: list[tuple[int, int, str]] = []

    def corrupt(self, result: Any, step: int, index: int = 0, count: int = 1) -> Any:
        """Return ``result`` (a torch tensor) as a faulty card would deliver it.

        ``result`` is the ``index``-th of ``count`` results of one kind that leave the device at
        ``step`` (a batch's products: ``count`` of them, in order). Corruption flips one raw bit
        (adding 1 would round away in bf16 at large magnitudes). Every result at the same
        ``step`` shares one decision, and a hit corrupts one result of each kind (drawn over
        ``count``), so an ``sdc`` rate is the share of verifications that find corruption,
        however many products each checks. Reading the same product again at the same step
        gives the same wrong value, as a wrong buffer would.
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
            if count > 1 and count not in self._sdc_victims:
                self._sdc_victims[count] = self._rng.randrange(count)
            if index != self._sdc_victims.get(count, 0):
                return result
            result = result.clone()
            flat = result.view(-1)
            if (index, count) not in self._sdc_flips:
                pos = self._rng.randrange(flat.numel())
                self._sdc_flips[(index, count)] = pos, self._rng.randrange(_mantissa_bits(result))
            _flip_bit(flat, *self._sdc_flips[(index, count)])
            return result
        return result

    def _sdc_hit(self, step: int, rate: float) -> bool:
        if self._sdc_step != step:
            self._sdc_step, self._sdc_decision = step, self._rng.random() < rate
            self._sdc_victims, self._sdc_flips = {}, {}
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


def fault_seams(faults: Mapping[int, Sequence[Fault]]) -> dict[int, Callable[..., DeviceSeam]]:
    """Picklable seam factories (``Runtime.seam_factories``) for devices carrying ``faults``."""
    return {dev: functools.partial(FaultySeam, tuple(found)) for dev, found in faults.items()}


# Achieved share of the dense datasheet peak for matmul: an H100 SXM reaches 790-800 of 989.4
# bf16 TFLOP/s on 8192³ (issue 4's target); the same share is assumed for every SKU and dtype.
MATMUL_EFFICIENCY = 0.8
# Achieved share of the link's rate for pinned host<->device copies: Azure NHC fails H100 nodes
# below 52 GB/s on Gen5 x16 (63 GB/s), typical nodes reach ~53-55 (docs/nvml.md §3.2). Fraction.
PCIE_EFFICIENCY = 0.85
# All-reduce bus bandwidth per GB/s of marketed (bidirectional) NVLink bandwidth: DGX H100
# nccl-tests reach ~400-480 GB/s busbw on 900 GB/s NVLink (assumption from public results).
NVLINK_BUSBW_SHARE = 0.45


# Seconds a device waiting for its peers (a heartbeat with no device work since the previous
# one) lets its clock run, per heartbeat, once a device of the node has failed, so a kernel's
# wait on a peer that never comes ends. The allowance is forgotten at the device's next work,
# and waits on a healthy node (whose length is the host's) never get one: what a device
# records stays the same.
IDLE_STEP_S = 1.0
# CPU steps (products, copies, calls) per timed batch of a simulated device: a batch stands for
# its share of the kernel's modelled time however many the CPU runs, and a fixed count keeps
# the records (step numbers, sizes) the same on any host. An all-reduce call is a collective
# of the node's worker processes, and a membw or pcie copy only costs the host's memory
# bandwidth, so one per batch.
BATCH_STEPS = {"matmul": 4, "allreduce": 1, "membw": 1, "pcie": 1}
# How often a device looks whether the sampler has caught up with its clock (wall s).
_SAMPLER_POLL_S = 0.001


class SimulatedSeam(FaultySeam):
    """The device seam of one simulated GPU (built in its worker by a picklable partial).

    ``device_time_s`` returns what the card's SKU model takes for ``work`` (flops for matmul,
    bytes for membw, pcie and allreduce) with the card's spread, per-call noise and the
    ``slow``/``hbm-slow``/``slow-link``/``pcie-degraded`` faults, and advances the device's
    clock by the call's share of the kernel's simulated time (``pace_s``: each call stands for
    that much of the card's work, whatever the CPU computed for it). ``corrupt`` is the base
    seam's, with an ``sdc`` rate scaled to the number of device verifications one CPU
    verification stands for. ``check_faults`` waits for the node's sampler to catch up with
    the device's clock, then realises ``hang``, ``crash`` and ``lost`` on that clock.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        gpu: SimulatedGpu,
        pace_s: Mapping[str, float],
        dtypes: Mapping[str, str],
        device_batches: float = 1.0,
        activity: DeviceActivity | None = None,
    ) -> None:
        super().__init__(scaled_sdc(gpu.faults, device_batches), seed)
        self.gpu = gpu
        self._pace_s = dict(pace_s)
        self._dtypes = dict(dtypes)
        self._activity = activity
        self._started = self._now = 0.0
        self._calls = 0
        self._idle_s = 0.0  # the waiting allowance (IDLE_STEP_S)
        self._worked = True  # device work since the previous heartbeat
        self._idle_beats = 0
        self._read_pass: int | None = None

    def clock(self, start_s: float) -> Callable[[], float]:
        self._started = self._now = start_s
        if self._activity is not None:
            self._activity.started(self.gpu.index, start_s)
        return self.now

    def now(self) -> float:
        """The device's clock: seconds of modelled device time since the node's start."""
        return self._now + self._idle_s

    def advance(self, seconds: float) -> None:
        """The device worked ``seconds`` of its (modelled) time."""
        self._now = round(self._now + max(0.0, seconds), 9)
        self._idle_s, self._idle_beats, self._worked = 0.0, 0, True
        if self._activity is not None:
            self._activity.busy(self.gpu.index, self._now)

    def check_faults(self, elapsed_s: float) -> None:
        """Let the sampler catch up with this device, then realise hang/crash/lost faults."""
        if self._worked:
            self._worked = False
            self._wait_for_sampler()
        else:
            self._idle_beats += 1
            # The worker beats once before each kernel by itself.
            peer_failed = self._activity is None or self._activity.any_failed()
            if self._idle_beats > 1 and peer_failed:
                self._idle_s += IDLE_STEP_S
        elapsed_s = self._now - self._started
        for kind in ("hang", "lost", "crash"):
            fault = self.faults.get(kind)
            due = fault is not None and elapsed_s >= float(fault.params.get("after_s", 5.0))
            if due and self._activity is not None:
                self._activity.failed(self.gpu.index)
                if kind == "crash":
                    continue
                if kind == "hang":
                    self._activity.hung(self.gpu.index)  # a stuck kernel keeps the card busy
                else:
                    self._activity.stalled(self.gpu.index)
        super().check_faults(elapsed_s)

    def _wait_for_sampler(self) -> None:
        activity = self._activity
        if activity is None:
            return
        while activity.sampled(self.gpu.index) < self._now:
            time.sleep(_SAMPLER_POLL_S)

    def batch_steps(self, kernel: str, measured: int) -> int:
        return BATCH_STEPS.get(kernel, BATCH_STEPS["matmul"])

    def shares_host(self, kernel: str) -> bool:
        return False  # the model's link rate is the card's alone: no turns on the node

    def may_never_come(self, devices: Sequence[int]) -> bool:
        activity = self._activity
        return activity is None or all(
            activity.has_failed(d) or activity.state(d) == DeviceActivity.ENDED for d in devices
        )

    def delay_s(self, elapsed_s: float, kernel: str = "matmul") -> float:
        return 0.0  # slowness is in the model's time, not in a sleep of the CPU's

    def device_time_s(self, kernel: str, elapsed_s: float, work: float) -> float:
        rate = self.rate(kernel)
        self.advance(self._pace_s.get(kernel, 0.0))
        if rate is None or work <= 0:
            return elapsed_s  # a kernel the model does not know: the measured time
        self._calls += 1
        wobble = 1.0 + self.gpu.noise * self.gpu.jitter(self._calls, 4)
        return exact_time_s(work, rate * wobble)

    def read_back(self, words: Any, offset_bytes: int, region_bytes: int, pass_id: int) -> Any:
        if pass_id != self._read_pass:  # one memtest pass: its share of the kernel's time
            self._read_pass = pass_id
            self.advance(self._pace_s.get("memtest", 0.0))
        return super().read_back(words, offset_bytes, region_bytes, pass_id)

    def rate(self, kernel: str) -> float | None:
        """Work per second of this card for ``kernel`` right now (None = not modelled)."""
        gpu, board = self.gpu, self.gpu.board
        if kernel == "matmul":
            dtype = self._dtypes.get("matmul", "fp32")
            peak = board.peak_tflops.get(dtype) or board.peak_tflops.get("fp32") or 1.0
            state = load_state(gpu, self._now - self._started)
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


def exact_time_s(work: float, rate: float) -> float:
    """A time ``t`` for ``work`` at ``rate`` such that ``work / t == rate`` exactly.

    Kernels turn a device time back into a rate (``work / t``); the work of a batch depends on
    how fast the host computed it, and ``work / (work / rate)`` can miss ``rate`` by an ulp, so
    the same scenario would report figures a bit apart. The neighbours of ``work / rate`` hold
    one that divides back exactly.
    """
    t = work / rate
    for candidate in (t, math.nextafter(t, 0.0), math.nextafter(t, math.inf)):
        if candidate > 0 and work / candidate == rate:
            return candidate
    return t


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
