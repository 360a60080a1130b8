"""Peers: a card judged against the cards like it, with one statistic for every comparison.

Peers are devices of the same SKU (or the same name where the SKU is unknown); each check says
which of them compare (the same kernel shape, the same load, the same power). :func:`peer_stats`
is the one statistic: the median and the robust z = 0.6745·(x − median)/MAD of Iglewicz &
Hoaglin, with a floor under the MAD because identical cards have MAD ≈ 0. :func:`peer_finding`
turns it into a finding for a figure where higher is better (TFLOP/s, GB/s, perf/W); thermal and
power use the statistic with their own rule. On the CPU fallback, logical devices share two or
more cores with each other and the OS, so their gaps measure the scheduler more than the
hardware: there a peer gap is never judged. A simulated fleet runs on the CPU but is judged as
the GPUs it models. The thresholds every comparison shares are :class:`PeerThresholds`.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from burnin.skus import resolve
from burnin.verdicts.finding import Finding
from burnin.verdicts.limits import limit
from burnin.verdicts.model import CheckContext, GpuData, Status, is_cpu
from burnin.verdicts.records import full_load, loaded_in_run, values

MIN_PEERS = 3  # with two devices the median sits between them: neither can be the outlier


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


def peer_group(gpu: GpuData) -> tuple[str, str]:
    """Devices comparable as peers: same SKU, else the same reported name and kind."""
    sku = resolve(gpu.inventory, named=True)
    if sku is not None:
        return ("sku", sku.key)
    return (str(gpu.inventory.get("kind", "cuda")), str(gpu.inventory.get("name")))


def robust_z(value: float, population: Sequence[float], floor: float) -> float:
    """Iglewicz & Hoaglin's modified z-score of ``value`` in ``population`` (which holds it):
    0.6745·(x − median)/MAD, the MAD no smaller than ``floor`` (identical cards have MAD ≈ 0)."""
    median = statistics.median(population)
    mad = statistics.median(abs(v - median) for v in population)
    return 0.6745 * (value - median) / max(mad, floor, 1e-12)


@dataclass(frozen=True)
class PeerStats:
    """Where a device's value sits among its peers' values."""

    peers: int  # comparable peers, the device itself not counted
    median: float  # of the peers' values and the device's
    peer_median: float  # of the peers' values alone
    z: float  # robust z of the device's value among all of them


def peer_stats(
    value: float, others: Sequence[float], *, floor_share: float = 0.0, floor: float = 0.0
) -> PeerStats | None:
    """The device's ``value`` against its peers' ``others``; None with too few peers.

    The MAD floor is ``floor`` or ``floor_share`` × |median|, whichever is larger.
    """
    if len(others) < MIN_PEERS - 1:
        return None
    population = [*others, value]
    median = statistics.median(population)
    z = robust_z(value, population, max(floor, floor_share * abs(median)))
    return PeerStats(len(others), median, statistics.median(others), z)


@dataclass
class _PeerGroup:
    """The values of one peer group (the devices with the same ``key_of``), each device's
    once: every member's population is the whole group, so its median and MAD are shared."""

    values: list[float] = field(default_factory=list)
    _ordered: list[float] | None = None
    _median: float = 0.0
    _mad: float = 0.0

    @property
    def size(self) -> int:
        return len(self.values)

    def stats(self, value: float, floor_share: float) -> PeerStats | None:
        """:func:`peer_stats` of member ``value`` against the rest of the group."""
        if self.size - 1 < MIN_PEERS - 1:
            return None
        if self._ordered is None:
            self._ordered = sorted(self.values)
            self._median = statistics.median(self._ordered)
            self._mad = statistics.median(abs(v - self._median) for v in self._ordered)
        ordered, median = self._ordered, self._median
        at = bisect.bisect_left(ordered, value)  # one copy of the device's own value leaves

        def other(i: int) -> float:  # the i-th of the others, in order
            return ordered[i if i < at else i + 1]

        count = len(ordered) - 1
        # statistics.median of the others without copying the group once per member: the
        # middle one, or the mean of the middle two, computed as statistics does.
        half = count // 2
        peer_median = other(half) if count % 2 else (other(half - 1) + other(half)) / 2
        floor = max(0.0, floor_share * abs(median))
        z = 0.6745 * (value - median) / max(self._mad, floor, 1e-12)
        return PeerStats(count, median, peer_median, z)


def _fn_key(fn: Callable[..., Any]) -> Hashable:
    """What makes two closures compute the same thing: code, defaults and captured objects."""
    cells: list[int | None] = []
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            cells.append(id(cell.cell_contents))
        except ValueError:  # an empty cell
            cells.append(None)
    return (getattr(fn, "__code__", fn), getattr(fn, "__defaults__", None), tuple(cells))


