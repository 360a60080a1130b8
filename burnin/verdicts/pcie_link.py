"""``pcie-link``: link generation and width under load against the card's and slot's maximum.

Idle links legitimately downtrain, so only samples taken under load count. Below what card and
slot both support is a bad seat, riser or retimer (FAIL); a slot slower than the card warns.
"""

from __future__ import annotations

from collections.abc import Iterator

from burnin.verdicts.finding import Findings
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict
from burnin.verdicts.records import loaded_in_run, values
from burnin.verdicts.registry import check


@check("pcie-link", needs=("telemetry", "inventory"), cpu=False)
def pcie_link(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Link generation and width under load vs the card's and slot's maximum."""
    inv, f = gpu.inventory, Findings("pcie-link")
    loaded = loaded_in_run(gpu, ctx)
    gens, widths = values(loaded, "pcie_gen"), values(loaded, "pcie_width")
    card_gen = inv.get("pcie_max_gen") or inv.get("pcie_system_max_gen")
    card_width = inv.get("pcie_max_width") or inv.get("pcie_system_max_width")
    if not loaded:
        f.gap("no telemetry sample taken under load")
    elif not gens or not card_gen:
        f.gap("PCIe link generation (current or maximum) not reported")
    else:
        slot_gen = inv.get("pcie_system_max_gen") or card_gen
        gen, width = int(max(gens)), int(max(widths)) if widths else None
        _link(f, "generation", f"Gen{gen}", gen, int(card_gen), int(slot_gen), "Gen")
        if width is not None and card_width:
            slot_width = inv.get("pcie_system_max_width") or card_width
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
