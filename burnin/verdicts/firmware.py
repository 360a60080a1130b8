"""``firmware``: InfoROM validity and VBIOS consistency across same-model cards.

A corrupt InfoROM fails (its error history cannot be trusted); a VBIOS that differs from its
same-model peers (same PCI device and subsystem id) warns, as Azure NHC fails a node with more
than one VBIOS.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from burnin.verdicts.finding import Findings
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict
from burnin.verdicts.records import present
from burnin.verdicts.registry import check


@check("firmware", needs=("inventory",), cpu=False)
def firmware(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """InfoROM validity and VBIOS consistency across same-model cards."""
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
    if not present(vbios):
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
    # A lot of dumps mixes nodes of different ages: there, compare within the card's node.
    scope = gpu.node if ctx.manifest.get("lot") else None

    def versions() -> tuple[int, Counter[str]]:
        """The scope's same-model VBIOS versions, counted once for all its cards."""
        fleet = [g for g in ctx.fleet if g.node == scope] if scope is not None else ctx.fleet
        peers = [
            str(g.inventory["vbios_version"])
            for g in fleet
            if model and _model(g.inventory) == model and present(g.inventory.get("vbios_version"))
        ]
        return len(peers), Counter(v.lower() for v in peers)

    found, counts = ctx.memo(("vbios-versions", scope, model), versions)
    if found < 2:
        f.gap(f"VBIOS {vbios}: no same-model peer to compare with")
        return
    common, n_common = counts.most_common(1)[0]
    if len(counts) == 1:
        f.ok(f"VBIOS {vbios} on all {found} same-model cards")
    elif vbios.lower() != common or n_common * 2 <= found:
        # Azure NHC fails a node whose GPUs report more than one VBIOS (docs/nvml.md §3.5).
        f.problem(
            Status.WARN,
            f"VBIOS {vbios} differs from its same-model peers "
            f"({', '.join(f'{v} ×{n}' for v, n in counts.most_common())}): flash the fleet's "
            "VBIOS so every card runs the same firmware",
            observed=vbios,
            limit=common if n_common * 2 > found else None,
            action="update-firmware",
        )
    else:
        f.ok(f"VBIOS {vbios} like {n_common - 1} of {found - 1} same-model peers")
