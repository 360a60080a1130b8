"""``identity``: is the card what it claims to be.

PCI device id vs name vs the claimed SKU, memory size, SM count, and serial numbers and UUIDs
duplicated across the fleet or blanked. It reads the inventory only, so the same check judges a
live run and a ``burnin inspect`` snapshot of a seller's dumps. Each verdict names what it
means and what to do (most often: return the card to the seller).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from burnin.identifiers import placeholder_id
from burnin.skus import Sku, normalize_pci_device_id, resolve, sku_for_name, skus_for_pci_id
from burnin.verdicts.finding import Findings
from burnin.verdicts.limits import limit
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict
from burnin.verdicts.records import claimed_sku, present
from burnin.verdicts.registry import check

# GDDR cards with ECC on reserve 1/16 of memory for it: A10 23028 MiB with ECC on vs 24564 off
# (docs/nvml.md §2.8, §4), L40S 46068 of 49152 nominal.
_GDDR_ECC_SHARE = 15 / 16


@dataclass(frozen=True, kw_only=True)
class IdentityThresholds:
    identity_memory_tolerance: float = limit(
        0.02,
        unit="fraction of the SKU's memory",
        source="totals vary with driver, ECC state and vGPU (A10: 23028 MiB with ECC on vs "
        "24564 off is covered separately)",
        hi=1,
    )


def _expected_totals_mib(sku: Sku) -> list[float]:
    nominal = sku.memory_gib_nominal * 1024
    totals = [float(sku.expected_memory_total_mib()), float(nominal)]
    if sku.memory_type.upper().startswith("GDDR"):
        totals.append(nominal * _GDDR_ECC_SHARE)
    return totals


@check("identity", needs=("inventory",), cpu=False, thresholds=IdentityThresholds)
def identity(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """PCI device id, name, memory size, SM count vs the claimed SKU; duplicate IDs."""
    inv, f = gpu.inventory, Findings("identity")
    name = inv.get("name")
    pci = normalize_pci_device_id(inv["pci_device_id"]) if inv.get("pci_device_id") else None
    by_id = skus_for_pci_id(pci) if pci else ()
    by_name = sku_for_name(name) if name else None
    sku = resolve(inv)
    if by_id and by_name and by_name not in by_id:
        f.problem(
            Status.FAIL,
            f"the card calls itself {name!r} ({by_name.key}) but its PCI device id {pci} "
            f"belongs to {'/'.join(s.key for s in by_id)}: relabelled or cross-flashed, "
            "return it to the seller",
            observed=pci,
            limit="/".join(by_name.pci_device_ids),
            action="return-to-seller",
        )
    elif pci and not by_id and by_name:
        f.problem(
            Status.WARN,
            f"the name says {by_name.key} but PCI device id {pci} is not one of its known ids "
            f"({', '.join(by_name.pci_device_ids)}): compare the board label and ask the seller",
            observed=pci,
            limit="/".join(by_name.pci_device_ids),
        )
    elif sku is not None:
        f.ok(f"PCI device id {pci or '?'} and name agree: {sku.key}")
    claim_key, claimed = claimed_sku(gpu, ctx)
    if claim_key and claimed is None:
        f.gap(f"claimed SKU {claim_key!r} is not in the SKU table")
    elif claimed is not None:
        actual = sku.key if sku else (f"PCI device id {pci}" if pci else repr(name))
        # The silicon id decides; the name only where no id was reported (skus.resolve).
        if sku is not None:
            matches: bool | None = sku.key == claimed.key
        elif pci:
            matches = pci in claimed.pci_device_ids
        else:
            matches = by_name.key == claimed.key if by_name else None
        if matches is None:
            f.gap(f"nothing to compare with the claimed {claimed.key}")
        elif not matches:
            f.problem(
                Status.FAIL,
                f"claimed to be {claimed.key} but the card is {actual}: not the product "
                "you paid for, return it to the seller",
                observed=sku.key if sku else pci,
                limit=claimed.key,
                action="return-to-seller",
            )
        else:
            f.ok(f"matches the claimed {claimed.key}")
    ref = claimed or sku
    if ref is None:
        f.gap(f"card not in the SKU table (PCI id {pci or 'n/a'}, name {name!r})")
    else:
        _memory(
            f,
            inv.get("memory_total_mib"),
            ref,
            ctx.limits(IdentityThresholds).identity_memory_tolerance,
        )
        _sm_count(f, inv.get("sm_count"), ref)
    _duplicates(f, gpu, ctx)
    yield f.verdict()


def _memory(f: Findings, total_mib: Any, ref: Sku, tolerance: float) -> None:
    if not isinstance(total_mib, int | float):
        f.gap("memory size not reported")
        return
    expected = _expected_totals_mib(ref)
    nearest = min(expected, key=lambda e: abs(total_mib - e))
    if abs(total_mib - nearest) <= tolerance * nearest:
        f.ok(f"{total_mib:g} MiB, as {ref.key} should have")
        return
    f.problem(
        Status.FAIL,
        f"reports {total_mib:g} MiB of memory; {ref.key} has {nearest:.0f} MiB "
        f"(±{tolerance:.0%}): modified, counterfeit or a partitioned (vGPU) card, return it "
        "to the seller",
        observed=total_mib,
        limit=round(nearest),
        unit="MiB",
        action="return-to-seller",
    )


def _sm_count(f: Findings, sm_count: Any, ref: Sku) -> None:
    if not isinstance(sm_count, int):
        f.gap("SM count not known (needs CUDA)")
        return
    if sm_count == ref.sm_count:
        f.ok(f"{sm_count} SMs")
        return
    # An SM count the reference could not verify only warns: the table may be the wrong one.
    verified = ref.is_verified("sm_count")
    f.problem(
        Status.FAIL if verified else Status.WARN,
        f"has {sm_count} SMs; {ref.key} has {ref.sm_count}"
        + ("" if verified else " (unverified figure)")
        + ": a different or cut-down chip, return it to the seller",
        observed=sm_count,
        limit=ref.sm_count,
        unit="SMs",
        action="return-to-seller",
    )


def _by_id(ctx: CheckContext, field: str) -> dict[str, list[GpuData]]:
    """The fleet's cards by their ``field`` (serial, UUID), grouped once for every card."""

    def build() -> dict[str, list[GpuData]]:
        cards: dict[str, list[GpuData]] = {}
        for g in ctx.fleet:
            cards.setdefault(str(g.inventory.get(field) or "").strip(), []).append(g)
        return cards

    return ctx.memo(("cards-by-id", field), build)


def _duplicates(f: Findings, gpu: GpuData, ctx: CheckContext) -> None:
    for field, what in (("serial", "serial number"), ("uuid", "UUID")):
        value = gpu.inventory.get(field)
        if not present(value):
            continue
        twins = [
            f"{g.node} gpu{g.index}"
            for g in _by_id(ctx, field).get(str(value).strip(), [])
            if g is not gpu
        ]
        # A blanked value shared by several cards is explained by the blanking itself.
        if placeholder_id(str(value)):
            f.problem(
                Status.WARN,
                f"{what} {value} looks blanked (a placeholder, not a factory value"
                + (f"; also on {', '.join(twins)}" if twins else "")
                + "): the card cannot be matched to its label; ask for an unedited dump or "
                "read it on arrival",
                observed=value,
            )
        elif twins:
            f.problem(
                Status.FAIL,
                f"{what} {value} is also reported by {', '.join(twins)}: each card has its "
                f"own; cloned firmware or a relabelled card, return it to the seller",
                observed=value,
                action="return-to-seller",
            )
