"""``burnin run --simulate SCENARIO.toml``: the real code path on a fleet that does not exist.

Each simulated node runs :func:`burnin.runner.execute` unchanged: the same plan, supervisor,
worker processes, kernels, sampler, store, checks and reports as on real hardware. Only the
edges are simulated. Devices are the scenario's GPUs (kind ``simulated``), computing on the CPU
at small sizes so every verification is real and a corrupted result is really caught;
telemetry comes from :class:`~burnin.telemetry.simulated.SimulatedTelemetry`; and each
device's :class:`~burnin.simseam.SimulatedSeam` reports the time a card of its SKU would take
(with noise and the scenario's faults) in place of the CPU's, and corrupts results as a faulty
card would.

Simulated time is kept apart from wall time by a :class:`~burnin.simseam.ScaledClock`: the
run's clock (record times, kernel deadlines, ramp offsets, telemetry every
``telemetry.interval_s``) advances ``time_scale`` times faster than the wall clock, chosen so
the whole plan takes a few wall seconds, and the seam paces each kernel to a dozen small
verified batches per simulated GPU. A 64-GPU fleet therefore finishes in well under a minute on
two cores while its report reads like a real run's. Heartbeats and the watchdog stay in wall
time, so ``watchdog.timeout_s`` becomes a wall-clock limit here. Nodes run concurrently, one
thread each (one worker server with torch preloaded for all), every node writing its
``nodes/node-XX/`` into one run directory, and the report is written once over all of them.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from burnin.config import RunConfig
from burnin.devices import Device
from burnin.faults import Fault
from burnin.plan import kernel_durations
from burnin.runtime import Runtime
from burnin.scenario import NodeSpec, Scenario, load_scenario
from burnin.simseam import ScaledClock, SimulatedSeam, holdable_clock
from burnin.store import RunStore
from burnin.telemetry.simmodel import DeviceActivity, board_for, build_gpu, identity
from burnin.telemetry.simulated import SimulatedTelemetry

log = logging.getLogger("burnin")

# The whole plan (every node's ramp and duration) is squeezed into about this many wall seconds.
WALL_TARGET_S = 4.0
# Verified CPU batches per kernel and simulated GPU: each stands for a slice of the kernel's
# simulated duration. A dozen keeps 64 GPUs on two cores responsive and still gives every
# check several data points.
BATCHES_PER_KERNEL = 12
# Wall-clock watchdog of a simulated run: long enough for a worker starting among 64 on two
# cores to reach its first heartbeat, short enough that a simulated hang ends the run soon.
WATCHDOG_WALL_S = 10.0
# Telemetry costs the node's process ~0.2 ms per sample (model, record, store): at most this
# many samples per GPU (the interval widens beyond) and per wall second over the fleet (the
# time scale shrinks beyond), so the sampler never becomes the bottleneck of a big fleet.
MAX_SAMPLES_PER_GPU = 150
MAX_SAMPLES_PER_WALL_S = 1000.0
# Kernels that realise a fault kind's expected check (DESIGN.md table), added when present.
FAULT_KERNELS = {
    "hbm-slow": "membw",
    "slow-link": "allreduce",
    "stuck-bit": "memtest",
    "bitflip": "memtest",
}
# CPU-side sizes and repeat counts of a simulated GPU: tiny, because 64 of them share two
# cores and memory, and the seam supplies the device's timing anyway (CPU timings are unused).
_CPU_SIZES = {"cpu_size": 64, "cpu_size_mib": 4, "cpu_mib": 2, "iterations": 2, "warmup": 1}
_CPU_BATCH_S = 0.002
KIND = "simulated"  # Device.kind of a simulated GPU (it computes on the CPU)


@dataclasses.dataclass(frozen=True)
class SimulatedRun:
    """What one simulated run needs: the scenario, the effective config and the clock."""

    scenario: Scenario
    config: RunConfig
    clock: ScaledClock
    kernels_added: tuple[str, ...] = ()
    # Seconds of a real card's verified matmul work per verification (GPU batch_s ×
    # verify_every): one simulated verification stands for pace / this many of them.
    device_verify_s: float = 0.1


def prepare_simulation(scenario_path: str | Path, config: RunConfig) -> SimulatedRun:
    """Load the scenario and adapt the run config to a simulated fleet.

    The profile's durations, interval and ramp keep their simulated meaning; the run uses
    every simulated GPU (``run.device = auto``), adds the kernels the scenario's faults need,
    shrinks the CPU-side sizes that are still at their defaults, and makes the watchdog a
    wall-clock limit (:data:`WATCHDOG_WALL_S`).
    """
    from burnin.kernels import registry

    scenario = load_scenario(scenario_path)
    kernels = list(config.run.kernels)
    added = []
    for fault in (f for faults in scenario.faults.values() for f in faults):
        name = FAULT_KERNELS.get(fault.kind)
        if name and name not in kernels and name in registry.names():
            kernels.append(name)
            added.append(name)
    run = dataclasses.replace(config.run, device="auto", kernels=tuple(kernels))
    per_node_s = run.duration_s + _ramp_span_s(config, max(n.gpus for n in scenario.nodes))
    interval = max(config.telemetry.interval_s, per_node_s / MAX_SAMPLES_PER_GPU)
    rate_limit = MAX_SAMPLES_PER_WALL_S * interval / max(scenario.gpu_count, 1)
    scale = max(1.0, min(per_node_s / WALL_TARGET_S, rate_limit))
    watchdog = dataclasses.replace(config.watchdog, timeout_s=WATCHDOG_WALL_S)
    kernel_configs = {name: _cpu_sized(cfg) for name, cfg in config.kernels.items()}
    matmul = config.kernels.get("matmul")
    verify_s = float(matmul.batch_s * matmul.verify_every) if matmul is not None else 0.1
    config = dataclasses.replace(
        config,
        run=run,
        kernels=kernel_configs,
        watchdog=watchdog,
        telemetry=dataclasses.replace(config.telemetry, interval_s=interval),
    )
    return SimulatedRun(scenario, config, holdable_clock(scale), tuple(added), verify_s)


def _ramp_span_s(config: RunConfig, devices: int) -> float:
    from burnin.plan import start_offsets

    offsets = start_offsets(devices, config.ramp.step_s, config.ramp.max_concurrent)
    return max(offsets, default=0.0)


def _cpu_sized(cfg: Any) -> Any:
    """A kernel config with its CPU sizes shrunk where they are still the kernel's defaults."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    changes: dict[str, Any] = {}
    for name, size in _CPU_SIZES.items():
        if name in fields and getattr(cfg, name) == fields[name].default:
            changes[name] = min(size, getattr(cfg, name))
    if "batch_s" in fields and cfg.batch_s == fields["batch_s"].default:
        changes["batch_s"] = max(_CPU_BATCH_S, fields["batch_s"].metadata.get("min", 0.0))
    if "cpu_dtype" in fields and "dtype" in fields:
        changes["cpu_dtype"] = cfg.dtype  # the CPU computes in the dtype the card would
    if "timeout_s" in fields:
        changes["timeout_s"] = min(cfg.timeout_s, WATCHDOG_WALL_S * 0.8)
    return dataclasses.replace(cfg, **changes)


