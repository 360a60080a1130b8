"""``burnin run --simulate SCENARIO.toml``: the real code path on a fleet that does not exist.

Each simulated node runs :func:`burnin.runner.execute` unchanged: the same plan, supervisor,
worker processes, kernels, sampler, store, checks and reports as on real hardware. Only the
edges are simulated. Devices are the scenario's GPUs (kind ``simulated``), computing on the CPU
at small sizes so every verification is real and a corrupted result is really caught;
telemetry comes from :class:`~burnin.sim.telemetry.SimulatedTelemetry`; and each device's
:class:`~burnin.sim.seam.SimulatedSeam` reports the time a card of its SKU would take (with
noise and the scenario's faults) in place of the CPU's, and corrupts results as a faulty card
would.

Simulated time is the devices' own (burnin/sim/clock.py): each device's clock advances by the
modelled time of its work, a kernel's simulated duration split into a dozen verified CPU
batches, and the node's supervisor, sampler and watchdog read those clocks. Wall time is only
the work itself, so a profile's minutes cost no more than its seconds, and the host's load
changes no record. Nodes are independent in simulated time, so a bounded pool of threads runs
them (:func:`node_slots`: at most about :data:`WORKERS_PER_CPU` worker processes per CPU at
once), every node writing its ``nodes/node-XX/`` into one run directory, and the report is
written once over all of them.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from burnin.config import RunConfig
from burnin.devices import Device
from burnin.plan import Plan, kernel_durations
from burnin.runtime import Runtime
from burnin.sim.clock import VirtualTimeline
from burnin.sim.faults import FAULT_KERNELS, Fault
from burnin.sim.model import DeviceActivity, board_for, build_gpu, identity
from burnin.sim.scenario import NodeSpec, Scenario, load_scenario
from burnin.sim.seam import SimulatedSeam
from burnin.sim.telemetry import SimulatedTelemetry
from burnin.store import RunStore

log = logging.getLogger("burnin")

# Verified CPU batches per kernel and simulated GPU: each stands for a slice of the kernel's
# simulated duration. A dozen keeps a node's CPU work small and still gives every check
# several data points.
BATCHES_PER_KERNEL = 12
# Device-time calls per batch: membw times a copy and a triad, pcie an h2d and a d2h copy.
_CALLS_PER_BATCH = {"membw": 2, "pcie": 2}
# Memtest passes per round (kernels/memtest.py: 7 patterns, walking ones 32 times): one round
# fills the kernel's simulated duration.
MEMTEST_PASSES = 39
# The watchdog of a simulated run, in simulated seconds (a hung card is judged this long after
# its last progress); the all-reduce's waits give up 0.8 of it after a peer's last progress,
# on the waiting device's clock.
WATCHDOG_S = 10.0
# The collective backend's own limit in host seconds (gloo's process group and store). The
# simulated watchdog and the all-reduce's waits judge on each device's clock; this is only a
# net, long enough that a host starved by other work (a hundred workers on two shared cores)
# never trips it: at 8 s a healthy card's worker could die or fail on how busy the host was.
GROUP_TIMEOUT_S = 300.0
# Worker processes per CPU at once: each node runs one process per GPU (a node fits in a slot
# whatever its size), and several nodes per core overlap one's waits (process starts,
# collectives, the sampler) with the others' work: 64 GPUs on a loaded 2-core host ran 1.6x
# faster with four nodes at a time than with one.
WORKERS_PER_CPU = 16
# Telemetry costs the node's process ~0.2 ms per sample (model, record, store): at most this
# many samples per GPU (the interval widens beyond), so a long profile samples no more.
MAX_SAMPLES_PER_GPU = 150
# CPU-side sizes and repeat counts of a simulated GPU: tiny, because a node's GPUs share two
# cores and memory, and the seam supplies the device's timing anyway (CPU timings are unused).
# All-reduce calls cost the CPU per call more than per byte, so its sizes shrink too.
_CPU_SIZES: dict[str, Any] = {
    "cpu_size": 64,
    "cpu_size_mib": 1,  # membw and pcie: the smallest buffer they take
    "cpu_mib": 1,  # memtest
    "iterations": 2,
    "warmup": 1,
    "cpu_sizes_bytes": (1 << 12, 1 << 14, 1 << 16),
    "cpu_pair_size_bytes": 1 << 14,
}
_CPU_BATCH_S = 0.002
KIND = "simulated"  # Device.kind of a simulated GPU (it computes on the CPU)


@dataclasses.dataclass(frozen=True)
class SimulatedRun:
    """What one simulated run needs: the scenario and the effective config."""

    scenario: Scenario
    config: RunConfig
    kernels_added: tuple[str, ...] = ()
    # Seconds of a real card's verified matmul work per verification (GPU batch_s ×
    # verify_every): one simulated verification stands for pace / this many of them.
    device_verify_s: float = 0.1


def prepare_simulation(scenario_path: str | Path, config: RunConfig) -> SimulatedRun:
    """Load the scenario and adapt the run config to a simulated fleet.

    The profile's durations, interval and ramp keep their simulated meaning; the run uses
    every simulated GPU (``run.device = auto``), adds the kernels the scenario's faults need,
    shrinks the CPU-side sizes that are still at their defaults, and sets the watchdog to
    :data:`WATCHDOG_S` simulated seconds.
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
    watchdog = dataclasses.replace(config.watchdog, timeout_s=WATCHDOG_S)
    thresholds = config.thresholds
    if thresholds.throughput_min_size_for_peak == _default(
        thresholds, "throughput_min_size_for_peak"
    ):
        # A simulated card's TFLOP/s comes from its SKU model, whatever size the CPU computed.
        thresholds = dataclasses.replace(thresholds, throughput_min_size_for_peak=1)
    kernel_configs = {name: _cpu_sized(cfg) for name, cfg in config.kernels.items()}
    matmul = config.kernels.get("matmul")
    verify_s = float(matmul.batch_s * matmul.verify_every) if matmul is not None else 0.1
    config = dataclasses.replace(
        config,
        run=run,
        kernels=kernel_configs,
        watchdog=watchdog,
        thresholds=thresholds,
        telemetry=dataclasses.replace(config.telemetry, interval_s=interval),
    )
    return SimulatedRun(scenario, config, tuple(added), verify_s)


