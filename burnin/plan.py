"""Pure planning: config + devices -> the work each device will do, and when it starts.

Nothing here touches hardware, so ``burnin plan`` can show exactly what ``burnin run`` would do.
Devices start in waves of ``ramp.max_concurrent`` every ``ramp.step_s`` seconds, so a rack never
goes from idle to full power at one instant; each kernel gets an equal share of the duration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from burnin.config import RunConfig
from burnin.devices import Device
from burnin.faults import Fault


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
    faults: tuple[Fault, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Plan:
    node: str
    items: tuple[WorkItem, ...]
    device_note: str
    config: RunConfig
    notes: tuple[str, ...] = field(default=())

    @property
    def total_s(self) -> float:
        return max(
            (i.start_offset_s + sum(k.duration_s for k in i.kernels) for i in self.items),
            default=0.0,
        )


def start_offsets(count: int, step_s: float, max_concurrent: int) -> list[float]:
    """Start time of each device: waves of ``max_concurrent`` (0 = all) every ``step_s``."""
    wave = max_concurrent if max_concurrent > 0 else 1 if step_s > 0 else max(count, 1)
    return [(i // wave) * step_s for i in range(count)]


def build_plan(
    config: RunConfig,
    devices: Sequence[Device],
    node: str,
    device_note: str = "",
    faults: Mapping[int, Sequence[Fault]] | None = None,
    cpu_count: int = 1,
) -> Plan:
    names = config.run.kernels
    share_s = config.run.duration_s / max(len(names), 1)
    steps = tuple(
        KernelStep(name=n, duration_s=share_s, config=config.kernel_config(n)) for n in names
    )
    offsets = start_offsets(len(devices), config.ramp.step_s, config.ramp.max_concurrent)
    cpu_devs = sum(1 for d in devices if d.kind == "cpu")
    threads = config.cpu.threads_per_device or max(1, cpu_count // max(cpu_devs, 1))
    items = tuple(
        WorkItem(
            node=node,
            device=dev,
            kernels=steps,
            start_offset_s=offsets[i],
            seed=config.run.seed,
            threads=threads if dev.kind == "cpu" else 0,
            faults=tuple((faults or {}).get(dev.index, ())),
        )
        for i, dev in enumerate(devices)
    )
    return Plan(node=node, items=items, device_note=device_note, config=config)


def format_plan(plan: Plan) -> str:
    cfg = plan.config
    lines = [
        f"# profile {cfg.profile}: {len(plan.items)} device(s) on {plan.node}; {plan.device_note}",
        f"# duration {cfg.run.duration_s:g} s per device, telemetry every "
        f"{cfg.telemetry.interval_s:g} s, watchdog {cfg.watchdog.timeout_s:g} s",
        f"# ramp: {cfg.ramp.max_concurrent or 'all'} at a time every {cfg.ramp.step_s:g} s; "
        f"last device ends at {plan.total_s:g} s",
        f"{'device':>6}  {'start_s':>8}  {'kernel':<10} {'duration_s':>10}  name",
    ]
    for item in plan.items:
        offset = item.start_offset_s
        for step in item.kernels:
            lines.append(
                f"{item.device.index:>6}  {offset:>8.1f}  {step.name:<10} "
                f"{step.duration_s:>10.1f}  {item.device.name}"
            )
            offset += step.duration_s
    return "\n".join(lines)
