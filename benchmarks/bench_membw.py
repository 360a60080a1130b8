"""Harness membw vs a bare ``copy_`` loop, side by side on one device.

    python benchmarks/bench_membw.py --device cpu
    python benchmarks/bench_membw.py --device cuda --size 1024

The harness side is ``burnin.kernels.membw`` exactly as a worker runs it (copy and triad batches
alternating, data checks at the default cadence, a telemetry Sampler thread running); the bare
side is ``dst.copy_(src)`` on float32 arrays of the same size in batches of the same length with
one synchronisation per batch. GB/s = bytes read + written / t / 1e9 on both sides. Per round,
``ratio`` = harness copy p50 GB/s / bare copy p50 GB/s. Prints ``ratio=<median>`` last.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common


def bare_loop(torch: Any, device: Any, mib: int, seconds: float) -> dict[str, float]:
    """A plain copy loop: batches of ~0.05 s (the harness's copy share), p50 and mean GB/s."""
    from burnin.kernels.base import summarize

    n = mib * (1 << 20) // 4
    src = torch.rand(n, device=device)
    dst = torch.empty_like(src)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):
        dst.copy_(src)
    sync()
    t0 = time.perf_counter()
    dst.copy_(src)
    sync()
    batch = max(1, int(0.05 / max(time.perf_counter() - t0, 1e-6)))
    moved = 2.0 * 4 * n * batch
    per_batch: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        for _ in range(batch):
            dst.copy_(src)
        sync()
        per_batch.append(moved / (time.perf_counter() - t0) / 1e9)
    total_s = time.perf_counter() - start
    return {"value": summarize(per_batch)["p50"], "mean": moved * len(per_batch) / total_s / 1e9}


def harness(device: Any, mib: int, seconds: float) -> dict[str, float]:
    from burnin.kernels.membw import Membw

    cfg = Membw.Config(size_mib=mib, cpu_size_mib=mib)
    result = Membw().run(_common.context(device, cfg, seconds))
    if result["wrong_elements"]:
        raise SystemExit(f"the harness found {result['wrong_elements']} wrong elements")
    return {
        "harness": result["metrics"]["membw_copy_gbps"],
        "triad": result["metrics"]["membw_triad_gbps"],
        "verifications": float(result["verifications"]),
    }


def main() -> None:
    import torch

    args = _common.parse_args(
        "harness membw vs a bare copy_ loop",
        "MiB per array (default 1024 on a GPU, 64 on the CPU)",
        {},
    )
    device = _common.setup_device(args)
    mib = args.size or (1024 if device.type == "cuda" else 64)
    _common.header("bench_membw", device, args, f"size_mib={mib}")
    columns = ["bare_value", "harness", "triad", "ratio"]
    with _common.Telemetry(device):
        rows = _common.interleave(
            args.rounds,
            lambda: bare_loop(torch, device, mib, args.seconds),
            lambda: harness(device, mib, args.seconds),
            columns,
        )
    print(
        f"# median: bare copy {_common.median(rows, 'bare_value'):.6g} GB/s, harness copy "
        f"{_common.median(rows, 'harness'):.6g} GB/s, harness triad "
        f"{_common.median(rows, 'triad'):.6g} GB/s",
        flush=True,
    )
    print(f"ratio={_common.median(rows, 'ratio'):.4f}", flush=True)


if __name__ == "__main__":
    main()
