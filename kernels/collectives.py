"""Pure arithmetic of collectives: nccl-tests' bandwidth formulas, pair schedules, patterns.

algbw = S / t and busbw = algbw · 2(n−1)/n with S in bytes and GB = 1e9 B (nccl-tests
doc/PERFORMANCE.md). Kept apart from the kernel so the verdicts and the report can use the same
formulas without torch.distributed.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping

_MOD, _STRIDE, _OFFSET = 13, 7, 6  # inputs in [-6, 6]: |sum| <= 6n, exact in fp32
# Pairs below this share of the typical pair are measured again before the table is kept; the
# same 0.9 as the slow-link warning (nccl-tests flags "Avg bus bandwidth" below 0.9 × its floor).
CONFIRM_RATIO = 0.9
Pair = tuple[int, int]


def bus_factor(ranks: int) -> float:
    """nccl-tests' all-reduce bus factor 2(n−1)/n (doc/PERFORMANCE.md)."""
    return 2.0 * (ranks - 1) / ranks if ranks > 0 else 0.0


def bandwidth_gbps(size_bytes: int, seconds: float, ranks: int) -> tuple[float, float]:
    """(algbw, busbw) in GB/s (1e9 B) for one all-reduce of ``size_bytes`` taking ``seconds``."""
    algbw = size_bytes / seconds / 1e9 if seconds > 0 else 0.0
    return algbw, algbw * bus_factor(ranks)


def backend_for(device_type: str) -> str:
    """The one place that picks the torch.distributed backend: NCCL on GPUs, gloo elsewhere."""
    return "nccl" if device_type == "cuda" else "gloo"


def pair_rounds(n: int) -> list[list[tuple[int, int]]]:
    """Every pair of ``n`` ranks once, in rounds where no rank appears twice (circle method)."""
    slots: list[int | None] = [*range(n), *([None] if n % 2 else [])]
    m = len(slots)
    rounds = []
    for _ in range(m - 1):
        rnd = []
        for i in range(m // 2):
            a, b = slots[i], slots[m - 1 - i]
            if a is not None and b is not None:
                rnd.append((min(a, b), max(a, b)))
        rounds.append(sorted(rnd))
        slots = [slots[0], slots[-1], *slots[1:-1]]
    return [r for r in rounds if r]


def typical_pair_gbps(busbw: Mapping[Pair, float]) -> float:
    """The busbw of a typical healthy pair: the median over devices of each one's best pair.

    A slow GPU drags down every pair it is in, so the plain median pair is slow as soon as a
    third of the devices are; each device's best pair is fast unless the device itself is slow.
    """
    best: dict[int, float] = {}
    for pair, value in busbw.items():
        for device in pair:
            best[device] = max(best.get(device, 0.0), value)
    return statistics.median(best.values()) if best else 0.0
