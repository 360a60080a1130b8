"""Pure planning: config + devices -> the work each device will do, when it starts, what it draws.

Nothing here touches hardware, so ``burnin plan`` shows exactly what ``burnin run`` would do.

Ramp semantics (a site has blown electrical parts by starting too many GPUs at once): devices
start one by one, a new one every ``ramp.step_s / ramp.max_concurrent`` seconds (``max_concurrent
= 0`` counts as 1 once ``step_s > 0``). A device is *ramping* during the half-open interval
``[start, start + step_s)``, so at any instant at most ``max_concurrent`` devices of a node are
ramping; the runner enforces the same rule on the start times it actually records. ``step_s =
0`` starts every device at once. Nodes of a multi-node run are offset by their rank: node ``r``
starts ``r * ramp.node_offset_s`` later, by default one whole node's ramp, so a hall never has
more than ``max_concurrent`` devices ramping at once. The rank comes from ``ramp.node_rank`` or
the launcher's environment (``GROUP_RANK`` from torchrun, ``SLURM_NODEID``, a Kubernetes
Indexed Job's ``JOB_COMPLETION_INDEX``, ``RANK``) and the node count from ``ramp.nodes`` or
``NODE_COUNT_VARIABLES``, all parsed strictly. Estimated power uses each card's SKU TDP
(burnin/data/skus.toml); where no TDP is known the plan says so rather than guessing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from burnin.config import RampSection, RunConfig
from burnin.devices import Device
from burnin.errors import InputError
from burnin.text import printable

# Launcher variables holding this node's rank, in order of preference: torchrun's node rank,
# Slurm's node index within the allocation, a Kubernetes Indexed Job's pod index, then the global
# rank (burnin runs one process per node, so there it is the node rank).
RANK_VARIABLES = ("GROUP_RANK", "SLURM_NODEID", "JOB_COMPLETION_INDEX", "RANK")
# Launcher variables holding the number of nodes, in the same order: torchrun's worker-group
# count (set per worker in torch/distributed/elastic/agent/server/local_elastic_agent.py),
# Slurm's node count of the step and of the job, and the count `burnin launch k8s` writes into
# its Job (Kubernetes sets none). WORLD_SIZE / LOCAL_WORLD_SIZE is the last resort.
NODE_COUNT_VARIABLES = ("GROUP_WORLD_SIZE", "SLURM_NNODES", "SLURM_JOB_NUM_NODES", "BURNIN_NODES")
_UINT = re.compile(r"[0-9]{1,7}")
_J_PER_KWH = 3.6e6
# Above this many device timelines the run-wide peak is bounded (nodes × node peak) instead of
# computed exactly, so `burnin plan` stays instant for any hall size.
_EXACT_PEAK_LIMIT = 200_000


@dataclass(frozen=True, kw_only=True)
class KernelStep:
    name: str
    duration_s: float
    config: Any


@dataclass(frozen=True, kw_only=True)
class WorkItem:
    node: str
    device: Device
    kernels: tuple[KernelStep, ...]
    start_offset_s: float
    seed: int
    threads: int = 0
    tdp_w: float | None = None  # the card's SKU TDP, for the power estimate; None = unknown
    # A picklable callable ``(seed=...) -> DeviceSeam`` (a simulated or a test's faulty device,
    # e.g. a functools.partial of its seam class); None = kernels.base.DeviceSeam.
    seam_factory: Any = None

    @property
    def duration_s(self) -> float:
        return sum(k.duration_s for k in self.kernels)


@dataclass(frozen=True, kw_only=True)
class NodePlacement:
    """Where this node sits in a multi-node run, and where that came from."""

    rank: int = 0
    nodes: int = 1
    offset_s: float = 0.0  # this node's start offset (rank × per-node offset)
    node_offset_s: float = 0.0  # offset between consecutive nodes
    source: str = "default"


@dataclass(frozen=True, kw_only=True)
class Plan:
    node: str
    items: tuple[WorkItem, ...]
    device_note: str
    config: RunConfig
    notes: tuple[str, ...] = field(default=())
    placement: NodePlacement = field(default_factory=NodePlacement)
    # Each device's inventory record as read before the run (device index -> inventory.jsonl
    # record); filled by the runner, empty for a plan built from devices alone.
    inventory: Mapping[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return max((i.start_offset_s + i.duration_s for i in self.items), default=0.0)


@dataclass(frozen=True, kw_only=True)
class PowerEstimate:
    """Estimated draw with every card at its TDP from its start to its end."""

    known: int  # devices with a TDP
    unknown: int
    node_peak_w: float | None
    run_peak_w: float | None
    run_peak_exact: bool
    node_energy_kwh: float | None
    run_energy_kwh: float | None


def ramp_gap_s(step_s: float, max_concurrent: int) -> float:
    """Seconds between two consecutive device starts on one node."""
    return step_s / max(max_concurrent, 1) if step_s > 0 else 0.0


def start_offsets(count: int, step_s: float, max_concurrent: int) -> list[float]:
    """Start time of each device of one node: one by one, ``ramp_gap_s`` apart."""
    gap = ramp_gap_s(step_s, max_concurrent)
    return [i * gap for i in range(count)]


def _env_uint(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name)
    if value is None:
        return None
    if not _UINT.fullmatch(value):
        raise InputError(
            f"environment variable {name}={value!r}: expected a non-negative integer "
            "(digits only, like 0 or 3)"
        )
    return int(value)


def _first_env_uint(env: Mapping[str, str], names: Sequence[str]) -> tuple[str, int] | None:
    """The first of ``names`` set in ``env``, with its value; None when none is set."""
    for name in names:
        value = _env_uint(env, name)
        if value is not None:
            return name, value
    return None


def node_placement(ramp: RampSection, env: Mapping[str, str], device_count: int) -> NodePlacement:
    """This node's rank, the number of nodes and its start offset.

    Raises:
        InputError: a launcher variable that is not a plain non-negative integer, a world size
            of zero or not divisible by the local world size, or a rank outside the run.
    """
    rank, source = 0, "default (single node)"
    if ramp.node_rank >= 0:
        rank, source = ramp.node_rank, "ramp.node_rank"
    elif (ranked := _first_env_uint(env, RANK_VARIABLES)) is not None:
        source, rank = ranked
    nodes, nodes_source = 1, "default"
    if ramp.nodes > 0:
        nodes, nodes_source = ramp.nodes, "ramp.nodes"
    elif (counted := _first_env_uint(env, NODE_COUNT_VARIABLES)) is not None:
        nodes_source, nodes = counted
    elif (world := _env_uint(env, "WORLD_SIZE")) is not None:
        local = _env_uint(env, "LOCAL_WORLD_SIZE") or 1
        if world == 0 or world % local:
            raise InputError(
                f"environment variables WORLD_SIZE={world} and LOCAL_WORLD_SIZE={local}: "
                "the world size must be a positive multiple of the local world size"
            )
        nodes, nodes_source = world // local, "WORLD_SIZE / LOCAL_WORLD_SIZE"
    if nodes < 1:
        raise InputError(f"{nodes_source}: a run needs at least one node, got {nodes}")
    if rank >= nodes:
        raise InputError(
            f"node rank {rank} (from {source}) is outside a run of {nodes} node(s) "
            f"(from {nodes_source}); ranks go from 0 to {nodes - 1}"
        )
    gap = ramp_gap_s(ramp.step_s, ramp.max_concurrent)
    per_node = ramp.node_offset_s if ramp.node_offset_s is not None else device_count * gap
    return NodePlacement(
        rank=rank, nodes=nodes, offset_s=rank * per_node, node_offset_s=per_node, source=source
    )


def kernel_durations(config: RunConfig) -> dict[str, float]:
    """Each planned kernel's part of ``run.duration_s``, in proportion to its ``share``."""
    names = config.run.kernels
    shares = [float(getattr(config.kernel_config(n), "share", 1.0)) for n in names]
    total = sum(shares) or float(len(names))
    run_s = config.run.duration_s
    return {n: run_s * share / total for n, share in zip(names, shares, strict=True)}


