"""Run orchestration on one node: store, inventory, sampler, staggered workers, watchdog, report.

The parent never stresses a device itself. It starts one spawned process per device at the
device's planned offset, watches each heartbeat, and records what it sees as events: a worker
that exits non-zero is a ``crash``, one whose heartbeat stops for ``watchdog.timeout_s`` is a
``hang`` and is killed, so the run always ends within the plan plus the watchdog timeout.
Ctrl-C stops every worker, keeps everything recorded so far and still writes the report. The
verdicts and reports come from the store afterwards, exactly as ``burnin report`` makes them.
"""

from __future__ import annotations

import importlib.metadata
import logging
import multiprocessing as mp
import platform
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import burnin
from burnin.config import RunConfig
from burnin.devices import Device, match_telemetry, select
from burnin.errors import TelemetryError
from burnin.plan import Plan, WorkItem, build_plan
from burnin.runtime import Runtime
from burnin.store import RunStore
from burnin.telemetry.base import TelemetryClient
from burnin.telemetry.sampler import Sampler

log = logging.getLogger("burnin")
# How long stopped workers get to write their last records before they are killed.
_GRACE_S = 5.0
_POLL_S = 0.05


@dataclass
class RunOutcome:
    run_dir: Path
    exit_code: int
    context: dict[str, Any]


def prepare(config: RunConfig, runtime: Runtime) -> tuple[Plan, TelemetryClient]:
    """Discover devices, open telemetry and build the plan (no stress yet)."""
    cuda = runtime.cuda_devices() if runtime.cuda_devices is not None else None
    devices, note = select(config.run.device, config.run.gpus, config.cpu.devices, cuda)
    client = runtime.telemetry_factory(devices)
    devices = _attach_telemetry(devices, client)
    plan = build_plan(config, devices, runtime.hostname, note, runtime.faults, runtime.cpu_count)
    return plan, client


def _attach_telemetry(devices: list[Device], client: TelemetryClient) -> list[Device]:
    if devices and devices[0].kind == "cuda":
        try:
            ids = [
                (inv.uuid, inv.pci_bus_id)
                for inv in (client.inventory(i) for i in range(client.device_count()))
            ]
        except TelemetryError as exc:
            log.warning("cannot enumerate telemetry devices: %s", exc)
            return devices
        if ids:
            return match_telemetry(devices, ids)
    count = client.device_count()
    return [replace(d, telemetry_index=d.index if d.index < count else None) for d in devices]


def execute(config: RunConfig, runtime: Runtime, argv: list[str]) -> RunOutcome:
    """Run the whole burn-in on this node and write its reports."""
    from burnin.reports import write_reports

    plan, client = prepare(config, runtime)
    store = RunStore.create(Path(config.run.out_dir), runtime.hostname)
    manifest = _manifest(store, plan, client, argv, runtime)
    store.write_manifest(manifest)
    log.info("run %s: %s", store.path.name, plan.device_note)
    _write_inventory(store, plan, client)

    t0 = runtime.monotonic()
    samples = store.writer(plan.node, "samples")
    events = store.writer(plan.node, "events")
    sampler = Sampler(
        client,
        [(i.device.index, i.device.telemetry_index) for i in plan.items],
        samples,
        events,
        config.telemetry.interval_s,
        t0,
        runtime.monotonic,
    )
    sampler.start()
    interrupted = False
    try:
        _run_workers(plan, store, events, t0, runtime)
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted: stopping every device and writing a partial report")
    finally:
        sampler.stop()
        client.close()
        samples.close()
        events.close()
        manifest.update(
            finished_at=_iso(runtime.wall_time()),
            interrupted=interrupted,
            elapsed_s=round(runtime.monotonic() - t0, 3),
        )
        store.write_manifest(manifest)
    context = write_reports(store.path, strict=config.run.strict)
    return RunOutcome(run_dir=store.path, exit_code=context["exit_code"], context=context)


