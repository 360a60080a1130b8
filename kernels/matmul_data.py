"""What a matmul run computes with and compares across devices: operands and dtypes.

The known-answer operands are seeded small integers whose exact product is computed once in
fp64 and proved right off the device (Freivalds: C·r = A·(B·r) on the CPU); the stress operands
are seeded random floats shared by every device of a run, whose reference product's SHA-256 and
probe vector (:func:`cross_digest`) let the ``sdc`` verdict compare devices; ``environment``
records what must match for two devices' results to be bitwise comparable.
"""

from __future__ import annotations

import hashlib
import platform
from typing import Any

from burnin.kernels import bitcheck
from burnin.kernels.base import KernelContext

# Largest |input| per dtype so that k·max² stays exact in the fp32 accumulator (< 2^24) and the
# product fits the output type (fp16 max 65504), for k up to 16384. fp8 keeps |sum| <= k: see
# _FP8_FAST_ACCUM_MAX_K in kernels/matmul.py for why that is exact.
_INPUT_RANGE = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 1, "fp8": 1}
_FREIVALDS_RANGE = 1024  # r in [-1024, 1024]: a wrong reference escapes with p <= 1/2049
_PROBE_BLOCKS = 16  # probe = 16 row-block sums of C·r, the tolerance-mode fingerprint
_CROSS_SEED = 7919  # the random-float product's seed offset (any constant shared by all devices)


def unsupported(torch: Any, ctx: KernelContext, name: str) -> str | None:
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
        torch._scaled_mm(
            probe,
            probe.t(),
            scale_a=one,
            scale_b=one,
            out_dtype=torch.bfloat16,
            use_fast_accum=True,
        )
    except (RuntimeError, NotImplementedError) as exc:
        return f"fp8 matmul unavailable here: {str(exc).splitlines()[0][:160]}"
    return None


def torch_dtype(torch: Any, name: str) -> tuple[Any, Any]:
    """(input dtype, output dtype) of a matmul in ``name``."""
    if name == "fp8":
        return torch.float8_e4m3fn, torch.bfloat16
    dtype = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16}
    dtype["fp16"] = torch.float16
    return dtype[name], dtype[name]


def set_math_mode(torch: Any, ctx: KernelContext, name: str) -> None:
    if not ctx.is_cuda:
        return  # the CPU has no TF32: "tf32" runs as fp32 there
    torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
    # Reduced-precision split-K reductions would make the exact answer inexact.
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False


def known_answer_inputs(torch: Any, ctx: KernelContext, n: int, name: str) -> tuple[Any, ...]:
    """Seeded integer inputs and their exact product, proved right off the device."""
    in_dtype, out_dtype = torch_dtype(torch, name)
    gen = torch.Generator(device="cpu").manual_seed(ctx.seed)
    r = _INPUT_RANGE[name]
    a64 = torch.randint(-r, r + 1, (n, n), generator=gen, dtype=torch.float64)
    b64 = torch.randint(-r, r + 1, (n, n), generator=gen, dtype=torch.float64)
    a, b = a64.to(ctx.device), b64.to(ctx.device)
    c64 = a @ b
    bad_rows = freivalds_bad_rows(torch, a64, b64, c64.cpu(), gen)
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


def freivalds_bad_rows(torch: Any, a64: Any, b64: Any, c64: Any, gen: Any) -> list[int]:
    """Rows where C·r != A·(B·r), in exact fp64 on the CPU: with |c| <= k·4² <= 2^18 and
    |r| <= 2^10, every partial sum of C·r and A·(B·r) stays below 2^42 < 2^53."""
    n = a64.shape[0]
    r = torch.randint(-_FREIVALDS_RANGE, _FREIVALDS_RANGE + 1, (n,), generator=gen)
    r = r.to(torch.float64)
    bad = torch.nonzero(c64 @ r != a64 @ (b64 @ r)).flatten()
    return [int(i) for i in bad.tolist()]


def random_inputs(torch: Any, ctx: KernelContext, n: int, name: str) -> tuple[Any, Any]:
    """The random-float operands every device shares (same seed): all mantissa bits in play."""
    in_dtype, _ = torch_dtype(torch, name)
    gen = torch.Generator(device="cpu").manual_seed(ctx.seed + _CROSS_SEED)
    a = torch.randn(n, n, generator=gen).to(ctx.device).to(in_dtype)
    b = torch.randn(n, n, generator=gen).to(ctx.device).to(in_dtype)
    if name == "fp8":
        b = b.t().contiguous().t()
    return a, b


def output_buffers(torch: Any, ctx: KernelContext, fraction: float, like: Any) -> list[Any]:
    if not ctx.is_cuda or fraction <= 0:
        return [torch.empty_like(like)]
    torch.cuda.empty_cache()
    free_b, _total_b = torch.cuda.mem_get_info(ctx.device)
    per_b = like.numel() * like.element_size()
    count = max(1, min(int(free_b * fraction) // per_b, 4096))
    return [torch.empty_like(like) for _ in range(count)]


def cross_digest(torch: Any, result: Any, step: int) -> dict[str, Any]:
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


def environment(torch: Any, ctx: KernelContext) -> dict[str, Any]:
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
