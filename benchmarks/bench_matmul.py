"""Harness matmul vs the same loop unverified vs a bare ``torch.matmul`` loop, on one device.

    python benchmarks/bench_matmul.py --device cpu
    python benchmarks/bench_matmul.py --device cuda:0 --dtype bf16 --size 8192

Three sides per round, in alternating order: the harness, ``burnin.kernels.matmul`` exactly as a
worker runs it (every product's digest on the device, known answer, the newest product bit for
bit, the cross-device digest; telemetry sampled in a separate process); the same kernel with
``verify_products`` off (the timed loop without per-product verification); and a bare loop
multiplying the same kind of operands (seeded random floats, same shape and dtype) in batches of
the same length with one synchronisation per batch. Per round: ``ratio`` = harness p50 TFLOP/s
/ bare p50 TFLOP/s; ``verify_overhead`` = 1 - harness p50 / unverified p50 (what checking every
product costs the timed loop); ``effective`` = harness work / loop wall time (untimed checks and
bookkeeping included) / bare mean TFLOP/s; ``check_share`` = the share of the harness loop
spent in the untimed checks; ``cpu_time_ratio`` = stress work per CPU-second, harness (setup
and checks included) over bare, which other processes' load does not skew when one thread is
used (``--threads 1``). Prints ``verify_overhead=<median>`` and then ``ratio=<median>`` last.

``--basis cpu`` (the default on the CPU) takes each side's throughput per second of this
process's CPU time in its timed batches instead of the batch p50 per wall second: on a shared
host, other processes' load stretches wall time (round ratios from 0.02 to 37 were seen) but
not the CPU time the work itself takes, above all with ``--threads 1``. The telemetry
sampler runs in its own process, so its CPU time is not counted. On a GPU the basis is wall
time (``--basis wall``), since CUDA runs asynchronously to the host's CPU time.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common


def bare_loop(
    torch: Any, device: Any, dtype_name: str, n: int, seconds: float, basis: str
) -> dict[str, float]:
    """A plain matmul loop: batches of ~0.1 s, one synchronisation each; ``value`` is the p50
    TFLOP/s (``basis`` wall) or the TFLOP per CPU-second of the loop (``basis`` cpu)."""
    from burnin.kernels.base import summarize
    from burnin.kernels.matmul_data import torch_dtype

    in_dtype, out_dtype = torch_dtype(torch, dtype_name)
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
                scaled_mm(
                    a, b, scale_a=one, scale_b=one, out_dtype=out_dtype, use_fast_accum=True,
                    out=out,
                )  # fmt: skip
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
    per_cpu_s = flops * len(per_batch) / cpu_s / 1e12
    return {
        "value": summarize(per_batch)["p50"] if basis == "wall" else per_cpu_s,
        "mean": flops * len(per_batch) / total_s / 1e12,
        "per_cpu_s": per_cpu_s,
    }


def harness(
    device: Any, dtype_name: str, n: int, seconds: float, basis: str, verify: bool = True
) -> dict[str, float]:
    from burnin.kernels.matmul import Matmul

    cfg = Matmul.Config(
        dtype=dtype_name,
        dtypes=(),
        cpu_dtype=dtype_name,
        cpu_dtypes=(),
        size=n,
        cpu_size=n,
        verify_products=verify,
    )
    cpu0 = time.process_time()
    result = Matmul().run(_common.context(device, cfg, seconds))
    cpu_s = time.process_time() - cpu0  # setup and checks included: a conservative figure
    run = result["dtypes"][dtype_name]
    loop_flops = 2.0 * n**3 * run["batches"] * run["batch_steps"]
    if result["wrong_elements"]:
        raise SystemExit(f"the harness found {result['wrong_elements']} wrong elements")
    metrics = result["metrics"]
    if verify and metrics["matmul_products_verified"] != metrics["matmul_products"]:
        raise SystemExit(f"only {metrics['matmul_products_verified']} products verified")
    timed_cpu_tflops = loop_flops / max(run["timed_cpu_s"], 1e-9) / 1e12
    return {
        "harness": metrics["matmul_tflops"] if basis == "wall" else timed_cpu_tflops,
        "effective": loop_flops / run["loop_s"] / 1e12,
        "check_share": metrics["matmul_verify_overhead"],
        "verifications": float(result["verifications"]),
        "per_cpu_s": loop_flops / cpu_s / 1e12,
    }


def main() -> None:
    import torch

    args = _common.parse_args(
        "harness matmul vs the same loop unverified vs a bare torch.matmul loop",
        "m = n = k (default 8192 on a GPU, 256 on the CPU)",
        {
            "dtype": (
                str,
                None,
                "fp32, tf32, bf16, fp16, fp8 (default bf16 on a GPU, fp32 on CPU)",
            ),
            "basis": (str, None, "wall (batch p50) or cpu (per CPU-second); default cpu on CPU"),
        },
    )
    device = _common.setup_device(args)
    n = args.size or (8192 if device.type == "cuda" else 256)
    dtype_name = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    basis = args.basis or ("wall" if device.type == "cuda" else "cpu")
    if basis not in ("wall", "cpu"):
        raise SystemExit(f"--basis: expected wall or cpu, got {basis!r}")
    _common.header("bench_matmul", device, args, f"dtype={dtype_name} size={n} basis={basis}")
    columns = ["bare_value", "harness", "unverified_harness", "verify_overhead", "effective"]
    with _common.Telemetry(device):
        rows = _common.interleave(
            args.rounds,
            lambda: bare_loop(torch, device, dtype_name, n, args.seconds, basis),
            lambda: harness(device, dtype_name, n, args.seconds, basis),
            [*columns, "ratio"],
            others={
                "unverified": lambda: harness(device, dtype_name, n, args.seconds, basis, False)
            },
            derived={"verify_overhead": lambda r: 1.0 - r["harness"] / r["unverified_harness"]},
        )
    median = _common.median
    unit = "TFLOP/s, batch p50" if basis == "wall" else "TFLOP per CPU-second of timed batches"
    effective = median([{"e": r["effective"] / r["bare_mean"]} for r in rows], "e")
    cpu_ratio = median([{"c": r["per_cpu_s"] / r["bare_per_cpu_s"]} for r in rows], "c")
    print(
        f"# median ({unit}): bare {median(rows, 'bare_value'):.6g}, harness "
        f"{median(rows, 'harness'):.6g} (every product verified), unverified "
        f"{median(rows, 'unverified_harness'):.6g}; effective_ratio {effective:.4f} "
        f"(untimed checks included), check_share {100 * median(rows, 'check_share'):.2f} %, "
        f"cpu_time_ratio {cpu_ratio:.4f} (TFLOP per CPU-second: robust to a loaded host with "
        "--threads 1)",
        flush=True,
    )
    print(f"verify_overhead={median(rows, 'verify_overhead'):.4f}", flush=True)
    print(f"ratio={median(rows, 'ratio'):.4f}", flush=True)


if __name__ == "__main__":
    main()
