"""``regression``: a card worse than its own past runs, from the history database.

The card's past comes from the run's manifest (``history``, written by ``burnin run
--history`` before the verdicts stage runs; burnin/history/hook.py), so the verdicts are the
same when ``burnin report`` judges the run again without the database. The comparison is in
burnin/history/regression.py and burnin/history/trends.py, imported when the check runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from burnin.verdicts.limits import limit
from burnin.verdicts.model import CheckContext, GpuData, Verdict
from burnin.verdicts.registry import check


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """How far a card may move against its own past before it is flagged (``regression``).

    No public source gives run-to-run limits for burn-in figures, so each value is burnin's own
    choice, with its reason as the source. They are ``[thresholds]`` keys like every check's.
    """

    regression_matmul_drop_frac: float = limit(
        0.05,
        unit="fraction of the card's own median",
        source="burnin's own choice: well above the run-to-run spread of a healthy card under "
        "one profile (matmul cv under 1 % per run), small enough to catch a card that lost "
        "6 % since acceptance while its peers still pass it",
        hi=1,
    )
    regression_membw_drop_frac: float = limit(
        0.05,
        unit="fraction of the card's own median",
        source="burnin's own choice, the same reasoning for copy bandwidth",
        hi=1,
    )
    regression_busbw_drop_frac: float = limit(
        0.05,
        unit="fraction of the card's own median",
        source="burnin's own choice: the node's all-reduce bus bandwidth, which each of its "
        "cards carries; the same 5 % as the card's own kernels",
        hi=1,
    )
    regression_temp_per_kw_rise_frac: float = limit(
        0.10,
        unit="fraction of the card's own median C/kW",
        source="burnin's own choice: a card 10 % hotter at the same power points at dust, a "
        "failing fan or dried thermal paste long before a slowdown threshold",
        hi=10,
    )
    regression_ecc_rise_per_h: float = limit(
        10.0,
        unit="corrected ECC errors/h above the card's own median",
        source="burnin's own choice: corrected (single-bit) errors are harmless one by one "
        "(NVML nvmlDeviceGetTotalEccErrors), so only a rate that grows is flagged",
        hi=1e9,
    )
    regression_min_past_runs: int = limit(
        1,
        unit="runs",
        source="burnin's own choice: a card is compared with itself from its second sweep on",
        lo=1,
        hi=10000,
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@check("regression", needs=("run", "telemetry"), thresholds=Thresholds)
def regression(gpu: GpuData, ctx: CheckContext) -> Iterable[Verdict]:
    """Figures against the card's own past runs: TFLOP/s, GB/s, busbw, C/kW, ECC rate."""
    from burnin.history.regression import regression_verdicts

    return regression_verdicts(gpu, ctx.manifest, ctx.limits(Thresholds))
