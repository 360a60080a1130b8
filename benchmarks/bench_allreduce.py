"""Harness all-reduce busbw vs a bare ``torch.distributed.all_reduce`` loop, same size, same ranks.

    python benchmarks/bench_allreduce.py                       # gloo, 2 ranks on the CPU
    python benchmarks/bench_allreduce.py --device cuda --size 268435456   # NCCL, one rank a GPU

Two sides per round on the same ranks (``torch.multiprocessing`` spawn, one process per rank),
in alternating order: the harness, ``burnin.kernels.allreduce`` exactly as a node's workers run
it (rendezvous through a FileStore, the verified sweep, then the stress loop: batches of about
``--batch`` seconds, every rank agreeing to go on after each, verified every few batches; its
figure is the stress phase's p50 busbw, the group's time per batch being its slowest rank's);
and a bare loop of ``all_reduce`` calls on a zero buffer of the same size in batches of the
same length, the batch time taken as the slowest rank's, p50 over batches. busbw follows
nccl-tests: ``S / t · 2(n−1)/n``, GB = 1e9 bytes. Each side forms its own process group and
tears it down. Prints ``ratio=<harness p50 / bare p50>`` (median over rounds) last.
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

_ELEM_BYTES = 4  # fp32, as the kernel
_SETUP_S = 1.0  # rendezvous, group set-up and the verified sweep of one size (gloo: ~0.3 s)


def _device(torch: Any, kind: str, rank: int) -> Any:
    return torch.device("cuda", rank) if kind == "cuda" else torch.device("cpu")


def _env(backend: str) -> None:
    """The kernel's group environment (loopback only), so both sides use the same transport."""
    from burnin.kernels.collectives import group_env

    loopback = next((n for _, n in socket.if_nameindex() if n.startswith("lo")), None)
    os.environ.update(group_env(backend, True, os.environ, loopback))


