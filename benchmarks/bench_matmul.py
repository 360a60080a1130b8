"""Harness matmul vs a bare ``torch.matmul`` loop, side by side on one device.

    python benchmarks/bench_matmul.py --device cpu
    python benchmarks/bench_matmul.py --device cuda --dtype bf16 --size 8192

The harness side is ``burnin.kernels.matmul`` exactly as a worker runs it (known-answer,
self-consistency and cross-device checks at the default cadence, a telemetry Sampler thread
running); the bare side multiplies the same kind of operands (seeded random floats, same shape
and dtype) in batches of the same length with one synchronisation per batch. Per round:
``ratio`` = harness p50 TFLOP/s / bare p50 TFLOP/s (the measurement), ``effective`` = harness
work / loop wall time (checks and bookkeeping included) / bare mean TFLOP/s, and
``verify_overhead`` = the share of the harness loop spent in the checks, and
``cpu_time_ratio`` = stress work per CPU-second, harness (setup and checks included) over bare,
which other processes' load does not skew when one thread is used (``--threads 1``). Prints
``ratio=<median>`` last.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common


def bare_loop(torch: Any, device: Any, dtype_name: str, n: int, seconds: float) -> dict[str, float]:
    """A plain matmul loop: batches of ~0.1 s, one synchronisation each, p50 and mean TFLOP/s."""
    from burnin.kernels.base import summarize
    from burnin.kernels.matmul import _torch_dtype

    in_dtype, out_dtype = _torch_dtype(torch, dtype_name)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = dtype_name == "tf32"
    gen = torch.Generator(device="cpu").manual_seed(99)
    a = torch.randn(n, n, generator=gen).to(device).to(in_dtype)
    b = torch.randn(n, n, generator=gen).to(device).to(in_dtype)
    out = torch.empty(n, n, device=device, dtype=out_dtype)
    matmul, scaled_mm, one = torch.matmul, torch._scaled_mm, torch.ones((), device=device)
    fp8 = dtype_name == "fp8"
    if fp8:
        b = b.t().contiguous().t()  # _scaled_mm wants its second operand column-major

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def loop(count: int) -> None:  # the bare loop: nothing but the product, count times
        if fp8:
            for _ in range(count):
                scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=out_dtype, out=out)
        else:
            for _ in range(count):
                matmul(a, b, out=out)

    loop(3)
    sync()
    t0 = time.perf_counter()
    loop(1)
    sync()
    batch = max(1, int(0.1 / max(time.perf_counter() - t0, 1e-6)))
    flops = 2.0 * n**3 * batch
    per_batch: list[float] = []
    cpu0 = time.process_time()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        loop(batch)
        sync()
        per_batch.append(flops / (time.perf_counter() - t0) / 1e12)
    total_s = time.perf_counter() - start
    cpu_s = time.process_time() - cpu0
    return {
        "value": summarize(per_batch)["p50"],
        "mean": flops * len(per_batch) / total_s / 1e12,
        "per_cpu_s": flops * len(per_batch) / cpu_s / 1e12,
    }


def harness(device: Any, dtype_name: str, n: int, seconds: float) -> dict[str, float]:
    from burnin.kernels.matmul import Matmul

    cfg = Matmul.Config(
        dtype=dtype_name, dtypes=(), cpu_dtype=dtype_name, cpu_dtypes=(), size=n, cpu_size=n
    )
    cpu0 = time.process_time()
    result = Matmul().run(_common.context(device, cfg, seconds))
    cpu_s = time.process_time() - cpu0  # setup and checks included: a conservative figure
    run = result["dtypes"][dtype_name]
    loop_flops = 2.0 * n**3 * run["batches"] * run["batch_steps"]
    if result["wrong_elements"]:
        raise SystemExit(f"the harness found {result['wrong_elements']} wrong elements")
    return {
        "harness": result["metrics"]["matmul_tflops"],
        "effective": loop_flops / run["loop_s"] / 1e12,
        "verify_overhead": result["metrics"]["matmul_verify_overhead"],
        "verifications": float(result["verifications"]),
        "per_cpu_s": loop_flops / cpu_s / 1e12,
    }


def main() -> None:
    import torch

    args = _common.parse_args(
        "harness matmul vs a bare torch.matmul loop",
        "m = n = k (default 8192 on a GPU, 256 on the CPU)",
        {"dtype": (str, None, "fp32, tf32, bf16, fp16, fp8 (default bf16 on a GPU, fp32 on CPU)")},
    )
    device = _common.setup_device(args)
    n = args.size or (8192 if device.type == "cuda" else 256)
    dtype_name = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    _common.header("bench_matmul", device, args, f"dtype={dtype_name} size={n}")
    columns = ["bare_value", "harness", "effective", "verify_overhead", "ratio"]
    with _common.Telemetry(device):
        rows = _common.interleave(
            args.rounds,
            lambda: bare_loop(torch, device, dtype_name, n, args.seconds),
            lambda: harness(device, dtype_name, n, args.seconds),
            columns,
        )
    bare = _common.median(rows, "bare_value")
    effective = _common.median([{"e": r["effective"] / r["bare_mean"]} for r in rows], "e")
    cpu_ratio = _common.median([{"c": r["per_cpu_s"] / r["bare_per_cpu_s"]} for r in rows], "c")
    print(
        f"# median: bare {bare:.6g} TFLOP/s, harness {_common.median(rows, 'harness'):.6g} "
        f"TFLOP/s, effective_ratio {effective:.4f} (checks included), verify_overhead "
        f"{100 * _common.median(rows, 'verify_overhead'):.2f} %, cpu_time_ratio {cpu_ratio:.4f} "
        "(TFLOP per CPU-second: robust to a loaded host with --threads 1)",
        flush=True,
    )
    print(f"ratio={_common.median(rows, 'ratio'):.4f}", flush=True)


if __name__ == "__main__":
    main()
