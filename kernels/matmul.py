"""Matmul stress on random data that catches wrong answers three independent ways.

The timed loop multiplies seeded random floats (every mantissa bit toggling, the most power and
heat, like gpu-burn) in batches of about ``batch_s``, timed with CUDA events after warmup
(perf_counter on the CPU) with one synchronisation per batch, as a bare ``torch.matmul`` loop
has. TFLOP/s = 2·m·n·k / t / 1e12. After every ``verify_every`` batches, untimed:
1. Known answer: one product of seeded integer-valued operands small enough that every partial
   sum is exact in the fp32 accumulator, so the exact product (computed once in fp64, then
   proved right off the device by a Freivalds check on the CPU: C·r = A·(B·r) in O(n²)) rounds
   to one representable value of the output dtype and any differing bit is an error. A card
   wrong the same way every time fails (gpu-burn and DCGM compare a card only with itself).
2. Self-consistency: the batch's last stress output (and one older buffer, in turn) must equal
   the device's first stress result bit for bit, which catches intermittent errors in the very
   data the stress produced.
3. Cross-device: every device of a run multiplies the same seeded operands, so the first
   result's SHA-256 (and a small probe vector) lets the ``sdc`` verdict name the odd device.
Each dtype gets an equal share of the duration. The known-answer product runs at most once per
100 stress products (<= 1 % extra work); the compares are memory-bound and cheap every batch.
"""

from __future__ import annotations

import hashlib
import platform
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from burnin.kernels import bitcheck
from burnin.kernels.base import KernelContext, StepTimer, share_field, summarize
from burnin.kernels.registry import register

DType = Literal["fp32", "tf32", "bf16", "fp16", "fp8"]
# Largest |input| per dtype so that k·max² stays exact in the fp32 accumulator (< 2^24) and the
# product fits the output type (fp16 max 65504), for k up to 16384. fp8 keeps |sum| <= k < 2^14
# because Hopper's fp8 tensor cores keep about 14 bits while accumulating (DeepSeek-V3 technical
# report, FP8 training: accumulation precision).
_INPUT_RANGE = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 1, "fp8": 1}
_FREIVALDS_RANGE = 1024  # r in [-1024, 1024]: a wrong reference escapes with p <= 1/2049
# The known-answer product runs once per this many stress products (and at the first and any
# last-chance verification), so it costs at most 1 % of the stress work whatever the dtype.
_KNOWN_ANSWER_EVERY = 100
_PROBE_BLOCKS = 16  # probe = 16 row-block sums of C·r, the tolerance-mode fingerprint
_CROSS_SEED = 7919  # the random-float product's seed offset (any constant shared by all devices)


def _rng(lo: float, hi: float | None = None) -> dict[str, float | None]:
    return {"min": lo, "max": hi}


@register("matmul")
class Matmul:
    """Dense matmul C = A·B per dtype, timed, every result checked bit for bit."""

    @dataclass(frozen=True, kw_only=True)
    class Config:
        dtype: DType = "bf16"  # main dtype on a GPU, reported as matmul_tflops; runs first
        dtypes: tuple[DType, ...] = ("bf16", "fp16", "tf32", "fp32")  # every dtype run on a GPU
        cpu_dtype: DType = "fp32"
        # Extra dtypes on the CPU: bf16/fp16 run ~100x slower than fp32 on AVX2 CPUs (1.4 vs
        # 139 GFLOP/s measured at 256³ on an EPYC), so none by default.
        cpu_dtypes: tuple[DType, ...] = ()
        share: float = share_field()
        # m = n = k on a GPU; at most 16384 so every known answer stays exact (see _INPUT_RANGE)
        size: int = field(default=8192, metadata=_rng(16, 16384))
        cpu_size: int = field(default=256, metadata=_rng(16, 8192))
        # GPU: fill this share of free memory with output buffers written in turn (gpu-burn
        # uses 0.9); 0 = one output buffer.
        mem_fraction: float = field(default=0.0, metadata=_rng(0.0, 0.95))
        warmup_steps: int = field(default=3, metadata=_rng(0, 1000))
        batch_s: float = field(default=0.1, metadata=_rng(0.001, 60.0))
        verify_every: int = field(default=1, metadata=_rng(1, 1_000_000))  # batches

    def run(self, ctx: KernelContext) -> dict[str, Any]:
        import torch

        cfg: Matmul.Config = ctx.config
        n = cfg.size if ctx.is_cuda else cfg.cpu_size
        main = cfg.dtype if ctx.is_cuda else cfg.cpu_dtype
        extra = cfg.dtypes if ctx.is_cuda else cfg.cpu_dtypes
        wanted = [main, *[d for d in dict.fromkeys(extra) if d != main]]
        skipped = {d: why for d in wanted if (why := _unsupported(torch, ctx, d))}
        names = [d for d in wanted if d not in skipped]
        start = ctx.monotonic()
        share_s = ctx.duration_s / max(len(names), 1)
        runs: dict[str, dict[str, Any]] = {}
        steps = 0
        for i, name in enumerate(names):
            if ctx.should_stop():
                break
            run = _DtypeRun(torch, ctx, cfg, name, n, first_step=steps)
            runs[name] = run.execute(deadline=start + share_s * (i + 1))
            steps = run.steps
            del run
            if ctx.is_cuda:
                torch.cuda.empty_cache()
        return _result(ctx, main, n, steps, runs, skipped)


