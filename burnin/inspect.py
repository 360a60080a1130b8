"""``burnin inspect``: a read-only screening snapshot of cards, live or from a seller's dumps.

No stress runs: the cards' inventory (identity, firmware, limits, lifetime wear) goes through
the same verdicts stage as a run: every check that needs only the inventory (``identity``,
``firmware``, ``wear``, ``ecc``, ``retired-pages``, ``row-remap``, ``power``) judges each card
against the claimed SKU and against the others (duplicate serials, VBIOS outliers). The source
is this node's telemetry (NVML through the runtime's factory) or ``nvidia-smi -q`` / ``-q -x``
dumps, so procurement can screen a lot before paying for it; the dump path imports neither torch
nor pynvml. The result is ``burnin.inspect/1`` JSON or a terminal table; its exit code is the
worst verdict (0 pass or warn, 3 a card failed, 4 a card could not be read).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from burnin.config import check_claimed_sku
from burnin.errors import InputError, TelemetryError
from burnin.inventory import Card, read_dumps, read_node, torch_sm_counts
from burnin.telemetry.base import TelemetryClient
from burnin.text import printable, status_lines
from burnin.verdicts import (
    Status,
    Verdict,
    checks,
    device_status,
    evaluate,
    exit_code,
    snapshot,
    worst,
)

if TYPE_CHECKING:
    from burnin.runtime import Runtime

INSPECT_SCHEMA = "burnin.inspect/1"


@dataclass(frozen=True)
class InspectResult:
    gpus: list[dict[str, Any]]
    status: Status
    exit_code: int
    claimed_sku: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": INSPECT_SCHEMA,
            "status": self.status.name,
            "exit_code": self.exit_code,
            "claimed_sku": self.claimed_sku,
            "gpus": self.gpus,
        }


def inspect_cards(
    cards: Sequence[Card],
    thresholds: dict[str, Any],
    claimed_sku: str | None = None,
    strict: bool = False,
) -> InspectResult:
    """Judge ``cards`` with the screening checks, each against the claim and the others.

    Args:
        cards: the cards to judge (all of them form the fleet for duplicate/VBIOS checks).
        thresholds: the effective ``[thresholds]`` table (missing keys take their defaults).
        claimed_sku: the SKU key every card is claimed to be, or None.
        strict: WARN counts as failure for the exit code.

    Returns:
        The per-GPU entries (worst first), the overall status and the exit code.
    """
    claim = check_claimed_sku(claimed_sku)
    gpus = snapshot(cards)
    judged = evaluate(gpus, thresholds, {"claimed_sku": claim})
    order = list(checks())
    entries = []
    for card, gpu in zip(cards, gpus, strict=True):
        verdicts = judged[(gpu.node, gpu.index)]
        if card.error:
            # An unreadable card is lost, which says more than "nothing judged it".
            verdicts = [v for v in verdicts if v.check != "incomplete"]
            verdicts.append(
                Verdict(
                    check="lost",
                    status=Status.ERROR,
                    message=f"the card could not be read: {card.error}; reseat it and retry",
                    action="reseat",
                )
            )
        verdicts.sort(key=lambda v: (-v.status, order.index(v.check) if v.check in order else 99))
        inv = gpu.inventory
        entries.append(
            {
                "source": card.source,
                "index": gpu.index,
                "uuid": inv.get("uuid"),
                "serial": inv.get("serial"),
                "name": inv.get("name"),
                "sku": inv.get("sku"),
                "memory_total_mib": inv.get("memory_total_mib"),
                "status": device_status(verdicts).name,
                "verdicts": [v.to_dict() for v in verdicts],
            }
        )
    entries.sort(key=lambda e: -Status[e["status"]])
    statuses = [Status[e["status"]] for e in entries]
    status = worst(statuses) if entries else Status.ERROR
    return InspectResult(entries, status, exit_code(statuses, strict), claim)


def inspect_dumps(
    paths: Sequence[Path],
    thresholds: dict[str, Any],
    claimed_sku: str | None = None,
    strict: bool = False,
) -> InspectResult:
    """Screen the GPUs of nvidia-smi dumps (text or XML); a bad file raises DumpError."""
    return inspect_cards(read_dumps(paths), thresholds, claimed_sku, strict)


def inspect_node(
    client: TelemetryClient,
    host: str,
    thresholds: dict[str, Any],
    claimed_sku: str | None = None,
    strict: bool = False,
    sm_counts: Callable[[], dict[str, int]] | None = None,
) -> InspectResult:
    """Screen this node's cards through ``client``; InputError when it sees no GPU.

    Args:
        client: an open telemetry client (closed by the caller).
        host: this node's name, the cards' ``source``.
        thresholds, claimed_sku, strict: as for :func:`inspect_cards`.
        sm_counts: returns SM counts by UUID (torch) for cards whose NVML has none; called
            only once GPUs are known to exist.
    """
    check_claimed_sku(claimed_sku)
    try:
        backend = client.driver_info().backend
        count = client.device_count()
    except TelemetryError as exc:
        raise InputError(f"cannot read this node's GPUs: {exc}") from None
    if backend.startswith("none") or count == 0:
        raise InputError(
            "no NVIDIA GPU visible through NVML on this node (no GPU, no driver, or NVML not "
            "available): nothing to inspect; use `burnin inspect --from FILE` to screen an "
            "nvidia-smi dump"
        )
    counts = sm_counts() if sm_counts is not None else {}
    return inspect_cards(read_node(client, host, counts), thresholds, claimed_sku, strict)


def inspect_local(
    runtime: Runtime, thresholds: dict[str, Any], claimed_sku: str | None, strict: bool = False
) -> InspectResult:
    """Screen this node through the runtime's telemetry factory (NVML in production)."""
    from burnin.devices import Device

    check_claimed_sku(claimed_sku)
    # The factory serves NVML for CUDA devices; a placeholder asks for it without importing
    # torch, and NVML then enumerates every card itself.
    client = runtime.telemetry_factory([Device(index=0, kind="cuda", name="(inspect)")])
    try:
        # torch only where the runtime discovers devices for real (tests inject their own).
        counts = torch_sm_counts if runtime.cuda_devices is None else None
        return inspect_node(client, runtime.hostname, thresholds, claimed_sku, strict, counts)
    finally:
        client.close()


