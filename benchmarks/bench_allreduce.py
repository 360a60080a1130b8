"""Harness all-reduce busbw vs a bare ``torch.distributed.all_reduce`` loop, same size, same ranks.

    python benchmarks/bench_allreduce.py                       # gloo, 2 ranks on the CPU
    python benchmarks/bench_allreduce.py --device cuda --size 268435456   # NCCL, one rank a GPU

Two sides per round on the same ranks (``torch.multiprocessing`` spawn, one process per rank),
in alternating order: the harness, ``burnin.kernels.allreduce`` exactly as a node's workers run
it (rendezvous through a FileStore, the verified sweep, then the stress loop: batches of about
``--batch`` seconds, every rank agreeing to go on after each, verified every few batches; its
figure is the stress phase's p50 busbw, the group's time per batch being its slowest rank's;
its stress phase lasts ``--seconds`` whatever its set-up took, see :class:`_StressClock`);
and a bare loop of ``all_reduce`` calls on a zero buffer of the same size, warmed up and sized
into batches as the kernel does (its ``warmup`` calls, the mean of its ``iterations`` calls,
then the fastest slowest-rank rate seen so far), each batch started together and timed as its
slowest rank's, p50 over batches. busbw
follows nccl-tests: ``S / t · 2(n−1)/n``, GB = 1e9 bytes. Each side forms its own process
group and tears it down. Prints ``ratio=<harness p50 / bare p50>`` (median over rounds) last.
``--noise-floor`` puts a second bare loop in the harness's place: the ratio the host's noise
alone gives, the yardstick for a ratio measured under load.
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

    cfg = _config(size, batch_s)
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

        for _ in range(cfg.warmup):
            dist.all_reduce(buf)
        sync()
        # Batches sized as the kernel sizes its stress batches: from the mean of its sweep's
        # ``iterations`` calls, then at the fastest slowest-rank rate seen so far.
        t0 = time.perf_counter()
        for _ in range(cfg.iterations):
            dist.all_reduce(buf)
        sync()
        elapsed_s = (time.perf_counter() - t0) / cfg.iterations
        last = torch.tensor([elapsed_s], dtype=torch.float64, device=device)
        fastest_s = float("inf")
        batches = max(1, round(seconds / batch_s))
        times = torch.zeros(batches, dtype=torch.float64, device=device)
        for i in range(batches):
            # The ranks start each batch together, as the kernel's agreement before each of
            # its batches makes them (otherwise one rank's late start counts as link time),
            # and every rank learns the slowest rank's last time per call.
            dist.all_reduce(last, op=dist.ReduceOp.MAX)
            fastest_s = min(fastest_s, float(last.item()))
            calls = max(1, int(batch_s / max(fastest_s, 1e-6)))
            sync()
            t0 = time.perf_counter()
            for _ in range(calls):
                dist.all_reduce(buf)
            sync()
            times[i] = last[0] = (time.perf_counter() - t0) / calls
        dist.all_reduce(times, op=dist.ReduceOp.MAX)  # the group is as fast as its slowest rank
        busbw = [bandwidth_gbps(buf.numel() * _ELEM_BYTES, t, ranks)[1] for t in times.tolist()]
        return {"value": statistics.median(busbw)}
    finally:
        dist.destroy_process_group()


def _config(size: int, batch_s: float) -> Any:
    """The kernel's configuration for one size; the bare side takes its warmup and sizing."""
    from burnin.kernels.allreduce import Allreduce

    return Allreduce.Config(
        sizes_bytes=(size,), cpu_sizes_bytes=(size,), pairwise=False, batch_s=batch_s
    )


class _StressClock:
    """The kernel's clock (``ctx.monotonic``) as this benchmark gives it: the host's, set back
    once, when the kernel reports its sweep, by the time its rendezvous and sweep took. The
    kernel's duration, ``--seconds`` as the bare side's, is then its stress phase alone however
    long a loaded host takes to set the group up, and its waits keep their timeouts meanwhile.
    No timed figure reads this clock (``perf_counter`` or CUDA events do)."""

    def __init__(self, emit: Any) -> None:
        self._emit = emit
        self._origin = time.monotonic()
        self._setup_s: float | None = None

    def __call__(self) -> float:
        return time.monotonic() - (self._setup_s or 0.0)

    def emit(self, record: dict[str, Any]) -> None:
        if self._setup_s is None and record.get("phase") == "sweep":
            self._setup_s = time.monotonic() - self._origin
        self._emit(record)


def harness(
    rank: int, ranks: int, device: Any, size: int, seconds: float, batch_s: float, meet: Path
) -> dict[str, float]:
    from burnin.kernels.allreduce import Allreduce

    cfg = _config(size, batch_s)
    ctx = _common.context(device, cfg, seconds)
    clock = _StressClock(ctx.emit)
    ctx.monotonic, ctx.emit = clock, clock.emit
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
    # Imported before the first round, so neither side's set-up pays for it.
    from burnin.kernels.allreduce import Allreduce  # noqa: F401
    from burnin.kernels.collectives import backend_for

    _env(backend_for(device.type))
    size, seconds, batch_s = args.size, args.seconds, args.batch
    counter = iter(range(1 << 30))

    def meet() -> Path:  # a fresh meeting place per side and round, the same on every rank
        path = Path(root) / f"m{next(counter)}"
        path.mkdir(exist_ok=True)
        return path

    def bare() -> dict[str, float]:
        return bare_loop(torch, rank, ranks, device, size, seconds, batch_s, meet())

    def measured() -> dict[str, float]:
        if args.noise_floor:  # the same bare loop in the harness's place: the noise floor
            return {"harness": bare()["value"]}
        return harness(rank, ranks, device, size, seconds, batch_s, meet())

    rows = _common.interleave(args.rounds, bare, measured, ["bare_value", "harness", "ratio"])
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
            "noise-floor": (
                bool,
                False,
                "a second bare loop in the harness's place: the ratio noise alone gives",
            ),
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
        "bench_allreduce",
        device,
        args,
        f"ranks={args.ranks} size={args.size} batch={args.batch:g}"
        + (" noise-floor (bare vs bare)" if args.noise_floor else ""),
    )
    with _common.Telemetry(device), tempfile.TemporaryDirectory(prefix="burnin-ar-") as root:
        mp.spawn(_rank, args=(args, args.ranks, root), nprocs=args.ranks, join=True)


if __name__ == "__main__":
    main()