def _peer_table(
    ctx: CheckContext,
    value_of: Callable[[GpuData], float | None],
    key_of: Callable[[GpuData], Hashable],
    what: str,
) -> dict[int, tuple[_PeerGroup, float]]:
    """{id(device): (its peer group, its value)} over the fleet, built once per comparison
    (the fleet's size squared otherwise: every card would recompute every peer's value).
    Empty where a key or value cannot be grouped (unhashable, NaN): compared the plain way."""

    def build() -> dict[int, tuple[_PeerGroup, float]]:
        groups: dict[Hashable, _PeerGroup] = {}
        table: dict[int, tuple[_PeerGroup, float]] = {}
        try:
            for g in ctx.fleet:
                value = value_of(g)
                if value is None:
                    continue
                if isinstance(value, float) and math.isnan(value):
                    return {}  # NaN has no place in an order: the plain way keeps its quirks
                group = groups.setdefault(key_of(g), _PeerGroup())
                group.values.append(value)
                table[id(g)] = (group, value)
        except TypeError:  # an unhashable key
            return {}
        return table

    try:
        memo_key = ("peer_table", what, _fn_key(value_of), _fn_key(key_of))
        hash(memo_key)
    except TypeError:
        return {}
    return ctx.memo(memo_key, build)


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
    if value is None:
        return Finding(Status.SKIP, f"{what}: no value to compare with peers")
    t = ctx.limits(PeerThresholds)
    table = _peer_table(ctx, value_of, key_of, what)
    found = table.get(id(gpu))
    if found is None or found[1] != value:
        # Not a member of the fleet as the table saw it: compare the plain way.
        key = key_of(gpu)
        others = [
            v
            for g in ctx.fleet
            if g is not gpu and key_of(g) == key and (v := value_of(g)) is not None
        ]
        count, stats = len(others), peer_stats(value, others, floor_share=t.peer_mad_floor)
    else:
        group = found[0]
        count, stats = group.size - 1, group.stats(value, floor_share=t.peer_mad_floor)
    if stats is None:
        return Finding(Status.SKIP, f"{what}: {count} comparable peer(s), {MIN_PEERS - 1} needed")
    median, z = stats.median, stats.z
    ratio = value / median if median else 1.0
    where = (
        f"{what} {value:.4g} {unit} = {ratio:.2f} x the median of {stats.peers + 1} peers "
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


def under_load(gpu: GpuData, ctx: CheckContext) -> tuple[float | None, float | None]:
    """(median power_w, settled temp_c) while a kernel ran; None where not sampled.

    The settled temperature is the median over the second half of the loaded samples, past
    the first minutes' climb, so a card that started later is not judged cooler for it.
    """

    def compute() -> tuple[float | None, float | None]:
        loaded = loaded_in_run(gpu, ctx)
        power = values(loaded, "power_w")
        temps = values(loaded[len(loaded) // 2 :], "temp_c")
        return (
            statistics.median(power) if power else None,
            statistics.median(temps) if temps else None,
        )

    return ctx.memo(("under_load", gpu.node, gpu.index), compute)


def same_load_peers(gpu: GpuData, ctx: CheckContext) -> list[GpuData]:
    """Same SKU (peer group), the same planned kernels, run to the end: the same load."""

    def build() -> dict[Hashable, list[GpuData]]:
        loads: dict[Hashable, list[GpuData]] = {}
        for g in ctx.fleet:
            if full_load(g):
                loads.setdefault(_load_key(g), []).append(g)
        return loads

    try:
        same = ctx.memo(("same_load",), build).get(_load_key(gpu), [])
    except TypeError:  # a kernel name that is not a string: compare the plain way
        same = [g for g in ctx.fleet if full_load(g) and _load_key(g) == _load_key(gpu)]
    return [g for g in same if g is not gpu]


def same_load_under_load(
    gpu: GpuData, ctx: CheckContext
) -> list[tuple[float | None, float | None]]:
    """:func:`under_load` of each of :func:`same_load_peers`, in the same order, the list of
    each load built once (each card's peers' figures otherwise cost the fleet's size squared)."""

    def build() -> dict[Hashable, list[tuple[GpuData, tuple[float | None, float | None]]]]:
        loads: dict[Hashable, list[tuple[GpuData, tuple[float | None, float | None]]]] = {}
        for g in ctx.fleet:
            if full_load(g):
                loads.setdefault(_load_key(g), []).append((g, under_load(g, ctx)))
        return loads

    try:
        same = ctx.memo(("same_load_under_load",), build).get(_load_key(gpu), [])
    except TypeError:  # a kernel name that is not a string: compare the plain way
        return [under_load(g, ctx) for g in same_load_peers(gpu, ctx)]
    return [figures for g, figures in same if g is not gpu]


def same_load_power_stats(
    gpu: GpuData, ctx: CheckContext, power_w: float, floor_share: float
) -> PeerStats | None:
    """:func:`peer_stats` of the card's ``power_w`` under load against the same figure of its
    :func:`same_load_peers`; each load's powers sorted once for the fleet (every card's own
    sort of all its peers' costs the fleet's size squared)."""

    def build() -> dict[int, _PeerGroup]:
        groups: dict[Hashable, _PeerGroup] = {}
        table: dict[int, _PeerGroup] = {}
        for g in ctx.fleet:
            if full_load(g) and (value := under_load(g, ctx)[0]) is not None:
                if math.isnan(value):
                    return {}  # NaN has no place in an order: the plain way keeps its quirks
                table[id(g)] = groups.setdefault(_load_key(g), _PeerGroup())
                table[id(g)].values.append(value)
        return table

    try:
        group = ctx.memo(("same_load_power",), build).get(id(gpu))
    except TypeError:  # a kernel name that is not a string
        group = None
    if group is None or not full_load(gpu) or under_load(gpu, ctx)[0] != power_w:
        peers = [p for p, _temp_c in same_load_under_load(gpu, ctx) if p is not None]
        return peer_stats(power_w, peers, floor_share=floor_share)
    return group.stats(power_w, floor_share)


def _load_key(gpu: GpuData) -> tuple[Any, ...]:
    return (peer_group(gpu), tuple(sorted(gpu.planned_kernels)))
