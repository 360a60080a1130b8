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

This module is preloaded in the forkserver together with torch (see burnin/supervisor.py), so it
imports nothing heavy at module level itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import traceback
from dataclasses import dataclass
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
            {"type": "start", "pid": os.getpid(), "pgid": os.getpgid(0), "torch": torch.__version__}
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
                # The run directory (<run>/nodes/<host>/results.jsonl): where the all-reduce
                # kernel's workers meet and read the node's plan from the manifest.
                peers={"run_dir": str(Path(args.results_path).parents[2])},
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