class _DtypeRun:
    """One dtype's operands, output buffers, timed loop and checks."""

    def __init__(
        self, torch: Any, ctx: KernelContext, cfg: Matmul.Config, name: str, n: int, first_step: int
    ) -> None:
        self.torch, self.ctx, self.cfg, self.name, self.n = torch, ctx, cfg, name, n
        self.steps = first_step
        self.one = torch.ones((), device=ctx.device, dtype=torch.float32)  # fp8 unit scales
        _set_math_mode(torch, ctx, name)
        self.a_known, self.b_known, self.expected = _known_answer_inputs(torch, ctx, n, name)
        self.known_out = torch.empty_like(self.expected)
        self.a, self.b = _random_inputs(torch, ctx, n, name)
        self.first: Any = None  # the first verified stress result: self and cross reference
        self.scratch: Any = None  # a tie-breaking product, allocated on the first mismatch
        self.outs = _output_buffers(torch, ctx, cfg.mem_fraction, self.expected)
        self.cross: dict[str, Any] = {}
        self.counts = {"verifications": 0, "failed_verifications": 0, "wrong_elements": 0}
        self.counts |= {"known_checks": 0, "self_checks": 0, "self_failed": 0}
        self.known_at = -_KNOWN_ANSWER_EVERY  # stress step of the last known-answer check
        ctx.heartbeat()  # building n x n operands and the fp64 reference takes seconds

    def mm(self, a: Any, b: Any, out: Any) -> None:
        if self.name == "fp8":
            one = self.one
            self.torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=out.dtype, out=out)
        else:
            self.torch.matmul(a, b, out=out)

    def batch_fn(self) -> Any:
        """``run(count, k)``: queue ``count`` stress products into the buffers from ``k`` on.

        The inner loop is as tight as a bare loop's: no per-step attribute lookups or calls
        beyond the matmul itself, which matters for small CPU sizes (a 64³ step is ~4 µs).
        """
        torch, a, b, outs = self.torch, self.a, self.b, self.outs
        count_outs = len(outs)
        if self.name == "fp8":
            scaled_mm, one, out_dtype = torch._scaled_mm, self.one, outs[0].dtype

            def run_fp8(count: int, k: int) -> int:
                for i in range(k, k + count):
                    out = outs[i % count_outs]
                    scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=out_dtype, out=out)
                return k + count

            return run_fp8
        matmul = torch.matmul
        if count_outs == 1:
            out = outs[0]

            def run_one(count: int, k: int) -> int:
                for _ in range(count):
                    matmul(a, b, out=out)
                return k + count

            return run_one

        def run_many(count: int, k: int) -> int:
            for i in range(k, k + count):
                matmul(a, b, out=outs[i % count_outs])
            return k + count

        return run_many

    def execute(self, deadline: float) -> dict[str, Any]:
        ctx, cfg, torch = self.ctx, self.cfg, self.torch
        flops_per_step = 2.0 * self.n**3
        timer = StepTimer(ctx)
        outs, k = self.outs, 0
        run_batch = self.batch_fn()
        for _ in range(max(cfg.warmup_steps, 1)):
            self.mm(self.a, self.b, outs[0])
        timer.start()
        self.mm(self.a, self.b, outs[0])
        batch = ctx.seam.batch_steps("matmul", max(1, int(cfg.batch_s / max(timer.stop_s(), 1e-6))))

        tflops: list[float] = []
        timed_s = verify_s = 0.0
        window_work = window_s = 0.0
        # Loop, verification and progress times follow the device's clock (a simulated card's
        # is its modelled time, in which a host-side verification takes none).
        last_progress = loop_t0 = ctx.monotonic()
        batches = 0
        while True:
            timer.start()
            k = run_batch(batch, k)
            elapsed_s = timer.stop_s()
            delay_s = ctx.seam.delay_s(elapsed_s, "matmul")
            if delay_s:
                time.sleep(delay_s)
            self.steps += batch
            batches += 1
            work = flops_per_step * batch
            device_s = ctx.seam.device_time_s("matmul", elapsed_s + delay_s, work)
            timed_s += elapsed_s + delay_s
            tflops.append(work / device_s / 1e12)
            window_work, window_s = window_work + work, window_s + device_s
            ctx.heartbeat()
            done = ctx.monotonic() >= deadline or ctx.should_stop()
            if batches % cfg.verify_every == 0 or (done and not self.counts["verifications"]):
                t0 = ctx.monotonic()
                newest = outs[(k - 1) % len(outs)]
                older = outs[self.counts["verifications"] % len(outs)]
                self.verify([newest] if older is newest else [newest, older], last=done)
                verify_s += ctx.monotonic() - t0
            now = ctx.monotonic()
            if now - last_progress >= 1.0 or done:
                last_progress = now
                ctx.emit(
                    {
                        "type": "progress",
                        "kernel": "matmul",
                        "dtype": self.name,
                        "steps": self.steps,
                        "tflops": window_work / window_s / 1e12,
                    }
                )
                window_work = window_s = 0.0
            if done:
                break
        loop_s = ctx.monotonic() - loop_t0
        if ctx.is_cuda:
            torch.cuda.synchronize(ctx.device)
        return {
            "tflops": summarize(tflops),
            "batches": batches,
            "batch_steps": batch,
            "buffers": len(outs),
            "loop_s": loop_s,
            "timed_s": timed_s,
            "verify_s": verify_s,
            "cross": self.cross,
            **self.counts,
        }

    def verify(self, stress_outputs: list[Any], last: bool = False) -> None:
        """Known answer (one extra, untimed product, at most 1 % of the products), then the
        stress outputs against the first one bit for bit (memory-bound: cheap every batch)."""
        torch, ctx, counts = self.torch, self.ctx, self.counts
        counts["verifications"] += 1
        failed = False
        due = self.steps - self.known_at >= _KNOWN_ANSWER_EVERY
        if due or (last and not counts["known_checks"]):
            self.known_at = self.steps
            counts["known_checks"] += 1
            self.mm(self.a_known, self.b_known, self.known_out)
            got = ctx.seam.corrupt(self.known_out, self.steps)
            if not bitcheck.same_bits(torch, got, self.expected):
                found = bitcheck.diff(torch, got, self.expected)
                failed = True
                counts["wrong_elements"] += found["wrong_elements"]
                self._emit_verify("known-answer", found)
        for buf in stress_outputs:
            got = ctx.seam.corrupt(buf, self.steps)
            if self.first is None:
                # The first stress result is the reference of every later one and the digest
                # the other devices compare with; a wrong one shows in both comparisons.
                self.first = got.clone()
                self.cross = _digest(torch, got, self.steps)
                continue
            counts["self_checks"] += 1
            if bitcheck.same_bits(torch, got, self.first):
                continue
            found = bitcheck.diff(torch, got, self.first)
            failed = True
            counts["self_failed"] += 1
            counts["wrong_elements"] += found["wrong_elements"]
            if self._reference_was_wrong(got):
                # One wrong product either way; from now on compare with a result that a
                # third product confirmed, or every later correct result would count as wrong.
                self.first = got.clone()
                found["note"] = "the reference was the wrong result; replaced by a confirmed one"
            self._emit_verify("self-consistency", found)
        counts["failed_verifications"] += failed

    def _reference_was_wrong(self, got: Any) -> bool:
        """Break a tie between the reference and a differing result with one more product."""
        if self.scratch is None:
            self.scratch = self.torch.empty_like(self.first)
        self.mm(self.a, self.b, self.scratch)
        third = self.ctx.seam.corrupt(self.scratch, self.steps)
        return bitcheck.same_bits(self.torch, third, got) and not bitcheck.same_bits(
            self.torch, third, self.first
        )

    def _emit_verify(self, check: str, found: dict[str, Any]) -> None:
        self.ctx.emit(
            {
                "type": "verify",
                "kernel": "matmul",
                "check": check,
                "dtype": self.name,
                "step": self.steps,
                **found,
            }
        )


