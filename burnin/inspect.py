"""``burnin inspect``: a read-only screening snapshot of cards, live or from a seller's dumps.

No stress runs: the cards' inventory (identity, firmware, limits, lifetime wear) goes through
the same verdicts stage as a run: every check that needs only the inventory (``identity``,
``firmware``, ``wear``, ``ecc``, ``retired-pages``, ``row-remap``, ``power``) judges each card
against the claimed SKU and against the others (duplicate serials, VBIOS outliers). The source
is this node's telemetry (NVML through the runtime's factory) or ``nvidia-smi -q`` / ``-q -x``
dumps, so procurement can screen a lot before paying for it; the dump path imports neither torch
nor pynvml. A dump's cards are judged for a buyer as well (:mod:`burnin.verdicts.procurement`:
what the dump shows the card doing, hidden fields, identity by the PCI ID database), with one
verdict per check, a buyer's action on each, and every file of the lot accounted for (one that
cannot be read is an ERROR entry). The result is ``burnin.inspect/1`` JSON, a terminal table or
the lot's report (:mod:`burnin.reports.lot`); its exit code is the worst verdict (0 pass or warn,
3 a card failed, 4 a card or file could not be read).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from burnin import pciids
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
    nothing_judged,
    procurement,
    snapshot,
    worst,
)
from burnin.verdicts.model import CheckContext, GpuData

if TYPE_CHECKING:
    from burnin.runtime import Runtime

INSPECT_SCHEMA = "burnin.inspect/1"


@dataclass(frozen=True)
class InspectResult:
    gpus: list[dict[str, Any]]
    status: Status
    exit_code: int
    claimed_sku: str | None
    nodes: list[dict[str, Any]] = field(default_factory=list)  # findings about a whole node
    files: list[dict[str, Any]] = field(default_factory=list)  # each --from file and its fate

    def to_json(self) -> dict[str, Any]:
        out = {
            "schema": INSPECT_SCHEMA,
            "status": self.status.name,
            "exit_code": self.exit_code,
            "claimed_sku": self.claimed_sku,
            "gpus": self.gpus,
        }
        if self.files:
            out |= {"files": self.files, "nodes": self.nodes, "actions": procurement.ACTIONS}
        return out


def _judge(card: Card, verdicts: list[Verdict], gpu: GpuData, ctx: CheckContext) -> list[Verdict]:
    """A card's verdicts from the stage, with what inspect adds: an unreadable file or card is
    said as such, and a dump's card gets the buyer's findings, one verdict per check."""
    if card.unreadable:
        return [
            Verdict(
                check="incomplete",
                status=Status.ERROR,
                message=f"the file could not be read as an nvidia-smi dump: {card.error}; "
                "ask the seller for the complete, unedited output of `nvidia-smi -q -x`",
                action="ask-unedited-dump",
            )
        ]
    # The stage's "nothing judged" is decided again below, once inspect's own findings are in.
    verdicts = [v for v in verdicts if v.check != "incomplete"]
    if card.state is not None:
        extra = [v for fn in procurement.FINDINGS for v in fn(gpu, ctx)]
        if skips := procurement.guest_skips(gpu):
            # What the seller hid is still the seller's doing, guest or not.
            rest = [v for v in extra + verdicts if v.check not in ("identity", "firmware")]
            verdicts = procurement.hidden_fields(gpu, ctx) + skips + rest
        else:
            verdicts = extra + verdicts  # first: their buyer actions win ties in merge
        verdicts = procurement.merge([procurement.for_buyer(v) for v in verdicts])
    if card.error:
        # An unreadable card is lost, which says more than "nothing judged it".
        verdicts.append(
            Verdict(
                check="lost",
                status=Status.ERROR,
                message=f"the card could not be read: {card.error}; reseat it and retry",
                action="reseat",
            )
        )
    unjudged = procurement.guest_unjudged(gpu, verdicts) or nothing_judged(verdicts)
    if unjudged:
        verdicts.append(unjudged)
    return verdicts


def _order(check: str, buyer: bool, order: list[str]) -> int:
    if buyer:
        return procurement.severity(check)
    return order.index(check) if check in order else len(order)


def inspect_cards(
    cards: Sequence[Card],
    thresholds: dict[str, Any],
    claimed_sku: str | None = None,
    strict: bool = False,
) -> InspectResult:
    """Judge ``cards`` with the screening checks, each against the claim and the others.

    Cards read from dumps (with a ``state``) are judged for a buyer as well
    (:mod:`burnin.verdicts.procurement`): one verdict per check, ranked by what it means for
    the purchase, each with a buyer's action.

    Args:
        cards: the cards to judge (all of them form the fleet for duplicate/VBIOS checks).
        thresholds: the effective ``[thresholds]`` table (missing keys take their defaults).
        claimed_sku: the SKU key every card is claimed to be, or None.
        strict: WARN counts as failure for the exit code.

    Returns:
        The per-GPU entries (worst first), the overall status and the exit code.
    """
    claim = check_claimed_sku(claimed_sku)
    readable = [c for c in cards if not c.unreadable]
    buyer = any(c.state is not None or c.unreadable for c in cards)
    # A lot of dumps is judged per node for its firmware: a lot mixes nodes of different ages,
    # while one node's same-model cards should run one VBIOS.
    manifest = {"claimed_sku": claim, "lot": buyer}
    fleet = snapshot(readable)
    judged = evaluate(fleet, thresholds, manifest)
    ctx = CheckContext(thresholds=thresholds, fleet=fleet, manifest=manifest)
    gpus = dict(zip(map(id, readable), fleet, strict=True))
    order = list(checks())
    entries: list[dict[str, Any]] = []
    for card in cards:
        gpu = gpus.get(id(card)) or snapshot([card])[0]
        verdicts = _judge(card, judged.get((gpu.node, gpu.index), []), gpu, ctx)
        verdicts.sort(key=lambda v: (-v.status, _order(v.check, buyer, order)))
        inv = gpu.inventory
        entry: dict[str, Any] = {
            "source": card.source,
            "index": None if card.unreadable else gpu.index,
            "uuid": inv.get("uuid"),
            "serial": inv.get("serial"),
            "name": inv.get("name"),
            "sku": inv.get("sku"),
            "memory_total_mib": inv.get("memory_total_mib"),
            "status": device_status(verdicts).name,
            "verdicts": [v.to_dict() for v in verdicts],
        }
        if buyer:
            model = pciids.lookup(inv.get("pci_device_id"))
            entry |= {
                "pci_device_id": inv.get("pci_device_id"),
                "model": model.text if model else None,
                "hidden": procurement.seller_hidden(gpu),
                "action": verdicts[0].action if verdicts else "none",
            }
        entries.append(entry)
    # Worst first; among equals, the card whose worst finding matters most to a buyer.
    entries.sort(
        key=lambda e: (-Status[e["status"]], _order(e["verdicts"][0]["check"], buyer, order))
    )
    statuses = [Status[e["status"]] for e in entries]
    status = worst(statuses) if entries else Status.ERROR
    files = _files(cards, entries) if buyer else []
    nodes = procurement.node_notes(ctx.fleet, ctx) if buyer else []
    return InspectResult(entries, status, exit_code(statuses, strict), claim, nodes, files)


def _files(cards: Sequence[Card], entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each dump of the lot: how many cards it showed, its worst status, why it was unreadable."""
    out = []
    for source in dict.fromkeys(c.source for c in cards):
        mine = [e for e in entries if e["source"] == source]
        error = next((c.error for c in cards if c.source == source and c.unreadable), None)
        out.append(
            {
                "file": source,
                "gpus": 0 if error else len(mine),
                "status": worst(Status[e["status"]] for e in mine).name,
                "error": error,
            }
        )
    return out


