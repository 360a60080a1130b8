"""What a performance figure is judged against: the card's SKU datasheet and its peers.

Shared by the performance checks (``throughput``, ``membw``, ``pcie-bw``). A check asks for
:class:`Finding` records, one per comparison (SKU fraction, peers, floor), each of which may be
SKIP with its reason, and :func:`combine` folds them into the check's one verdict: the worst
finding decides, every finding is in the message, and a verdict with nothing but SKIPs is SKIP,
never PASS. Peers are devices of the same SKU (or the same name where the SKU is unknown) that
ran the same kernel shape; outliers use the robust z = 0.6745·(x − median)/MAD of DESIGN.md.
On the CPU fallback, logical devices share two or more cores with each other and the OS, so
their gaps measure the scheduler more than the hardware: there a peer gap WARNs only beyond the
FAIL line and never FAILs. A simulated fleet runs on the CPU but is judged as the GPUs it models.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from burnin.verdicts.limits import limit
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict, is_cpu

MIN_PEERS = 3  # with two devices the median sits between them: neither can be the outlier
_THROTTLE_HEAT = {"hw_slowdown", "hw_thermal_slowdown", "sw_thermal_slowdown", "sw_power_cap"}
_THROTTLE_HEAT |= {"hw_power_brake_slowdown"}


@dataclass(frozen=True, kw_only=True)
class PeerThresholds:
    """How far from its same-SKU peers a card may sit (every peer comparison shares these)."""

    peer_z: float = limit(
        3.5,
        unit="robust z",
        source="Iglewicz & Hoaglin (1993): outlier cutoff of the modified z-score "
        "0.6745·(x − median)/MAD",
        hi=1e6,
    )
    peer_warn_drop: float = limit(
        0.05,
        unit="fraction",
        source="an outlier must also sit this share below the peer median: DCGM "
        "targeted_power holds its moving average within ±5 %",
        hi=1,
    )
    peer_fail_ratio: float = limit(
        0.75,
        unit="fraction of the peer median",
        source="DCGM diag's '0.75 × measured' minimum (diag-skus.yaml.in), the peers' median "
        "as the measured value",
        hi=1,
    )
    peer_mad_floor: float = limit(
        0.01,
        unit="fraction of the median",
        source="identical cards have MAD ≈ 0, so a z-score alone flags noise; the floor asks "
        "for a real gap (burnin)",
        hi=1,
    )


@dataclass(frozen=True)
class Finding:
    status: Status
    text: str
    limit: float | None = None
    action: str = "none"


def combine(check: str, findings: Sequence[Finding], observed: Any, unit: str) -> Verdict:
    """One verdict from several findings: worst status, every text, the worst one's limit."""
    judged = [f for f in findings if f.status != Status.SKIP]
    worst = max(judged, key=lambda f: f.status) if judged else None
    ordered = sorted(findings, key=lambda f: -f.status)
    return Verdict(
        check=check,
        status=worst.status if worst else Status.SKIP,
        observed=round(observed, 3) if isinstance(observed, float) else observed,
        limit=None if worst is None or worst.limit is None else round(worst.limit, 3),
        unit=unit,
        action=worst.action if worst else "none",
        message="; ".join(f.text for f in ordered),
    )


def reference_sku(gpu: GpuData) -> Any:
    """The SKU whose datasheet a card's performance is judged against, or None.

    Unlike ``findings.sku_of`` (what the card's PCI id says it is, for identity checks), a
    simulated card's named SKU comes first: the simulator models that SKU's performance.
    """
    inv = gpu.inventory
    if is_cpu(gpu):
        return None
    return _sku(
        inv.get("sku"), inv.get("pci_device_id"), inv.get("name"), inv.get("memory_total_mib")
    )


@functools.lru_cache(maxsize=1024)
def _sku(key: Any, pci_device_id: Any, name: Any, memory_total_mib: Any) -> Any:
    from burnin import skus
    from burnin.errors import ConfigError
    from burnin.telemetry.base import Inventory

    if isinstance(key, str):  # a simulated card names its SKU
        try:
            return skus.get_sku(key)
        except ConfigError:
            pass
    inv = Inventory(
        index=0,
        pci_device_id=pci_device_id if isinstance(pci_device_id, str) else None,
        name=name if isinstance(name, str) else None,
        memory_total_mib=memory_total_mib if isinstance(memory_total_mib, int) else None,
    )
    return skus.identify(inv)


def peer_group(gpu: GpuData) -> tuple[str, str]:
    """Devices comparable as peers: same SKU, else the same reported name and kind."""
    sku = reference_sku(gpu)
    if sku is not None:
        return ("sku", sku.key)
    return (str(gpu.inventory.get("kind", "cuda")), str(gpu.inventory.get("name")))


