"""Screening checks: is the card what it claims to be, and is its link to the host sound.

``identity`` (PCI device id vs name vs claimed SKU, memory size, SM count, duplicate or blanked
serial/UUID in the fleet), ``firmware`` (InfoROM validity, VBIOS outliers among same-model peers),
and the run-only ``pcie-link`` (link under load vs the card's maximum), ``pcie-replay`` (DCGM's
per-generation replay rate, reference/nvml.md §3.2) and ``xid``. The memory-history checks
(``wear``, ``ecc``, ``retired-pages``, ``row-remap``) live in memory_health.py. Every check is
pure over the recorded data and ``ctx.fleet``; the same checks judge a live run and an
``inspect`` snapshot (where the run-only ones emit nothing). Each verdict names what it means and
what to do.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from burnin.inventory import card_sku, placeholder_id
from burnin.skus import Sku, normalize_pci_device_id, sku_for_name, skus_for_pci_id
from burnin.verdicts.findings import (
    Findings,
    claimed_sku,
    growth_per_min,
    loaded_samples,
    values,
)
from burnin.verdicts.limits import limit
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict, is_cpu, ran
from burnin.verdicts.registry import check

# PCIe lane rate by generation, GT/s (PCI-SIG specifications), for DCGM's replay-rate formula.
_LANE_GTPS = {1: 2.5, 2: 5.0, 3: 8.0, 4: 16.0, 5: 32.0, 6: 64.0}
# GDDR cards with ECC on reserve 1/16 of memory for it: A10 23028 MiB with ECC on vs 24564 off
# (nvml.md §2.8, §4), L40S 46068 of 49152 nominal.
_GDDR_ECC_SHARE = 15 / 16
_NOT_SET = ("", "n/a", "none", "unknown")
# XID -> (status, action, meaning). docs.nvidia.com/deploy/xid-errors (catalog) and
# reference/nvml.md §2.12; XIDs not listed FAIL with "retest": during a controlled burn-in any
# XID is the card's or the driver's, never a user job's.


@dataclass(frozen=True, kw_only=True)
class IdentityThresholds:
    identity_memory_tolerance: float = limit(
        0.02,
        unit="fraction of the SKU's memory",
        source="totals vary with driver, ECC state and vGPU (A10: 23028 MiB with ECC on vs "
        "24564 off is covered separately)",
        hi=1,
    )


@dataclass(frozen=True, kw_only=True)
class PcieReplayThresholds:
    pcie_replay_ber: float = limit(
        1e-12,
        unit="errors per bit",
        source="DCGM GetExpectedPcieReplayRate: ceil(BER × lane rate × 60 s × lanes) per "
        "minute, BER 1e-12 (x16: 8 Gen3, 16 Gen4, 31 Gen5)",
        hi=1,
    )


_XIDS: dict[int, tuple[Status, str, str]] = {
    13: (Status.WARN, "retest", "graphics engine exception (often software)"),
    31: (Status.WARN, "retest", "GPU memory page fault (often software)"),
    43: (Status.WARN, "retest", "GPU stopped processing (often software)"),
    45: (Status.WARN, "retest", "preemptive cleanup after an earlier error"),
    48: (Status.FAIL, "rma", "double-bit (uncorrectable) ECC error"),
    61: (Status.FAIL, "retest", "internal micro-controller breakpoint"),
    62: (Status.FAIL, "retest", "internal micro-controller halt"),
    63: (Status.WARN, "retest", "a page retirement or row remap was recorded; reset the GPU"),
    64: (Status.FAIL, "rma", "recording a page retirement or row remap failed"),
    74: (Status.FAIL, "reseat", "NVLink error"),
    79: (Status.FAIL, "reseat", "GPU has fallen off the bus"),
    92: (Status.FAIL, "rma", "high single-bit ECC error rate"),
    94: (Status.WARN, "retest", "contained ECC error; reset the GPU"),
    95: (Status.FAIL, "rma", "uncontained ECC error"),
    119: (Status.FAIL, "retest", "GSP firmware timeout"),
    120: (Status.FAIL, "retest", "GSP firmware error"),
}


def _present(value: Any) -> bool:
    return value is not None and str(value).strip().lower() not in _NOT_SET


def _expected_totals_mib(sku: Sku) -> list[float]:
    nominal = sku.memory_gib_nominal * 1024
    totals = [float(sku.expected_memory_total_mib()), float(nominal)]
    if sku.memory_type.upper().startswith("GDDR"):
        totals.append(nominal * _GDDR_ECC_SHARE)
    return totals


@check("identity", needs=("inventory",), cpu=False, thresholds=IdentityThresholds)
def identity(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """PCI device id, name, memory size, SM count vs the claimed SKU; duplicate IDs."""
    if is_cpu(gpu):
        return
    inv, f = gpu.inventory, Findings("identity")
    name = inv.get("name")
    pci = normalize_pci_device_id(inv["pci_device_id"]) if inv.get("pci_device_id") else None
    by_id = skus_for_pci_id(pci) if pci else ()
    by_name = sku_for_name(name) if name else None
    sku = card_sku(inv)
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
        # The silicon id decides; the name only where no id was reported (skus.identify).
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


def _duplicates(f: Findings, gpu: GpuData, ctx: CheckContext) -> None:
    for field, what in (("serial", "serial number"), ("uuid", "UUID")):
        value = gpu.inventory.get(field)
        if not _present(value):
            continue
        twins = [
            f"{g.node} gpu{g.index}"
            for g in ctx.fleet
            if g is not gpu and str(g.inventory.get(field) or "").strip() == str(value).strip()
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


@check("firmware", needs=("inventory",), cpu=False)
def firmware(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """InfoROM validity and VBIOS consistency across same-model cards."""
    if is_cpu(gpu):
        return
    inv, f = gpu.inventory, Findings("firmware")
    valid = inv.get("inforom_valid")
    if valid is False:
        f.problem(
            Status.FAIL,
            "the InfoROM failed its checksum: the card's error history and settings cannot be "
            "trusted; have the InfoROM reflashed (NVIDIA support) or return the card",
            observed="corrupt",
            action="update-firmware",
        )
    elif valid is True:
        f.ok("InfoROM checksum valid")
    else:
        f.gap("InfoROM validity not reported")
    vbios = inv.get("vbios_version")
    if not _present(vbios):
        f.gap("VBIOS version not reported")
    elif set(str(vbios).replace(".", "")) <= {"0"}:
        f.problem(
            Status.WARN,
            f"VBIOS version {vbios} is not a version NVIDIA ships: flashed or unreadable "
            "firmware; reflash the board's official VBIOS",
            observed=vbios,
            action="update-firmware",
        )
    else:
        _vbios_peers(f, gpu, ctx, str(vbios))
    yield f.verdict()


def _model(inv: dict[str, Any]) -> tuple[str, str] | None:
    """Same model = same silicon and same board (subsystem id): their VBIOS should match."""
    pci, sub = inv.get("pci_device_id"), inv.get("pci_subsystem_id")
    return (str(pci).lower(), str(sub).lower()) if pci and sub else None


def _vbios_peers(f: Findings, gpu: GpuData, ctx: CheckContext, vbios: str) -> None:
    model = _model(gpu.inventory)
    peers = [
        str(g.inventory["vbios_version"])
        for g in ctx.fleet
        if model and _model(g.inventory) == model and _present(g.inventory.get("vbios_version"))
    ]
    if len(peers) < 2:
        f.gap(f"VBIOS {vbios}: no same-model peer to compare with")
        return
    counts = Counter(v.lower() for v in peers)
    common, n_common = counts.most_common(1)[0]
    if len(counts) == 1:
        f.ok(f"VBIOS {vbios} on all {len(peers)} same-model cards")
    elif vbios.lower() != common or n_common * 2 <= len(peers):
        # Azure NHC fails a node whose GPUs report more than one VBIOS (nvml.md §3.5).
        f.problem(
            Status.WARN,
            f"VBIOS {vbios} differs from its same-model peers "
            f"({', '.join(f'{v} ×{n}' for v, n in counts.most_common())}): flash the fleet's "
            "VBIOS so every card runs the same firmware",
            observed=vbios,
            limit=common if n_common * 2 > len(peers) else None,
            action="update-firmware",
        )
    else:
        f.ok(f"VBIOS {vbios} like {n_common - 1} of {len(peers) - 1} same-model peers")


@check("pcie-link", needs=("telemetry", "inventory"), cpu=False)
def pcie_link(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Link generation and width under load vs the card's and slot's maximum."""
    if is_cpu(gpu) or not ran(gpu):
        return  # idle links legitimately downtrain: only a link under load is evidence
    inv, f = gpu.inventory, Findings("pcie-link")
    loaded = loaded_samples(gpu)
    gens, widths = values(loaded, "pcie_gen"), values(loaded, "pcie_width")
    card_gen = inv.get("pcie_max_gen") or inv.get("pcie_system_max_gen")
    card_width = inv.get("pcie_max_width") or inv.get("pcie_system_max_width")
    slot_gen = inv.get("pcie_system_max_gen") or card_gen
    slot_width = inv.get("pcie_system_max_width") or card_width
    if not loaded:
        f.gap("no telemetry sample taken under load")
    elif not gens or not card_gen:
        f.gap("PCIe link generation (current or maximum) not reported")
    if not f.gaps:
        gen, width = int(max(gens)), int(max(widths)) if widths else None
        _link(f, "generation", f"Gen{gen}", gen, int(card_gen), int(slot_gen), "Gen")
        if width is not None and card_width:
            _link(f, "width", f"x{width}", width, int(card_width), int(slot_width), "x")
    yield f.verdict()


