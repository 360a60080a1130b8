"""Inventory: who each card is, from the live node (NVML + torch) or from a seller's dump.

The same identity, firmware and wear facts reach the checks whatever their origin: NVML on this
node (:func:`read_node`, with the SM count taken from torch because NVML has none for a full
GPU), or ``nvidia-smi -q`` / ``-q -x`` dumps parsed by :mod:`burnin.smi_dump` (:func:`read_dumps`,
which imports neither torch nor pynvml, so procurement can screen a lot on a laptop). Each card
is named by its SKU key from :func:`burnin.skus.resolve` (PCI device id first, then the name);
:func:`inventory_record` gives the store-style record the checks read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from burnin.errors import DumpError, TelemetryError
from burnin.skus import resolve
from burnin.telemetry.base import Inventory, TelemetryClient

log = logging.getLogger("burnin")


@dataclass(frozen=True)
class Card:
    """One card to judge: where its facts came from (a dump file or this host) and the facts."""

    source: str
    inventory: Inventory
    error: str | None = None  # why the card could not be read (a TelemetryError), if so
    # A dump's card: its state when the dump was taken (burnin.smi_state.DumpState.to_dict()).
    state: dict[str, Any] | None = None
    unreadable: bool = False  # the whole file could not be read (error says why)


def with_sm_count(inv: Inventory, sm_count: int | None) -> Inventory:
    """Fill ``sm_count`` (from CUDA's multiProcessorCount) where NVML gave none."""
    if inv.sm_count is not None or sm_count is None:
        return inv
    return replace(
        inv, sm_count=sm_count, unsupported=tuple(u for u in inv.unsupported if u != "sm_count")
    )


def torch_sm_counts() -> dict[str, int]:
    """CUDA SM counts by GPU UUID (``"GPU-..."``); empty where torch or CUDA is absent.

    NVML has no SM count for a full GPU (docs/nvml.md §2.15: the Attributes call serves MIG
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
    sku = resolve(card.inventory)
    record.update(kind="cuda", sku=sku.key if sku else None, source=card.source)
    if card.error:
        record["telemetry_error"] = card.error
    if card.state is not None:
        record["dump"] = card.state
    return record