def _default(section: Any, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(section) if f.name == name)


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
            changes[name] = size if isinstance(size, tuple) else min(size, getattr(cfg, name))
    if "batch_s" in fields and cfg.batch_s == fields["batch_s"].default:
        changes["batch_s"] = max(_CPU_BATCH_S, fields["batch_s"].metadata.get("min", 0.0))
    if "cpu_dtype" in fields and "dtype" in fields:
        changes["cpu_dtype"] = cfg.dtype  # the CPU computes in the dtype the card would
    if "timeout_s" in fields:
        changes["timeout_s"] = min(cfg.timeout_s, WATCHDOG_S * 0.8)
    if "group_timeout_s" in fields and cfg.group_timeout_s is None:
        changes["group_timeout_s"] = GROUP_TIMEOUT_S
    return dataclasses.replace(cfg, **changes)


def kernel_paces(config: RunConfig, gpus: int) -> dict[str, float]:
    """Simulated seconds each device-time call of a kernel stands for.

    A kernel's simulated duration is split into :data:`BATCHES_PER_KERNEL` batches. The
    all-reduce also times its sweep sizes and its pairs (``iterations`` calls each) before its
    stress batches; those calls share its duration too.
    """
    durations = kernel_durations(config)
    paces = {}
    for name, duration_s in durations.items():
        calls = BATCHES_PER_KERNEL * _CALLS_PER_BATCH.get(name, 1)
        if name == "memtest":
            calls = MEMTEST_PASSES
        elif name == "allreduce":
            cfg = config.kernel_config(name)
            pairs = (gpus - 1) * cfg.iterations if cfg.pairwise and gpus >= 3 else 0
            calls += len(cfg.cpu_sizes_bytes) + pairs
        paces[name] = duration_s / calls
    return paces