def _link(f: Findings, what: str, shown: str, best: int, card: int, slot: int, unit: str) -> None:
    if best >= card:
        f.ok(f"link {what} {shown} under load = the card's maximum")
    elif best < slot:
        f.problem(
            Status.FAIL,
            f"link {what} only {shown} under load, below the {unit}{slot} both card and slot "
            "support: a bad seat, riser or retimer; reseat the card and re-test",
            observed=best,
            limit=slot,
            unit=unit,
            action="reseat",
        )
    else:
        f.problem(
            Status.WARN,
            f"link {what} {shown} under load: the slot allows only {unit}{slot} of the card's "
            f"{unit}{card}; move the card to a full-speed slot",
            observed=best,
            limit=card,
            unit=unit,
            action="reseat",
        )


@check("pcie-replay", needs=("telemetry",), cpu=False, thresholds=PcieReplayThresholds)
def pcie_replay(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """PCIe replay counter rate vs DCGM's expected rate for the link."""
    if is_cpu(gpu) or not ran(gpu):
        return  # a count since reset with no time span is no rate
    f = Findings("pcie-replay")
    rate = growth_per_min(gpu, "pcie_replay_count")
    loaded = loaded_samples(gpu) or gpu.samples
    gen = max(values(loaded, "pcie_gen"), default=None) or gpu.inventory.get("pcie_max_gen")
    width = max(values(loaded, "pcie_width"), default=None) or gpu.inventory.get("pcie_max_width")
    if rate is None:
        f.gap("PCIe replay counter not reported (or fewer than two samples)")
    elif int(gen or 0) not in _LANE_GTPS or not width:
        f.gap("PCIe generation or width unknown: no replay limit")
    else:
        # DCGM GetExpectedPcieReplayRate: ceil(BER × lane rate × 60 s × lanes) per minute.
        ber = ctx.limits(PcieReplayThresholds).pcie_replay_ber
        allowed = math.ceil(ber * _LANE_GTPS[int(gen)] * 1e9 * 60 * int(width))
        if rate > allowed:
            f.problem(
                Status.WARN,
                f"{rate:.3g} PCIe replays per minute, above DCGM's {allowed}/min for "
                f"Gen{int(gen)} x{int(width)}: a marginal link (seat, riser, slot); reseat the "
                "card and re-test",
                observed=round(rate, 3),
                limit=allowed,
                unit="replays/min",
                action="reseat",
            )
        else:
            f.ok(
                f"{rate:.3g} PCIe replays per minute",
                observed=round(rate, 3),
                limit=allowed,
                unit="replays/min",
            )
    yield f.verdict()


@check("xid", needs=("telemetry",), cpu=False)
def xid(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """XID events the driver reported during the run."""
    if is_cpu(gpu) or not ran(gpu):
        return  # XIDs reach NVML only while burnin listens (nvml.md §2.12)
    f = Findings("xid")
    for event in (e for e in gpu.events if e.get("kind") == "xid"):
        code = event.get("code")
        status, action, meaning = _XIDS.get(
            int(code) if isinstance(code, int) else -1,
            (Status.FAIL, "retest", "a driver-reported GPU error"),
        )
        f.problem(
            status,
            f"XID {code} at {event.get('elapsed_s', '?')} s: {meaning}",
            observed=code,
            action=action,
        )
    if gpu.inventory.get("xid_events_supported"):
        f.ok("no XID during the run", observed=0, unit="XIDs")
    elif not f.items:
        f.gap("XID events not available from this telemetry backend")
    yield f.verdict()
