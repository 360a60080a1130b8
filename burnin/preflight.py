"""Preflight: before any stress, is each device free, and can the checks that matter run on it?

A burn-in on a GPU that a training job is using measures the job, not the card, and may
disturb the job; so a device with other compute processes stops the run before it starts
(exit 2, the processes named) unless ``--force`` (``preflight.force``), in which case what was
running is recorded and the device gets a ``preflight`` WARN. The process list comes from an
optional telemetry method, ``processes(index) -> list[dict]`` (NVML's running compute
processes); a backend without it cannot tell, and the device gets a ``preflight`` SKIP saying
so, never a PASS. One telemetry sample per device shows which sensors answer: a check whose
sensors are not supported cannot run, and is listed with the reason (a ``preflight`` SKIP).
Checks named in ``preflight.required_checks`` that cannot run stop the run, unless forced.
Some cards cannot be burned in as a whole card at all, and ``--force`` does not change that: a
card in MIG mode (its slices are not the card its datasheet describes, so every figure would be
judged against the wrong numbers), a card whose compute mode is ``prohibited``, and an
exclusive-process card another process holds (the worker could not open it, and the run would
end in a ``crash`` that is not the card's fault). Those stop the run naming the card by PCI bus
id; the modes are read, never changed.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from burnin.config import PreflightCheck, RunConfig
from burnin.errors import DeviceError, TelemetryError
from burnin.plan import Plan
from burnin.telemetry.base import TelemetryClient
from burnin.text import printable

# The sample fields each telemetry-driven check needs (burnin/verdicts/, one module per check).
# ``xid`` needs the NVML event API rather than a sample field: see _xid_reason.
CHECK_SENSORS: dict[str, tuple[str, ...]] = {
    "thermal": ("temp_c",),
    "throttle": ("throttle_reasons",),
    "power": ("power_w",),
    "fan": ("fan_pct",),
    "ecc": ("ecc_volatile_sbe", "ecc_volatile_dbe"),
    "pcie-link": ("pcie_gen", "pcie_width"),
    "pcie-replay": ("pcie_replay_count",),
    "xid": (),
}
assert set(CHECK_SENSORS) == set(typing.get_args(PreflightCheck))
_SHOWN_PROCESSES = 5


@dataclass
class DevicePreflight:
    """What the preflight found on one device (written as a ``preflight`` event)."""

    device: int
    processes: list[dict[str, Any]] | None = None  # None = could not be listed
    processes_note: str = ""
    missing_sensors: list[str] = field(default_factory=list)
    cannot_run: dict[str, str] = field(default_factory=dict)
    forced: bool = False

    @property
    def busy(self) -> bool:
        return bool(self.processes)

    def to_event(self, elapsed_s: float = 0.0) -> dict[str, Any]:
        return {
            "device": self.device,
            "elapsed_s": elapsed_s,
            "kind": "preflight",
            "processes": self.processes,
            "processes_note": self.processes_note,
            "missing_sensors": self.missing_sensors,
            "cannot_run": self.cannot_run,
            "forced": self.forced,
        }


def _process_list(
    client: TelemetryClient, index: int, own_pids: set[int]
) -> tuple[list[dict[str, Any]] | None, str]:
    lister: Callable[[int], Any] | None = getattr(client, "processes", None)
    if not callable(lister):
        return None, "the telemetry backend cannot list the processes on a device"
    try:
        found = lister(index)
    except TelemetryError as exc:
        return None, f"listing processes failed: {exc}"
    procs = []
    for proc in found or []:
        entry = dict(proc) if isinstance(proc, Mapping) else {"pid": proc}
        if entry.get("pid") not in own_pids:
            procs.append(entry)
    return procs, ""


def _sensor_gaps(client: TelemetryClient, index: int) -> tuple[list[str], str, set[str]]:
    """Sample fields the device does not report (or everything and the reason), and of those
    the ones whose read failed rather than being not supported."""
    try:
        sample = client.sample(index, 0.0).to_dict()
    except TelemetryError as exc:
        return sorted({s for sensors in CHECK_SENSORS.values() for s in sensors}), str(exc), set()
    unsupported = set(sample.get("unsupported") or ())
    missing = {
        name
        for sensors in CHECK_SENSORS.values()
        for name in sensors
        if name in unsupported or (name != "throttle_reasons" and sample.get(name) is None)
    }
    return sorted(missing), "", set(sample.get("failed") or ()) & missing


def _gap_reason(gaps: list[str], failed: set[str]) -> str:
    parts = []
    if absent := [s for s in gaps if s not in failed]:
        parts.append(f"{', '.join(absent)} not supported")
    if broken := [s for s in gaps if s in failed]:
        parts.append(f"{', '.join(broken)} could not be read")
    return "; ".join(parts)


def _xid_reason(inventory: Mapping[str, Any]) -> str | None:
    supported = inventory.get("xid_events_supported")
    if supported is True:
        return None
    if supported is False:
        return "XID events cannot be registered on this device"
    return "the telemetry backend has no XID event source"


def check_device(
    client: TelemetryClient,
    device: int,
    telemetry_index: int | None,
    inventory: Mapping[str, Any],
    own_pids: set[int],
) -> DevicePreflight:
    """Preflight one device: its other processes and the checks its sensors allow."""
    result = DevicePreflight(device=device)
    if telemetry_index is None:
        result.processes_note = "no telemetry for this device"
        for check in CHECK_SENSORS:
            result.cannot_run[check] = "no telemetry for this device"
        return result
    result.processes, result.processes_note = _process_list(client, telemetry_index, own_pids)
    result.missing_sensors, failure, failed = _sensor_gaps(client, telemetry_index)
    missing = set(result.missing_sensors)
    for check, sensors in CHECK_SENSORS.items():
        if failure:
            result.cannot_run[check] = f"telemetry failed: {failure}"
        elif check == "xid":
            if (reason := _xid_reason(inventory)) is not None:
                result.cannot_run[check] = reason
        elif gaps := [s for s in sensors if s in missing]:
            result.cannot_run[check] = _gap_reason(gaps, failed)
    return result


def mode_refusals(
    device: int, inventory: Mapping[str, Any], processes: list[dict[str, Any]] | None
) -> list[str]:
    """Why a whole-card burn-in cannot run on this card at all (no ``--force`` overrides it).

    Args:
        device: the run's device index.
        inventory: the device's inventory record (``mig_mode``, ``compute_mode``, ``pci_bus_id``).
        processes: other processes on the card; None where they could not be listed.
    """
    # The bus id and process names come from the device: no control character reaches a terminal.
    card = printable(f"GPU {device} (PCI {inventory.get('pci_bus_id') or 'bus id unknown'})")
    found = []
    if inventory.get("mig_mode") == "enabled":
        found.append(
            f"{card} has MIG mode enabled: burnin does not judge MIG slices against a whole "
            "card's datasheet, so it will not test this card (nothing is wrong with the card; "
            "an administrator can disable MIG, or leave the card out with --gpus)"
        )
    mode = inventory.get("compute_mode")
    if mode == "prohibited":
        found.append(
            f"{card} is in compute mode 'prohibited': no process may use it for compute, so "
            "burnin cannot stress it (nothing is wrong with the card; an administrator can set "
            "compute mode DEFAULT, or leave the card out with --gpus)"
        )
    elif mode in ("exclusive-process", "exclusive-thread") and processes:
        found.append(
            f"{card} is in compute mode '{mode}' and another process holds it: "
            f"{printable(describe_processes(processes))}; burnin's worker could not open it "
            "(nothing is wrong with the card; stop that process, or leave the card out with --gpus)"
        )
    return found


def describe_processes(procs: list[dict[str, Any]]) -> str:
    parts = []
    for proc in procs[:_SHOWN_PROCESSES]:
        text = f"pid {proc.get('pid')}"
        if proc.get("name"):
            text += f" ({proc['name']})"
        mem = proc.get("used_memory_mib")
        if isinstance(mem, int | float) and not isinstance(mem, bool):
            text += f" {mem:g} MiB"
        parts.append(text)
    if len(procs) > _SHOWN_PROCESSES:
        parts.append(f"and {len(procs) - _SHOWN_PROCESSES} more")
    return ", ".join(parts)


def run_preflight(
    plan: Plan,
    client: TelemetryClient,
    config: RunConfig,
    inventories: Mapping[int, Mapping[str, Any]],
    own_pids: set[int] | None = None,
) -> list[DevicePreflight]:
    """Preflight every planned device; refuse to start where the run would be wrong.

    Raises:
        DeviceError: a device is busy with other processes, or a required check cannot run
            on it, and ``preflight.force`` is off; or a card cannot be tested as a whole card
            (MIG mode, a prohibited or exclusively held compute mode), forced or not.
    """
    pids = own_pids if own_pids is not None else {os.getpid()}
    force = config.preflight.force
    results = [
        check_device(
            client,
            item.device.index,
            item.device.telemetry_index,
            inventories.get(item.device.index, {}),
            pids,
        )
        for item in plan.items
    ]
    refusals = [
        why
        for item, res in zip(plan.items, results, strict=True)
        for why in mode_refusals(
            item.device.index, inventories.get(item.device.index, {}), res.processes
        )
    ]
    problems = []
    for res in results:
        if config.preflight.check_processes and res.busy:
            res.forced = force
            problems.append(
                f"GPU {res.device} is busy with {len(res.processes or [])} other process(es): "
                f"{describe_processes(res.processes or [])}"
            )
        for check in config.preflight.required_checks:
            if check in res.cannot_run:
                res.forced = force
                problems.append(
                    f"required check {check!r} cannot run on GPU {res.device}: "
                    f"{res.cannot_run[check]}"
                )
    if refusals:
        raise DeviceError(
            "preflight refused to start: "
            + "; ".join(refusals + problems)
            + " (--force does not override this)"
        )
    if problems and not force:
        raise DeviceError(
            "preflight refused to start: "
            + "; ".join(problems)
            + " (stop those processes or fix the device, or pass --force to start anyway)"
        )
    return results