def node_runtime(sim: SimulatedRun, node: NodeSpec, config: RunConfig) -> Runtime:
    """The world of one simulated node: its devices, telemetry, faults, seams and clock."""
    scenario = sim.scenario
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
    pace = kernel_paces(config, len(gpus))
    dtypes = {name: cfg.dtype for name, cfg in config.kernels.items() if hasattr(cfg, "dtype")}
    device_batches = max(1.0, pace.get("matmul", 0.0) / sim.device_verify_s)
    seams = {
        g.index: functools.partial(
            SimulatedSeam,
            gpu=g,
            pace_s=pace,
            dtypes=dtypes,
            device_batches=device_batches,
            activity=activity,
        )
        for g in gpus
    }

    def timeline(plan: Plan) -> VirtualTimeline:
        planned = {i.device.index: i.start_offset_s for i in plan.items}
        return VirtualTimeline(activity, planned, plan.config.watchdog.timeout_s)

    return Runtime(
        hostname=node.name,
        # A device is loaded exactly while its clock runs: it has no idle gaps in its time.
        telemetry_factory=lambda _devices: SimulatedTelemetry(
            gpus, activity=activity, idle_after_s=0.0
        ),
        cuda_devices=lambda: list(devices),
        # Faults enter through the device model only (each seam's and the telemetry's card).
        env={},
        timeline=timeline,
        seam_factories=seams,
        node_reports=False,  # one report over every node, after the merge
    )


def node_slots(scenario: Scenario, cpus: int | None = None) -> int:
    """How many nodes run at once: about :data:`WORKERS_PER_CPU` worker processes per CPU."""
    cpus = cpus or os.cpu_count() or 1
    widest = max((n.gpus for n in scenario.nodes), default=1)
    return max(1, min(len(scenario.nodes), WORKERS_PER_CPU * cpus // max(widest, 1)))


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
        scenario_path: the scenario TOML (docs/contracts.md, "Simulated fleets").
        config: the effective run config (profile, ``--set``, flags); see
            :func:`prepare_simulation` for what the simulation changes.
        argv: the command line, for the manifest.

    Returns:
        The :class:`burnin.runner.RunOutcome` of the merged run directory.

    Raises:
        ConfigError: the scenario is invalid (nothing runs).
    """
    from burnin.reports import judge_and_render
    from burnin.runner import RunOutcome

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
    context = judge_and_render(store.path, strict=config.run.strict)
    return RunOutcome(run_dir=store.path, exit_code=context["exit_code"], context=context)


def _run_nodes(sim: SimulatedRun, staging: Path, argv: list[str]) -> str | None:
    """Run every node: one in this thread, several in a bounded pool of threads.

    Nodes share this process, hence one worker server with torch preloaded for all. A single
    node runs in the caller's thread, where the runner handles Ctrl-C and SIGTERM itself (stop,
    partial report). Node threads cannot take signals, so with several nodes a stop request
    lets the running nodes finish and starts no more (their devices report no result), and the
    report is still written. Returns the stop request seen meanwhile, if any.
    """
    from burnin.runner import execute
    from burnin.signals import StopSignals

    errors: dict[str, BaseException] = {}
    stop = threading.Event()

    def one(node: NodeSpec) -> None:
        if stop.is_set():
            return
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
        with StopSignals() as signals, ThreadPoolExecutor(node_slots(sim.scenario)) as pool:
            futures = [pool.submit(one, n) for n in nodes]
            for future in futures:
                while not future.done():
                    time.sleep(0.05)
                    if signals.requested and not requested:
                        requested = signals.requested
                        stop.set()
                        log.warning("%s: the running simulated nodes finish first", requested)
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
            "node_slots": node_slots(scenario),
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
        f"simulated time from the device model"
    )


@dataclasses.dataclass(frozen=True)
class SimulatedFleet:
    """The scenario at ``scenario_path`` as a :class:`burnin.runner.Fleet`."""

    scenario_path: str | Path

    def execute(self, config: RunConfig, argv: list[str]) -> Any:
        return execute_simulated(self.scenario_path, config, argv)

    def describe(self, config: RunConfig) -> str:
        return format_simulated_plan(self.scenario_path, config)


def format_simulated_plan(scenario_path: str | Path, config: RunConfig) -> str:
    """What ``burnin run --simulate`` would do: the fleet, its faults, each node's plan."""
    from burnin.plan import format_plan
    from burnin.runner import prepare

    sim = prepare_simulation(scenario_path, config)
    s = sim.scenario
    lines = [f"# {_fleet_note(sim)}"]
    if sim.kernels_added:
        lines.append(f"# kernels added for the scenario's faults: {', '.join(sim.kernels_added)}")
    from burnin.sim.scenario import EXPECTED_CHECKS

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
