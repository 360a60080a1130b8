"""Shared plumbing of the ratio benchmarks: options, the telemetry sampler, interleaved rounds.

Each benchmark measures the harness kernel (verification on, telemetry sampled as in a real
run) and a bare torch loop of the same shape on the same device, in alternating order round by
round (ABBA: bare first in odd rounds, harness first in even ones) so drift in clocks,
temperature or neighbours' load falls on every side. The telemetry Sampler runs in a separate
process, as in a real run (the parent samples, the workers compute), so it takes no GIL time
from the timed loop; it polls the NVML device whose UUID is the timed CUDA device's, not NVML
index 0 (CUDA and NVML may number the GPUs differently). The reported ratio is the median of
the per-round ratios; the last line printed is always ``ratio=<harness/bare>``.
"""

from __future__ import annotations

import argparse
import multiprocessing
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
        if kind is bool:  # a flag
            parser.add_argument(f"--{name}", action="store_true", default=value, help=text)
        else:
            parser.add_argument(f"--{name}", type=kind, default=value, help=text)
    return parser.parse_args()


def setup_device(args: argparse.Namespace) -> Any:
    """The timed device, with an explicit CUDA index (``cuda`` alone means the current one)."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA GPU is visible")
        count = torch.cuda.device_count()
        index = torch.cuda.current_device() if device.index is None else device.index
        if not 0 <= index < count:
            raise SystemExit(f"--device {args.device}: no such GPU (visible: cuda:0..{count - 1})")
        # set_device needs an index: torch.device("cuda") without one raises.
        torch.cuda.set_device(index)
        device = torch.device("cuda", index)
    return device


def nvml_uuid(torch: Any, index: int) -> str:
    """The CUDA device's UUID as NVML spells it: ``GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx``."""
    import uuid

    raw = torch.cuda.get_device_properties(index).uuid
    data = getattr(raw, "bytes", None)
    text = str(uuid.UUID(bytes=bytes(data))) if data else str(raw)
    return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"


def context(device: Any, config: Any, duration_s: float, seed: int = 1234) -> Any:
    """A KernelContext like a worker's, with no faults and records kept in memory."""
    from burnin.kernels.base import DeviceSeam, KernelContext

    records: list[dict[str, Any]] = []
    return KernelContext(
        device=device,
        device_index=device.index or 0,
        node=socket.gethostname(),
        config=config,
        duration_s=duration_s,
        seed=seed,
        seam=DeviceSeam(seed=seed),
        emit=records.append,
    )


class Telemetry:
    """The real run's Sampler, in a child process, on the timed device (NVML by UUID on a GPU,
    the null backend on the CPU). ``description`` says what it samples."""

    def __init__(self, device: Any, interval_s: float = 1.0) -> None:
        import torch

        uuid = nvml_uuid(torch, device.index) if device.type == "cuda" else None
        mp = multiprocessing.get_context("spawn")  # no CUDA context may be forked
        self._stop = mp.Event()
        self._reply, child_end = mp.Pipe(duplex=False)
        self._proc = mp.Process(
            target=_sample_until, args=(uuid, interval_s, self._stop, child_end), daemon=True
        )
        self.description = ""

    def __enter__(self) -> Telemetry:
        self._proc.start()
        # Wait for the child to pick its device, so sampling runs before the first round.
        self.description = self._reply.recv() if self._reply.poll(120) else "did not start"
        print(f"# telemetry: {self.description}", flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._proc.join(timeout=30)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=5)


def _sample_until(uuid: str | None, interval_s: float, stop: Any, reply: Any) -> None:
    """Child process: sample the device with ``uuid`` (None: the CPU) until ``stop`` is set."""
    from burnin.devices import Device
    from burnin.runtime import default_telemetry
    from burnin.store import JsonlWriter
    from burnin.telemetry.sampler import Sampler

    kind = "cpu" if uuid is None else "cuda"
    client = default_telemetry([Device(index=0, kind=kind, name=kind, uuid=uuid)])
    index: int | None = 0 if uuid is None else None
    for i in range(client.device_count() if uuid is not None else 0):
        if (client.inventory(i).uuid or "").lower() == uuid.lower():
            index = i
            break
    backend = type(client).__name__
    if index is None:
        reply.send(f"{backend}: no device with UUID {uuid}; the harness side runs unsampled")
    else:
        what = f"NVML index {index} ({uuid})" if uuid else "the CPU"
        reply.send(f"{backend} on {what} every {interval_s:g} s, in a separate process")
    with tempfile.TemporaryDirectory(prefix="burnin-bench-") as tmp:
        samples = JsonlWriter(Path(tmp) / "samples.jsonl")
        events = JsonlWriter(Path(tmp) / "events.jsonl")
        sampler = Sampler(client, [(0, index)], samples, events, interval_s)
        sampler.start()
        parent = os.getppid()
        while not stop.wait(1.0) and os.getppid() == parent:
            pass  # an orphan (the benchmark was killed) stops sampling by itself
        sampler.stop()
        samples.close()
        events.close()
    client.close()


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
    others: dict[str, Callable[[], dict[str, float]]] | None = None,
    derived: dict[str, Callable[[dict[str, float]], float]] | None = None,
) -> list[dict[str, float]]:
    """Run every side ``rounds`` times, the order reversed every other round (ABBA); print one
    line per round. ``others`` are further sides, their figures prefixed with their name;
    ``derived`` figures are computed from each round's row."""
    sides: list[tuple[str, Callable[[], dict[str, float]]]] = [("bare", bare), ("", harness)]
    sides += list((others or {}).items())
    print("# round  " + "  ".join(f"{c:>16}" for c in columns), flush=True)
    rows = []
    for i in range(rounds):
        got = {name: fn() for name, fn in (sides if i % 2 == 0 else sides[::-1])}
        row = {f"{name}_{k}" if name else k: v for name, out in got.items() for k, v in out.items()}
        row["ratio"] = row["harness"] / row["bare_value"]
        row |= {name: fn(row) for name, fn in (derived or {}).items()}
        rows.append(row)
        print(f"  {i + 1:>5}  " + "  ".join(f"{row[c]:>16.6g}" for c in columns), flush=True)
    return rows


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)
