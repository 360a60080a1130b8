"""Procurement findings: what a seller's nvidia-smi dump shows, judged for a buyer.

``burnin inspect --from`` runs the screening checks a run uses, then these: clock-event reasons
active at dump time (``throttle``), the PCIe link at dump time against the card's and slot's
maximum and against same-model peers in the lot (``pcie-link``), lifetime corrected errors far
above peers (``wear``), an enforced power limit below the requested one (``power``), fields
that read ``Unknown Error`` (``firmware``), a fan at full speed on an idle
cool card (``fan``), fields the seller hid and the model the PCI ID database names for the
device id (``identity``), and what one dump says of a whole node (a power brake on every card
points at the chassis or its power supply). Each returns verdicts under an existing check id,
so the report shows one line per check; none is registered, because none needs a run's data
and a run has better evidence for each. A dump taken inside a virtual machine cannot show the
physical card's identity or firmware: :func:`guest_skips` says so instead. Every verdict's
action is one of :data:`ACTIONS`, the buyer's choices.
"""

from __future__ import annotations

import statistics
from typing import Any

from burnin import pciids
from burnin.identifiers import placeholder_id
from burnin.verdicts.finding import Findings
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict

# What a buyer can do about a finding, worst first.
ACTIONS = {
    "return-to-seller": "do not accept the card: it is not what was sold, or it is failing",
    "renegotiate": "the card works but is worn or lesser: price it accordingly",
    "ask-unedited-dump": "the dump hides or lacks what decides: ask for an unedited one",
    "retest-on-arrival": "confirm with `burnin run --profile procurement` when the card arrives",
    "none": "nothing to do",
}
# A run's actions, read for a buyer (a run's "rma" is the seller's problem before payment).
_BUYER_ACTION = {
    "rma": "return-to-seller",
    "reseat": "retest-on-arrival",
    "retest": "retest-on-arrival",
    "inspect-cooling": "retest-on-arrival",
    "update-firmware": "retest-on-arrival",
}
# Memory history that only warns is wear: the card works, and is worth less.
_WORN = ("wear", "retired-pages", "row-remap")
# What a finding means for the purchase, most serious first: a card that is not what was sold,
# then failing or worn memory, then firmware, then what a re-test decides, and last what the
# seller can simply set back (a power limit).
SEVERITY = (
    "incomplete",
    "identity",
    "ecc",
    "row-remap",
    "retired-pages",
    "wear",
    "firmware",
    "throttle",
    "pcie-link",
    "fan",
    "thermal",
    "pcie-replay",
    "xid",
    "power",
)
# Settings the seller can change back: never worse than WARN for a buyer.
_SETTINGS = ("power",)
# Load under which a dump counts as lightly loaded: findings.py's "under load" line, in %.
_LIGHT_LOAD_PCT = 50.0
# A fan at full speed on a card this cool and idle is running flat out for no reason (C, %).
_COOL_C, _FULL_FAN_PCT = 50.0, 100.0
# Lifetime corrected errors this many times the same-model peers' median (with at least this
# many errors) warn. NVIDIA publishes no wear line (``wear_aggregate_sbe_warn`` in wear.py); one
# order of magnitude above the lot is burnin's. Ratio, errors.
_PEER_SBE_RATIO, _PEER_SBE_MIN = 10.0, 10
# Enforced power limit below requested by more than this share warns (whole-watt rounding, as
# PowerThresholds.power_limit_tolerance in power.py). Fraction.
_POWER_TOLERANCE = 0.02
_FIELD_NAMES = {
    "serial": "serial number",
    "uuid": "UUID",
    "name": "product name",
    "pci_device_id": "PCI device id",
    "pci_subsystem_id": "PCI subsystem id",
    "memory_total_mib": "memory size",
    "vbios_version": "VBIOS version",
}


def _state(gpu: GpuData) -> dict[str, Any]:
    return gpu.inventory.get("dump") or {}


def _same_model(gpu: GpuData, ctx: CheckContext, node_only: bool = False) -> list[GpuData]:
    pci = gpu.inventory.get("pci_device_id")
    return [
        g
        for g in ctx.fleet
        if g is not gpu
        and pci
        and g.inventory.get("pci_device_id") == pci
        and (not node_only or g.node == gpu.node)
    ]


def _light(state: dict[str, Any]) -> str:
    util = state.get("gpu_util_pct")
    if isinstance(util, int | float):
        return f"at {util:g} % load" if util < _LIGHT_LOAD_PCT else f"under {util:g} % load"
    return "when the dump was taken"


