"""sdc, throughput and stability verdicts over synthetic device records, scenario by scenario."""

from __future__ import annotations

from typing import Any

import pytest

from burnin.config import RunConfig
from burnin.verdicts import CheckContext, GpuData, Status, Verdict, registered

H100 = {"kind": "cuda", "name": "NVIDIA H100 80GB HBM3", "sku": "H100-SXM5-80GB"}
CPU = {"kind": "cpu", "name": "CPU fallback (x86_64)"}
ENV = {"torch": "2.13.0", "kind": "cuda", "cuda": "12.8", "device_name": "H100", "sm_count": 132}


def matmul(
    tflops: float = 800.0,
    *,
    dtype: str = "bf16",
    size: int = 8192,
    wrong: int = 0,
    cv: float = 0.01,
    sha: str = "a" * 64,
    env: dict[str, Any] | None = None,
    probe: list[float] | None = None,
    batches: int = 50,
) -> dict[str, Any]:
    return {
        "type": "result",
        "kernel": "matmul",
        "dtype": dtype,
        "size": size,
        "seed": 1234,
        "metrics": {
            "matmul_tflops": tflops,
            f"matmul_{dtype}_tflops": tflops,
            "matmul_tflops_cv": cv,
        },
        "verifications": 20,
        "failed_verifications": 1 if wrong else 0,
        "wrong_elements": wrong,
        "self_failed": 0,
        "dtypes": {dtype: {"batches": batches}},
        "cross": {dtype: {"sha256": sha, "probe": probe or [10.0] * 16, "scale": 1.0, "step": 1}},
        "env": env or ENV,
    }


def known_answer_miss(step: int = 40) -> dict[str, Any]:
    return {
        "type": "verify",
        "kernel": "matmul",
        "check": "known-answer",
        "dtype": "bf16",
        "step": step,
        "elapsed_s": 2.5,
        "wrong_elements": 1,
        "wrong_rows": 1,
        "wrong_cols": 1,
        "locations": [{"row": 16, "col": 0, "got": 59.0, "expected": 43.0, "bits": [6]}],
    }


def device(
    index: int,
    records: list[dict[str, Any]],
    inventory: dict[str, Any] | None = None,
    samples: list[dict[str, Any]] | None = None,
) -> GpuData:
    return GpuData(
        node="node-a",
        index=index,
        inventory=dict(inventory or H100),
        samples=samples or [],
        records=records,
        events=[],
        planned_kernels=["matmul"],
    )


def judge(fleet: list[GpuData], check: str, **thresholds: Any) -> dict[int, Verdict]:
    limits = RunConfig().to_dict()["thresholds"] | thresholds
    ctx = CheckContext(thresholds=limits, fleet=fleet)
    fn = registered()[check]
    out = {}
    for gpu in fleet:
        found = list(fn(gpu, ctx))
        assert len(found) <= 1, found  # one verdict per check and device
        if found:
            out[gpu.index] = found[0]
    return out


def statuses(verdicts: dict[int, Verdict]) -> dict[int, str]:
    return {i: v.status.name for i, v in verdicts.items()}


# ---- sdc -------------------------------------------------------------------------------------

