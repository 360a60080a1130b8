"""Matmul stress on random data that catches wrong answers three independent ways.

The timed loop multiplies seeded random floats (every mantissa bit toggling, the most power and
heat, like gpu-burn) in batches of about ``batch_s``, timed with CUDA events after warmup
(perf_counter on the CPU) with one synchronisation per batch, as a bare ``torch.matmul`` loop
has. TFLOP/s = 2·m·n·k / t / 1e12. The checks:
1. Every product: each product's raw bits are summed on the device into its own slot of a
   small int64 vector (one memory-bound reduction queued behind the product, so the host never
   waits inside the timed loop); after the batch the vector is read once and every digest must
   equal the reference's, the device's first stress product (one flipped bit always changes
   the sum). A wrong product still in an output buffer is then compared bit for bit, which
   names its wrong elements; one already overwritten counts as one wrong element (a lower
   bound). At each verification (every ``verify_every`` batches) the newest product is also
   compared bit for bit, where errors that would cancel in a sum cannot.
2. Known answer: one product of seeded integer-valued operands small enough that every partial
   sum is exact in the accumulator, so the exact product (computed once in fp64, then proved
   right off the device by a Freivalds check on the CPU: C·r = A·(B·r) in O(n²)) rounds to one
   representable value of the output dtype and any differing bit is an error. A card wrong the
   same way every time fails (gpu-burn and DCGM compare a card only with itself). It runs at
   most once per 100 stress products (<= 1 % extra work), untimed.
3. Cross-device: every device of a run multiplies the same seeded operands, so the reference
   product's SHA-256 (and a small probe vector) lets the ``sdc`` verdict name the odd device.
Each dtype gets an equal share of the duration. ``matmul_products`` and
``matmul_products_verified`` in the metrics count the stress products and those whose digest
was checked: equal unless ``verify_products`` is off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from burnin.errors import ConfigError
from burnin.kernels import bitcheck, matmul_data
from burnin.kernels.base import KernelContext, StepTimer, share_field, summarize
from burnin.kernels.registry import register

DType = Literal["fp32", "tf32", "bf16", "fp16", "fp8"]
# fp8 stress runs with fast accumulation, as fp8 training and inference do: the tensor cores then
# accumulate without the periodic promotion to fp32 (cuBLAS docs, CUBLASLT_MATMUL_DESC_FAST_ACCUM),
# keeping about 14 significant bits (DeepSeek-V3 technical report, FP8 training: accumulation
# precision). With fp8 inputs in {-1, 0, 1} every partial sum is an integer with |s| <= k, and
# at k <= 8192 = 2^13 every such integer has at most 13 significant bits, so the known answer
# stays exact on the fast path with a bit to spare. Above that the known-answer product (not
# the stress) takes the promoted path, where fp32 holds every |s| <= 16384 exactly.
_FP8_FAST_ACCUM_MAX_K = 8192
# torch._scaled_mm (cuBLASLt fp8) needs every matrix dimension divisible by 16
# (aten/src/ATen/native/cuda/Blas.cpp, _scaled_mm_out_cuda); refused when the config loads.
_FP8_SIZE_MULTIPLE = 16
# The known-answer product runs once per this many stress products (and at the first and any
# last-chance verification), so it costs at most 1 % of the stress work whatever the dtype.
_KNOWN_ANSWER_EVERY = 100


def _rng(lo: float, hi: float | None = None) -> dict[str, float | None]:
    return {"min": lo, "max": hi}


@register("matmul")
class Matmul:
    """Dense matmul C = A·B per dtype, timed, every product checked on the device."""

    @dataclass(frozen=True, kw_only=True)
    class Config:
        dtype: DType = "bf16"  # main dtype on a GPU, reported as matmul_tflops; runs first
        dtypes: tuple[DType, ...] = ("bf16", "fp16", "tf32", "fp32")  # every dtype run on a GPU
        cpu_dtype: DType = "fp32"
        # Extra dtypes on the CPU: bf16/fp16 run ~100x slower than fp32 on AVX2 CPUs (1.4 vs
        # 139 GFLOP/s measured at 256³ on an EPYC), so none by default.
        cpu_dtypes: tuple[DType, ...] = ()
        share: float = share_field()
        # m = n = k on a GPU; at most 16384 so every known answer stays exact (see
        # kernels/matmul_data.py); a multiple of 16 where fp8 runs (see _FP8_SIZE_MULTIPLE)
        size: int = field(default=8192, metadata=_rng(16, 16384))
        cpu_size: int = field(default=256, metadata=_rng(16, 8192))
        # GPU: fill this share of free memory with output buffers written in turn (gpu-burn
        # uses 0.9); 0 = one output buffer.
        mem_fraction: float = field(default=0.0, metadata=_rng(0.0, 0.95))
        warmup_steps: int = field(default=3, metadata=_rng(0, 1000))
        batch_s: float = field(default=0.1, metadata=_rng(0.001, 60.0))
        verify_every: int = field(default=1, metadata=_rng(1, 1_000_000))  # batches
        # Digest every product on the device (about 2-3 % of an 8192³ bf16 product's time on an
        # H100, the cost of reading its output once; see benchmarks/bench_matmul.py). Off, only
        # the newest product of each verification is checked and matmul_products_verified
        # stays below matmul_products, which the report shows.
        verify_products: bool = True

        def __post_init__(self) -> None:
            for size_key, main, extra in (
                ("size", self.dtype, self.dtypes),
                ("cpu_size", self.cpu_dtype, self.cpu_dtypes),
            ):
                size = getattr(self, size_key)
                if "fp8" in (main, *extra) and size % _FP8_SIZE_MULTIPLE:
                    raise ConfigError(
                        f"kernels.matmul.{size_key}",
                        f"fp8 needs a size divisible by {_FP8_SIZE_MULTIPLE} "
                        f"(torch._scaled_mm), got {size}",
                    )

    def run(self, ctx: KernelContext) -> dict[str, Any]:
        import torch

        cfg: Matmul.Config = ctx.config
        n = cfg.size if ctx.is_cuda else cfg.cpu_size
        main = cfg.dtype if ctx.is_cuda else cfg.cpu_dtype
        extra = cfg.dtypes if ctx.is_cuda else cfg.cpu_dtypes
        wanted = [main, *[d for d in dict.fromkeys(extra) if d != main]]
        skipped = {d: why for d in wanted if (why := matmul_data.unsupported(torch, ctx, d))}
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
        matmul_data.set_math_mode(torch, ctx, name)
        known = matmul_data.known_answer_inputs(torch, ctx, n, name)
        self.a_known, self.b_known, self.expected = known
        self.known_out = torch.empty_like(self.expected)
        self.a, self.b = matmul_data.random_inputs(torch, ctx, n, name)
        self.scratch: Any = None  # a tie-breaking product, allocated on the first mismatch
        self.outs = matmul_data.output_buffers(torch, ctx, cfg.mem_fraction, self.expected)
        self.digests: Any = None  # one int64 slot per product of a batch, on the device
        self.counts = {"verifications": 0, "failed_verifications": 0, "wrong_elements": 0}
        self.counts |= {"known_checks": 0, "self_checks": 0, "self_failed": 0}
        self.counts |= {"products": 0, "products_verified": 0, "wrong_products": 0}
        self.known_at = -_KNOWN_ANSWER_EVERY  # stress step of the last known-answer check
        # The first stress product is the reference of every later one and the digest the
        # other devices compare with; a wrong one shows in both comparisons.
        self.mm(self.a, self.b, self.outs[0])
        self.first = ctx.seam.corrupt(self.outs[0], self.steps).clone()
        self.reference = bitcheck.digest(torch, self.first)
        self.cross = matmul_data.cross_digest(torch, self.first, self.steps)
        ctx.heartbeat()  # building n x n operands and the fp64 reference takes seconds

    def mm(self, a: Any, b: Any, out: Any, fast_accum: bool = True) -> None:
        if self.name == "fp8":
            one = self.one
            self.torch._scaled_mm(
                a, b, scale_a=one, scale_b=one, out_dtype=out.dtype, use_fast_accum=fast_accum,
                out=out,
            )  # fmt: skip
        else:
            self.torch.matmul(a, b, out=out)

    def batch_fn(self, slots: list[Any] | None) -> Any:
        """``run(count, k, step)``: queue ``count`` stress products into the buffers from ``k``
        on, each followed (``slots`` given) by the sum of its raw words into ``slots[i]``.

        The product passes through the device seam first, where results leave the device. The
        inner loop stays tight (locals only, no allocation on the healthy path), which matters
        for small CPU sizes; on a GPU everything is queued and nothing waits.
        """
        torch, a, b, outs = self.torch, self.a, self.b, self.outs
        nbuf = len(outs)
        if self.name == "fp8":
            scaled_mm, one, out_dtype = torch._scaled_mm, self.one, outs[0].dtype

            def product(out: Any) -> None:
                scaled_mm(
                    a, b, scale_a=one, scale_b=one, out_dtype=out_dtype, use_fast_accum=True,
                    out=out,
                )  # fmt: skip
        else:
            matmul = torch.matmul

            def product(out: Any) -> None:
                matmul(a, b, out=out)

        if slots is None:

            def run_unchecked(count: int, k: int, step: int) -> int:
                for i in range(k, k + count):
                    product(outs[i % nbuf])
                return k + count

            return run_unchecked
        views = [bitcheck.words(torch, out) for out in outs]
        corrupt, tsum, int64, words = self.ctx.seam.corrupt, torch.sum, torch.int64, bitcheck.words

        def run_checked(count: int, k: int, step: int) -> int:
            for i in range(count):
                j = (k + i) % nbuf
                out = outs[j]
                product(out)
                got = corrupt(out, step, i, count)
                tsum(views[j] if got is out else words(torch, got), 0, dtype=int64, out=slots[i])
            return k + count

        return run_checked

    def execute(self, deadline: float) -> dict[str, Any]:
        ctx, cfg, torch = self.ctx, self.cfg, self.torch
        flops_per_step = 2.0 * self.n**3
        timer = StepTimer(ctx)
        outs, k = self.outs, 0
        for _ in range(max(cfg.warmup_steps, 1)):
            self.mm(self.a, self.b, outs[0])
        timer.start()
        self.mm(self.a, self.b, outs[0])
        batch = ctx.seam.batch_steps("matmul", max(1, int(cfg.batch_s / max(timer.stop_s(), 1e-6))))
        slots = None
        if cfg.verify_products:
            self.digests = torch.zeros(batch, dtype=torch.int64, device=ctx.device)
            slots = list(self.digests)  # 0-d views, made once: none per product
        run_batch = self.batch_fn(slots)

        tflops: list[float] = []
        timed_s = verify_s = timed_cpu_s = 0.0
        window_work = window_s = 0.0
        # Progress windows follow the device's clock (a simulated card's is its modelled time),
        # read once a batch and first after it; the loop's and the verification's costs are
        # the host's (perf_counter).
        last_progress: float | None = None
        loop_t0 = time.perf_counter()
        batches = 0
        while True:
            step = self.steps + batch
            cpu0 = time.process_time()  # CPU time: what a shared host's load does not skew
            timer.start()
            k = run_batch(batch, k, step)
            elapsed_s = timer.stop_s()
            timed_cpu_s += time.process_time() - cpu0
            delay_s = ctx.seam.delay_s(elapsed_s, "matmul")
            if delay_s:
                time.sleep(delay_s)
            self.steps = step
            self.counts["products"] += batch
            batches += 1
            work = flops_per_step * batch
            device_s = ctx.seam.device_time_s("matmul", elapsed_s + delay_s, work)
            timed_s += elapsed_s + delay_s
            tflops.append(work / device_s / 1e12)
            window_work, window_s = window_work + work, window_s + device_s
            ctx.heartbeat()
            now = ctx.monotonic()
            last_progress = now if last_progress is None else last_progress
            done = now >= deadline or ctx.should_stop()
            full = batches % cfg.verify_every == 0 or (done and not self.counts["verifications"])
            if full or slots is not None:
                t0 = time.perf_counter()
                self.verify(batch, k, step, full=full, last=done)
                verify_s += time.perf_counter() - t0
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
        loop_s = time.perf_counter() - loop_t0
        if ctx.is_cuda:
            torch.cuda.synchronize(ctx.device)
        return {
            "tflops": summarize(tflops),
            "batches": batches,
            "batch_steps": batch,
            "buffers": len(outs),
            "loop_s": loop_s,
            "timed_s": timed_s,
            "timed_cpu_s": timed_cpu_s,
            "verify_s": verify_s,
            "cross": self.cross,
            **self.counts,
        }

    def verify(self, count: int, k: int, step: int, full: bool, last: bool = False) -> None:
        """After a batch of ``count`` products (the last one written as product ``k - 1``):
        every product's digest; at a ``full`` verification also the known answer and the newest
        product bit for bit."""
        counts = self.counts
        counts["verifications"] += 1
        failed = self._known_answer(step, last) if full else False
        failed = self._products(count, k, step, full) or failed
        counts["failed_verifications"] += failed

    def _known_answer(self, step: int, last: bool) -> bool:
        """One extra, untimed product of the known-answer operands (at most 1 % of products)."""
        torch, ctx, counts = self.torch, self.ctx, self.counts
        if self.steps - self.known_at < _KNOWN_ANSWER_EVERY and not (
            last and not counts["known_checks"]
        ):
            return False
        self.known_at = self.steps
        counts["known_checks"] += 1
        self.mm(self.a_known, self.b_known, self.known_out, self.n <= _FP8_FAST_ACCUM_MAX_K)
        got = ctx.seam.corrupt(self.known_out, step)
        if bitcheck.same_bits(torch, got, self.expected):
            return False
        found = bitcheck.diff(torch, got, self.expected)
        counts["wrong_elements"] += found["wrong_elements"]
        self._emit_verify("known-answer", found)
        return True

    def _products(self, count: int, k: int, step: int, full: bool) -> bool:
        """Judge the batch's products against the reference; True when one was wrong."""
        torch, counts, nbuf = self.torch, self.counts, len(self.outs)
        wrong = self._wrong_products(count)
        # A wrong product still in its buffer can be compared bit for bit (the newest one at
        # every full verification, whatever its digest says).
        held = [i for i in wrong if i >= count - nbuf]
        look = held[-1] if held else (count - 1 if full else None)
        found, replaced = None, False
        if look is not None:
            buf = self.outs[(k - count + look) % nbuf]
            got = self.ctx.seam.corrupt(buf, step, look, count)
            counts["self_checks"] += 1
            if not bitcheck.same_bits(torch, got, self.first):
                if self._reference_was_wrong(got, step, count):
                    replaced = True
                    wrong = self._wrong_products(count, again=True)  # against a sound one
                else:
                    found = bitcheck.diff(torch, got, self.first)
                    wrong = sorted({*wrong, look})
                    found["position"] = look
        if not wrong:
            return replaced
        unseen = len(wrong) - (found is not None)
        record = dict(found or {})
        record["wrong_elements"] = (found or {}).get("wrong_elements", 0) + unseen
        record |= {"products": count, "wrong_products": len(wrong), "positions": wrong[:16]}
        if unseen:
            record["note"] = (
                f"{unseen} wrong product(s) overwritten before the check: one wrong element "
                "counted for each (a lower bound)"
            )
        counts["self_failed"] += 1
        counts["wrong_products"] += len(wrong)
        counts["wrong_elements"] += record["wrong_elements"]
        self._emit_verify("self-consistency", record)
        return True

    def _wrong_products(self, count: int, again: bool = False) -> list[int]:
        """Positions in the batch whose digest differs from the reference's (one read)."""
        if self.digests is None:
            return []
        self.counts["products_verified"] += 0 if again else count
        digests = self.digests[:count].tolist()
        return [i for i, d in enumerate(digests) if d != self.reference]

    def _reference_was_wrong(self, got: Any, step: int, count: int) -> bool:
        """Break a tie between the reference and a differing product with one more product;
        when it sides with the newer one, that becomes the reference (counted once, wrong)."""
        torch = self.torch
        if self.scratch is None:
            self.scratch = torch.empty_like(self.first)
        self.mm(self.a, self.b, self.scratch)
        # A new product, after the batch's ``count``: not one the seam already dealt with.
        third = self.ctx.seam.corrupt(self.scratch, step, count, count)
        same = bitcheck.same_bits
        if not same(torch, third, got) or same(torch, third, self.first):
            return False
        found = bitcheck.diff(torch, got, self.first)
        # From now on compare with a result a third product confirmed, or every later correct
        # result would count as wrong.
        self.first = third.clone()
        self.reference = bitcheck.digest(torch, self.first)
        found["note"] = "the reference was the wrong result; replaced by a confirmed one"
        self.counts["self_failed"] += 1
        self.counts["wrong_elements"] += found["wrong_elements"]
        self._emit_verify("self-consistency", found)
        return True

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

    if runs:  # stress products made, and those whose digest was checked: equal when healthy
        metrics["matmul_products"] = total("products")
        metrics["matmul_products_verified"] = total("products_verified")

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
        "wrong_products": total("wrong_products"),
        "wrong_elements": total("wrong_elements"),
        "dtypes": {k: {f: v for f, v in r.items() if f != "cross"} for k, r in runs.items()},
        "cross": {k: r["cross"] for k, r in runs.items() if r["cross"]},
        "env": matmul_data.environment(torch, ctx),
        "skipped_dtypes": skipped,
    }