def inspect_dumps(
    paths: Sequence[Path],
    thresholds: dict[str, Any],
    claimed_sku: str | None = None,
    strict: bool = False,
) -> InspectResult:
    """Screen the GPUs of a lot's nvidia-smi dumps (text or XML), every file judged: one that
    cannot be read is an ERROR entry naming it, and the others are judged as usual."""
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


def _label(entry: dict[str, Any]) -> str:
    """``FILE gpuN``, or the file alone for a file that could not be read."""
    index = entry["index"]
    return f"{_safe(entry['source'])}" + ("" if index is None else f" gpu{index}")


def format_table(result: InspectResult) -> str:
    """nccl-tests-style terminal output: ``#`` metadata, a table with units, issues, result."""
    lines = [f"# burnin inspect: {len(result.gpus)} GPU(s)"]
    if result.claimed_sku:
        lines.append(f"# claimed SKU: {result.claimed_sku}")
    for g in result.gpus:
        lines.append(
            f"#  {_label(g)}: {_safe(g['name'])}  "
            f"uuid {_safe(g['uuid'])}  serial {_safe(g['serial'])}"
        )
    lines += [
        "#",
        f"# {'status':<6} {'gpu':>3} {'sku':<16} {'memory':>8}  source",
        f"# {'':<6} {'':>3} {'':<16} {'(MiB)':>8}",
    ]
    for g in result.gpus:
        lines.append(
            f"  {g['status']:<6} {_safe(g['index']):>3} {_safe(g['sku'], 16)} "
            f"{_safe(g['memory_total_mib']):>8}  {_safe(g['source'])}"
        )
    lines.append("")
    lines += status_lines(result.gpus, _label)
    for note in result.nodes:
        lines.append(f"{note['status']} - {note['node']} (node) {note['check']}: {note['message']}")
    word = "OK" if result.exit_code == 0 else "FAILED"
    lines.append(f"# Result: {result.status.name}  {word}  (exit {result.exit_code})")
    # Messages quote untrusted device and file strings: escape what is not printable.
    return "\n".join(printable(line) for line in lines)
