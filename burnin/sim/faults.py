"""The fault registry: every fault kind a simulated card (or a test's device) can carry.

A fault never lives inside a check: the simulator and tests attach faults to a device, and the
device seam (burnin/kernels/base.py, burnin/sim/seam.py) or the simulated telemetry
(burnin/sim/telemetry.py) applies them where data leaves the device. Per kind, one
:class:`FaultKind` says everything the rest of the simulator needs: its parameters (default
and plausible range), the checks that must flag a card carrying it (the detection contract of
a scenario), the kernel that must run for it to show, and what a card needs to be able to show
it through NVML. The kinds and their parameters are docs/contracts.md's scenario table, plus the
device-memory faults the memtest kernel reads back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from burnin.errors import InputError


@dataclass(frozen=True)
class Fault:
    """A fault a device carries (plain picklable data): its kind and parameters."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Param:
    """One fault parameter: its documented default and its plausible range.

    ``lo``/``hi`` bound numbers (``lo_open``: the value must exceed ``lo``); they are
    plausibility limits that catch typos, not hardware limits.
    """

    default: Any
    lo: float = 0.0
    hi: float = float("inf")
    lo_open: bool = False


@dataclass(frozen=True)
class FaultKind:
    """One fault kind: its parameters, the checks that flag it, what it needs to show."""

    params: dict[str, Param]
    checks: tuple[str, ...]
    kernel: str | None = None  # a kernel that must run for the fault to show
    # Board property (burnin/sim/model.py Board) a card needs to show the fault through NVML,
    # and why a card without it cannot.
    needs: str | None = None
    needs_why: str = ""
    # Parameters beyond the defaults that a scenario may give (none has a default).
    optional: dict[str, Param] = field(default_factory=dict)


# A slowdown factor of 1 (or more) slows nothing: the "faulty" card would rightly PASS.
_FACTOR = (0.0, 0.99)
# Legacy page retirement holds at most 64 pages, row remapping at most 512 rows
# (NVIDIA row-remapping and dynamic page retirement docs, docs.nvidia.com/deploy).
_MAX_RETIRED_PAGES = 64
_MAX_REMAPPED_ROWS = 512
_WEEK_S = 7 * 86400.0
_NO_ECC = "runs without ECC, so NVML reports no ECC counters"
_NO_INFOROM = "has no InfoROM, so NVML reports no serial or InfoROM"

FAULTS: dict[str, FaultKind] = {
    "sdc": FaultKind({"rate": Param(0.05, 0.0, 1.0, lo_open=True)}, ("sdc",)),
    "sdc-constant": FaultKind({}, ("sdc",)),
    "slow": FaultKind({"factor": Param(0.85, *_FACTOR, lo_open=True)}, ("throughput",)),
    "hbm-slow": FaultKind({"factor": Param(0.8, *_FACTOR, lo_open=True)}, ("membw",), "membw"),
    "thermal": FaultKind({"max_temp_c": Param(95.0, 1.0, 150.0)}, ("thermal", "throttle")),
    "power-cap": FaultKind({"limit_w": Param(300.0, 0.0, 5000.0, lo_open=True)}, ("power",)),
    "pcie-degraded": FaultKind({"gen": Param(3, 1, 6), "width": Param(8, 1, 32)}, ("pcie-link",)),
    "pcie-replay": FaultKind({"per_min": Param(100.0, 0.0, 1e9)}, ("pcie-replay",)),
    "ecc": FaultKind(
        {"corrected_per_min": Param(100.0, 0.0, 1e9), "uncorrected": Param(1, 0, 1_000_000)},
        ("ecc",),
        needs="ecc_enabled",
        needs_why=_NO_ECC,
    ),
    "retired-pages": FaultKind(
        {
            "sbe": Param(10, 0, _MAX_RETIRED_PAGES),
            "dbe": Param(20, 0, _MAX_RETIRED_PAGES),
            "pending": Param(True),
        },
        ("retired-pages",),
        needs="retires_pages",
        needs_why="does not retire pages (only pre-Ampere cards with ECC do; Ampere and later "
        "remap rows: use 'row-remap')",
    ),
    "row-remap": FaultKind(
        {
            "correctable": Param(10, 0, _MAX_REMAPPED_ROWS),
            "uncorrectable": Param(4, 0, _MAX_REMAPPED_ROWS),
            "pending": Param(True),
            "failure": Param(False),
        },
        ("row-remap",),
        needs="remaps_rows",
        needs_why="has no row remapper NVML reports (only Ampere and later datacenter cards; "
        "pre-Ampere cards retire pages: use 'retired-pages')",
    ),
    "xid": FaultKind({"code": Param(79, 1, 999)}, ("xid",)),
    "fan": FaultKind(
        {"speed_pct": Param(0.0, 0.0, 100.0)},
        ("fan",),
        needs="fans",
        needs_why="is passively cooled and reports no fan speed",
    ),
    "slow-link": FaultKind(
        {"factor": Param(0.5, *_FACTOR, lo_open=True)}, ("slow-link",), "allreduce"
    ),
    "hang": FaultKind({"after_s": Param(5.0, 0.0, _WEEK_S)}, ("hang",)),
    "crash": FaultKind({"after_s": Param(5.0, 0.0, _WEEK_S)}, ("crash",)),
    "lost": FaultKind({"after_s": Param(5.0, 0.0, _WEEK_S)}, ("lost",)),
    # Without a parameter the card reports half its memory (burnin/sim/telemetry.py).
    "identity": FaultKind(
        {},
        ("identity",),
        optional={
            "memory_mib": Param(1, 1, 10**7),
            "name": Param(""),
            "pci_device_id": Param(""),
            "sm_count": Param(1, 1, 10_000),
        },
    ),
    # This card reports the twin's serial; both are flagged.
    "duplicate-serial": FaultKind(
        {"twin_node": Param(0), "twin_gpu": Param(0)},
        ("identity",),
        needs="has_inforom",
        needs_why=_NO_INFOROM,
    ),
    "vbios": FaultKind({"version": Param("00.00.00.00.00")}, ("firmware",)),
    "inforom-invalid": FaultKind({}, ("firmware",), needs="has_inforom", needs_why=_NO_INFOROM),
    "worn": FaultKind(
        {
            "aggregate_sbe": Param(5000, 0, 10**12),
            "aggregate_dbe": Param(3, 0, 10**12),
            "retired_pages": Param(12, 0, _MAX_REMAPPED_ROWS),
        },
        ("wear",),
        needs="ecc_enabled",
        needs_why=_NO_ECC,
    ),
    # Device-memory faults for memtest. stuck-bit pins bit `bit` (0-7) of the byte at
    # `offset_bytes` of the tested region to `value` on every read; bitflip flips one random
    # bit of the region in a `rate` share of write/verify passes.
    "stuck-bit": FaultKind(
        {
            "offset_bytes": Param(4096, 0, 2**40),
            "bit": Param(0, 0, 7),
            "value": Param(1, 0, 1),
        },
        ("sdc",),
        "memtest",
    ),
    "bitflip": FaultKind({"rate": Param(0.05, 0.0, 1.0, lo_open=True)}, ("sdc",), "memtest"),
}

