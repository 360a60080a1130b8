"""``stability``: matmul throughput over time, per-batch coefficient of variation and dips.

The per-batch TFLOP/s of the main dtype varies by more than DCGM's ±5 % band (WARN), or a ~1 s
window falls well below the run's median window (a dip). Too few batches, the CPU fallback
(logical devices share cores) and a guard-stopped card are SKIP with their reason.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass

from burnin.verdicts.finding import Finding, fold
from burnin.verdicts.limits import limit
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict, is_cpu
from burnin.verdicts.records import (
    as_dict,
    guarded,
    heat_action,
    last_result,
)
from burnin.verdicts.registry import check

_MIN_BATCHES = 5  # fewer per-batch figures than this say nothing about variation


@dataclass(frozen=True, kw_only=True)
class StabilityThresholds:
    stability_max_cv: float = limit(
        0.05,
        unit="coefficient of variation",
        source="DCGM targeted_power's ±5 % moving-average band",
        hi=10,
    )
    stability_max_dip: float = limit(
        0.10,
        unit="fraction below the median window",
        source="twice the ±5 % band, so one noisy ~1 s window is not a dip",
        hi=1,
    )


@check("stability", thresholds=StabilityThresholds)
def stability(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Matmul throughput over time: per-batch coefficient of variation and dips."""
    result = last_result(gpu, "matmul")
    cv_value = (result or {}).get("metrics", {}).get("matmul_tflops_cv")
    if result is None or not isinstance(cv_value, int | float):
        return
    t = ctx.limits(StabilityThresholds)
    main = result.get("dtype")
    cv = float(cv_value)
    # JSON keys are strings: any other dtype (None, or a list from a damaged store) has no entry.
    by_dtype = as_dict(result.get("dtypes"))
    batches = as_dict(by_dtype.get(main)).get("batches") if isinstance(main, str) else None
    skip = None
    if is_cpu(gpu):
        skip = f"CPU fallback: logical devices share cores, so cv {cv:.3f} measures the scheduler"
    elif (stop := guarded(gpu)) is not None:
        skip = stop
    elif isinstance(batches, int) and batches < _MIN_BATCHES:
        skip = f"only {batches} timed batch(es): too short to judge"
    if skip:
        yield fold(
            "stability", [Finding(Status.SKIP, skip)], observed=round(cv, 3), unit="cv", every=True
        )
        return
    max_cv = t.stability_max_cv
    findings = [
        Finding(
            Status.WARN, f"per-batch TFLOP/s varies: cv {cv:.3f} > {max_cv:g}", max_cv, "retest"
        )
        if cv > max_cv
        else Finding(Status.PASS, f"per-batch cv {cv:.3f}", max_cv)
    ]
    windows = [
        (float(p.get("elapsed_s", 0.0)), float(p["tflops"]))
        for p in gpu.of_type("progress")
        if p.get("kernel") == "matmul"
        and p.get("dtype", main) == main
        and isinstance(p.get("tflops"), int | float)
    ]
    findings.append(_dips(gpu, windows, t.stability_max_dip))
    yield fold("stability", findings, observed=round(cv, 3), unit="cv", every=True)


def _dips(gpu: GpuData, windows: list[tuple[float, float]], max_dip: float) -> Finding:
    if len(windows) < 3:
        return Finding(Status.SKIP, f"{len(windows)} one-second window(s): dips need 3")
    median = statistics.median(v for _, v in windows)
    line = (1.0 - max_dip) * median
    dips = [(at, v) for at, v in windows if v < line]
    if not dips:
        return Finding(Status.PASS, f"no dip below {1 - max_dip:.2f} x the median over time")
    at, worst = min(dips, key=lambda d: d[1])
    reasons = sorted(
        {
            r
            for s in gpu.samples
            if abs(float(s.get("elapsed_s", -1e9)) - at) <= 1.5
            for r in s.get("throttle_reasons") or ()
        }
    )
    why = f" while throttled ({', '.join(reasons)})" if reasons else ""
    return Finding(
        Status.WARN,
        f"{len(dips)} of {len(windows)} windows dipped below {1 - max_dip:.2f} x the median "
        f"{median:.4g} TFLOP/s; worst {worst:.4g} at {at:.1f} s{why}",
        line,
        heat_action(gpu),
    )