def bare_loop(
    torch: Any, rank: int, ranks: int, device: Any, size: int, seconds: float, batch_s: float,
    meet: Path,
) -> dict[str, float]:  # fmt: skip
    """A plain all_reduce loop; ``value`` is the p50 busbw of batches of ~``batch_s``."""
    import torch.distributed as dist

    from burnin.kernels.collectives import backend_for, bandwidth_gbps

    cuda = device.type == "cuda"
    store = dist.FileStore(str(meet / "bare.store"), ranks)
    dist.init_process_group(
        backend=backend_for(device.type), store=store, rank=rank, world_size=ranks,
        device_id=device if cuda else None,
    )  # fmt: skip
    try:
        buf = torch.zeros(max(1, size // _ELEM_BYTES), dtype=torch.float32, device=device)

        def sync() -> None:
            if cuda:
                torch.cuda.synchronize(device)

        for _ in range(5):  # the kernel's warmup
            dist.all_reduce(buf)
        sync()
        t0 = time.perf_counter()
        dist.all_reduce(buf)
        sync()
        # Every rank must make the same number of calls: the slowest rank's estimate decides.
        per_call = torch.tensor([time.perf_counter() - t0], dtype=torch.float64, device=device)
        dist.all_reduce(per_call, op=dist.ReduceOp.MAX)
        calls = max(1, int(batch_s / max(float(per_call.item()), 1e-6)))
        batches = max(1, round(seconds / batch_s))
        times = torch.zeros(batches, dtype=torch.float64, device=device)
        for i in range(batches):
            # The ranks start each batch together, as the kernel's agreement before each of
            # its batches makes them: otherwise one rank's late start counts as link time.
            dist.barrier()
            sync()
            t0 = time.perf_counter()
            for _ in range(calls):
                dist.all_reduce(buf)
            sync()
            times[i] = (time.perf_counter() - t0) / calls
        dist.all_reduce(times, op=dist.ReduceOp.MAX)  # the group is as fast as its slowest rank
        busbw = [bandwidth_gbps(buf.numel() * _ELEM_BYTES, t, ranks)[1] for t in times.tolist()]
        return {"value": statistics.median(busbw)}
    finally:
        dist.destroy_process_group()


def harness(
    rank: int, ranks: int, device: Any, size: int, seconds: float, batch_s: float, meet: Path
) -> dict[str, float]:
    from burnin.kernels.allreduce import Allreduce

    cfg = Allreduce.Config(
        sizes_bytes=(size,), cpu_sizes_bytes=(size,), pairwise=False, batch_s=batch_s
    )
    # The kernel's duration covers its rendezvous and sweep too: give those their time, so its
    # stress phase lasts about as long as the bare side.
    ctx = _common.context(device, cfg, seconds + _SETUP_S)
    ctx.device_index = rank
    ctx.peers = {"meet_dir": str(meet), "devices": list(range(ranks))}
    result = Allreduce().run(ctx)
    if result.get("error") or result.get("skipped"):
        raise SystemExit(f"rank {rank}: harness: {result.get('error') or result.get('skipped')}")
    if result["wrong"]:
        raise SystemExit(f"rank {rank}: the harness found {result['wrong']} wrong elements")
    if "allreduce_stress_busbw_gbps" not in result["metrics"]:
        raise SystemExit(f"rank {rank}: no stress batch in {seconds:g} s; raise --seconds")
    return {"harness": result["metrics"]["allreduce_stress_busbw_gbps"]}


def _rank(rank: int, args: Any, ranks: int, root: str) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if rank:  # one table: rank 0 prints it
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of this process
    device = _device(torch, args.device_type, rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    from burnin.kernels.collectives import backend_for

    _env(backend_for(device.type))
    size, seconds, batch_s = args.size, args.seconds, args.batch
    counter = iter(range(1 << 30))

    def meet() -> Path:  # a fresh meeting place per side and round, the same on every rank
        path = Path(root) / f"m{next(counter)}"
        path.mkdir(exist_ok=True)
        return path

    rows = _common.interleave(
        args.rounds,
        lambda: bare_loop(torch, rank, ranks, device, size, seconds, batch_s, meet()),
        lambda: harness(rank, ranks, device, size, seconds, batch_s, meet()),
        ["bare_value", "harness", "ratio"],
    )
    if rank == 0:
        median = _common.median
        print(
            f"# median (busbw GB/s, batch p50, slowest rank): bare {median(rows, 'bare_value'):.6g}"
            f", harness {median(rows, 'harness'):.6g}",
            flush=True,
        )
        print(f"ratio={median(rows, 'ratio'):.4f}", flush=True)


def main() -> None:
    import torch
    import torch.multiprocessing as mp

    args = _common.parse_args(
        "harness all-reduce busbw vs a bare torch.distributed.all_reduce loop",
        "bytes per all-reduce (default 1 MiB on the CPU, 256 MiB on GPUs)",
        {
            "ranks": (int, 2, "ranks (processes; on GPUs one GPU each); default 2"),
            "batch": (float, 0.1, "seconds per timed batch, both sides (default 0.1)"),
        },
    )
    device = _common.setup_device(args)
    args.device_type = device.type
    if device.type == "cuda" and torch.cuda.device_count() < args.ranks:
        raise SystemExit(f"--ranks {args.ranks}: only {torch.cuda.device_count()} GPUs visible")
    if args.ranks < 2:
        raise SystemExit(f"--ranks: an all-reduce needs 2 or more, got {args.ranks}")
    args.size = args.size or (1 << 28 if device.type == "cuda" else 1 << 20)
    _common.header(
        "bench_allreduce", device, args, f"ranks={args.ranks} size={args.size} batch={args.batch:g}"
    )
    with _common.Telemetry(device), tempfile.TemporaryDirectory(prefix="burnin-ar-") as root:
        mp.spawn(_rank, args=(args, args.ranks, root), nprocs=args.ranks, join=True)


if __name__ == "__main__":
    main()