def node_runtime(sim: SimulatedRun, node: NodeSpec, config: RunConfig) -> Runtime:
    """The world of one simulated node: its devices, telemetry, faults, seams and clock."""
    scenario, clock = sim.scenario, sim.clock
    board = board_for(node.sku)
    faults = scenario.node_faults(node.index)
    gpus = [
        build_gpu(
            board,
            seed=scenario.seed,
            node=node.index,
            index=i,
            noise=scenario.noise,
            faults=faults.get(i, ()),
            twin_serial=_twin_serial(scenario, faults.get(i, ())),
        )
        for i in range(node.gpus)
    ]
    devices = [
        Device(index=g.index, kind=KIND, name=board.name, uuid=g.uuid, pci_bus_id=g.pci_bus_id)
        for g in gpus
    ]
    activity = DeviceActivity(len(gpus))
    durations = kernel_durations(config)
    pace = {k: durations[k] / BATCHES_PER_KERNEL for k in durations if k in ("matmul", "membw")}
    dtypes = {name: cfg.dtype for name, cfg in config.kernels.items() if hasattr(cfg, "dtype")}
    device_batches = max(1.0, pace.get("matmul", 0.0) / sim.device_verify_s)
    seams = {
        g.index: functools.partial(
            SimulatedSeam,
            gpu=g,
            clock=clock,
            pace_s=pace,
            dtypes=dtypes,
            device_batches=device_batches,
            activity=activity,
        )
        for g in gpus
    }
    # Idle once a worker went quiet for three of its batches (or 30 s): a finished, crashed or
    # guarded device cools down, one between two kernels does not.
    idle_after_s = max(30.0, 3 * max(pace.values(), default=0.0))
    return Runtime(
        hostname=node.name,
        telemetry_factory=lambda _devices: SimulatedTelemetry(
            gpus, activity=activity, clock=clock, idle_after_s=idle_after_s
        ),
        cuda_devices=lambda: list(devices),
        faults={i: tuple(f) for i, f in faults.items()},
        monotonic=clock,
        env={},
        time_scale=clock.scale,
        worker_clock=clock,
        seam_factories=seams,
    )