def _unsupported(torch: Any, ctx: KernelContext, name: str) -> str | None:
    """Why ``name`` cannot run on this device (None = it can)."""
    if name != "fp8":
        return None
    if not (hasattr(torch, "float8_e4m3fn") and hasattr(torch, "_scaled_mm")):
        return f"torch {torch.__version__} has no fp8 matmul"
    if ctx.is_cuda and torch.cuda.get_device_capability(ctx.device) < (8, 9):
        return "fp8 tensor cores need compute capability 8.9 or later"
    one = torch.ones((), device=ctx.device, dtype=torch.float32)
    probe = torch.ones(16, 16, device=ctx.device).to(torch.float8_e4m3fn)
    try:  # the CPU build emulates fp8; some builds or drivers lack the kernel altogether
        torch._scaled_mm(probe, probe.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    except (RuntimeError, NotImplementedError) as exc:
        return f"fp8 matmul unavailable here: {str(exc).splitlines()[0][:160]}"
    return None


def _torch_dtype(torch: Any, name: str) -> tuple[Any, Any]:
    """(input dtype, output dtype) of a matmul in ``name``."""
    if name == "fp8":
        return torch.float8_e4m3fn, torch.bfloat16
    dtype = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16}
    dtype["fp16"] = torch.float16
    return dtype[name], dtype[name]


