"""The verdicts stage: a run store (or an inspect snapshot) in, ``verdicts.jsonl`` out.

:func:`evaluate` is the one loop over devices and checks: ``burnin run`` calls it after the
workers, ``burnin report`` calls it again (the thresholds or the checks may have changed since
the run), and ``burnin inspect`` calls it on cards read from NVML or dumps. Each device gets the
verdicts of every registered check whose data it has, plus an ERROR when no check could judge
it. For a run, the verdicts go to ``<run>/verdicts.jsonl``, one verdict per line (``node``,
``index`` and the verdict fields, always in that key order; devices by node and index, a
device's verdicts in registry order), so the same store and thresholds give the same file byte
for byte. Reports read that file back (:func:`read_verdicts`) and never call a check.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from burnin.errors import StoreError
from burnin.inventory import Card, inventory_record
from burnin.store import RunData, RunStore, finite
from burnin.verdicts.model import CheckContext, GpuData, Verdict, nothing_judged
from burnin.verdicts.registry import checks

VERDICTS_FILE = "verdicts.jsonl"
Verdicts = dict[tuple[str, int], list[Verdict]]


def gpu_data(run: RunData) -> list[GpuData]:
    """Group the store's records per planned device (plus any device seen only in records)."""
    planned = {(p["node"], p["device"]): p for p in run.manifest.get("plan", [])}
    gpus = []
    for host, node in run.nodes.items():
        devices = {d for (n, d) in planned if n == host}
        devices |= {
            r.get("device")
            for r in node.inventory + node.results
            if isinstance(r.get("device"), int)
        }
        samples, results, events = (
            _by_device(node.samples),
            _by_device(node.results),
            _by_device(node.events),
        )
        for dev in sorted(devices):
            plan = planned.get((host, dev), {})
            inventory = next((r for r in node.inventory if r.get("device") == dev), {})
            gpus.append(
                GpuData(
                    node=host,
                    index=dev,
                    inventory=inventory,
                    samples=samples.get(dev, []),
                    records=results.get(dev, []),
                    events=events.get(dev, []),
                    planned_kernels=list(plan.get("kernels", [])),
                )
            )
    for (host, dev), plan in planned.items():
        if host not in run.nodes:  # planned, but the node wrote nothing at all
            gpus.append(
                GpuData(
                    node=host,
                    index=dev,
                    inventory={},
                    samples=[],
                    records=[],
                    events=[],
                    planned_kernels=list(plan.get("kernels", [])),
                )
            )
    return gpus


def _by_device(records: list[dict[str, Any]]) -> dict[Any, list[dict[str, Any]]]:
    """Records by their ``device`` in one pass (a fleet node's samples are read once, not once
    per device); a device equal to another (1 and 1.0) shares its list, as ``==`` would."""
    out: dict[Any, list[dict[str, Any]]] = {}
    for record in records:
        try:  # noqa: SIM105 - cheaper than contextlib.suppress, once per sample of a fleet
            out.setdefault(record.get("device"), []).append(record)
        except TypeError:  # an unhashable device equals no device index
            pass
    return out


def snapshot(cards: Iterable[Card]) -> list[GpuData]:
    """Cards as check input for ``burnin inspect``: an inventory and no run (no samples,
    records or plan), so only the checks that need nothing but the inventory judge them.

    The node is the card's source (dump file or host), so two dumps' GPU 0 stay apart.
    """
    return [
        GpuData(
            node=card.source,
            index=card.inventory.index,
            inventory=inventory_record(card),
            samples=[],
            records=[],
            events=[],
            planned_kernels=[],
        )
        for card in cards
    ]


def _judge(
    gpus: Sequence[GpuData],
    thresholds: Mapping[str, Any],
    manifest: Mapping[str, Any],
    rack: Sequence[dict[str, Any]] = (),
) -> Verdicts:
    """Every registered check that applies on every device: {(node, index): verdicts}.

    A check applies where the device has the data it needs (an inspect snapshot has no run,
    so only inventory checks judge it) and, for a check that does not judge the CPU fallback,
    where the device is a card.
    """
    ctx = CheckContext(
        thresholds=dict(thresholds), fleet=list(gpus), manifest=dict(manifest), rack=list(rack)
    )
    registry = checks()
    out: Verdicts = {}
    for g in gpus:
        verdicts = [v for c in registry.values() for v in c.judge(g, ctx)]
        unjudged = nothing_judged(verdicts)
        out[(g.node, g.index)] = [*verdicts, unjudged] if unjudged else verdicts
    return out


def evaluate(
    source: Path | str | RunData | list[GpuData] | tuple[GpuData, ...],
    thresholds: Mapping[str, Any] | None = None,
    manifest: Mapping[str, Any] | None = None,
) -> Verdicts:
    """Judge a run and write its ``verdicts.jsonl``, or judge an inspect snapshot.

    Args:
        source: a run directory, a run already loaded from one, or the devices of a
            :func:`snapshot` (``burnin inspect``: nothing is written, there is no run).
        thresholds: overrides of the run's ``[thresholds]`` (key -> value); None keeps the
            thresholds recorded in its manifest. A key missing from both takes the check's
            default.
        manifest: a snapshot's stand-in for a run's manifest (its ``claimed_sku``).

    Returns:
        {(node, index): verdicts}, in file order for a run, in the snapshot's order else.

    Raises:
        StoreError: the run directory cannot be read or written.
    """
    if isinstance(source, list | tuple):
        return _judge(source, thresholds or {}, manifest or {})
    run = source if isinstance(source, RunData) else RunStore(Path(source)).load()
    recorded = run.manifest.get("config", {}).get("thresholds", {})
    limits = {**recorded, **(thresholds or {})}
    found = _judge(gpu_data(run), limits, run.manifest, run.rack)
    ordered = dict(sorted(found.items()))
    write_verdicts(run.path, ordered)
    return ordered


def verdict_lines(verdicts: Verdicts) -> str:
    """The ``verdicts.jsonl`` text: one JSON object per verdict, keys in a fixed order."""
    lines = []
    for (node, index), found in verdicts.items():
        for v in found:
            row = {"node": node, "index": index, **v.to_dict()}
            lines.append(json.dumps(finite(row), separators=(",", ":"), default=str))
    return "".join(f"{line}\n" for line in lines)


def write_verdicts(run_dir: Path, verdicts: Verdicts) -> None:
    """Replace ``verdicts.jsonl`` atomically: a reader sees the old file or the new one."""
    tmp = run_dir / f".{VERDICTS_FILE}.tmp"
    try:
        tmp.write_text(verdict_lines(verdicts), encoding="utf-8")
        os.replace(tmp, run_dir / VERDICTS_FILE)
    except OSError as exc:
        raise StoreError(f"{run_dir}: cannot write {VERDICTS_FILE} ({exc})") from None


def read_verdicts(run_dir: Path) -> Verdicts:
    """The verdicts :func:`evaluate` wrote, by device; StoreError if absent or malformed."""
    path = run_dir / VERDICTS_FILE
    if not path.is_file():
        raise StoreError(f"{path}: no verdicts yet (`burnin report {run_dir}` judges the run)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: cannot read ({exc})") from None
    out: Verdicts = {}
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            key = (str(row.pop("node")), int(row.pop("index")))
            out.setdefault(key, []).append(Verdict.from_dict(row))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreError(f"{path} line {number}: unreadable verdict ({exc})") from None
    return out
