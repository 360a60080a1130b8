"""What telemetry sampling costs the stress: matmul throughput with and without the sampler.

    python benchmarks/bench_sampling.py --device cpu
    python benchmarks/bench_sampling.py --device cuda --size 8192 --dtype bf16

Target: sampling at 1 Hz on 8 GPUs costs < 1 % of kernel throughput. Both sides run
the same plain ``torch.matmul`` loop (batches of ~0.1 s, one synchronisation each); the harness
side also runs the real :class:`~burnin.telemetry.sampler.Sampler` thread polling 8 simulated
GPUs (:class:`~burnin.sim.telemetry.SimulatedTelemetry`, the same protocol and record path
as NVML: read, ``to_dict``, JSON line appended to ``samples.jsonl``) every ``--interval``
seconds. Rounds alternate which side goes first (ABBA). Throughput is each side's total work
over its whole time (a mean, so the sampler's brief bursts count), in TFLOP per second of this
process's CPU time on the CPU (neighbours' load on a shared machine cancels out; the sampler
thread's CPU counts) and per wall second on a GPU; both are printed. ``ratio`` = with sampler
/ without, median over rounds, printed last as ``ratio=<...>``. The cost of one poll measured
on its own is printed first, as a check on the ratio. The sampler shares the timing process
here on purpose (its GIL and CPU time are what is measured, a worst case: a real run samples
in the parent, apart from the workers); the other benchmarks sample in a separate process.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def matmul_loop(torch: Any, device: Any, dtype: str, n: int, seconds: float) -> dict[str, float]:
    """A plain matmul loop for ``seconds`` (batches of ~0.1 s): mean TFLOP/s per wall second
    and per second of this process's CPU time (sampler thread included)."""
    gen = torch.Generator(device="cpu").manual_seed(7)
    kind = getattr(torch, _DTYPES[dtype])
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=kind)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=kind)
    out = torch.empty(n, n, device=device, dtype=kind)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(3):
        torch.matmul(a, b, out=out)
    sync()
    t0 = time.perf_counter()
    torch.matmul(a, b, out=out)
    sync()
    batch = max(1, int(0.1 / max(time.perf_counter() - t0, 1e-6)))
    steps = 0
    start, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        for _ in range(batch):
            torch.matmul(a, b, out=out)
        sync()
        steps += batch
    wall_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu0
    work = 2.0 * n**3 * steps / 1e12
    return {"wall": work / wall_s, "cpu": work / max(cpu_s, 1e-9)}


class SimulatedSampling:
    """The run's Sampler thread on ``gpus`` simulated H100s, writing a real samples.jsonl."""

    def __init__(self, gpus: int, interval_s: float) -> None:
        from burnin.sim.model import board_for, build_gpu
        from burnin.sim.telemetry import SimulatedTelemetry
        from burnin.store import JsonlWriter
        from burnin.telemetry.sampler import Sampler

        board = board_for("H100-SXM5-80GB")
        cards = [build_gpu(board, seed=1, node=0, index=i, noise=0.01) for i in range(gpus)]
        self.client = SimulatedTelemetry(cards, load=dict.fromkeys(range(gpus), (0.0, 1e9)))
        self._dir = tempfile.TemporaryDirectory(prefix="burnin-bench-sampling-")
        root = Path(self._dir.name)
        self._samples = JsonlWriter(root / "samples.jsonl")
        self._events = JsonlWriter(root / "events.jsonl")
        devices = [(i, i) for i in range(gpus)]
        self.sampler = Sampler(self.client, devices, self._samples, self._events, interval_s)

    def __enter__(self) -> SimulatedSampling:
        self.sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sampler.stop()
        self._samples.close()
        self._events.close()
        self._dir.cleanup()


def poll_cost_s(gpus: int, polls: int = 300) -> float:
    """CPU time of one Sampler poll of ``gpus`` simulated GPUs, measured on its own (thread
    CPU time, so other processes on a shared machine do not inflate it)."""
    with SimulatedSampling(gpus, 3600.0) as sampling:
        start = time.thread_time()
        for k in range(polls):
            sampling.sampler.sample_once(float(k))  # one instant per poll, as the thread's
        return (time.thread_time() - start) / polls


def main() -> None:
    args = _common.parse_args(
        __doc__.splitlines()[0],
        "matrix size n (default 512 on the CPU, 8192 on a GPU)",
        {
            "dtype": (str, "fp32", "fp32, bf16 or fp16 (default fp32)"),
            "gpus": (int, 8, "simulated GPUs the sampler polls (default 8)"),
            "interval": (float, 1.0, "sampling interval in seconds (default 1)"),
        },
    )
    import torch

    device = _common.setup_device(args)
    n = args.size or (8192 if device.type == "cuda" else 512)
    _common.header(
        "bench_sampling",
        device,
        args,
        f"dtype={args.dtype} size={n} sampled_gpus={args.gpus} interval={args.interval:g}",
    )
    # On the CPU the loop and the sampler share the cores: throughput per CPU second of this
    # process is what sampling takes away, whatever other processes load the machine. On a GPU
    # the kernel's wall-clock throughput is what matters.
    basis = "wall" if device.type == "cuda" else "cpu"
    print(f"# ratio basis: TFLOP per {'wall' if basis == 'wall' else 'CPU'} second", flush=True)
    samples = []

    def bare() -> dict[str, float]:
        got = matmul_loop(torch, device, args.dtype, n, args.seconds)
        return {"value": got[basis], "wall": got["wall"]}

    def harness() -> dict[str, float]:
        with SimulatedSampling(args.gpus, args.interval) as sampling:
            got = matmul_loop(torch, device, args.dtype, n, args.seconds)
        samples.append(sampling.sampler.count)
        return {"harness": got[basis], "harness_wall": got["wall"], "samples": float(samples[-1])}

    poll_s = poll_cost_s(args.gpus)
    print(
        f"# one poll of {args.gpus} simulated GPUs (read, record, append): {poll_s * 1e3:.3f} ms "
        f"of CPU = {100 * poll_s / args.interval:.3f} % of one core at a {args.interval:g} s "
        "interval",
        flush=True,
    )
    columns = ["bare_value", "harness", "bare_wall", "harness_wall", "samples", "ratio"]
    rows = _common.interleave(args.rounds, bare, harness, columns)
    ratio = _common.median(rows, "ratio")
    print(
        f"# median: bare {_common.median(rows, 'bare_value'):.6g} TFLOP/s, with sampler "
        f"{_common.median(rows, 'harness'):.6g} TFLOP/s, {sum(samples)} samples taken; "
        f"sampling cost {100 * (1 - ratio):.2f} % (target < 1 %)"
    )
    print(f"ratio={ratio:.4f}")


if __name__ == "__main__":
    main()
