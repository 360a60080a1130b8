"""Compute checks: wrong answers (``sdc``) and matmul throughput (``throughput``).

Any wrong element on any verification fails the card: a GPU that computes fast but wrong is the
most expensive kind of bad card, because it corrupts work silently. A device with no matmul
result has nothing to judge here; the lifecycle checks turn that into an ERROR.
"""

from __future__ import annotations

from collections.abc import Iterator

from burnin.verdicts import CheckContext, GpuData, Status, Verdict, check


@check("sdc")
def sdc(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    results = [r for r in gpu.results() if "wrong_elements" in r]
    failed = gpu.of_type("verify")
    if not results and not failed:
        return
    # A result's own count covers verify records lost to a crash mid-write, and vice versa.
    wrong = max(sum(int(r.get("wrong_elements", 0)) for r in failed),
                sum(int(r.get("wrong_elements", 0)) for r in results))
    checks = sum(int(r.get("verifications", 0)) for r in results)
    if wrong:
        first = failed[0] if failed else results[0]
        where = ", ".join(
            f"row {loc['row']} col {loc['col']}" for loc in first.get("locations", [])[:3]
        )
        yield Verdict(
            check="sdc",
            status=Status.FAIL,
            observed=wrong,
            limit=0,
            unit="wrong elements",
            action="rma",
            message=f"{first.get('kernel', 'kernel')} returned {wrong} wrong element(s) "
            f"in {len(failed)} of {max(checks, len(failed))} verifications "
            f"(first at step {first.get('step')}: {where}); this card "
            "computes wrong answers",
        )
    elif checks:
        yield Verdict(
            check="sdc",
            status=Status.PASS,
            observed=0,
            limit=0,
            unit="wrong elements",
            message=f"{checks} verifications, every element exact",
        )
    else:
        yield Verdict(check="sdc", status=Status.SKIP, message="no verification ran")


@check("throughput")
def throughput(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    tflops = gpu.metric("matmul_tflops")
    if tflops is None:
        return
    floor = float(ctx.thresholds.get("min_matmul_tflops", 0.0) or 0.0)
    if floor and tflops < floor:
        yield Verdict(
            check="throughput",
            status=Status.FAIL,
            observed=round(tflops, 3),
            limit=floor,
            unit="TFLOP/s",
            action="retest",
            message=f"matmul reached {tflops:.3g} TFLOP/s, below the floor of "
            f"{floor:g}; check throttling and cooling, then re-test",
        )
    else:
        what = f"at least the floor of {floor:g}" if floor else "no floor configured"
        yield Verdict(
            check="throughput",
            status=Status.PASS,
            observed=round(tflops, 3),
            limit=floor or None,
            unit="TFLOP/s",
            message=f"matmul {tflops:.3g} TFLOP/s ({what})",
        )