def _set_math_mode(torch: Any, ctx: KernelContext, name: str) -> None:
    if not ctx.is_cuda:
        return  # the CPU has no TF32: "tf32" runs as fp32 there
    torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
    # Reduced-precision split-K reductions would make the exact answer inexact.
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False


def _known_answer_inputs(torch: Any, ctx: KernelContext, n: int, name: str) -> tuple[Any, ...]:
    """Seeded integer inputs and their exact product, proved right off the device."""
    in_dtype, out_dtype = _torch_dtype(torch, name)
    gen = torch.Generator(device="cpu").manual_seed(ctx.seed)
    r = _INPUT_RANGE[name]
    a64 = torch.randint(-r, r + 1, (n, n), generator=gen, dtype=torch.float64)
    b64 = torch.randint(-r, r + 1, (n, n), generator=gen, dtype=torch.float64)
    a, b = a64.to(ctx.device), b64.to(ctx.device)
    c64 = a @ b
    bad_rows = _freivalds_bad_rows(torch, a64, b64, c64.cpu(), gen)
    if bad_rows:
        # The device's own fp64 product is wrong: that is a wrong answer too. Record it and
        # fall back to the CPU's product, so the run still has a true reference.
        ctx.emit(
            {
                "type": "verify",
                "kernel": "matmul",
                "check": "reference",
                "dtype": name,
                "step": 0,
                "wrong_elements": len(bad_rows),
                "wrong_rows": len(bad_rows),
                "rows": bad_rows[:16],
            }
        )
        c64 = (a64 @ b64).to(ctx.device)
    expected = c64.to(out_dtype)
    if name == "fp8":
        # _scaled_mm wants its second operand column-major.
        return a.to(in_dtype), b.to(in_dtype).t().contiguous().t(), expected
    return a.to(in_dtype), b.to(in_dtype), expected


def _freivalds_bad_rows(torch: Any, a64: Any, b64: Any, c64: Any, gen: Any) -> list[int]:
    """Rows where C·r != A·(B·r), in exact fp64 on the CPU: with |c| <= k·4² <= 2^18 and
    |r| <= 2^10, every partial sum of C·r and A·(B·r) stays below 2^42 < 2^53."""
    n = a64.shape[0]
    r = torch.randint(-_FREIVALDS_RANGE, _FREIVALDS_RANGE + 1, (n,), generator=gen)
    r = r.to(torch.float64)
    bad = torch.nonzero(c64 @ r != a64 @ (b64 @ r)).flatten()
    return [int(i) for i in bad.tolist()]


def _random_inputs(torch: Any, ctx: KernelContext, n: int, name: str) -> tuple[Any, Any]:
    """The random-float operands every device shares (same seed): all mantissa bits in play."""
    in_dtype, _ = _torch_dtype(torch, name)
    gen = torch.Generator(device="cpu").manual_seed(ctx.seed + _CROSS_SEED)
    a = torch.randn(n, n, generator=gen).to(ctx.device).to(in_dtype)
    b = torch.randn(n, n, generator=gen).to(ctx.device).to(in_dtype)
    if name == "fp8":
        b = b.t().contiguous().t()
    return a, b


