"""One process per device: run the planned kernels, append every record, never vanish silently.

The worker writes straight into the node's ``results.jsonl`` (one ``O_APPEND`` write per record),
so what it measured survives even if the parent dies. An exception inside a kernel becomes an
``error`` record with its traceback and a non-zero exit; the parent turns a missing ``done``
record into an ERROR verdict for the device.

Each worker leads its own session and process group, so the parent can kill it together with
anything it started (``os.killpg``), and a Ctrl-C at the terminal reaches only the parent, which
owns the shutdown. It watches a pipe from the parent: if the parent dies (even by ``kill -9``)
the pipe reads end-of-file and the worker records that it was orphaned and kills its own group,
so no stress outlives the run. Every heartbeat also gives the device seam its chance to realise
a ``hang``, ``crash`` or ``lost`` fault, so those faults happen where a real card fails.

Before torch allocates anything the worker binds itself to its GPU's CPUs (the inventory's
``cpu_affinity``), and its kernels get what they share with the node's other workers: the
node's heartbeats (so a rank waiting on a collective can name the peer that stopped answering)
and the run directory (where they meet, and the node's PCIe lock lives: kernels/pcie.py).

This module is preloaded in the forkserver together with torch (see burnin/supervisor.py), so it
imports nothing heavy at module level itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from burnin.plan import WorkItem
from burnin.store import JsonlWriter

# Values of a device's slot in the shared stop array, and the reason each one records.
RUN, STOP_INTERRUPTED, STOP_THERMAL = 0, 1, 2
STOP_REASONS = {STOP_INTERRUPTED: "interrupted", STOP_THERMAL: "thermal-guard"}


@dataclass(frozen=True, kw_only=True)
class WorkerArgs:
    """Everything a worker needs, picklable for forkserver and spawn alike."""

    item: WorkItem
    slot: int  # this device's index into the shared heartbeat and stop arrays
    results_path: str
    t0: float  # the run's start on the monotonic clock; records carry elapsed_s from it
    fsync_interval_s: float = 0.0
    # The node's devices -> their slots in the heartbeat array (a collective names stalled peers).
    slots: dict[int, int] = field(default_factory=dict)
    # The device's inventory placement: cpu_affinity (sorted CPU ids) and numa_node, if known.
    placement: dict[str, Any] = field(default_factory=dict)


def placement_of(inventory: Mapping[str, Any]) -> dict[str, Any]:
    """The placement keys of a device's inventory record (absent keys stay absent)."""
    return {k: inventory[k] for k in ("cpu_affinity", "numa_node") if k in inventory}


def cpu_binding(placement: Mapping[str, Any], available: set[int]) -> list[int] | None:
    """The CPUs to bind the worker to: the GPU's affine CPUs that exist here; None = no binding
    (no affinity known, or none of its CPUs is available to this process)."""
    wanted = placement.get("cpu_affinity")
    if not isinstance(wanted, list | tuple):
        return None
    cpus = sorted({c for c in wanted if isinstance(c, int) and not isinstance(c, bool)} & available)
    return cpus or None


def bind_cpus(placement: Mapping[str, Any]) -> dict[str, Any]:
    """Bind this process to its GPU's CPUs (before any pinned host memory is allocated).

    Pinned buffers are placed by first touch, on the NUMA node of the CPU that touches them,
    so once the worker runs only on the GPU's local CPUs its staging memory is local too and
    host<->device copies do not cross the socket interconnect.

    Returns:
        The binding for the worker's start record: ``cpu_affinity`` applied (None = unbound)
        and the inventory's ``numa_node``.
    """
    available = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    cpus = cpu_binding(placement, set(available))
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    return {"cpu_affinity": cpus, "numa_node": placement.get("numa_node")}


def worker_entry(args: WorkerArgs, beats: Any, stops: Any, alive: Any) -> None:
    """Process target: own process group, no Ctrl-C, orphan watch, then :func:`worker_main`."""
    with contextlib.suppress(OSError):  # already a session leader (called in-process)
        os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker_main(args, beats, stops, alive)


