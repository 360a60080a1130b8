"""Compute checks: wrong answers (``sdc``), matmul ``throughput`` and its ``stability``.

``sdc`` fails a card on any wrong element any kernel found (matmul's known answer and
self-consistency, memtest's patterns, the data membw and pcie moved) and on the cross-device
comparison: devices that computed the same seeded random product with the same GPU model,
torch, CUDA and cuBLAS must agree bit for bit (cuBLAS documents bit-identical results across
runs for one architecture, SM count and toolkit), so the odd one out of three or more is named;
devices whose setups differ are compared on a probe vector within a stated tolerance. A device
whose own checks already failed is left out of its peers' comparisons, so a healthy card next
to a bad one stays PASS. ``throughput`` judges TFLOP/s per dtype against the SKU's datasheet
peak and against peers; ``stability`` the variation over time (per-batch cv and dips).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterator
from typing import Any

from burnin.verdicts import CheckContext, GpuData, Status, Verdict, check
from burnin.verdicts.findings import guard_stop_s
from burnin.verdicts.reference import (
    Finding,
    as_dict,
    combine,
    digests,
    fraction_finding,
    heat_action,
    is_cpu,
    last_result,
    no_sku_reason,
    peer_finding,
    peer_group,
    reference_sku,
)

# kernel -> (what a wrong unit is called, what one check is called, what a failure means)
_WORDS = {
    "matmul": ("wrong element(s)", "verifications", "this card computes wrong answers"),
    "memtest": ("bad word(s)", "passes", "its memory returns wrong bits"),
    "membw": ("wrong element(s)", "verifications", "data copied in device memory came back wrong"),
    "pcie": ("wrong byte(s)", "round trips", "data sent over PCIe came back wrong"),
}
_GENERIC = ("wrong element(s)", "verifications", "this card returns wrong results")
# Tolerance mode (different setups): one-ulp rounding differences per element add up like a
# random walk over a probe block of n²/16 elements, so 8 σ is 8·ε·mean|C|·√(n²/16). ε is the
# output's unit roundoff (tf32: its 10-bit input mantissa; fp8: its bf16 output).
_EPS = {"fp32": 2.0**-23, "tf32": 2.0**-10, "bf16": 2.0**-7, "fp16": 2.0**-10, "fp8": 2.0**-7}
_TOL_SIGMAS = 8.0
_MIN_BATCHES = 5  # fewer per-batch figures than this say nothing about variation


@check("sdc")
def sdc(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    results = [r for r in gpu.results() if "wrong_elements" in r or "verifications" in r]
    verifies = gpu.of_type("verify")
    if not results and not verifies:
        return
    findings: list[Finding] = []
    wrong_total = 0
    for kernel in dict.fromkeys(r.get("kernel") for r in [*results, *verifies]):
        mine = [r for r in results if r.get("kernel") == kernel]
        found = [v for v in verifies if v.get("kernel") == kernel]
        finding, wrong = _kernel_finding(str(kernel), mine, found)
        findings.append(finding)
        wrong_total += wrong
    findings += _cross_findings(gpu, ctx)
    judged = [f for f in findings if f.status != Status.SKIP]
    status = max((f.status for f in judged), default=Status.SKIP)
    worst = [f for f in findings if f.status == status]
    yield Verdict(
        check="sdc",
        status=status,
        # A digest mismatch alone says "wrong" without a count: no number beats a made-up one.
        observed=wrong_total if wrong_total or status < Status.WARN else None,
        limit=0,
        unit="wrong elements",
        action=worst[0].action if status >= Status.WARN else "none",
        message="; ".join(f.text for f in sorted(findings, key=lambda f: -f.status)),
    )


def _kernel_finding(
    kernel: str, results: list[dict[str, Any]], verifies: list[dict[str, Any]]
) -> tuple[Finding, int]:
    noun, per, meaning = _WORDS.get(kernel, _GENERIC)
    # A result's own count covers verify records lost to a crash mid-write, and vice versa.
    wrong = max(
        sum(int(v.get("wrong_elements") or 0) for v in verifies),
        sum(int(r.get("wrong_elements") or 0) for r in results),
    )
    checks = sum(int(r.get("verifications") or 0) for r in results)
    if wrong:
        failed = max(len(verifies), sum(int(r.get("failed_verifications") or 0) for r in results))
        text = f"{kernel}: {wrong} {noun} in {failed} of {max(checks, failed)} {per}"
        kinds = Counter(str(v.get("check")) for v in verifies if v.get("check"))
        if len(kinds) > 1 or kernel == "matmul":  # which of matmul's three checks saw it
            text += " (" + ", ".join(f"{k} {n}" for k, n in kinds.items()) + ")"
        if verifies:
            text += f", first {_where(verifies[0])}"
        return Finding(Status.FAIL, f"{text}; {meaning}", 0, "rma"), wrong
    if checks:
        return Finding(Status.PASS, f"{kernel}: {checks} {per}, every bit exact", 0), 0
    return Finding(Status.SKIP, f"{kernel}: no verification ran"), 0


def _where(record: dict[str, Any]) -> str:
    """When and where the first wrong value was seen, in plain words."""
    when = f"at step {record.get('step')}"
    if isinstance(record.get("elapsed_s"), int | float):
        when += f" ({record['elapsed_s']:.1f} s)"
    label = record.get("dtype") or record.get("pattern")
    head = f"{when}{' in ' + str(label) if label else ''}"
    places = []
    for loc in (record.get("locations") or [])[:3]:
        if "row" in loc:
            place = f"row {loc['row']} col {loc['col']}"
        elif "offset_bytes" in loc:
            place = f"offset 0x{loc['offset_bytes']:x} (address {loc.get('address')})"
        else:
            place = f"index {loc.get('index')}"
        places.append(f"{place} bits {loc.get('bits')}" if loc.get("bits") else place)
    extent = ""
    if record.get("wrong_rows") is not None:
        extent = f" [{record['wrong_rows']} row(s), {record.get('wrong_cols', '?')} col(s)]"
    return f"{head}: {', '.join(places) or 'location not recorded'}{extent}"


def _clean(result: dict[str, Any]) -> bool:
    return not (result.get("wrong_elements") or result.get("self_failed"))


def _cross_findings(gpu: GpuData, ctx: CheckContext) -> list[Finding]:
    mine = last_result(gpu, "matmul")
    if not mine or not digests(mine):
        return []
    out = []
    for dtype, digest in digests(mine).items():
        peers = []
        for other in ctx.fleet:
            r = last_result(other, "matmul")
            if other is gpu or r is None or not _clean(r):
                continue
            theirs = digests(r).get(dtype)
            if theirs and (r.get("size"), r.get("seed")) == (mine.get("size"), mine.get("seed")):
                peers.append((r, theirs))
        out.append(_cross_one(f"cross-device {dtype}", mine, dtype, digest, peers))
    return out


def _cross_one(
    label: str,
    mine: dict[str, Any],
    dtype: str,
    digest: dict[str, Any],
    peers: list[tuple[dict[str, Any], dict[str, Any]]],
) -> Finding:
    same_setup = [d for r, d in peers if r.get("env") == mine.get("env")]
    if len(same_setup) >= 2:
        shas = Counter(d["sha256"] for d in same_setup)
        shas[digest["sha256"]] += 1
        group = len(same_setup) + 1
        majority, count = shas.most_common(1)[0]
        if count * 2 <= group:
            text = f"{label}: {len(shas)} different results among {group} identical setups"
            return Finding(Status.WARN, text + ", no majority to name the odd one", 0, "retest")
        if digest["sha256"] != majority:
            return Finding(
                Status.FAIL,
                f"{label}: result differs bit for bit from {count} of the {group - 1} other "
                "devices with the same GPU model, torch and CUDA, which agree with each other: "
                "this card is the odd one out",
                0,
                "rma",
            )
        return Finding(Status.PASS, f"{label}: bitwise identical to {count - 1} peer(s)", 0)
    if len(same_setup) == 1:
        if same_setup[0]["sha256"] == digest["sha256"]:
            return Finding(Status.PASS, f"{label}: bitwise identical to its one peer", 0)
        return Finding(
            Status.WARN,
            f"{label}: differs from its one comparable peer; two devices cannot name the odd "
            "one (the known-answer check can)",
            0,
            "retest",
        )
    others = [d for _, d in peers if d.get("probe")]
    if len(others) >= 2 and digest.get("probe"):
        return _tolerance(label, mine, dtype, digest, others)
    return Finding(Status.SKIP, f"{label}: no other healthy device computed the same product")


def _tolerance(
    label: str,
    mine: dict[str, Any],
    dtype: str,
    digest: dict[str, Any],
    others: list[dict[str, Any]],
) -> Finding:
    probes = [d["probe"] for d in others] + [digest["probe"]]
    median = [statistics.median(col) for col in zip(*probes, strict=False)]
    scale = statistics.median(d.get("scale", 0.0) for d in [*others, digest])
    n = int(mine.get("size") or 0)
    tol = _TOL_SIGMAS * _EPS.get(dtype, 2.0**-7) * scale * math.sqrt(n * n / len(median))
    gap = max(abs(p - m) for p, m in zip(digest["probe"], median, strict=False))
    where = f"probe gap {gap:.3g} vs tolerance {tol:.3g} over {len(probes)} devices"
    if gap > tol:
        return Finding(
            Status.FAIL,
            f"{label}: differs from the median of devices with other setups ({where})",
            0,
            "rma",
        )
    return Finding(
        Status.PASS,
        f"{label}: within tolerance of devices with other setups ({where}; bitwise needs the "
        "same GPU model, torch and CUDA)",
        0,
    )


@check("throughput")
def throughput(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    tflops = gpu.metric("matmul_tflops")
    if tflops is None:
        return
    if (skip := _guarded(gpu)) is not None:
        yield combine("throughput", [Finding(Status.SKIP, skip)], tflops, "TFLOP/s")
        return
    result = last_result(gpu, "matmul") or {}
    t = ctx.thresholds
    main = result.get("dtype")
    size = result.get("size")
    findings: list[Finding] = []
    floor = float(t.get("min_matmul_tflops", 0.0) or 0.0)
    if floor:
        findings.append(
            fraction_finding(
                "matmul", tflops, floor, "the configured floor", 1.0, 1.0, "TFLOP/s", "retest"
            )
        )
    sku = reference_sku(gpu)
    if sku is None:
        findings.append(Finding(Status.SKIP, f"datasheet: {no_sku_reason(gpu)}"))
    for dtype in list(as_dict(result.get("dtypes"))) or [main]:
        label = dtype or "matmul"
        value = gpu.metric(f"matmul_{dtype}_tflops") if dtype else None
        value = tflops if value is None and dtype == main else value
        if value is None:
            continue
        if sku is not None:
            findings.append(_datasheet(gpu, ctx, sku, label, value, size))

        def value_of(g: GpuData, d: str | None = dtype) -> float | None:
            if guard_stop_s(g) is not None:
                return None  # a card cut short while it throttled is no one's yardstick
            if d == (last_result(g, "matmul") or {}).get("dtype"):
                return g.metric("matmul_tflops")
            return g.metric(f"matmul_{d}_tflops") if d else None

        def key_of(g: GpuData, d: str | None = dtype) -> Any:
            return (peer_group(g), (last_result(g, "matmul") or {}).get("size"), d)

        findings.append(
            peer_finding(gpu, ctx, value_of, key_of, label, "TFLOP/s", heat_action(gpu))
        )
    yield combine("throughput", findings, tflops, "TFLOP/s")


def _guarded(gpu: GpuData) -> str | None:
    """Why speed is not judged on a card the thermal guard stopped, or None if it was not.

    Cut short while it throttled, its figures mix full-speed and throttled batches in a share
    set by when the guard tripped, and how many batches it got in depends on the host's
    scheduling; the thermal FAIL is the finding.
    """
    stop_s = guard_stop_s(gpu)
    if stop_s is None:
        return None
    return f"the thermal guard stopped the stress at {stop_s:g} s: see the thermal verdict"


def _datasheet(
    gpu: GpuData, ctx: CheckContext, sku: Any, label: str, value: float, size: Any
) -> Finding:
    t = ctx.thresholds
    min_size = int(t.get("throughput_min_size_for_peak", 4096))
    peak = sku.peak_tflops_for(label)
    if peak is None:
        return Finding(Status.SKIP, f"{label}: no {sku.key} datasheet peak for this dtype")
    if isinstance(size, int) and size < min_size:
        return Finding(
            Status.SKIP, f"{label}: {size}³ is too small to compare with the datasheet peak"
        )
    return fraction_finding(
        label,
        value,
        peak,
        f"the {sku.key} datasheet peak",
        float(t.get("throughput_warn_peak_fraction", 0.5)),
        float(t.get("throughput_fail_peak_fraction", 0.375)),
        "TFLOP/s",
        heat_action(gpu),
    )


@check("stability")
def stability(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    result = last_result(gpu, "matmul")
    cv_value = (result or {}).get("metrics", {}).get("matmul_tflops_cv")
    if result is None or not isinstance(cv_value, int | float):
        return
    t = ctx.thresholds
    main = result.get("dtype")
    cv = float(cv_value)
    batches = as_dict(as_dict(result.get("dtypes")).get(main)).get("batches")
    skip = None
    if is_cpu(gpu):
        skip = f"CPU fallback: logical devices share cores, so cv {cv:.3f} measures the scheduler"
    elif (guarded := _guarded(gpu)) is not None:
        skip = guarded
    elif isinstance(batches, int) and batches < _MIN_BATCHES:
        skip = f"only {batches} timed batch(es): too short to judge"
    if skip:
        yield combine("stability", [Finding(Status.SKIP, skip)], cv, "cv")
        return
    max_cv = float(t.get("stability_max_cv", 0.05))
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
    findings.append(_dips(gpu, windows, float(t.get("stability_max_dip", 0.10))))
    yield combine("stability", findings, cv, "cv")


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