def clock_events(gpu: GpuData, ctx: CheckContext) -> list[Verdict]:
    """HW slowdown, HW power brake, HW/SW thermal slowdown active at dump time."""
    state, f = _state(gpu), Findings("throttle")
    active = state.get("clock_reasons_active") or []
    if active:
        brake = "HW power brake" in active and power_brake_node(gpu, ctx)
        cause = (
            "; every card of this node shows the power brake: the chassis or its power supply "
            "asserts it (see the node note), not this card alone"
            if brake
            else ": the card is held below its clocks by a hardware signal (overheating, a power "
            "brake from the board or chassis, or a failing sensor)"
        )
        f.problem(
            Status.WARN,
            f"{', '.join(active)} active {_light(state)}{cause}; ask the seller why and "
            "confirm under load with `burnin run`",
            observed=", ".join(active),
            action="retest-on-arrival",
        )
    elif state.get("clock_reasons_reported"):
        f.ok(f"no HW slowdown, power brake or thermal slowdown {_light(state)}")
    return [f.verdict()] if f.items else []


def power_brake_node(gpu: GpuData, ctx: CheckContext) -> bool:
    """Whether every card of ``gpu``'s node (two or more) shows the HW power brake."""
    node = [g for g in ctx.fleet if g.node == gpu.node]
    return len(node) > 1 and all(
        "HW power brake" in (_state(g).get("clock_reasons_active") or []) for g in node
    )


def node_notes(fleet: list[GpuData], ctx: CheckContext) -> list[dict[str, Any]]:
    """Findings about a whole node (one dump file), said once for the node."""
    notes = []
    for node in dict.fromkeys(g.node for g in fleet):
        first = next(g for g in fleet if g.node == node)
        if power_brake_node(first, ctx):
            count = sum(1 for g in fleet if g.node == node)
            notes.append(
                {
                    "node": node,
                    "check": "throttle",
                    "status": Status.WARN.name,
                    "message": f"all {count} cards show the HW power brake at once: the "
                    "chassis or its power supply is pulling the brake, not one card; ask the "
                    "seller about the node's power supplies and re-test the cards in a known-good "
                    "chassis",
                    "action": "retest-on-arrival",
                }
            )
    return notes


def link_at_dump(gpu: GpuData, ctx: CheckContext) -> list[Verdict]:
    """The link at dump time against the card's and the slot's maximum and same-model peers."""
    inv, f = gpu.inventory, Findings("pcie-link")
    for what, unit, cur_key, card_key, system_key in (
        ("width", "x", "pcie_current_width", "pcie_max_width", "pcie_system_max_width"),
        ("generation", "Gen", "pcie_current_gen", "pcie_max_gen", "pcie_system_max_gen"),
    ):
        current, card = inv.get(cur_key), inv.get(card_key) or inv.get(system_key)
        best = inv.get(system_key) or card
        if not isinstance(current, int) or not isinstance(best, int):
            continue
        shown = f"{unit}{current}" if unit == "Gen" else f"x{current}"
        peers = [w for g in _same_model(gpu, ctx) if isinstance(w := g.inventory.get(cur_key), int)]
        if current < best:
            better = [w for w in peers if w > current]
            evidence = (
                f"; {len(better)} of its {len(peers)} same-model peers in the lot run at "
                f"{unit}{max(better)}, stronger evidence of a bad slot, riser or card"
                if better
                else "; the link may be reduced at idle to save power"
            )
            f.problem(
                Status.WARN,
                f"PCIe link {what} {shown} in the dump, below the {unit}{best} card and slot "
                f"support{evidence}: confirm under load with `burnin run`",
                observed=current,
                limit=best,
                unit=unit,
                action="retest-on-arrival",
            )
        else:
            slot = "" if best >= (card or best) else f" (the slot allows {unit}{best} of {card})"
            f.ok(f"PCIe {what} {shown}, the most card and slot support{slot}")
    return [f.verdict()] if f.items else []


def _lifetime_sbe(gpu: GpuData) -> Any:
    return gpu.inventory.get("ecc_aggregate_sbe")


def lifetime_vs_peers(gpu: GpuData, ctx: CheckContext) -> list[Verdict]:
    """Lifetime corrected memory errors far above the same-model cards of the lot."""
    sbe = gpu.inventory.get("ecc_aggregate_sbe")
    peers = [v for g in _same_model(gpu, ctx) if isinstance(v := _lifetime_sbe(g), int)]
    if not isinstance(sbe, int) or len(peers) < 2:
        return []
    median = statistics.median(peers)
    line = max(_PEER_SBE_MIN, _PEER_SBE_RATIO * median)
    f = Findings("wear")
    if sbe >= line:
        f.problem(
            Status.WARN,
            f"{sbe} corrected memory errors in its lifetime, against a median of {median:g} "
            f"on its {len(peers)} same-model peers in the lot: this card's memory has worked "
            "much harder or is weakening; price it as worn and re-test it",
            observed=sbe,
            limit=round(line),
            unit="lifetime SBE",
            action="renegotiate",
        )
    else:
        f.ok(f"{sbe} lifetime corrected errors, like its peers (median {median:g})")
    return [f.verdict()]


