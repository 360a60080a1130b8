"""Run orchestration on one node: plan, preflight, store, sampler, workers, report.

The parent never stresses a device itself. :func:`prepare` finds the devices, opens telemetry,
reads each card's inventory and builds the plan (with SKU TDPs for the power estimate);
:func:`execute` then runs the preflight (busy GPUs, checks that cannot run), creates the run
directory, starts the telemetry :class:`~burnin.telemetry.sampler.Sampler` and hands the
workers to the :class:`~burnin.supervisor.Supervisor` (staggered start, heartbeat watchdog,
thermal guard, kill by process group). Ctrl-C and SIGTERM become a stop request
(:mod:`burnin.signals`): the stress stops, what was recorded stays, and the report is still
written (exit 4). The manifest gets ``finished_at`` only when the run ended in order, so a run
killed with ``kill -9`` reads as incomplete to ``burnin report``. The verdicts and reports come
from the store afterwards, exactly as ``burnin report`` makes them.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import burnin
from burnin.config import RunConfig
from burnin.devices import Device, match_telemetry
from burnin.errors import TelemetryError
from burnin.plan import Plan, build_plan
from burnin.preflight import DevicePreflight, run_preflight
from burnin.progress import start_live
from burnin.runtime import Runtime, discover
from burnin.signals import StopSignals
from burnin.store import RunStore, safe_name
from burnin.supervisor import Supervisor, warm_up
from burnin.telemetry.base import TelemetryClient
from burnin.telemetry.sampler import Sampler
from burnin.watch import guard_limit

log = logging.getLogger("burnin")


@dataclass
class RunOutcome:
    run_dir: Path
    exit_code: int
    context: dict[str, Any]


class Fleet(Protocol):
    """What ``burnin run`` and ``burnin plan`` act on: this node's devices or a simulated fleet.

    The CLI chooses one (its only knowledge of the simulator); the commands then run the same
    way whichever it is.
    """

    def execute(self, config: RunConfig, argv: list[str]) -> RunOutcome: ...

    def describe(self, config: RunConfig) -> str: ...


@dataclass(frozen=True)
class LocalNode:
    """This node's devices, found and driven through ``runtime``."""

    runtime: Runtime

    def execute(self, config: RunConfig, argv: list[str]) -> RunOutcome:
        return execute(config, self.runtime, argv)

    def describe(self, config: RunConfig) -> str:
        from burnin.plan import format_plan

        the_plan, client = prepare(config, self.runtime)
        client.close()
        return format_plan(the_plan)


def prepare(config: RunConfig, runtime: Runtime) -> tuple[Plan, TelemetryClient]:
    """Discover devices, open telemetry, read inventories and build the plan (no stress yet)."""
    found = discover(config, runtime)  # devices, telemetry, and the GPU-count evidence
    devices, note, client = found.devices, found.note, found.client
    try:
        devices = _attach_telemetry(devices, client)
        inventory = found.annotate(_read_inventory(devices, client), devices)
        plan = build_plan(
            config,
            devices,
            # The node's name is also its directory in the store: the same safe form in the
            # plan, the records and the path, whatever the host calls itself.
            safe_name(runtime.hostname),
            note,
            cpu_count=runtime.cpu_count,
            env=runtime.env,
            tdp_w={dev: _tdp_w(record) for dev, record in inventory.items()},
            seam_factories=runtime.seam_factories,
        )
    except BaseException:
        client.close()
        raise
    return replace(plan, inventory=inventory), client


def _attach_telemetry(devices: list[Device], client: TelemetryClient) -> list[Device]:
    """Each device's telemetry index: CUDA devices by identity, each on its own.

    NVML enumerates every GPU of the node, including cards hidden by ``CUDA_VISIBLE_DEVICES``,
    lost or unpowered; a card that cannot be found or read leaves only itself without telemetry.
    """
    if devices and devices[0].kind == "cuda":
        find = getattr(client, "find_index", None)
        if callable(find):
            return [replace(d, telemetry_index=_find_telemetry(find, d)) for d in devices]
        ids = _telemetry_ids(client)
        if ids:
            return match_telemetry(devices, ids)
    try:
        count = client.device_count()
    except TelemetryError as exc:
        log.warning("cannot count telemetry devices: %s", exc)
        count = 0
    return [replace(d, telemetry_index=d.index if d.index < count else None) for d in devices]