SDC = [
    # (name, records per device, inventory per device or None, expected statuses, fragments)
    (
        "healthy four",
        [[matmul()]] * 4,
        None,
        {i: "PASS" for i in range(4)},
        {0: "bitwise identical to 3 peer(s)"},
    ),
    (
        "constant wrong on one of four",
        [[matmul()], [matmul(wrong=10, sha="b" * 64), known_answer_miss()], [matmul()], [matmul()]],
        None,
        {0: "PASS", 1: "FAIL", 2: "PASS", 3: "PASS"},
        {1: "row 16 col 0 bits [6]"},
    ),
    (
        "digest alone names the odd one",
        [[matmul()], [matmul(sha="c" * 64)], [matmul()], [matmul()]],
        None,
        {0: "PASS", 1: "FAIL", 2: "PASS", 3: "PASS"},
        {1: "odd one out"},
    ),
    (
        "two disagree: nobody can be named",
        [[matmul()], [matmul(sha="c" * 64)]],
        None,
        {0: "WARN", 1: "WARN"},
        {0: "two devices cannot name"},
    ),
    (
        "a failed peer is left out",
        [[matmul()], [matmul(wrong=3, sha="b" * 64), known_answer_miss()]],
        None,
        {0: "PASS", 1: "FAIL"},
        {0: "no other healthy device"},
    ),
    (
        "tolerance across setups",
        [
            [matmul(env=ENV | {"device_name": n}, probe=p, sha=n * 64)]
            for n, p in [
                ("a", [10.0] * 16),
                ("b", [10.0 + 1e-6] * 16),
                ("c", [10.0] * 15 + [900.0]),
            ]
        ],
        None,
        {0: "PASS", 1: "PASS", 2: "FAIL"},
        {0: "within tolerance", 2: "other setups"},
    ),
    (
        "memtest bad words",
        [
            [
                {
                    "type": "result",
                    "kernel": "memtest",
                    "verifications": 39,
                    "failed_verifications": 2,
                    "wrong_elements": 2,
                },
                {
                    "type": "verify",
                    "kernel": "memtest",
                    "check": "pattern",
                    "pattern": "zeros 0x00000000",
                    "step": 0,
                    "wrong_elements": 1,
                    "word_bytes": 4,
                    "locations": [
                        {"offset_bytes": 8192, "address": "0x7f0000002000", "bits": [19]}
                    ],
                },
                {
                    "type": "verify",
                    "kernel": "memtest",
                    "check": "pattern",
                    "pattern": "0x55 0x55555555",
                    "step": 3,
                    "wrong_elements": 1,
                    "word_bytes": 4,
                    "locations": [],
                },
            ]
        ],
        None,
        {0: "FAIL"},
        {0: "offset 0x2000 (address 0x7f0000002000) bits [19]"},
    ),
    (
        "no verification ran",
        [[{"type": "result", "kernel": "matmul", "verifications": 0, "wrong_elements": 0}]],
        None,
        {0: "SKIP"},
        {0: "no verification"},
    ),
]


@pytest.mark.parametrize(
    ("name", "records", "inventory", "expected", "fragments"), SDC, ids=[s[0] for s in SDC]
)
def test_sdc(
    name: str, records: list, inventory: Any, expected: dict[int, str], fragments: dict[int, str]
) -> None:
    fleet = [device(i, r, inventory) for i, r in enumerate(records)]
    verdicts = judge(fleet, "sdc")
    assert statuses(verdicts) == expected
    for index, fragment in fragments.items():
        assert fragment in verdicts[index].message, verdicts[index].message
    for v in verdicts.values():
        assert v.limit == 0 and v.unit == "wrong elements"
        if v.status == Status.FAIL:
            assert v.action == "rma"


def test_sdc_counts_wrong_elements_and_leaves_a_bare_digest_uncounted() -> None:
    fleet = [
        device(0, [matmul(wrong=10, sha="b" * 64), known_answer_miss()]),
        device(1, [matmul(sha="c" * 64)]),
        device(2, [matmul()]),
        device(3, [matmul()]),
        device(4, [matmul()]),
    ]
    verdicts = judge(fleet, "sdc")
    assert verdicts[0].observed == 10
    assert verdicts[1].status == Status.FAIL and verdicts[1].observed is None


# ---- throughput ------------------------------------------------------------------------------