def build_plan(
    config: RunConfig,
    devices: Sequence[Device],
    node: str,
    device_note: str = "",
    cpu_count: int = 1,
    env: Mapping[str, str] | None = None,
    tdp_w: Mapping[int, float | None] | None = None,
    seam_factories: Mapping[int, Any] | None = None,
) -> Plan:
    """The work of every device on this node.

    Args:
        config: the effective run config.
        devices: the devices of this node, in start order.
        node: this node's name (already a safe path component).
        device_note: how the devices were chosen, for the output and the report.
        cpu_count: logical CPUs, shared among CPU-fallback devices.
        env: the launcher's environment (node rank); None = single node.
        tdp_w: each device's TDP in W by device index, for the power estimate.
        seam_factories: each device's seam factory by device index (a simulated fleet's
            devices, a test's faulty ones).

    Returns:
        The plan; start offsets already include this node's rank offset.
    """
    durations = kernel_durations(config)
    steps = tuple(
        KernelStep(name=n, duration_s=durations[n], config=config.kernel_config(n))
        for n in config.run.kernels
    )
    placement = node_placement(config.ramp, env or {}, len(devices))
    offsets = start_offsets(len(devices), config.ramp.step_s, config.ramp.max_concurrent)
    # Simulated GPUs compute on the CPU too, so they share its cores like the CPU fallback.
    cpu_devs = sum(1 for d in devices if d.torch_device == "cpu")
    threads = config.cpu.threads_per_device or max(1, cpu_count // max(cpu_devs, 1))
    items = tuple(
        WorkItem(
            node=node,
            device=dev,
            kernels=steps,
            start_offset_s=round(placement.offset_s + offsets[i], 6),
            seed=config.run.seed,
            threads=threads if dev.torch_device == "cpu" else 0,
            tdp_w=(tdp_w or {}).get(dev.index),
            seam_factory=(seam_factories or {}).get(dev.index),
        )
        for i, dev in enumerate(devices)
    )
    return Plan(node=node, items=items, device_note=device_note, config=config, placement=placement)


def _peak_w(intervals: list[tuple[float, float, float]]) -> float:
    """Largest sum of ``watts`` over half-open ``[start, end)`` intervals at any instant."""
    edges = [(s, 1, w) for s, _e, w in intervals] + [(e, 0, -w) for _s, e, w in intervals]
    edges.sort(key=lambda x: (x[0], x[1]))  # at equal times, ends before starts
    level = peak = 0.0
    for _t, _kind, watts in edges:
        level += watts
        peak = max(peak, level)
    return peak


def power_estimate(plan: Plan) -> PowerEstimate:
    """Peak and energy with every card at its TDP while it runs (the worst case a breaker sees)."""
    known = [i for i in plan.items if i.tdp_w is not None]
    unknown = len(plan.items) - len(known)
    if not known:
        return PowerEstimate(
            known=0,
            unknown=unknown,
            node_peak_w=None,
            run_peak_w=None,
            run_peak_exact=True,
            node_energy_kwh=None,
            run_energy_kwh=None,
        )
    place = plan.placement
    local = [
        (i.start_offset_s - place.offset_s, i.start_offset_s - place.offset_s + i.duration_s)
        for i in known
    ]
    watts = [float(i.tdp_w or 0.0) for i in known]
    node_peak = _peak_w([(s, e, w) for (s, e), w in zip(local, watts, strict=True)])
    exact = place.nodes * len(known) <= _EXACT_PEAK_LIMIT
    if exact:
        run_peak = _peak_w(
            [
                (s + r * place.node_offset_s, e + r * place.node_offset_s, w)
                for r in range(place.nodes)
                for (s, e), w in zip(local, watts, strict=True)
            ]
        )
    else:
        run_peak = node_peak * place.nodes
    energy = sum(w * i.duration_s for w, i in zip(watts, known, strict=True)) / _J_PER_KWH
    return PowerEstimate(
        known=len(known),
        unknown=unknown,
        node_peak_w=node_peak,
        run_peak_w=run_peak,
        run_peak_exact=exact,
        node_energy_kwh=energy,
        run_energy_kwh=energy * place.nodes,
    )


def _power_lines(plan: Plan) -> list[str]:
    est = power_estimate(plan)
    if est.node_peak_w is None:
        cpu = plan.items and all(i.device.kind == "cpu" for i in plan.items)
        why = "the CPU fallback has no TDP" if cpu else "no device matched a SKU with a TDP"
        return [f"# power: unknown ({why})"]
    place = plan.placement
    bound = "" if est.run_peak_exact else "at most "
    lines = [
        f"# power: estimated peak {est.node_peak_w:.0f} W on this node, {bound}"
        f"{est.run_peak_w:.0f} W for the run ({place.nodes} node(s)), every card at its SKU TDP",
        f"# energy: about {est.node_energy_kwh:.3f} kWh on this node, "
        f"{est.run_energy_kwh:.3f} kWh for the run",
    ]
    energy = plan.config.energy
    if energy.price_per_kwh is not None and est.run_energy_kwh is not None:
        node_cost = (est.node_energy_kwh or 0.0) * energy.price_per_kwh
        lines.append(
            f"# cost: about {node_cost:.3g} {energy.currency} on this node, "
            f"{est.run_energy_kwh * energy.price_per_kwh:.3g} {energy.currency} for the run "
            f"at {energy.price_per_kwh:g} {energy.currency}/kWh (energy.price_per_kwh)"
        )
    if est.unknown:
        lines.append(f"# power: {est.unknown} device(s) have no known TDP and are not counted")
    return lines


def format_plan(plan: Plan) -> str:
    """The schedule as `burnin plan` prints it: ``#`` metadata, then one row per kernel step."""
    cfg = plan.config
    place = plan.placement
    gap = ramp_gap_s(cfg.ramp.step_s, cfg.ramp.max_concurrent)
    if gap:
        ramp = (
            f"# ramp: one device every {gap:g} s, at most {max(cfg.ramp.max_concurrent, 1)} "
            f"ramping at once (ramping = the first {cfg.ramp.step_s:g} s after a start)"
        )
    else:
        ramp = "# ramp: none, every device starts at once (ramp.step_s = 0)"
    lines = [
        f"# profile {cfg.profile}: {len(plan.items)} device(s) on {plan.node}; {plan.device_note}",
        f"# duration {cfg.run.duration_s:g} s per device, telemetry every "
        f"{cfg.telemetry.interval_s:g} s, watchdog {cfg.watchdog.timeout_s:g} s",
        ramp,
        f"# node rank {place.rank} of {place.nodes} (from {place.source}): starts "
        f"{place.offset_s:g} s after rank 0, nodes {place.node_offset_s:g} s apart",
        f"# last device ends at {plan.total_s:g} s; the run ends by "
        f"{plan.total_s + cfg.watchdog.timeout_s:g} s even if a device hangs",
        *_power_lines(plan),
        f"{'device':>6}  {'start_s':>8}  {'kernel':<10} {'duration_s':>10}  {'tdp_w':>6}  name",
    ]
    for item in plan.items:
        offset = item.start_offset_s
        tdp = f"{item.tdp_w:.0f}" if item.tdp_w is not None else "n/a"
        for step in item.kernels:
            lines.append(
                f"{item.device.index:>6}  {offset:>8.2f}  {step.name:<10} "
                f"{step.duration_s:>10.1f}  {tdp:>6}  {printable(item.device.name)}"
            )
            offset += step.duration_s
    return "\n".join(lines)
