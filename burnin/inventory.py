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
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from burnin.errors import TelemetryError
from burnin.skus import resolve
from burnin.telemetry.base import Inventory, TelemetryClient

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
    """Cards from nvidia-smi dumps; a bad file raises DumpError naming it (exit code 2)."""
    from burnin.smi_dump import parse_dump

    return [Card(str(path), inv) for path in paths for inv in parse_dump(Path(path))]


def inventory_record(card: Card) -> dict[str, Any]:
    """The store-style record checks read: Inventory fields, ``device``, ``sku``, ``source``."""
    record = card.inventory.to_dict()
    record["device"] = record.pop("index")
    sku = resolve(card.inventory)
    record.update(kind="cuda", sku=sku.key if sku else None, source=card.source)
    if card.error:
        record["telemetry_error"] = card.error
    return record