def no_sku_reason(gpu: GpuData) -> str:
    if is_cpu(gpu):
        return "no datasheet reference on the CPU fallback"
    return f"no SKU known for {gpu.inventory.get('name') or 'this card'!r}"


def robust_z(value: float, population: Sequence[float], floor: float) -> float:
    """Iglewicz & Hoaglin's modified z-score of ``value`` in ``population`` (which holds it):
    0.6745·(x − median)/MAD, the MAD no smaller than ``floor`` (identical cards have MAD ≈ 0)."""
    median = statistics.median(population)
    mad = statistics.median(abs(v - median) for v in population)
    return 0.6745 * (value - median) / max(mad, floor, 1e-12)


def peer_finding(
    gpu: GpuData,
    ctx: CheckContext,
    value_of: Callable[[GpuData], float | None],
    key_of: Callable[[GpuData], Hashable],
    what: str,
    unit: str,
    fail_action: str = "retest",
) -> Finding:
    """Judge ``value_of(gpu)`` against the devices of the fleet with the same ``key_of``.

    WARN when the robust z is at or below ``-peer_z`` and the value is at least
    ``peer_warn_drop`` under the median; FAIL under ``peer_fail_ratio`` × the median; SKIP on
    the CPU fallback. Higher is better for every figure judged here.
    """
    value = value_of(gpu)
    key = key_of(gpu)
    if value is None:
        return Finding(Status.SKIP, f"{what}: no value to compare with peers")
    values = [v for g in ctx.fleet if key_of(g) == key and (v := value_of(g)) is not None]
    if len(values) < MIN_PEERS:
        return Finding(
            Status.SKIP,
            f"{what}: {len(values) - 1} comparable peer(s), {MIN_PEERS - 1} needed",
        )
    t = ctx.limits(PeerThresholds)
    median = statistics.median(values)
    z = robust_z(value, values, t.peer_mad_floor * abs(median))
    ratio = value / median if median else 1.0
    where = (
        f"{what} {value:.4g} {unit} = {ratio:.2f} x the median of {len(values)} peers "
        f"({median:.4g}, robust z {z:+.1f})"
    )
    z_cut, fail_ratio, warn_drop = t.peer_z, t.peer_fail_ratio, t.peer_warn_drop
    if is_cpu(gpu):
        # Logical CPU devices share the same cores, so their spread measures the scheduler
        # (0.7 x the median is common with 8 devices on 2 loaded cores), not a card.
        return Finding(Status.SKIP, f"{where}: not judged (logical CPU devices share cores)")
    if z <= -z_cut and ratio < fail_ratio:
        limit = fail_ratio * median
        return Finding(Status.FAIL, f"{where}, below {fail_ratio:g} x", limit, fail_action)
    if z <= -z_cut and ratio <= 1.0 - warn_drop:
        return Finding(Status.WARN, f"{where}: an outlier", (1 - warn_drop) * median, "retest")
    return Finding(Status.PASS, where)


def fraction_finding(
    what: str,
    value: float,
    reference: float,
    ref_name: str,
    warn: float,
    fail: float,
    unit: str,
    fail_action: str,
) -> Finding:
    """Judge ``value / reference`` against WARN and FAIL fractions."""
    frac = value / reference
    text = f"{what} {value:.4g} {unit} = {frac:.2f} of {ref_name} {reference:.4g}"
    if frac < fail:
        return Finding(Status.FAIL, f"{text}, below {fail:g}", fail * reference, fail_action)
    if frac < warn:
        return Finding(Status.WARN, f"{text}, below {warn:g}", warn * reference, "retest")
    return Finding(Status.PASS, text, warn * reference)


def heat_action(gpu: GpuData) -> str:
    """``inspect-cooling`` when power or thermal throttling was seen during the run."""
    seen = {r for s in gpu.samples for r in s.get("throttle_reasons") or ()}
    return "inspect-cooling" if seen & _THROTTLE_HEAT else "retest"


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a dict, else {}: a store from elsewhere may hold any shape."""
    return value if isinstance(value, dict) else {}


def digests(result: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """A matmul result's cross-device digests by dtype, well-formed ones only."""
    out = {}
    for dtype, digest in as_dict((result or {}).get("cross")).items():
        probe = digest.get("probe") if isinstance(digest, dict) else None
        if isinstance(digest, dict) and isinstance(digest.get("sha256"), str):
            numeric = isinstance(probe, list) and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in probe
            )
            scale = digest.get("scale")
            out[str(dtype)] = digest | {
                "probe": probe if numeric else None,
                "scale": float(scale) if isinstance(scale, int | float) else 0.0,
            }
    return out


def last_result(gpu: GpuData, kernel: str) -> dict[str, Any] | None:
    found = gpu.results(kernel)
    return found[-1] if found else None
