"""Inventory: who each card is, from the live node (NVML + torch) or from a seller's dump.

The same identity, firmware and wear facts reach the checks whatever their origin: NVML on this
node (:func:`read_node`, with the SM count taken from torch because NVML has none for a full
GPU), or ``nvidia-smi -q`` / ``-q -x`` dumps parsed by :mod:`burnin.smi_dump` (:func:`read_dumps`,
which imports neither torch nor pynvml, so procurement can screen a lot on a laptop). Each card
is named by its SKU key from :func:`burnin.skus.identify` (PCI device id first, then the name),
and :func:`gpu_data` wraps inventories as the checks' :class:`~burnin.verdicts.GpuData` with no
samples or records, which is what tells the run-only checks to stay silent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from burnin.errors import DumpError, TelemetryError
from burnin.skus import Sku, identify
from burnin.telemetry.base import Inventory, TelemetryClient, from_dict

if TYPE_CHECKING:
    from burnin.verdicts import GpuData

log = logging.getLogger("burnin")

# A run of one repeated character (after dropping separators) or a counting sequence is what
# people type when they blank an identifier; random UUIDs and factory serials contain neither.
_COUNTING = "0123456789abcdef"
_SEPARATORS = re.compile(r"[^0-9a-z]")


@dataclass(frozen=True)
class Card:
    """One card to judge: where its facts came from (a dump file or this host) and the facts."""

    source: str
    inventory: Inventory
    error: str | None = None  # why the card could not be read (a TelemetryError), if so
    # A dump's card: its state when the dump was taken (burnin.smi_state.DumpState.to_dict()).
    state: dict[str, Any] | None = None
    unreadable: bool = False  # the whole file could not be read (error says why)


def as_inventory(record: dict[str, Any] | Inventory) -> Inventory:
    """An Inventory from a store record (``device`` stands for ``index``) or one as is."""
    if isinstance(record, Inventory):
        return record
    data = {"index": record.get("device", record.get("index", 0)), **record}
    data.pop("device", None)
    return from_dict(Inventory, data)  # type: ignore[no-any-return]


def card_sku(record: dict[str, Any] | Inventory) -> Sku | None:
    """The SKU a card is (PCI device id first, then the NVML name); None if unknown."""
    inv = as_inventory(record)
    if not inv.pci_device_id and not inv.name:
        return None
    return identify(inv)


def sku_key(record: dict[str, Any] | Inventory) -> str | None:
    """The SKU key (``"H100-SXM5-80GB"``) of a card, or None when it is not in the table."""
    sku = card_sku(record)
    return sku.key if sku else None


def placeholder_id(value: str | None) -> bool:
    """Whether a serial or UUID looks blanked: one repeated character or a counting run.

    ``"0000000000000"`` (a virtualized T4), ``"0123456789012"`` and
    ``"GPU-12345678-aaaa-bbbb-cccc-0123456789ab"`` (contributors' placeholders in public dumps).
    """
    if not value:
        return False
    text = _SEPARATORS.sub("", value.lower().removeprefix("gpu-"))
    if len(text) >= 4 and len(set(text)) == 1:
        return True
    # Eight counting characters occur by chance in ~1 of 10^7 random UUIDs.
    return any(_COUNTING[i : i + 8] in text for i in range(len(_COUNTING) - 7))


def with_sm_count(inv: Inventory, sm_count: int | None) -> Inventory:
    """Fill ``sm_count`` (from CUDA's multiProcessorCount) where NVML gave none."""
    if inv.sm_count is not None or sm_count is None:
        return inv
    return replace(
        inv, sm_count=sm_count, unsupported=tuple(u for u in inv.unsupported if u != "sm_count")
    )


def torch_sm_counts() -> dict[str, int]:
    """CUDA SM counts by GPU UUID (``"GPU-..."``); empty where torch or CUDA is absent.

    NVML has no SM count for a full GPU (reference/nvml.md §2.15: the Attributes call serves MIG
    handles only), so the count comes from ``torch.cuda.get_device_properties``.
    """
    try:
        import torch
    except ImportError:
        return {}
    if not torch.cuda.is_available():
        return {}
    counts = {}
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        uuid = getattr(props, "uuid", None)
        if uuid is not None:
            counts[f"GPU-{uuid}"] = int(props.multi_processor_count)
    return counts


def read_node(
    client: TelemetryClient, host: str, sm_counts: dict[str, int] | None = None
) -> list[Card]:
    """Every card this node's telemetry sees, with SM counts merged in by UUID.

    A card whose inventory cannot be read becomes a :class:`Card` with ``error`` set, so one
    lost GPU does not hide the others.
    """
    counts = sm_counts or {}
    cards = []
    for index in range(client.device_count()):
        try:
            inv = client.inventory(index)
        except TelemetryError as exc:
            cards.append(Card(host, Inventory(index=index), error=str(exc)))
            continue
        cards.append(Card(host, with_sm_count(inv, counts.get(inv.uuid or ""))))
    return cards


def read_dumps(paths: Sequence[Path]) -> list[Card]:
    """Cards from nvidia-smi dumps, each with its state at dump time.

    A lot is judged whole: a file that is not a readable dump becomes one ``unreadable`` Card
    naming the file and the reason, and the other files' cards are read as usual.
    """
    from burnin.smi_dump import parse_dump_state

    cards = []
    for path in paths:
        try:
            parsed = parse_dump_state(Path(path))
        except DumpError as exc:
            cards.append(Card(str(path), Inventory(index=0), error=str(exc), unreadable=True))
            continue
        cards += [Card(str(path), inv, state=state.to_dict()) for inv, state in parsed]
    return cards


def inventory_record(card: Card) -> dict[str, Any]:
    """The store-style record checks read: Inventory fields, ``device``, ``sku``, ``source``."""
    record = card.inventory.to_dict()
    record["device"] = record.pop("index")
    record.update(kind="cuda", sku=sku_key(card.inventory), source=card.source)
    if card.error:
        record["telemetry_error"] = card.error
    if card.state is not None:
        record["dump"] = card.state
    return record


def gpu_data(cards: Iterable[Card]) -> list[GpuData]:
    """Wrap cards as check input: no samples, records or plan, so run-only checks stay silent.

    The node is the card's source (dump file or host), so two dumps' GPU 0 stay apart.
    """
    from burnin.verdicts import GpuData

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
