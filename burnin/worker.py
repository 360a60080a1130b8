"""One process per device: run the planned kernels, append every record, never vanish silently.

The worker writes straight into the node's ``results.jsonl`` (one ``O_APPEND`` write per record),
so what it measured survives even if the parent dies. An exception inside a kernel becomes an
``error`` record with its traceback and a non-zero exit; the parent turns a missing ``done``
record into an ERROR verdict for the device. ``KeyboardInterrupt`` is left to the parent, which
owns the shutdown of the whole run.
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path
from typing import Any

from burnin.plan import WorkItem
from burnin.store import JsonlWriter


def worker_main(item: WorkItem, results_path: str, t0: float, heartbeat: Any, stop: Any) -> None:
    """Entry point of a device process (spawned; arguments are picklable)."""
    out = JsonlWriter(Path(results_path))
    dev = item.device.index

    def emit(record: dict[str, Any]) -> None:
        out.write(
            {
                "device": dev,
                "node": item.node,
                "elapsed_s": round(time.monotonic() - t0, 6),
                **record,
            }
        )

    def beat() -> None:
        heartbeat.value = time.monotonic()

    try:
        import torch

        from burnin.kernels import registry
        from burnin.kernels.base import DeviceSeam, KernelContext

        if item.threads:
            torch.set_num_threads(item.threads)
        device = torch.device(item.device.torch_device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        emit({"type": "start", "pid": os.getpid(), "torch": torch.__version__})
        for i, step in enumerate(item.kernels):
            if stop.is_set():
                break
            kernel = registry.get(step.name)()
            ctx = KernelContext(
                device=device,
                device_index=dev,
                node=item.node,
                config=step.config,
                duration_s=step.duration_s,
                seed=item.seed + i,
                seam=DeviceSeam(item.faults, seed=item.seed * 1000 + dev),
                emit=emit,
                heartbeat=beat,
                should_stop=stop.is_set,
            )
            beat()
            emit({"type": "kernel-start", "kernel": step.name})
            emit(kernel.run(ctx))
        emit({"type": "done", "interrupted": bool(stop.is_set())})
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