def worker_main(args: WorkerArgs, beats: Any, stops: Any, alive: Any = None) -> None:
    """Run every planned kernel of one device, emitting records as they are made.

    Args:
        args: the device's work and where to write.
        beats: shared array of heartbeat times (the device's clock), one slot per device.
        stops: shared array of stop requests (:data:`STOP_REASONS`), one slot per device.
        alive: read end of the parent's pipe; end-of-file means the parent is gone.
    """
    item, slot = args.item, args.slot
    out = JsonlWriter(Path(args.results_path), fsync_interval_s=args.fsync_interval_s)
    dev = item.device.index
    from burnin.kernels.base import DeviceSeam

    seam = (item.seam_factory or DeviceSeam)(seed=item.seed * 1000 + dev)
    # Record times, kernel deadlines and heartbeats are the device's time: the host's
    # monotonic clock on a real card, the modelled device time on a simulated one.
    clock = seam.clock(args.t0 + item.start_offset_s)
    started = clock()

    def emit(record: dict[str, Any]) -> None:
        out.write(
            {
                "device": dev,
                "node": item.node,
                "elapsed_s": round(clock() - args.t0, 6),
                **record,
            }
        )

    if alive is not None:
        _watch_parent(alive, emit)
    binding = bind_cpus(args.placement)

    def node_beats() -> dict[int, float]:
        return {d: float(beats[s]) for d, s in args.slots.items()}

    def should_stop() -> bool:
        return bool(stops[slot])

    try:
        import torch

        from burnin.kernels import registry
        from burnin.kernels.base import KernelContext

        def beat() -> None:
            seam.check_faults(clock() - started)
            beats[slot] = clock()

        if item.threads:
            torch.set_num_threads(item.threads)
        device = torch.device(item.device.torch_device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        beat()
        emit(
            {
                "type": "start",
                "pid": os.getpid(),
                "pgid": os.getpgid(0),
                "torch": torch.__version__,
                "binding": binding,
            }
        )
        for i, step in enumerate(item.kernels):
            if should_stop():
                break
            kernel = registry.get(step.name)()
            ctx = KernelContext(
                device=device,
                device_index=dev,
                node=item.node,
                config=step.config,
                duration_s=step.duration_s,
                seed=item.seed + i,
                seam=seam,
                emit=emit,
                heartbeat=beat,
                should_stop=should_stop,
                monotonic=clock,
                peers={
                    **node_peers(Path(args.results_path), item.node, dev, step.name),
                    # The node's heartbeats, so a collective can name a peer that stalled.
                    **({"beats": node_beats} if args.slots else {}),
                },
            )
            beat()
            emit({"type": "kernel-start", "kernel": step.name})
            emit(kernel.run(ctx))
        reason = STOP_REASONS.get(stops[slot])
        emit({"type": "done", "interrupted": reason == "interrupted", "stop_reason": reason})
    except Exception as exc:
        emit(
            {
                "type": "error",
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=20),
            }
        )
        raise SystemExit(1) from None
    finally:
        out.close()


def _watch_parent(alive: Any, emit: Any) -> None:
    """Kill this worker's whole process group once the parent's pipe reads end-of-file."""

    def wait() -> None:
        with contextlib.suppress(EOFError, OSError):
            alive.recv()  # the parent never sends: this returns only by EOF (or an error)
        try:
            emit({"type": "orphaned", "message": "the burnin parent process died; stopping"})
        finally:
            os.killpg(os.getpgid(0), signal.SIGKILL)

    threading.Thread(target=wait, name="burnin-orphan-watch", daemon=True).start()


def node_peers(results_path: Path, node: str, device: int, kernel: str) -> dict[str, Any]:
    """What a kernel learns of the node's other devices (``KernelContext.peers``).

    ``meet_dir`` is the node's folder of the run, where a collective's workers meet; the
    devices that run ``kernel`` on this node, the spread of their planned starts and the
    watchdog timeout come from the run's manifest, written before any worker starts. A
    manifest that cannot be read is ``plan_error``, reported by the kernel that needs it.

    Args:
        results_path: this device's ``<run>/nodes/<host>/results.jsonl``.
        node, device, kernel: who asks, for which kernel.
    """
    import json

    peers: dict[str, Any] = {"meet_dir": str(results_path.parent)}
    path = results_path.parents[2] / "manifest.json"
    if (results_path.parent / "manifest.json").is_file():  # a multi-node run's node manifest
        path = results_path.parent / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {**peers, "plan_error": f"cannot read the node's plan from {path}: {exc}"}
    plan = manifest.get("plan", [])
    mine = [p for p in plan if p.get("node") == node and kernel in p.get("kernels", [])]
    offsets = [float(p.get("start_offset_s", 0.0)) for p in mine]
    watchdog = ((manifest.get("config") or {}).get("watchdog") or {}).get("timeout_s")
    return {
        **peers,
        "devices": sorted({int(p["device"]) for p in mine} | {device}),
        "start_spread_s": max(offsets) - min(offsets) if offsets else 0.0,
        "watchdog_s": float(watchdog) if isinstance(watchdog, int | float) else None,
    }