def _find_telemetry(find: Any, dev: Device) -> int | None:
    try:
        index = find(dev.uuid, dev.pci_bus_id)
    except TelemetryError as exc:
        log.warning("GPU %d (%s): no telemetry: %s", dev.index, dev.pci_bus_id or dev.uuid, exc)
        return None
    return index if isinstance(index, int) else None


def _telemetry_ids(client: TelemetryClient) -> list[tuple[str | None, str | None]]:
    """(uuid, pci_bus_id) of every telemetry index, for a backend that cannot look one up."""
    try:
        count = client.device_count()
    except TelemetryError as exc:
        log.warning("cannot enumerate telemetry devices: %s", exc)
        return []
    ids: list[tuple[str | None, str | None]] = []
    for index in range(count):
        try:
            inv = client.inventory(index)
        except TelemetryError as exc:
            log.warning("telemetry device %d unreadable: %s", index, exc)
            ids.append((None, None))
            continue
        ids.append((inv.uuid, inv.pci_bus_id))
    return ids


def _read_inventory(devices: list[Device], client: TelemetryClient) -> dict[int, dict[str, Any]]:
    """Each run device's inventory.jsonl record (identity from discovery where telemetry fails).

    Only the run's own cards are read. CUDA's SM count joins the record, since NVML has none
    for a whole card and the identity check compares it with the SKU.
    """
    out: dict[int, dict[str, Any]] = {}
    for dev in devices:
        record: dict[str, Any] = {
            "name": dev.name,
            "uuid": dev.uuid,
            "pci_bus_id": dev.pci_bus_id,
            # Where workers go (NUMA placement); unknown without telemetry.
            "cpu_affinity": None,
            "numa_node": None,
            "unsupported": [],
        }
        if dev.telemetry_index is not None:
            try:
                record = client.inventory(dev.telemetry_index).to_dict()
            except TelemetryError as exc:
                record["telemetry_error"] = str(exc)
        elif dev.kind == "cuda":
            record["telemetry_error"] = "no telemetry device matches this GPU's UUID or PCI bus id"
        _merge_sm_count(record, dev.sm_count)
        record.pop("index", None)
        out[dev.index] = {"device": dev.index, "kind": dev.kind, **record}
    return out


def _merge_sm_count(record: dict[str, Any], sm_count: int | None) -> None:
    if sm_count is None or isinstance(record.get("sm_count"), int):
        return
    record["sm_count"] = sm_count
    record["unsupported"] = [u for u in record.get("unsupported") or () if u != "sm_count"]


def _tdp_w(record: dict[str, Any]) -> float | None:
    """The card's SKU TDP (W), or None when it matches no SKU (the CPU fallback never does)."""
    from burnin.skus import resolve

    sku = resolve(record)
    return sku.tdp_w if sku is not None else None


def execute(config: RunConfig, runtime: Runtime, argv: list[str]) -> RunOutcome:
    """Run the whole burn-in on this node and write its reports.

    Raises:
        DeviceError: the preflight refused to start (busy GPU, a required check cannot run).
    """
    from burnin.reports import judge_and_render

    with StopSignals() as signals:
        warm_up()  # the workers' torch import overlaps device discovery and preflight
        plan, client = prepare(config, runtime)
        rack = _rack(runtime, config)
        try:
            preflight = run_preflight(plan, client, config, plan.inventory)
            if rack is not None:
                store = rack.open_store(plan)
            else:
                store = RunStore.create(Path(config.run.out_dir), plan.node)
        except BaseException:
            client.close()
            if rack is not None:
                rack.close()
            raise
        manifest = _manifest(store, plan, client, argv, runtime, preflight)
        store.write_manifest(manifest)
        log.info("run %s: %s", store.path.name, plan.device_note)
        _write_inventory(store, plan)
        stopped = _run(plan, store, client, runtime, signals, preflight, manifest)
        # Every worker has exited: a group's FileStore left behind by the last rank to tear
        # down (its destructor races the others') is a meeting point, not a record.
        for meet in store.stream_path(plan.node, "results").parent.glob("allreduce-*.store"):
            meet.unlink(missing_ok=True)
        if stopped:
            log.warning("stopped by %s: writing a partial report", stopped)
        if not runtime.node_reports:  # the caller reports over several nodes' stores at once
            return RunOutcome(run_dir=store.path, exit_code=0, context={})
        if rack is not None:
            report_dir, context = rack.finish(store, plan)
            return RunOutcome(run_dir=report_dir, exit_code=context["exit_code"], context=context)
        context = judge_and_render(store.path, strict=config.run.strict)
    return RunOutcome(run_dir=store.path, exit_code=context["exit_code"], context=context)