def power_requested(gpu: GpuData, ctx: CheckContext) -> list[Verdict]:
    """An enforced power limit below the requested one: something outside the card caps it."""
    enforced = gpu.inventory.get("power_limit_enforced_w")
    requested = _state(gpu).get("power_limit_requested_w")
    if not isinstance(enforced, int | float) or not isinstance(requested, int | float):
        return []
    f = Findings("power")
    if enforced < requested * (1 - _POWER_TOLERANCE):
        f.problem(
            Status.WARN,
            f"enforced power limit {enforced:g} W, below the {requested:g} W requested: the "
            "board, chassis or power supply holds the card down; re-test in a known-good chassis",
            observed=enforced,
            limit=requested,
            unit="W",
            action="retest-on-arrival",
        )
    else:
        f.ok(f"enforced power limit {enforced:g} W as requested")
    return [f.verdict()]


def unknown_errors(gpu: GpuData, ctx: CheckContext) -> list[Verdict]:
    """Fields that read ``Unknown Error``: the driver asked the card and got no answer."""
    fields = _state(gpu).get("unknown_error") or []
    if not fields:
        return []
    shown = ", ".join(fields[:4]) + (", ..." if len(fields) > 4 else "")
    f = Findings("firmware")
    f.problem(
        Status.WARN,
        f"{len(fields)} field(s) read 'Unknown Error' ({shown}): the driver could not read "
        "them from the card, a sign of failing firmware or hardware; ask for a fresh dump "
        "after a reboot and re-test on arrival",
        observed=len(fields),
        limit=0,
        unit="fields",
        action="retest-on-arrival",
    )
    return [f.verdict()]


def idle_fan(gpu: GpuData, ctx: CheckContext) -> list[Verdict]:
    """A fan at full speed on an idle, cool card: a manual fan setting or a failing sensor."""
    state = _state(gpu)
    fan, temp, util = state.get("fan_pct"), state.get("temp_c"), state.get("gpu_util_pct")
    if not isinstance(fan, int | float) or not isinstance(temp, int | float):
        return []
    f = Findings("fan")
    idle = not isinstance(util, int | float) or util < _LIGHT_LOAD_PCT
    if fan >= _FULL_FAN_PCT and temp < _COOL_C and idle:
        f.problem(
            Status.WARN,
            f"fan at {fan:g} % on a card at {temp:g} C {_light(state)}: forced to full speed "
            "(a manual setting, a failing temperature sensor or fan controller) or worn; "
            "inspect the cooler on arrival",
            observed=fan,
            limit=_FULL_FAN_PCT,
            unit="%",
            action="retest-on-arrival",
        )
    else:
        f.ok(f"fan {fan:g} % at {temp:g} C")
    return [f.verdict()]


def field_name(field: str) -> str:
    """How the report names an Inventory field (``pci_device_id`` -> "PCI device id")."""
    return _FIELD_NAMES.get(field, field.replace("_", " "))


def seller_hidden(gpu: GpuData) -> dict[str, str]:
    """Inventory field -> what the dump shows instead of its value, for fields the seller hid.

    In a virtual machine's dump, N/A and placeholders are the hypervisor's doing, not the
    seller's; an explicit mark ("[REDACTED]") or a zeroed id still counts.
    """
    state = _state(gpu)
    hidden = dict(state.get("hidden") or {})
    if state.get("guest"):
        hidden = {k: v for k, v in hidden.items() if v != "N/A" and not placeholder_id(v)}
    return hidden


def hidden_fields(gpu: GpuData, ctx: CheckContext) -> list[Verdict]:
    """Fields the seller hid: the card cannot be matched to its label or model without them."""
    hidden = seller_hidden(gpu)
    if not hidden:
        return []
    shown = ", ".join(f"{field_name(k)} ({v})" for k, v in hidden.items())
    f = Findings("identity")
    f.problem(
        Status.WARN,
        f"hidden by the seller: {shown}; without them the card cannot be matched to its label, "
        "model or warranty: ask for an unedited dump (`nvidia-smi -q -x` straight from the "
        "machine)",
        observed=", ".join(hidden),
        action="ask-unedited-dump",
    )
    return [f.verdict()]