# kind -> documented default parameters.
FAULT_KINDS: dict[str, dict[str, Any]] = {
    kind: {name: p.default for name, p in spec.params.items()} for kind, spec in FAULTS.items()
}
# kind -> the checks that must flag a card carrying it (docs/contracts.md "Simulated fleets").
EXPECTED_CHECKS: dict[str, tuple[str, ...]] = {kind: s.checks for kind, s in FAULTS.items()}
# kind -> the kernel that realises its expected check, for kinds that need one.
FAULT_KERNELS: dict[str, str] = {k: s.kernel for k, s in FAULTS.items() if s.kernel}


def parameters(kind: str) -> dict[str, Param]:
    """Every parameter a scenario may give a fault of ``kind`` (defaults first)."""
    spec = FAULTS[kind]
    return {**spec.params, **spec.optional}


def make_fault(kind: str, params: dict[str, Any] | None = None, where: str = "fault") -> Fault:
    """Build a fault with defaults filled in; an unknown kind or parameter is an InputError."""
    if kind not in FAULTS:
        raise InputError(f"{where}: unknown fault kind {kind!r} (known: {', '.join(FAULTS)})")
    merged = dict(FAULT_KINDS[kind])
    allowed = parameters(kind)
    for key, value in (params or {}).items():
        if key not in allowed:
            raise InputError(f"{where}: fault {kind!r} has no parameter {key!r}")
        merged[key] = value
    return Fault(kind, merged)


__all__ = [
    "EXPECTED_CHECKS",
    "FAULTS",
    "FAULT_KERNELS",
    "FAULT_KINDS",
    "Fault",
    "FaultKind",
    "Param",
    "make_fault",
    "parameters",
]


def add_kind(kind: str, spec: FaultKind) -> None:
    """Register a fault kind at run time (a test's own); a kind already registered raises."""
    if kind in FAULTS:
        raise ValueError(f"fault kind {kind!r} is already registered")
    FAULTS[kind] = spec
    _derive()


def snapshot() -> dict[str, FaultKind]:
    """The registry as it is, for :func:`restore`."""
    return dict(FAULTS)


def restore(saved: dict[str, FaultKind]) -> None:
    """Put back a :func:`snapshot`, the tables derived from it included."""
    FAULTS.clear()
    FAULTS.update(saved)
    _derive()


def _derive() -> None:
    # In place: other modules hold these tables by reference (``from ... import``).
    FAULT_KINDS.clear()
    FAULT_KINDS.update({k: {n: p.default for n, p in s.params.items()} for k, s in FAULTS.items()})
    EXPECTED_CHECKS.clear()
    EXPECTED_CHECKS.update({k: s.checks for k, s in FAULTS.items()})
    FAULT_KERNELS.clear()
    FAULT_KERNELS.update({k: s.kernel for k, s in FAULTS.items() if s.kernel})