THROUGHPUT = [
    # (name, tflops per device, inventory, thresholds, expected statuses, fragment for device 0)
    ("at spec", [800.0], H100, {}, {0: "PASS"}, "0.81 of the H100-SXM5-80GB datasheet peak"),
    ("below half of peak", [450.0], H100, {}, {0: "WARN"}, "below 0.5"),
    ("far below peak", [300.0], H100, {}, {0: "FAIL"}, "below 0.375"),
    (
        "identified by PCI id",
        [800.0],
        {"kind": "cuda", "pci_device_id": "2330", "name": "NVIDIA H100 80GB HBM3"},
        {},
        {0: "PASS"},
        "989",
    ),
    (
        "slow peer warns",
        [800.0, 800.0, 800.0, 680.0],
        H100,
        {},
        {0: "PASS", 1: "PASS", 2: "PASS", 3: "WARN"},
        "1.00 x the median of 4 peers",
    ),
    (
        "much slower peer fails",
        [800.0, 800.0, 800.0, 560.0],
        H100,
        {},
        {0: "PASS", 1: "PASS", 2: "PASS", 3: "FAIL"},
        "robust z",
    ),
    (
        "cpu noise is not judged",
        [1.0, 1.0, 1.0, 0.85],
        CPU,
        {},
        {0: "SKIP", 1: "SKIP", 2: "SKIP", 3: "SKIP"},
        "no datasheet reference on the CPU",
    ),
    # Logical CPU devices share cores: even 0.6 x the median is the scheduler, not a card.
    (
        "cpu far behind is not judged either",
        [1.0, 1.0, 1.0, 0.6],
        CPU,
        {},
        {0: "SKIP", 1: "SKIP", 2: "SKIP", 3: "SKIP"},
        "logical CPU devices share cores",
    ),
    ("floor", [800.0], H100, {"min_matmul_tflops": 900.0}, {0: "FAIL"}, "configured floor"),
    (
        "nothing to compare",
        [1.0, 1.0],
        {"kind": "cuda", "name": "Mystery GPU"},
        {},
        {0: "SKIP", 1: "SKIP"},
        "no SKU known for 'Mystery GPU'",
    ),
]


@pytest.mark.parametrize(
    ("name", "values", "inventory", "limits", "expected", "fragment"),
    THROUGHPUT,
    ids=[t[0] for t in THROUGHPUT],
)
def test_throughput(
    name: str,
    values: list[float],
    inventory: dict[str, Any],
    limits: dict[str, Any],
    expected: dict[int, str],
    fragment: str,
) -> None:
    fleet = [device(i, [matmul(v)], inventory) for i, v in enumerate(values)]
    verdicts = judge(fleet, "throughput", **limits)
    assert statuses(verdicts) == expected
    assert fragment in verdicts[0].message or fragment in verdicts[len(values) - 1].message
    assert verdicts[0].unit == "TFLOP/s" and verdicts[0].observed == values[0]


def test_small_gemm_is_not_held_to_the_datasheet() -> None:
    verdicts = judge([device(0, [matmul(10.0, size=1024)])], "throughput")
    assert verdicts[0].status == Status.SKIP and "too small" in verdicts[0].message


def test_a_simulated_card_is_held_to_its_datasheet_at_any_cpu_size() -> None:
    # The simulator lowers the size limit (burnin/sim/run.py): its TFLOP/s are the SKU model's.
    inventory = {"kind": "simulated", "simulated": True, "sku": "H100-SXM5-80GB"}
    card = device(0, [matmul(450.0, size=64)], inventory)
    verdicts = judge([card], "throughput", throughput_min_size_for_peak=1)
    assert verdicts[0].status == Status.WARN and "below 0.5" in verdicts[0].message


def test_every_dtype_is_judged_against_its_own_peak() -> None:
    result = matmul(800.0)
    result["dtypes"]["fp32"] = {"batches": 50}
    result["metrics"]["matmul_fp32_tflops"] = 20.0  # 0.30 of 66.9: far below
    verdicts = judge([device(0, [result])], "throughput")
    assert verdicts[0].status == Status.FAIL
    assert "fp32 20 TFLOP/s = 0.30" in verdicts[0].message
    assert "bf16 800 TFLOP/s = 0.81" in verdicts[0].message


# ---- stability -------------------------------------------------------------------------------