def pci_identity(gpu: GpuData, ctx: CheckContext) -> list[Verdict]:
    """The model the PCI ID database names for the device id, against the reported name."""
    pci, name = gpu.inventory.get("pci_device_id"), gpu.inventory.get("name")
    f = Findings("identity")
    if not pci:
        named = [e.text for i in pciids.ids_for_name(str(name or "")) if (e := pciids.lookup(i))]
        if not named:
            return []
        f.gap(f"the dump has no PCI device id to confirm the name; {name!r} is {named[0]}")
        return [f.verdict()]
    entry = pciids.lookup(str(pci))
    if entry is None:
        f.gap(
            f"PCI device id {pci} is not in the PCI ID database of {pciids.database_date()} "
            "(a newer card)"
        )
        return [f.verdict()]
    matches = pciids.name_matches(entry.device_id, str(name)) if name else None
    others = pciids.ids_for_name(str(name)) if name else ()
    if matches is False and others:
        f.problem(
            Status.FAIL,
            f"the card calls itself {name!r}, but its PCI device id {pci} is {entry.text} "
            f"(the name belongs to device id {'/'.join(others)}): relabelled or cross-flashed, "
            "return it to the seller",
            observed=pci,
            limit="/".join(others),
            action="return-to-seller",
        )
    elif matches is False:
        # nvidia-smi and the database spell many models differently ("H100 80GB HBM3" is
        # "H100 SXM5 80GB"): only a name that is another model's is evidence.
        f.ok(f"PCI device id {pci} is NVIDIA {entry.text}")
    else:
        agree = ", as its name says" if matches else " (the database names the chip only)"
        f.ok(f"PCI device id {pci} is NVIDIA {entry.text}{agree}")
    return [f.verdict()]


FINDINGS = (
    pci_identity,
    hidden_fields,
    clock_events,
    link_at_dump,
    lifetime_vs_peers,
    power_requested,
    unknown_errors,
    idle_fan,
)


def guest_skips(gpu: GpuData) -> list[Verdict]:
    """Identity and firmware SKIPs for a dump taken inside a virtual machine; [] otherwise."""
    state = _state(gpu)
    if not state.get("guest"):
        return []
    reason = (
        f"not assessable from a guest: the dump was taken inside a virtual machine "
        f"({state.get('virtualization_mode')}), which hides or replaces the physical card's "
        "serial, firmware and limits; ask for a dump taken on the host"
    )
    return [
        Verdict(check=c, status=Status.SKIP, message=reason, action="ask-unedited-dump")
        for c in ("identity", "firmware")
    ]


def guest_unjudged(gpu: GpuData, verdicts: list[Verdict]) -> Verdict | None:
    """ERROR for a guest's card that nothing could judge, naming the virtual machine as why."""
    state = _state(gpu)
    if not state.get("guest") or any(v.status != Status.SKIP for v in verdicts):
        return None
    return Verdict(
        check="incomplete",
        status=Status.ERROR,
        message=f"not assessable from a guest: the dump was taken inside a virtual machine "
        f"({state.get('virtualization_mode')}) that shows nothing of the physical card to judge; "
        "ask for a dump taken on the host",
        action="ask-unedited-dump",
    )


def buyer_action(verdict: Verdict) -> str:
    """The buyer's action for a verdict of the run's checks (see :data:`ACTIONS`)."""
    if verdict.action in ACTIONS and verdict.action != "none":
        return verdict.action
    if verdict.check in _WORN and verdict.status == Status.WARN:
        return "renegotiate"
    if verdict.check == "identity" and verdict.action == "none":
        return "ask-unedited-dump"  # a blanked serial or UUID: the seller can send the real one
    return _BUYER_ACTION.get(verdict.action, "retest-on-arrival")


def severity(check: str) -> int:
    """Rank of a check for a purchase: 0 is the most serious."""
    return SEVERITY.index(check) if check in SEVERITY else len(SEVERITY)


def for_buyer(verdict: Verdict) -> Verdict:
    """``verdict`` with the buyer's action; a setting the seller can change is at most WARN."""
    status = verdict.status
    if verdict.check in _SETTINGS and status == Status.FAIL:
        status = Status.WARN
    return Verdict(
        check=verdict.check,
        status=status,
        message=verdict.message,
        observed=verdict.observed,
        limit=verdict.limit,
        unit=verdict.unit,
        action=buyer_action(verdict) if status > Status.PASS else "none",
    )


def merge(verdicts: list[Verdict]) -> list[Verdict]:
    """One verdict per check: the worst status, its findings' messages, the first worst action.

    SKIPs give way to any judgement; a SKIP alone stays (its reason is worth reading).
    """
    out = []
    for check in dict.fromkeys(v.check for v in verdicts):
        group = [v for v in verdicts if v.check == check]
        judged = [v for v in group if v.status != Status.SKIP] or group[:1]
        top = max(judged, key=lambda v: v.status)
        shown = [v for v in judged if v.status == top.status]
        message = "; ".join(dict.fromkeys(v.message for v in shown))
        out.append(
            Verdict(
                check=check,
                status=top.status,
                message=message,
                observed=top.observed,
                limit=top.limit,
                unit=top.unit,
                action=top.action,
            )
        )
    return out
