"""Device memory bandwidth, STREAM style: copy and triad GB/s, with the data checked.

Copy (``x = b``) moves 2·N·4 bytes and triad (``x = b + 3·c``) 3·N·4 bytes per step;
GB/s = bytes read + bytes written / t / 1e9 (docs/contracts.md). The two alternate batch by batch,
so both see the same clocks and temperature, and each batch is timed like a bare loop (CUDA events
on a GPU, perf_counter on the CPU, one synchronisation per batch). The arrays (``size_mib``
each) are far larger than any GPU's L2 cache, so the figure is device memory, not cache. Every
``verify_every`` batches the copy is compared bit for bit with its source and the triad's fp64
sum with the exact sum known from the inputs (small integers, so every value is exact), in the
nccl-tests habit of checking the data a bandwidth test moves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from burnin.kernels import bitcheck
from burnin.kernels.base import KernelContext, calibrate_batches, share_field, summarize
from burnin.kernels.registry import register

_SCALAR = 3.0  # triad's scalar: b + 3·c of integers below 1024 stays exact in fp32
_BYTES = {"copy": 2, "triad": 3}  # arrays touched per element (reads + writes)


@register("membw")
class Membw:
    """Copy and triad bandwidth of device memory, GB/s per step with min/p50/p99/cv."""

    @dataclass(frozen=True, kw_only=True)
    class Config:
        share: float = share_field()
        size_mib: int = field(default=1024, metadata={"min": 1, "max": 1 << 20})  # per array
        # Larger than this machine class's last-level cache (32 MiB L3 on many servers).
        cpu_size_mib: int = field(default=64, metadata={"min": 1, "max": 1 << 16})
        warmup_steps: int = field(default=2, metadata={"min": 0, "max": 1000})
        batch_s: float = field(default=0.1, metadata={"min": 0.001, "max": 60.0})
        verify_every: int = field(default=10, metadata={"min": 1, "max": 1_000_000})  # batches

    def run(self, ctx: KernelContext) -> dict[str, Any]:
        import torch

        cfg: Membw.Config = ctx.config
        mib = cfg.size_mib if ctx.is_cuda else cfg.cpu_size_mib
        n = mib * (1 << 20) // 4
        gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
        b = torch.randint(0, 1024, (n,), generator=gen, device=ctx.device, dtype=torch.float32)
        c = torch.randint(0, 1024, (n,), generator=gen, device=ctx.device, dtype=torch.float32)
        x = torch.empty_like(b)
        triad_sum = float(b.sum(dtype=torch.float64) + _SCALAR * c.sum(dtype=torch.float64))
        ops = {
            "copy": lambda: x.copy_(b),
            "triad": lambda: torch.add(b, c, alpha=_SCALAR, out=x),
        }
        timer, batch = calibrate_batches(ctx, ops, cfg.warmup_steps, cfg.batch_s)

        gbps: dict[str, list[float]] = {"copy": [], "triad": []}
        counts = {"verifications": 0, "failed_verifications": 0, "wrong_elements": 0}
        deadline = ctx.monotonic() + ctx.duration_s
        batches = steps = 0
        last_progress = ctx.monotonic()  # the device's clock, as the deadline
        while True:
            batches += 1
            verify = batches % cfg.verify_every == 0
            for name, op in ops.items():
                timer.start()
                for _ in range(batch[name]):
                    op()
                elapsed_s = timer.stop_s()
                delay_s = ctx.seam.delay_s(elapsed_s, "membw")
                if delay_s:
                    time.sleep(delay_s)
                work = float(_BYTES[name] * 4 * n * batch[name])
                device_s = ctx.seam.device_time_s("membw", elapsed_s + delay_s, work)
                gbps[name].append(work / device_s / 1e9)
                steps += batch[name]
                if verify:
                    wrong = _check(torch, name, x, b, c, triad_sum)
                    counts["wrong_elements"] += wrong.get("wrong_elements", 0)
                    if wrong.get("wrong_elements"):
                        counts["failed_verifications"] += 1
                        ctx.emit(
                            {"type": "verify", "kernel": "membw", "check": name, "step": steps}
                            | wrong
                        )
            counts["verifications"] += verify
            ctx.heartbeat()
            done = ctx.monotonic() >= deadline or ctx.should_stop()
            now = ctx.monotonic()
            if now - last_progress >= 1.0 or done:
                last_progress = now
                ctx.emit(
                    {
                        "type": "progress",
                        "kernel": "membw",
                        "steps": steps,
                        "copy_gbps": gbps["copy"][-1],
                        "triad_gbps": gbps["triad"][-1],
                    }
                )
            if done:
                break
        if not counts["verifications"]:  # a short run still checks the data it moved, untimed
            counts["verifications"] = 1
            for name, op in ops.items():
                op()
                wrong = _check(torch, name, x, b, c, triad_sum)
                if wrong.get("wrong_elements"):
                    counts["failed_verifications"] += 1
                    counts["wrong_elements"] += wrong["wrong_elements"]
                    ctx.emit(
                        {"type": "verify", "kernel": "membw", "check": name, "step": steps} | wrong
                    )
        copy, triad = summarize(gbps["copy"]), summarize(gbps["triad"])
        return {
            "type": "result",
            "kernel": "membw",
            "size_mib": mib,
            "steps": steps,
            "batches": batches,
            "metrics": {
                "membw_gbps": max(copy["p50"], triad["p50"]),
                "membw_copy_gbps": copy["p50"],
                "membw_triad_gbps": triad["p50"],
                "membw_copy_gbps_cv": copy["cv"],
            },
            **counts,
        }


def _check(torch: Any, name: str, x: Any, b: Any, c: Any, triad_sum: float) -> dict[str, Any]:
    """Bit-exact copy check, exact-sum triad check (located only when it fails)."""
    if name == "copy":
        if bitcheck.same_bits(torch, x, b):
            return {"wrong_elements": 0}
        return bitcheck.diff(torch, x, b)
    if float(x.sum(dtype=torch.float64)) == triad_sum:
        return {"wrong_elements": 0}
    found = bitcheck.diff(torch, x, torch.add(b, c, alpha=_SCALAR))
    # A sum can be off with every element equal to a recomputation: still a wrong answer.
    found["wrong_elements"] = max(found["wrong_elements"], 1)
    return found
