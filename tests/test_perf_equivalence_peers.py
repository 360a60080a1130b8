"""Peer comparisons of the verdicts stage: each group's figures sorted once, as each card's
own sort of its peers gives them (tests/test_perf_equivalence.py holds the plain computations
and the fleet judged both ways)."""

from __future__ import annotations

import math

import pytest
from test_perf_equivalence import FLEETS, card, plain_same_load_power_stats

from burnin.verdicts import peers
from burnin.verdicts.model import CheckContext


@pytest.mark.parametrize("values", [f[1] for f in FLEETS], ids=[f[0] for f in FLEETS])
def test_peer_group_stats_match_each_members_own_sort(values: list[float | None]) -> None:
    known = [v for v in values if v is not None and not math.isnan(v)]
    group = peers._PeerGroup(values=list(known))
    for value in known:
        others = list(known)
        others.remove(value)
        assert group.stats(value, 0.01) == peers.peer_stats(value, others, floor_share=0.01)


POWERS = [
    ("spread", [600.0, 610.5, 598.25, 400.0, 605.0, 602.0]),
    ("duplicates", [600.0, 600.0, 600.0, 610.0, 600.0]),
    ("integers", [600, 601, 350, 602]),
    ("too few", [600.0, 300.0]),
    ("a NaN", [600.0, math.nan, 601.0, 350.0]),
    ("no power on one", [600.0, None, 601.0, 350.0, 603.0]),
]


@pytest.mark.parametrize("watts", [p[1] for p in POWERS], ids=[p[0] for p in POWERS])
def test_same_load_power_stats_match_each_peer_sorted(watts: list[float | None]) -> None:
    fleet = [card(i, 790.0) for i in range(len(watts))] + [card(90, 790.0, name="Other GPU")]
    fleet[0].events.append({"kind": "crash"})  # cut short: nobody's peer, compared plainly
    for g, w in zip(fleet, [*watts, 500.0], strict=True):
        g.samples.extend({"elapsed_s": float(t), "util_pct": 100.0, "temp_c": 60}
                         | ({} if w is None else {"power_w": w}) for t in range(5))  # fmt: skip
    stranger = card(99, 790.0)  # not in the fleet: its peers are still the fleet's cards
    stranger.samples.extend({"elapsed_s": 0.0, "util_pct": 100.0, "power_w": 605.0} for _ in "ab")
    ctx = CheckContext(thresholds={}, fleet=fleet)
    for gpu in [*fleet, stranger]:
        power_w = peers.under_load(gpu, ctx)[0]
        if power_w is None:
            continue
        found = peers.same_load_power_stats(gpu, ctx, power_w, 0.01)
        plain = plain_same_load_power_stats(gpu, ctx, power_w, 0.01)
        assert repr(found) == repr(plain)  # repr: NaN equals NaN
