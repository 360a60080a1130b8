"""Pure: one device's performance and correctness figures for the report, from its records.

Per dtype TFLOP/s (p50, min, p99, cv) with the fraction of the SKU's datasheet peak when the
SKU is known, memory GB/s (copy, triad) and PCIe GB/s (H2D, D2H) with their fractions of the
datasheet peak and of the link's theoretical rate, memtest coverage, and every wrong-result
finding with its place in words (row/col, byte offset and address, flipped bits). The fractions
also go into the device's metrics, so report.json and the Prometheus textfile carry them.
"""

from __future__ import annotations

from typing import Any

from burnin.skus import resolve
from burnin.verdicts.model import GpuData
from burnin.verdicts.pcie_bw import link_gbps
from burnin.verdicts.records import as_dict, digests, last_result

_FINDING_KEYS = ("kernel", "check", "dtype", "pattern", "step", "elapsed_s", "wrong_elements")
_FINDING_KEYS += ("wrong_rows", "wrong_cols", "bit_histogram")


def performance(gpu: GpuData) -> dict[str, Any]:
    """The ``performance`` entry of one device (see the module docstring)."""
    sku = resolve(gpu.inventory, named=True)
    fractions: dict[str, float] = {}
    matmul = _matmul(gpu, sku, fractions)
    membw = _membw(gpu, sku, fractions)
    pcie = _pcie(gpu, sku, fractions)
    memtest = last_result(gpu, "memtest")
    return {
        "sku": sku.key if sku is not None else None,
        "matmul": matmul,
        "membw": membw,
        "pcie": pcie,
        "memtest": None
        if memtest is None
        else {
            "gib": memtest["metrics"].get("memtest_gib"),
            "passes": memtest["metrics"].get("memtest_passes"),
            "bad_words": memtest["metrics"].get("memtest_bad_words"),
        },
        "verification": _verification(gpu),
        "findings": findings(gpu),
        "fractions": {k: round(v, 4) for k, v in fractions.items()},
    }


def _matmul(gpu: GpuData, sku: Any, fractions: dict[str, float]) -> list[dict[str, Any]]:
    result = last_result(gpu, "matmul")
    if result is None:
        return []
    rows = []
    for dtype, run in as_dict(result.get("dtypes")).items():
        stats = {k: v for k, v in as_dict(as_dict(run).get("tflops")).items() if _number(v)}
        value = stats.get("p50")
        peak = sku.peak_tflops_for(dtype) if sku is not None else None
        fraction = value / peak if peak and value is not None else None
        if fraction is not None:
            fractions[f"matmul_{dtype}_peak_fraction"] = fraction
        rows.append(
            {
                "dtype": dtype,
                "size": result.get("size"),
                "tflops": value,
                "min": stats.get("min"),
                "p99": stats.get("p99"),
                "cv": stats.get("cv"),
                "peak_tflops": peak,
                "fraction": fraction,
                "main": dtype == result.get("dtype"),
            }
        )
    return rows


def _membw(gpu: GpuData, sku: Any, fractions: dict[str, float]) -> dict[str, Any] | None:
    result = last_result(gpu, "membw")
    if result is None:
        return None
    m = result.get("metrics", {})
    peak = sku.peak_membw_gbps if sku is not None else None
    best = m.get("membw_gbps")
    fraction = best / peak if peak and best is not None else None
    if fraction is not None:
        fractions["membw_peak_fraction"] = fraction
    return {
        "copy_gbps": m.get("membw_copy_gbps"),
        "triad_gbps": m.get("membw_triad_gbps"),
        "gbps": best,
        "peak_gbps": peak,
        "fraction": fraction,
        "size_mib": result.get("size_mib"),
    }


def _pcie(gpu: GpuData, sku: Any, fractions: dict[str, float]) -> dict[str, Any] | None:
    result = last_result(gpu, "pcie")
    if result is None:
        return None
    m = result.get("metrics", {})
    h2d, d2h = m.get("pcie_h2d_gbps"), m.get("pcie_d2h_gbps")
    gen, width = gpu.inventory.get("pcie_max_gen"), gpu.inventory.get("pcie_max_width")
    if not (isinstance(gen, int) and isinstance(width, int)) and sku is not None:
        gen, width = sku.pcie_gen, sku.pcie_width
    host_only = result.get("link") == "host-only"
    rate = None
    if not host_only and isinstance(gen, int) and isinstance(width, int):
        rate = link_gbps(gen, width)
    fraction = min(h2d, d2h) / rate if rate and h2d is not None and d2h is not None else None
    if fraction is not None:
        fractions["pcie_link_fraction"] = fraction
    return {
        "h2d_gbps": h2d,
        "d2h_gbps": d2h,
        "link": "host-only" if host_only else (f"Gen{gen} x{width}" if rate else None),
        "link_gbps": rate,
        "fraction": fraction,
    }


def _verification(gpu: GpuData) -> dict[str, Any]:
    results = gpu.results()
    matmul = last_result(gpu, "matmul") or {}
    overhead = (matmul.get("metrics") or {}).get("matmul_verify_overhead")
    return {
        "verifications": sum(int(r.get("verifications") or 0) for r in results),
        "wrong_elements": sum(int(r.get("wrong_elements") or 0) for r in results),
        "verify_overhead": overhead,
        "digests": {dtype: d["sha256"][:16] for dtype, d in digests(matmul).items()},
    }


def findings(gpu: GpuData) -> list[dict[str, Any]]:
    """Every verify record with its locations normalised: each has a ``place`` in words and
    ``row``/``col``/``got``/``expected`` keys (None where the kernel has no such notion)."""
    out = []
    for record in gpu.of_type("verify"):
        entry = {k: record.get(k) for k in _FINDING_KEYS}
        entry["locations"] = [_location(loc) for loc in record.get("locations") or []]
        out.append(entry)
    return out


def _location(loc: dict[str, Any]) -> dict[str, Any]:
    if "row" in loc:
        place = f"row {loc['row']}, col {loc['col']}"
    elif "offset_bytes" in loc:
        place = f"offset 0x{loc['offset_bytes']:x} (address {loc.get('address')})"
    else:
        place = f"index {loc.get('index')}"
    normal = {"row": None, "col": None, "got": None, "expected": None, "bits": []}
    return normal | loc | {"place": place}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