def _safe(value: Any, width: int = 0) -> str:
    """Device and file strings are untrusted: no control characters reach the terminal."""
    text = "n/a" if value is None else printable(str(value))
    return f"{text:<{width}}" if width else text


def format_table(result: InspectResult) -> str:
    """nccl-tests-style terminal output: ``#`` metadata, a table with units, issues, result."""
    lines = [f"# burnin inspect: {len(result.gpus)} GPU(s)"]
    if result.claimed_sku:
        lines.append(f"# claimed SKU: {result.claimed_sku}")
    for g in result.gpus:
        lines.append(
            f"#  {_safe(g['source'])} gpu{g['index']}: {_safe(g['name'])}  "
            f"uuid {_safe(g['uuid'])}  serial {_safe(g['serial'])}"
        )
    lines += [
        "#",
        f"# {'status':<6} {'gpu':>3} {'sku':<16} {'memory':>8}  source",
        f"# {'':<6} {'':>3} {'':<16} {'(MiB)':>8}",
    ]
    for g in result.gpus:
        lines.append(
            f"  {g['status']:<6} {g['index']:>3} {_safe(g['sku'], 16)} "
            f"{_safe(g['memory_total_mib']):>8}  {_safe(g['source'])}"
        )
    lines.append("")
    lines += status_lines(result.gpus, lambda g: f"{g['source']} gpu{g['index']}")
    word = "OK" if result.exit_code == 0 else "FAILED"
    lines.append(f"# Result: {result.status.name}  {word}  (exit {result.exit_code})")
    # Messages quote untrusted device and file strings: escape what is not printable.
    return "\n".join(printable(line) for line in lines)
