"""The ``regression`` check: a card judged against its own past runs (WARN, never FAIL).

Pure, like every check: it reads the card's past from the run's manifest (``history``, written
by :func:`burnin.history.hook.attach_baseline` from the history database before the report is
rendered), computes this run's figures from the store with :func:`~burnin.history.figures.
card_figures`, and compares them with :func:`~burnin.history.trends.judge`. So ``burnin report``
gives the same verdicts later without the database. A run without a history has no
``regression`` verdict at all; a card the history has never seen is SKIP with that reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from burnin.history.figures import FIGURES, card_figures
from burnin.history.keys import card_key
from burnin.history.trends import judge
from burnin.verdicts.model import GpuData, Status, Verdict

if TYPE_CHECKING:
    from burnin.verdicts.regression import Thresholds


def gpu_metrics(gpu: GpuData) -> dict[str, Any]:
    names = ("matmul_tflops", "membw_gbps", "allreduce_busbw_gbps")
    return {name: gpu.metric(name) for name in names}


def regression_verdicts(
    gpu: GpuData, manifest: dict[str, Any], thresholds: Thresholds
) -> Iterable[Verdict]:
    history = manifest.get("history")
    if not isinstance(history, dict):
        return []
    key = card_key(
        {
            "serial": gpu.inventory.get("serial"),
            "uuid": gpu.inventory.get("uuid"),
            "node": gpu.node,
            "index": gpu.index,
        }
    )
    past = history.get("cards", {}).get(key)
    if not past or not past.get("runs"):
        return [
            Verdict(
                check="regression",
                status=Status.SKIP,
                message="no past run of this card in the history: nothing to compare with yet",
            )
        ]
    now = card_figures(gpu_metrics(gpu), gpu.samples)
    stamp = manifest.get("started_at")
    trends = []
    for figure in FIGURES:
        points = [tuple(p) for p in past.get("figures", {}).get(figure, [])]
        if now.get(figure) is None or not points:
            continue
        trend = judge(figure, points, (stamp, now[figure], manifest.get("run_id", "")), thresholds)
        if trend is not None:
            trends.append(trend)
    flagged = [t for t in trends if t.flagged]
    if not trends:
        return [
            Verdict(
                check="regression",
                status=Status.SKIP,
                message="no figure of this run can be compared with the card's past runs",
            )
        ]
    if not flagged:
        worst = trends[0]
        return [
            Verdict(
                check="regression",
                status=Status.PASS,
                observed=round(worst.latest, 4),
                limit=round(worst.baseline, 4),
                unit=worst.unit,
                message=f"in line with its own {len(past['runs'])} past run(s): "
                + "; ".join(t.describe() for t in trends[:2]),
            )
        ]
    out = []
    for t in flagged:
        action = "inspect-cooling" if t.figure == "temp_c_per_kw" else "retest"
        out.append(
            Verdict(
                check="regression",
                status=Status.WARN,
                observed=round(t.latest, 4),
                limit=round(t.baseline, 4),
                unit=t.unit,
                action=action,
                message=f"worse than its own past: {t.describe()}",
            )
        )
    return out