def _twin_serial(scenario: Scenario, faults: Sequence[Fault]) -> str | None:
    twin = next((f for f in faults if f.kind == "duplicate-serial"), None)
    if twin is None:
        return None
    return identity(scenario.seed, int(twin.params["twin_node"]), int(twin.params["twin_gpu"]))[1]


def node_config(sim: SimulatedRun, node: NodeSpec, staging: Path) -> RunConfig:
    """The run config of one node: its rank for the ramp offset, its own staging directory."""
    config = sim.config
    ramp = dataclasses.replace(config.ramp, node_rank=node.index, nodes=len(sim.scenario.nodes))
    run = dataclasses.replace(config.run, out_dir=str(staging / node.name))
    return dataclasses.replace(config, ramp=ramp, run=run)


def execute_simulated(scenario_path: str | Path, config: RunConfig, argv: list[str]) -> Any:
    """Run a simulated fleet through the real code path and write one report over all nodes.

    Args:
        scenario_path: the scenario TOML (DESIGN.md, "Simulated fleets").
        config: the effective run config (profile, ``--set``, flags); see
            :func:`prepare_simulation` for what the simulation changes.
        argv: the command line, for the manifest.

    Returns:
        The :class:`burnin.runner.RunOutcome` of the merged run directory.

    Raises:
        ConfigError: the scenario is invalid (nothing runs).
    """
    from burnin.reports import write_reports
    from burnin.runner import RunOutcome
    from burnin.verdicts import evaluate

    sim = prepare_simulation(scenario_path, config)
    store = RunStore.create(Path(config.run.out_dir), sim.scenario.name)
    staging = store.path / ".nodes"
    wall0 = time.monotonic()
    try:
        requested = _run_nodes(sim, staging, argv)
    except BaseException:
        # A node refused to start (preflight) or the harness failed: leave no half run behind.
        shutil.rmtree(store.path, ignore_errors=True)
        raise
    manifest = _merge(sim, store, staging, argv, time.monotonic() - wall0)
    if requested:
        manifest["simulation"]["stop_requested"] = requested
    store.write_manifest(manifest)
    shutil.rmtree(staging, ignore_errors=True)
    evaluate(store.path)
    context = write_reports(store.path, strict=config.run.strict)
    return RunOutcome(run_dir=store.path, exit_code=context["exit_code"], context=context)


def _run_nodes(sim: SimulatedRun, staging: Path, argv: list[str]) -> str | None:
    """Run every node: one in this thread, several in one thread each.

    Nodes share this process, hence one worker server with torch preloaded for all. A single
    node runs in the caller's thread, where the runner handles Ctrl-C and SIGTERM itself (stop,
    partial report). Node threads cannot take signals, so with several nodes a stop request is
    only recorded: a simulated run ends within its few wall seconds plus the watchdog anyway,
    and its report is still written. Returns the stop request seen meanwhile, if any.
    """
    from burnin.runner import execute
    from burnin.signals import StopSignals

    errors: dict[str, BaseException] = {}

    def one(node: NodeSpec) -> None:
        cfg = node_config(sim, node, staging)
        try:
            execute(cfg, node_runtime(sim, node, cfg), argv)
        except BaseException as exc:  # re-raised in the caller's thread below
            errors[node.name] = exc

    nodes = sim.scenario.nodes
    _warm_workers()
    requested = None
    if len(nodes) == 1:
        one(nodes[0])
    else:
        threads = [threading.Thread(target=one, args=(n,), name=n.name) for n in nodes]
        with StopSignals() as signals:
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(timeout=0.2)
                    if signals.requested and not requested:
                        requested = signals.requested
                        log.warning("%s: the simulated nodes finish first (seconds)", requested)
    failure = next(iter(errors.values()), None)
    if failure is not None:
        raise failure
    return requested


def _warm_workers() -> None:
    """Start the supervisor's worker server (torch preloaded) before the simulated clock runs.

    Its first start imports torch (seconds of wall time, minutes of simulated time); paid
    during the run, every device would start that late in simulated time.
    """
    from burnin.supervisor import PRELOAD, mp_context

    ctx = mp_context()
    if ctx.get_start_method() == "forkserver":
        # Workers unpickle SimulatedSeam: preloaded, its module costs them nothing to import.
        ctx.set_forkserver_preload([*PRELOAD, SimulatedSeam.__module__])
    proc = ctx.Process(target=time.sleep, args=(0.0,), daemon=True)
    proc.start()
    proc.join()