def _rack(runtime: Runtime, config: RunConfig) -> Any:
    """This node's side of a multi-node torchrun run (burnin/rack.py), or None."""
    from burnin.rack import Rack, rack_env

    renv = rack_env(runtime.env)
    return Rack(renv, runtime, config) if renv is not None else None


def finish_with_history(outcome: RunOutcome, url: str, strict: bool) -> RunOutcome:
    """Judge the finished run against the history database at ``url`` ("" = the default),
    re-render its reports with the ``regression`` verdicts and add it to the history.

    Raises:
        HistoryError: the database cannot be opened or written; the run's reports, written
            before, stay on disk.
    """
    from burnin.history.hook import after_run

    done = after_run(outcome.run_dir, url or None, strict)
    return replace(outcome, exit_code=done.context["exit_code"], context=done.context)


def _run(
    plan: Plan,
    store: RunStore,
    client: TelemetryClient,
    runtime: Runtime,
    signals: StopSignals,
    preflight: list[DevicePreflight],
    manifest: dict[str, Any],
) -> str | None:
    """Sample and stress until every device is done; returns the stop reason, if any."""
    config = plan.config
    fsync_s = config.store.fsync_interval_s
    timeline = runtime.build_timeline(plan)
    t0 = timeline.start()
    samples = store.writer(plan.node, "samples", fsync_interval_s=fsync_s)
    events = store.writer(plan.node, "events", fsync_interval_s=fsync_s)
    for result in preflight:
        events.write(result.to_event())
    # The live view or progress lines, when the CLI asked for them; fed by the same records.
    view = start_live(plan, store.stream_path(plan.node, "results"), timeline.elapsed)
    samples, events = view.tap(samples), view.tap(events)
    limits = {
        dev: (limit, source)
        for dev, record in plan.inventory.items()
        for limit, source in [guard_limit(config, record)]
        if limit is not None
    }
    supervisor = Supervisor(
        plan,
        str(store.stream_path(plan.node, "results")),
        samples,
        events,
        t0,
        signals,
        limits=limits,
        timeline=timeline,
    )
    sampler = Sampler(
        client,
        [(i.device.index, i.device.telemetry_index) for i in plan.items],
        supervisor.watch.samples,
        supervisor.watch.events,
        config.telemetry.interval_s,
        timeline,
    )
    sampler.start()
    stopped: str | None = None
    try:
        stopped = supervisor.run()
    except BaseException as exc:
        # A harness bug: the manifest stays unfinished, so the report says incomplete.
        manifest["harness_error"] = f"{type(exc).__name__}: {exc}"
        raise
    else:
        manifest.update(
            finished_at=_iso(runtime.wall_time()),
            interrupted=stopped is not None,
            stopped_by=stopped,
        )
    finally:
        sampler.stop()
        client.close()
        samples.close()
        events.close()
        manifest["elapsed_s"] = round(timeline.elapsed(), 3)
        store.write_manifest(manifest)
    return stopped


def _write_inventory(store: RunStore, plan: Plan) -> None:
    out = store.writer(plan.node, "inventory")
    try:
        for item in plan.items:
            dev = item.device.index
            out.write(plan.inventory.get(dev, {"device": dev, "kind": item.device.kind}))
        planned = {item.device.index for item in plan.items}
        for dev, record in sorted(plan.inventory.items()):
            if dev not in planned:  # a card the driver lists or the run expects, not visible
                out.write(record)
    finally:
        out.close()


def _manifest(
    store: RunStore,
    plan: Plan,
    client: TelemetryClient,
    argv: list[str],
    runtime: Runtime,
    preflight: list[DevicePreflight],
) -> dict[str, Any]:
    try:
        driver = client.driver_info().to_dict()
    except TelemetryError as exc:
        driver = {"error": str(exc)}
    place = plan.placement
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
        "placement": {
            "rank": place.rank,
            "nodes": place.nodes,
            "offset_s": place.offset_s,
            "node_offset_s": place.node_offset_s,
            "source": place.source,
        },
        "preflight": {
            "busy_devices": [p.device for p in preflight if p.busy],
            "forced": any(p.forced for p in preflight),
        },
        "plan": [
            {
                "node": i.node,
                "device": i.device.index,
                "kind": i.device.kind,
                "name": i.device.name,
                "uuid": i.device.uuid,
                "start_offset_s": i.start_offset_s,
                "tdp_w": i.tdp_w,
                "kernels": [k.name for k in i.kernels],
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