def windows(values: list[float]) -> list[dict[str, Any]]:
    return [
        {
            "type": "progress",
            "kernel": "matmul",
            "dtype": "bf16",
            "elapsed_s": float(i + 1),
            "tflops": v,
        }
        for i, v in enumerate(values)
    ]


STABILITY = [
    ("steady", matmul(cv=0.01), windows([800.0] * 8), [], H100, "PASS", "per-batch cv 0.010"),
    ("jittery", matmul(cv=0.08), windows([800.0] * 8), [], H100, "WARN", "cv 0.080 > 0.05"),
    (
        "throttled dip",
        matmul(cv=0.02),
        windows([800.0] * 4 + [600.0] + [800.0] * 3),
        [{"elapsed_s": 5.2, "throttle_reasons": ["sw_power_cap"]}],
        H100,
        "WARN",
        "worst 600 at 5.0 s while throttled (sw_power_cap)",
    ),
    ("too short", matmul(batches=3), [], [], H100, "SKIP", "too short"),
    ("cpu fallback", matmul(cv=0.3), windows([1.0] * 8), [], CPU, "SKIP", "scheduler"),
    ("few windows", matmul(cv=0.01), windows([800.0, 800.0]), [], H100, "PASS", "dips need 3"),
]


@pytest.mark.parametrize(
    ("name", "result", "progress", "samples", "inventory", "status", "fragment"),
    STABILITY,
    ids=[s[0] for s in STABILITY],
)
def test_stability(
    name: str,
    result: dict[str, Any],
    progress: list[dict[str, Any]],
    samples: list[dict[str, Any]],
    inventory: dict[str, Any],
    status: str,
    fragment: str,
) -> None:
    verdict = judge([device(0, [*progress, result], inventory, samples)], "stability")[0]
    assert verdict.status.name == status
    assert fragment in verdict.message
    if name == "throttled dip":
        assert verdict.action == "inspect-cooling"


@pytest.mark.parametrize("check", ["throughput", "stability"])
def test_a_card_the_thermal_guard_stopped_is_not_judged_on_speed(check: str) -> None:
    """Its figures mix full-speed and throttled batches in a share set by when the guard
    tripped; the thermal FAIL is the finding, and it is no yardstick for its peers."""
    guarded = device(0, [*windows([800.0, 790.0, 400.0, 810.0, 390.0, 800.0]), matmul(200.0)])
    guarded.events.append({"kind": "thermal-guard", "device": 0, "elapsed_s": 6.5})
    peers = [device(i, [*windows([800.0] * 6), matmul(800.0 + i)]) for i in range(1, 4)]
    verdicts = judge([guarded, *peers], check)
    assert verdicts[0].status == Status.SKIP
    assert "thermal guard stopped the stress at 6.5 s" in verdicts[0].message
    assert {v.status for i, v in verdicts.items() if i} == {Status.PASS}
    if check == "throughput":
        assert "median of 3 peers" in verdicts[1].message  # 3 with itself, the guarded left out


def test_records_without_per_batch_data_get_no_stability_verdict() -> None:
    record = {"type": "result", "kernel": "matmul", "metrics": {"matmul_tflops": 1.0}}
    assert judge([device(0, [record])], "stability") == {}


def test_odd_shapes_from_a_foreign_store_do_not_crash_checks_or_report() -> None:
    from burnin.reports.performance import performance

    forged = [
        matmul() | {"cross": "x", "dtypes": 5},
        matmul() | {"cross": {"bf16": {"sha256": 3}}, "dtypes": {"bf16": {"tflops": "fast"}}},
        matmul() | {"cross": {"bf16": {"sha256": "a" * 64, "probe": ["x"], "scale": None}}},
    ]
    fleet = [device(i, [r]) for i, r in enumerate(forged)]
    for check in ("sdc", "throughput", "stability"):
        assert set(judge(fleet, check)) == {0, 1, 2}
    assert [performance(g)["matmul"] for g in fleet][1][0]["tflops"] is None