def _merge(
    sim: SimulatedRun,
    store: RunStore,
    staging: Path,
    argv: list[str],
    wall_s: float,
) -> dict[str, Any]:
    """Move each node's streams into the run directory and merge the node manifests."""
    import json

    manifests = []
    for node in sim.scenario.nodes:
        for run_dir in sorted((staging / node.name).glob("*/")):
            source = run_dir / "nodes" / node.name
            if source.is_dir():
                shutil.move(str(source), str(store.node_dir(node.name)))
            path = run_dir / "manifest.json"
            if path.is_file():
                manifests.append(json.loads(path.read_text(encoding="utf-8")))
    base: dict[str, Any] = dict(manifests[0]) if manifests else {}
    base.pop("schema", None)
    plan = [entry for m in manifests for entry in m.get("plan", [])]
    planned = {(p["node"], p["device"]) for p in plan}
    kernels = list(sim.config.run.kernels)
    for node in sim.scenario.nodes:  # a node that wrote nothing still owes its devices
        for gpu in sim.config.run.gpus or range(node.gpus):
            if (node.name, gpu) not in planned and gpu < node.gpus:
                plan.append({"node": node.name, "device": gpu, "kernels": kernels})
    finished = [m.get("finished_at") for m in manifests]
    scenario = sim.scenario
    base.update(
        run_id=store.path.name,
        argv=argv,
        profile=sim.config.profile,
        config=sim.config.to_dict(),
        started_at=min((m["started_at"] for m in manifests if m.get("started_at")), default=None),
        finished_at=None if not finished or None in finished else max(finished),
        interrupted=any(m.get("interrupted") for m in manifests),
        elapsed_s=max((m.get("elapsed_s") or 0.0 for m in manifests), default=0.0),
        nodes=[n.name for n in scenario.nodes],
        plan=plan,
        device_note=_fleet_note(sim),
        placements={m["nodes"][0]: m.get("placement") for m in manifests if m.get("nodes")},
        claimed_sku={n.name: n.sku for n in scenario.nodes},
        simulation={
            "scenario": scenario.name,
            "source": scenario.source,
            "seed": scenario.seed,
            "noise": scenario.noise,
            "time_scale": sim.clock.scale,
            "wall_s": round(wall_s, 3),
            "kernels_added": list(sim.kernels_added),
            "faults": [
                {"node": node_name_of(scenario, n), "gpu": g, "kind": f.kind, "params": f.params}
                for (n, g), faults in sorted(scenario.faults.items())
                for f in faults
            ],
        },
    )
    return base


def node_name_of(scenario: Scenario, index: int) -> str:
    return scenario.nodes[index].name


def _fleet_note(sim: SimulatedRun) -> str:
    s = sim.scenario
    skus = sorted({n.sku for n in s.nodes})
    return (
        f"simulated fleet {s.name!r}: {len(s.nodes)} node(s), {s.gpu_count} GPU(s) "
        f"({', '.join(skus)}), seed {s.seed}, noise {s.noise:g}; kernels computed on the CPU, "
        f"simulated time {sim.clock.scale:.4g}x wall time"
    )


def format_simulated_plan(scenario_path: str | Path, config: RunConfig) -> str:
    """What ``burnin run --simulate`` would do: the fleet, its faults, each node's plan."""
    from burnin.plan import format_plan
    from burnin.runner import prepare

    sim = prepare_simulation(scenario_path, config)
    s = sim.scenario
    lines = [f"# {_fleet_note(sim)}"]
    if sim.kernels_added:
        lines.append(f"# kernels added for the scenario's faults: {', '.join(sim.kernels_added)}")
    from burnin.scenario import EXPECTED_CHECKS

    for (n, g), faults in sorted(s.faults.items()):
        for f in faults:
            params = ", ".join(f"{k}={v!r}" for k, v in f.params.items()) or "no parameters"
            lines.append(
                f"# fault: {s.nodes[n].name} gpu{g} {f.kind} ({params}); "
                f"expected check: {' and '.join(EXPECTED_CHECKS.get(f.kind, ('?',)))}"
            )
    for node in s.nodes:
        cfg = node_config(sim, node, Path(config.run.out_dir))
        the_plan, client = prepare(cfg, node_runtime(sim, node, cfg))
        client.close()
        lines.append(format_plan(the_plan))
    return "\n".join(lines)
