"""``regression``: a card worse than its own past runs (history database); see burnin/history/."""

from __future__ import annotations

from collections.abc import Iterable

from burnin.history.regression import regression_verdicts
from burnin.verdicts import CheckContext, GpuData, Verdict, check


@check("regression")
def regression(gpu: GpuData, ctx: CheckContext) -> Iterable[Verdict]:
    return regression_verdicts(gpu, ctx.manifest)
