"""Matmul stress with a known answer: any wrong element on any verification is counted.

Inputs are seeded integer-valued matrices small enough that every partial sum is exact in fp32
and the exact product, computed once in fp64, rounds to one representable value of the output
dtype. A healthy card therefore returns bit-for-bit ``expected``; a card that is wrong the same
way every time fails too (gpu-burn and DCGM compare a card only with itself and miss that).
Steps are timed in batches (CUDA events on a GPU, perf_counter on the CPU) after warmup, so the
harness adds no per-step synchronisation the bare ``torch.matmul`` loop does not have.
TFLOP/s = 2·m·n·k / t / 1e12.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from burnin.kernels.base import KernelContext, StepTimer, summarize
from burnin.kernels.registry import register

# Largest |input| per dtype so that k·max² stays exact in the fp32 accumulator (< 2^24) and the
# product fits the output type (fp16 max 65504): values chosen for k up to 16384.
_INPUT_RANGE = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 1}
_MAX_LOCATIONS = 8


@register("matmul")
class Matmul:
    """Dense matmul C = A·B, timed, with every ``verify_every`` batches checked exactly."""

    @dataclass(frozen=True, kw_only=True)
    class Config:
        dtype: Literal["fp32", "tf32", "bf16", "fp16"] = "bf16"
        cpu_dtype: Literal["fp32", "tf32", "bf16", "fp16"] = "fp32"
        size: int = 8192  # m = n = k on a GPU
        cpu_size: int = 256  # small on the CPU so tests and smoke runs stay fast
        warmup_steps: int = 3
        batch_s: float = 0.1  # steps are timed in batches of about this long
        verify_every: int = 1  # verify the result after every Nth batch

    def run(self, ctx: KernelContext) -> dict[str, Any]:
        import torch

        cfg: Matmul.Config = ctx.config
        dtype_name = cfg.dtype if ctx.is_cuda else cfg.cpu_dtype
        n = cfg.size if ctx.is_cuda else cfg.cpu_size
        a, b, expected = _inputs(torch, ctx, n, dtype_name)
        out = torch.empty_like(expected)
        flops_per_step = 2.0 * n * n * n
        timer = StepTimer(ctx)

        for _ in range(cfg.warmup_steps):
            torch.matmul(a, b, out=out)
        timer.start()
        torch.matmul(a, b, out=out)
        step_s = max(timer.stop_s(), 1e-6)
        batch = max(1, int(cfg.batch_s / step_s))

        tflops: list[float] = []
        wrong_total = verifications = failed = steps = 0
        deadline = ctx.monotonic() + ctx.duration_s
        last_progress = ctx.monotonic()
        batches = 0
        while ctx.monotonic() < deadline and not ctx.should_stop():
            timer.start()
            for _ in range(batch):
                torch.matmul(a, b, out=out)
            elapsed_s = timer.stop_s()
            delay_s = ctx.seam.delay_s(elapsed_s)
            if delay_s:
                _sleep(delay_s)
            steps += batch
            batches += 1
            work = flops_per_step * batch
            device_s = ctx.seam.device_time_s("matmul", elapsed_s + delay_s, work)
            tflops.append(work / device_s / 1e12)
            ctx.heartbeat()
            if batches % cfg.verify_every == 0:
                verifications += 1
                got = ctx.seam.corrupt(out, steps)
                wrong = _verify(torch, got, expected)
                if wrong["wrong_elements"]:
                    failed += 1
                    wrong_total += wrong["wrong_elements"]
                    ctx.emit({"type": "verify", "kernel": "matmul", "step": steps, **wrong})
            now = ctx.monotonic()
            if now - last_progress >= 1.0:
                last_progress = now
                ctx.emit(
                    {"type": "progress", "kernel": "matmul", "steps": steps, "tflops": tflops[-1]}
                )

        stats = summarize(tflops)
        return {
            "type": "result",
            "kernel": "matmul",
            "dtype": dtype_name,
            "size": n,
            "steps": steps,
            "metrics": {
                "matmul_tflops": stats.get("p50", 0.0),
                f"matmul_{dtype_name}_tflops": stats.get("p50", 0.0),
                "matmul_tflops_min": stats.get("min", 0.0),
                "matmul_tflops_p99": stats.get("p99", 0.0),
                "matmul_tflops_cv": stats.get("cv", 0.0),
            },
            "verifications": verifications,
            "failed_verifications": failed,
            "wrong_elements": wrong_total,
        }


def _inputs(torch: Any, ctx: KernelContext, n: int, dtype_name: str) -> tuple[Any, Any, Any]:
    dtype = {
        "fp32": torch.float32,
        "tf32": torch.float32,
        "bf16": torch.bfloat16,
        "fp16": torch.float16,
    }[dtype_name]
    if ctx.is_cuda:
        torch.backends.cuda.matmul.allow_tf32 = dtype_name == "tf32"
        # Reduced-precision split-K reductions would make the exact answer inexact.
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
        torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    gen = torch.Generator(device="cpu").manual_seed(ctx.seed)
    r = _INPUT_RANGE[dtype_name]
    a64 = torch.randint(-r, r + 1, (n, n), generator=gen, dtype=torch.float64).to(ctx.device)
    b64 = torch.randint(-r, r + 1, (n, n), generator=gen, dtype=torch.float64).to(ctx.device)
    expected = (a64 @ b64).to(dtype)
    return a64.to(dtype), b64.to(dtype), expected


def _verify(torch: Any, got: Any, expected: Any) -> dict[str, Any]:
    mismatch = got != expected
    count = int(mismatch.sum().item())
    if not count:
        return {"wrong_elements": 0}
    idx = torch.nonzero(mismatch)[:_MAX_LOCATIONS].tolist()
    locations = [
        {"row": r, "col": c, "got": float(got[r, c]), "expected": float(expected[r, c])}
        for r, c in idx
    ]
    rows = torch.unique(torch.nonzero(mismatch)[:, 0]).numel()
    return {"wrong_elements": count, "wrong_rows": int(rows), "locations": locations}


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)