def _run_workers(plan: Plan, store: RunStore, events: Any, t0: float, runtime: Runtime) -> None:
    spawn = mp.get_context("spawn")
    stop = spawn.Event()
    results_path = str(store.stream_path(plan.node, "results"))
    watchdog_s = plan.config.watchdog.timeout_s
    pending = sorted(plan.items, key=lambda i: i.start_offset_s)
    running: dict[int, tuple[Any, Any, WorkItem]] = {}

    def record(kind: str, dev: int | None, **extra: Any) -> None:
        events.write(
            {"device": dev, "elapsed_s": round(runtime.monotonic() - t0, 3), "kind": kind, **extra}
        )

    try:
        while pending or running:
            now = runtime.monotonic()
            while pending and pending[0].start_offset_s <= now - t0:
                item = pending.pop(0)
                beat = spawn.Value("d", time.monotonic())
                proc = spawn.Process(
                    target=_worker_entry,
                    name=f"burnin-dev{item.device.index}",
                    args=(item, results_path, t0, beat, stop),
                    daemon=True,
                )
                proc.start()
                running[item.device.index] = (proc, beat, item)
                record("device-start", item.device.index, pid=proc.pid)
            for dev, (proc, beat, _item) in list(running.items()):
                if not proc.is_alive():
                    proc.join()
                    if proc.exitcode != 0:
                        record("crash", dev, exitcode=proc.exitcode)
                    del running[dev]
                elif time.monotonic() - beat.value > watchdog_s:
                    proc.kill()
                    proc.join(timeout=_GRACE_S)
                    record("hang", dev, message=f"no progress for {watchdog_s:g} s; killed")
                    del running[dev]
            time.sleep(_POLL_S)
    except KeyboardInterrupt:
        stop.set()
        record("interrupted", None, message="stopped by the user")
        _stop_all(running, record)
        raise


def _stop_all(running: dict[int, tuple[Any, Any, WorkItem]], record: Any) -> None:
    deadline = time.monotonic() + _GRACE_S
    for dev, (proc, _beat, _item) in running.items():
        proc.join(timeout=max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=_GRACE_S)
            record("killed", dev, message="did not stop within the grace period")


def _worker_entry(item: WorkItem, results_path: str, t0: float, beat: Any, stop: Any) -> None:
    import signal

    # The parent owns Ctrl-C: it sets ``stop`` so workers finish their records cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from burnin.worker import worker_main

    worker_main(item, results_path, t0, beat, stop)


def _write_inventory(store: RunStore, plan: Plan, client: TelemetryClient) -> None:
    out = store.writer(plan.node, "inventory")
    try:
        for item in plan.items:
            dev = item.device
            record: dict[str, Any] = {
                "name": dev.name,
                "uuid": dev.uuid,
                "pci_bus_id": dev.pci_bus_id,
                "unsupported": [],
            }
            if dev.telemetry_index is not None:
                try:
                    record = client.inventory(dev.telemetry_index).to_dict()
                except TelemetryError as exc:
                    record["telemetry_error"] = str(exc)
            record.pop("index", None)
            out.write({"device": dev.index, "kind": dev.kind, **record})
    finally:
        out.close()


def _manifest(
    store: RunStore, plan: Plan, client: TelemetryClient, argv: list[str], runtime: Runtime
) -> dict[str, Any]:
    try:
        driver = client.driver_info().to_dict()
    except TelemetryError as exc:
        driver = {"error": str(exc)}
    return {
        "run_id": store.path.name,
        "argv": argv,
        "profile": plan.config.profile,
        "config": plan.config.to_dict(),
        "started_at": _iso(runtime.wall_time()),
        "finished_at": None,
        "versions": {
            "burnin": burnin.__version__,
            "python": sys.version.split()[0],
            "torch": _dist_version("torch"),
            "nvidia-ml-py": _dist_version("nvidia-ml-py"),
            "platform": platform.platform(),
        },
        "driver": driver,
        "nodes": [plan.node],
        "device_note": plan.device_note,
        "plan": [
            {
                "node": i.node,
                "device": i.device.index,
                "kind": i.device.kind,
                "name": i.device.name,
                "uuid": i.device.uuid,
                "start_offset_s": i.start_offset_s,
                "kernels": [k.name for k in i.kernels],
                "faults": [f.kind for f in i.faults],
            }
            for i in plan.items
        ],
    }


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _iso(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))
