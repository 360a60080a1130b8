"""Shared plumbing of the ratio benchmarks: options, the telemetry sampler, interleaved rounds.

Each benchmark measures the harness kernel (verification on, a telemetry Sampler thread
running, as in a real run) and a bare torch loop of the same shape on the same device, in
alternating order round by round (ABBA: bare first in odd rounds, harness first in even ones) so
drift in clocks, temperature or neighbours' load falls on both sides. The reported ratio is the
median of the per-round ratios; the last line printed is always ``ratio=<harness/bare>``.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def parse_args(description: str, size_help: str, defaults: dict[str, Any]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--size", type=int, default=None, help=size_help)
    # Many short rounds beat a few long ones on a shared host: a neighbour's burst of load then
    # lands on both sides instead of on one whole segment.
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per side per round")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds (default 20)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    for name, (kind, value, text) in defaults.items():
        parser.add_argument(f"--{name}", type=kind, default=value, help=text)
    return parser.parse_args()


def setup_device(args: argparse.Namespace) -> Any:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA GPU is visible")
        torch.cuda.set_device(device)
    return device


def context(device: Any, config: Any, duration_s: float, seed: int = 1234) -> Any:
    """A KernelContext like a worker's, with no faults and records kept in memory."""
    from burnin.kernels.base import DeviceSeam, KernelContext

    records: list[dict[str, Any]] = []
    return KernelContext(
        device=device,
        device_index=0,
        node=socket.gethostname(),
        config=config,
        duration_s=duration_s,
        seed=seed,
        seam=DeviceSeam(seed=seed),
        emit=records.append,
    )


class Telemetry:
    """The real run's Sampler thread (NVML on a GPU, the null backend on the CPU)."""

    def __init__(self, device: Any, interval_s: float = 1.0) -> None:
        from burnin.devices import Device
        from burnin.runtime import default_telemetry
        from burnin.store import JsonlWriter
        from burnin.telemetry.sampler import Sampler

        kind = "cuda" if device.type == "cuda" else "cpu"
        dev = Device(index=0, kind=kind, name=kind, torch_index=device.index or 0)
        self._dir = tempfile.TemporaryDirectory(prefix="burnin-bench-")
        root = Path(self._dir.name)
        self._samples = JsonlWriter(root / "samples.jsonl")
        self._events = JsonlWriter(root / "events.jsonl")
        self.client = default_telemetry([dev])
        self.sampler = Sampler(self.client, [(0, 0)], self._samples, self._events, interval_s)

    def __enter__(self) -> Telemetry:
        self.sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sampler.stop()
        self.client.close()
        self._samples.close()
        self._events.close()
        self._dir.cleanup()


def header(name: str, device: Any, args: argparse.Namespace, extra: str) -> None:
    import torch

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"# {name} device={device} ({gpu or platform.machine()}) {extra} rounds={args.rounds} "
        f"seconds={args.seconds:g} torch={torch.__version__} threads={torch.get_num_threads()} "
        f"cpus={os.cpu_count()} host={socket.gethostname()} "
        f"date={time.strftime('%Y-%m-%d', time.gmtime())}",
        flush=True,
    )


def interleave(
    rounds: int,
    bare: Callable[[], dict[str, float]],
    harness: Callable[[], dict[str, float]],
    columns: list[str],
) -> list[dict[str, float]]:
    """Run both sides ``rounds`` times in ABBA order; print one line per round."""
    print("# round  " + "  ".join(f"{c:>16}" for c in columns), flush=True)
    rows = []
    for i in range(rounds):
        if i % 2 == 0:
            b, h = bare(), harness()
        else:
            h, b = harness(), bare()
        row = {**{f"bare_{k}": v for k, v in b.items()}, **h}
        row["ratio"] = h["harness"] / b["value"]
        rows.append(row)
        print(f"  {i + 1:>5}  " + "  ".join(f"{row[c]:>16.6g}" for c in columns), flush=True)
    return rows


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)
