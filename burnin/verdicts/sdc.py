"""``sdc``: wrong answers, from any kernel and from the comparison across devices.

A card fails on any wrong element any kernel found (matmul's known answer and
self-consistency, memtest's patterns, the data membw and pcie moved) and on the cross-device
comparison: devices that computed the same seeded random product with the same GPU model,
torch, CUDA and cuBLAS must agree bit for bit (cuBLAS documents bit-identical results across
runs for one architecture, SM count and toolkit), so the odd one out of three or more is named;
devices whose setups differ are compared on a probe vector within a stated tolerance. A device
whose own checks already failed is left out of its peers' comparisons, so a healthy card next
to a bad one stays PASS.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterator
from typing import Any

from burnin.verdicts.finding import Finding, fold
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict
from burnin.verdicts.records import digests, last_result
from burnin.verdicts.registry import check

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


@check("sdc")
def sdc(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Wrong results: known-answer and cross-device comparison of matmul, memtest patterns."""
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
    # A digest mismatch alone says "wrong" without a count: no number beats a made-up one.
    observed = wrong_total if wrong_total or status < Status.WARN else None
    yield fold("sdc", findings, observed=observed, limit=0, unit="wrong elements", every=True)


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


def _clean_digests(
    ctx: CheckContext,
) -> list[tuple[GpuData, dict[str, Any], dict[str, dict[str, Any]]]]:
    """Each healthy device's last matmul result and its digests, read once for every card."""

    def build() -> list[tuple[GpuData, dict[str, Any], dict[str, dict[str, Any]]]]:
        out = []
        for other in ctx.fleet:
            r = last_result(other, "matmul")
            if r is not None and _clean(r):
                out.append((other, r, digests(r)))
        return out

    return ctx.memo(("sdc-clean-digests",), build)


def _cross_findings(gpu: GpuData, ctx: CheckContext) -> list[Finding]:
    mine = last_result(gpu, "matmul")
    if not mine or not digests(mine):
        return []
    out = []
    for dtype, digest in digests(mine).items():
        peers = []
        for other, r, found in _clean_digests(ctx):
            if other is gpu:
                continue
            theirs = found.get(dtype)
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
