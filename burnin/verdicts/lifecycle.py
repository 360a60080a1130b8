"""Lifecycle checks: a planned device that crashed, hung, vanished or left no result is ERROR.

This is what keeps a broken run from looking like a passed one: each planned kernel must have
a ``result`` record, and the parent's ``crash``/``hang``/``lost`` events name why it does not.
"""

from __future__ import annotations

from collections.abc import Iterator

from burnin.verdicts import CheckContext, GpuData, Status, Verdict, check

_EVENT_CHECKS = {"hang": "hang", "crash": "crash", "lost": "lost"}


@check("incomplete")
def incomplete(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    explained = False
    for event in gpu.events:
        kind = event.get("kind")
        if kind in _EVENT_CHECKS:
            explained = True
            why = event.get("message") or f"exit code {event.get('exitcode')}"
            yield Verdict(
                check=_EVENT_CHECKS[kind],
                status=Status.ERROR,
                observed=event.get("elapsed_s"),
                unit="s",
                action="retest",
                message=f"{kind} at {event.get('elapsed_s')} s: {why}",
            )
    for error in gpu.of_type("error"):
        explained = True
        yield Verdict(
            check="crash",
            status=Status.ERROR,
            action="retest",
            message=f"worker failed: {error.get('error')}",
        )
    done = {r.get("kernel") for r in gpu.results()}
    missing = [k for k in gpu.planned_kernels if k not in done]
    if missing and not explained:
        yield Verdict(
            check="incomplete",
            status=Status.ERROR,
            observed=len(missing),
            limit=0,
            unit="kernels",
            action="retest",
            message=f"no result for {', '.join(missing)}: the run stopped before this "
            "device finished",
        )
