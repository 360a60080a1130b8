"""What a seller's nvidia-smi dump shows beyond the inventory: the card's state when it was taken.

:mod:`burnin.smi_dump` turns each GPU section into an
:class:`~burnin.telemetry.base.Inventory` (identity, firmware, wear) and, through this module,
a :class:`DumpState`: the clock-event reasons active at that moment, load, temperature, fan,
power draw and the requested power limit, the virtualization mode, the fields that read
``Unknown Error``, and the fields the seller hid (``[REDACTED]``, ``XXXX``, a blanked serial, a
placeholder UUID, ``N/A`` where every card reports a value, or a value edited into something
nvidia-smi never prints). Nothing here raises: a dump is judged on what it shows, and a field
that cannot be read is named, never a reason to stop.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from burnin import pciids
from burnin import smi_fields as F
from burnin.identifiers import placeholder_id

Key = tuple[str, ...]
Values = dict[Key, tuple[str, int | None]]
# Words and shapes people use to hide a value: "[REDACTED]", "<hidden>", "XXXXXXXX", "****".
_HIDDEN = re.compile(
    r"redact|censor|\bmasked\b|\bhidden\b|\bremoved\b|\bomitted\b|anonymi[sz]ed|\bprivate\b"
    r"|^[\s\[\]<>(){}]*([xX*#?•]\s*){3,}[\s\[\]<>(){}]*$",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"^([+-]?\d{1,18}(?:\.\d{1,9})?)\s*([A-Za-z%]*)$")
# Virtualization modes in which nvidia-smi runs inside a virtual machine (nvml.h
# nvmlGpuVirtualizationMode_t: PASSTHROUGH, VGPU); a host's modes ("Host VGPU", "Host VSGA")
# and "None" see the physical card.
GUEST_MODES = ("pass-through", "passthrough", "vgpu")
# Fields every NVIDIA card reports: N/A there is a value withheld, not a missing sensor. The
# serial is absent on GeForce and TITAN boards (geforce-gtx-1070-x2-mining_r384.xml), so only
# other boards' N/A serial counts.
EXPECTED = ("name", "uuid", "pci_device_id", "memory_total_mib")
_NO_SERIAL_BRANDS = ("geforce", "titan")


def hidden_value(value: str) -> bool:
    """Whether ``value`` is a redaction mark rather than something nvidia-smi prints."""
    return bool(_HIDDEN.search(value))


@dataclass(frozen=True, kw_only=True)
class DumpState:
    """One GPU's state at dump time; None = not in the dump (or N/A)."""

    clock_reasons_active: tuple[str, ...] = ()  # names from smi_fields.REASONS
    clock_reasons_reported: bool = False  # whether the dump lists the reasons at all
    gpu_util_pct: float | None = None
    temp_c: float | None = None
    fan_pct: float | None = None
    power_draw_w: float | None = None
    power_limit_requested_w: float | None = None
    virtualization_mode: str | None = None
    performance_state: str | None = None
    # Inventory field -> what the dump shows instead of a value ("[REDACTED]", "N/A", ...).
    hidden: tuple[tuple[str, str], ...] = ()
    unknown_error: tuple[str, ...] = ()  # key paths that read "Unknown Error"

    @property
    def guest(self) -> bool:
        """Whether the dump was taken inside a virtual machine (pass-through or vGPU)."""
        mode = (self.virtualization_mode or "").strip().lower()
        return mode in GUEST_MODES

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["hidden"] = dict(self.hidden)
        out["guest"] = self.guest
        return out


def _first(values: Values, paths: str) -> str | None:
    for path in paths.split("|"):
        hit = values.get(tuple(path.split("/")))
        text = hit[0].strip() if hit is not None else ""
        if text and text.strip("[]").lower() not in ("n/a", "not supported", "unknown error"):
            return text
    return None


def _number(values: Values, paths: str, unit: str) -> float | None:
    text = _first(values, paths)
    m = _NUMBER.match(text or "")
    if m is None or (m.group(2) and m.group(2).lower() != unit.lower()):
        return None
    return float(m.group(1))


def _reasons(values: Values) -> tuple[tuple[str, ...], bool]:
    active: list[str] = []
    reported = False
    for key, (value, _line) in values.items():
        if key[0] not in F.REASON_SECTIONS or len(key) < 2:
            continue
        leaf = key[-1]
        for prefix in F.REASON_PREFIXES:
            leaf = leaf.removeprefix(prefix)
        name = F.REASONS.get(leaf.replace("_", " "))
        if name is None:
            continue
        word = value.strip().lower()
        reported = reported or word in ("active", "not active")
        if word == "active" and name not in active:
            active.append(name)
    return tuple(active), reported


def read_state(
    values: Values, hidden: dict[str, str], inventory: dict[str, Any], unsupported: set[str]
) -> DumpState:
    """The :class:`DumpState` of one GPU section.

    Args:
        values: the section's key path -> (value, line) map.
        hidden: Inventory field -> the text shown instead of a value, as the parser met it.
        inventory: the parsed Inventory fields (for placeholders and expected values).
        unsupported: the Inventory fields the dump marked N/A.
    """

    withheld = dict(hidden)
    for name in EXPECTED:
        if inventory.get(name) is None and name in unsupported:
            withheld.setdefault(name, "N/A")
    # The board's brand from its name, or from its device id where the driver printed none
    # ("Graphics Device" on a GTX 1660 under R418).
    model = pciids.lookup(inventory.get("pci_device_id"))
    brand = f"{inventory.get('name') or ''} {model.text if model else ''}".lower()
    serial_na = inventory.get("serial") is None and "serial" in unsupported
    if serial_na and inventory.get("name") and not any(b in brand for b in _NO_SERIAL_BRANDS):
        withheld.setdefault("serial", "N/A")
    for name in ("serial", "uuid", "board_part_number", "gpu_part_number"):
        value = inventory.get(name)
        if value is not None and (not str(value).strip() or placeholder_id(str(value))):
            withheld.setdefault(name, str(value) or "(blank)")
    active, reported = _reasons(values)
    # Field names come from the smi_fields tables: only DumpState itself can check them, when
    # called, so the values go in as one name -> value mapping.
    state: dict[str, Any] = {
        name: _number(values, p, unit) for name, (p, unit) in F.STATE_NUMBERS.items()
    }
    state |= {name: _first(values, paths) for name, paths in F.STATE_STRINGS.items()}
    unknown = tuple(
        "/".join(key) for key, (value, _) in values.items() if "unknown error" in value.lower()
    )
    return DumpState(
        clock_reasons_active=active,
        clock_reasons_reported=reported,
        hidden=tuple(sorted(withheld.items())),
        unknown_error=unknown,
        **state,
    )