def _output_buffers(torch: Any, ctx: KernelContext, fraction: float, like: Any) -> list[Any]:
    if not ctx.is_cuda or fraction <= 0:
        return [torch.empty_like(like)]
    torch.cuda.empty_cache()
    free_b, _total_b = torch.cuda.mem_get_info(ctx.device)
    per_b = like.numel() * like.element_size()
    count = max(1, min(int(free_b * fraction) // per_b, 4096))
    return [torch.empty_like(like) for _ in range(count)]


def _digest(torch: Any, result: Any, step: int) -> dict[str, Any]:
    """SHA-256 of the raw result bits plus a probe: 16 row-block sums of C·r in fp64.

    The fp64 work stays on the device (milliseconds on a GPU); only the raw bits cross to the
    host for the hash, which reads the tensor's buffer without another copy.
    """
    raw = bitcheck.raw_view(torch, result).contiguous().cpu()
    sha = hashlib.sha256(raw.numpy()).hexdigest()
    gen = torch.Generator(device="cpu").manual_seed(_CROSS_SEED)
    r = torch.randint(0, 2, (result.shape[1],), generator=gen).to(torch.float64) * 2 - 1
    wide = result.to(torch.float64)
    rows = wide @ r.to(result.device)
    probe = torch.stack([block.sum() for block in rows.chunk(_PROBE_BLOCKS)]).tolist()
    scale = float(wide.abs().mean())
    return {"sha256": sha, "probe": probe, "scale": scale, "step": step}


def _environment(torch: Any, ctx: KernelContext) -> dict[str, Any]:
    """What must match for two devices' results to be bitwise comparable."""
    env: dict[str, Any] = {"torch": torch.__version__, "kind": ctx.device.type}
    if ctx.is_cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        env |= {
            "cuda": torch.version.cuda,
            "cublas": _cublas_version(),
            "device_name": props.name,
            "sm_count": props.multi_processor_count,
            "capability": f"{props.major}.{props.minor}",
        }
    else:
        env |= {
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "node": ctx.node,
        }
    return env


def _cublas_version() -> str | None:
    """The cuBLAS wheel torch loads: pip installs it apart from torch, so it can differ."""
    import importlib.metadata

    for dist in ("nvidia-cublas-cu12", "nvidia-cublas-cu13", "nvidia-cublas"):
        try:
            return f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _result(
    ctx: KernelContext,
    main: str,
    n: int,
    steps: int,
    runs: dict[str, dict[str, Any]],
    skipped: dict[str, str],
) -> dict[str, Any]:
    import torch

    # A dtype that measured nothing gets no figure: 0.0 would read as a measured dead card (or,
    # beside identical peers, as a pass); no metric leaves the verdicts to the lifecycle checks.
    metrics: dict[str, float] = {}
    for name, run in runs.items():
        if "p50" in run["tflops"]:
            metrics[f"matmul_{name}_tflops"] = run["tflops"]["p50"]
    head = main if main in runs else next(iter(runs), main)
    stats = runs.get(head, {}).get("tflops", {})
    if "p50" in stats:
        metrics |= {
            "matmul_tflops": stats["p50"],
            "matmul_tflops_min": stats["min"],
            "matmul_tflops_p99": stats["p99"],
            "matmul_tflops_cv": stats["cv"],
        }
    loop_s = sum(r["loop_s"] for r in runs.values())
    if loop_s:
        metrics["matmul_verify_overhead"] = sum(r["verify_s"] for r in runs.values()) / loop_s

    def total(key: str) -> int:
        return int(sum(r[key] for r in runs.values()))

    return {
        "type": "result",
        "kernel": "matmul",
        "dtype": head,
        "size": n,
        "seed": ctx.seed,
        "steps": steps,
        "metrics": metrics,
        "verifications": total("verifications"),
        "failed_verifications": total("failed_verifications"),
        "known_checks": total("known_checks"),
        "self_checks": total("self_checks"),
        "self_failed": total("self_failed"),
        "wrong_elements": total("wrong_elements"),
        "dtypes": {k: {f: v for f, v in r.items() if f != "cross"} for k, r in runs.items()},
        "cross": {k: r["cross"] for k, r in runs.items() if r["cross"]},
        "env": _environment(torch, ctx),
        "skipped_dtypes": skipped,
    }
