"""Host<->device copy bandwidth over PCIe: pinned host-to-device and device-to-host GB/s.

Copies go from page-locked (pinned) host memory, the only kind the DMA engines read at full
link speed, and are queued ``non_blocking`` so each batch is timed by CUDA events like a bare
loop. GB/s = bytes copied / t / 1e9. The ``pcie-bw`` verdict compares the slower direction with
the theoretical rate of the link the card reports. On the CPU fallback the same code copies
host memory to host memory; the result says ``link = "host-only"`` and the verdict SKIPs, since
there is no PCIe link to judge. Every ``verify_every`` batches the round trip (host -> device ->
second host buffer) is compared bit for bit with the source.

The node's devices measure one at a time: every GPU copying at once shares the host's memory
and root-complex bandwidth, and each would report its share of the node rather than its link.
A device holds the node's PCIe lock (an ``flock`` on ``nodes/<node>/pcie.lock`` in the run
directory, which the kernel releases when its holder dies, so a crashed card never blocks the
others) only while it measures, for its slice ``duration / devices`` of the kernel's time, and
heartbeats while it waits. The lock is taken inside this kernel alone and never while waiting
on another device, so it cannot deadlock with the all-reduce group. A modelled (simulated)
device, whose link rate does not depend on the others, takes no turn (``DeviceSeam.shares_host``)
and measures for the kernel's whole time. The worker has already
bound itself to the GPU's local CPUs (burnin/worker.py), so the pinned buffers, placed by first
touch, sit on the GPU's NUMA node.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from burnin.kernels import bitcheck
from burnin.kernels.base import KernelContext, calibrate_batches, share_field, summarize
from burnin.kernels.collectives import node_plan
from burnin.kernels.registry import register

_LOCK_POLL_S = 0.05  # wall seconds between two tries of the node's lock (heartbeat in between)


@register("pcie")
class Pcie:
    """Pinned H2D and D2H copy bandwidth, GB/s per step with min/p50/p99/cv."""

    @dataclass(frozen=True, kw_only=True)
    class Config:
        share: float = share_field()
        # Large enough that per-copy setup (~10 µs) is noise at 64 GB/s (256 MiB ≈ 4 ms).
        size_mib: int = field(default=256, metadata={"min": 1, "max": 1 << 16})
        cpu_size_mib: int = field(default=32, metadata={"min": 1, "max": 1 << 16})
        warmup_steps: int = field(default=2, metadata={"min": 0, "max": 1000})
        batch_s: float = field(default=0.1, metadata={"min": 0.001, "max": 60.0})
        verify_every: int = field(default=10, metadata={"min": 1, "max": 1_000_000})  # batches

    def run(self, ctx: KernelContext) -> dict[str, Any]:
        if not ctx.seam.shares_host("pcie"):  # a modelled link: no turn to wait for
            lock = {"waited_s": 0.0, "held_from": ctx.monotonic(), "shared_by": 1}
            return self._measure(ctx, ctx.duration_s, lock)
        try:
            sharing = len(node_plan(ctx.device_index, ctx.peers).devices)
        except ValueError:
            sharing = 1  # no readable plan: the slice is the whole kernel
        with node_lock(ctx) as lock:
            return self._measure(ctx, ctx.duration_s / sharing, {**lock, "shared_by": sharing})

    def _measure(self, ctx: KernelContext, slice_s: float, lock: dict[str, Any]) -> dict[str, Any]:
        import torch

        cfg: Pcie.Config = ctx.config
        mib = cfg.size_mib if ctx.is_cuda else cfg.cpu_size_mib
        nbytes = mib << 20
        pinned = ctx.is_cuda  # pin_memory needs the CUDA driver
        gen = torch.Generator(device="cpu").manual_seed(ctx.seed)
        source = torch.randint(0, 256, (nbytes,), generator=gen, dtype=torch.uint8)
        host_in = source.pin_memory() if pinned else source
        host_out = torch.empty(nbytes, dtype=torch.uint8, pin_memory=pinned)
        dev = torch.empty(nbytes, dtype=torch.uint8, device=ctx.device)
        ops = {
            "h2d": lambda: dev.copy_(host_in, non_blocking=pinned),
            "d2h": lambda: host_out.copy_(dev, non_blocking=pinned),
        }
        timer, batch = calibrate_batches(ctx, ops, cfg.warmup_steps, cfg.batch_s)

        gbps: dict[str, list[float]] = {"h2d": [], "d2h": []}
        counts = {"verifications": 0, "failed_verifications": 0, "wrong_elements": 0}
        deadline = ctx.monotonic() + slice_s
        batches = 0
        while True:
            batches += 1
            for name, op in ops.items():
                timer.start()
                for _ in range(batch[name]):
                    op()
                elapsed_s = timer.stop_s()
                work = float(nbytes * batch[name])
                gbps[name].append(work / ctx.seam.device_time_s("pcie", elapsed_s, work) / 1e9)
            ctx.heartbeat()
            done = ctx.monotonic() >= deadline or ctx.should_stop()
            # Verify every Nth batch, and the last one if none was (a short run checks too).
            if batches % cfg.verify_every == 0 or (done and not counts["verifications"]):
                counts["verifications"] += 1
                # stop_s() synchronised after the d2h batch, so host_out is complete.
                if not bitcheck.same_bits(torch, host_out, source):
                    found = bitcheck.diff(torch, host_out, source)
                    counts["failed_verifications"] += 1
                    counts["wrong_elements"] += found["wrong_elements"]
                    ctx.emit({"type": "verify", "kernel": "pcie", "check": "round-trip"} | found)
            if done:
                break
        h2d, d2h = summarize(gbps["h2d"]), summarize(gbps["d2h"])
        return {
            "type": "result",
            "kernel": "pcie",
            "size_mib": mib,
            "batches": batches,
            "pinned": pinned,
            "link": "pcie" if ctx.is_cuda else "host-only",
            "lock": {**lock, "held_to": ctx.monotonic()},
            "metrics": {
                "pcie_h2d_gbps": h2d["p50"],
                "pcie_d2h_gbps": d2h["p50"],
                "pcie_h2d_gbps_min": h2d["min"],
                "pcie_d2h_gbps_min": d2h["min"],
            },
            **counts,
        }


@contextlib.contextmanager
def node_lock(ctx: KernelContext) -> Iterator[dict[str, Any]]:
    """Hold the node's PCIe lock (see the module docstring); yields when and how long it waited.

    Without the node's folder of the run (a kernel run on its own) there is nobody to share
    with.
    """
    waited_from = ctx.monotonic()
    if "meet_dir" not in ctx.peers:
        yield {"waited_s": 0.0, "held_from": waited_from}
        return
    path = Path(ctx.peers["meet_dir"]) / "pcie.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if ctx.should_stop():  # one short batch, unlocked, and the kernel ends
                    yield {"waited_s": round(ctx.monotonic() - waited_from, 6), "held_from": None}
                    return
                ctx.heartbeat()
                time.sleep(_LOCK_POLL_S)
        held_from = ctx.monotonic()
        try:
            yield {"waited_s": round(held_from - waited_from, 6), "held_from": held_from}
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
