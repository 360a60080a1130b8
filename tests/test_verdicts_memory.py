"""membw and pcie-bw verdicts, PCIe link rates, and the report's per-device performance data."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fakes import write_run

from burnin.config import RunConfig
from burnin.reports import write_reports
from burnin.verdicts import CheckContext, GpuData, Verdict, evaluate, registered
from burnin.verdicts.pcie_bw import link_gbps

H100 = {"kind": "cuda", "name": "NVIDIA H100 80GB HBM3", "sku": "H100-SXM5-80GB"}
CPU = {"kind": "cpu", "name": "CPU fallback (x86_64)"}


def membw(gbps: float) -> dict[str, Any]:
    return {
        "type": "result",
        "kernel": "membw",
        "size_mib": 1024,
        "metrics": {"membw_gbps": gbps, "membw_copy_gbps": gbps, "membw_triad_gbps": gbps},
    }


def pcie(h2d: float, d2h: float | None = None, link: str = "pcie") -> dict[str, Any]:
    return {
        "type": "result",
        "kernel": "pcie",
        "size_mib": 256,
        "link": link,
        "metrics": {"pcie_h2d_gbps": h2d, "pcie_d2h_gbps": d2h if d2h is not None else h2d},
    }


def judge(
    records: list[list[dict[str, Any]]],
    inventory: dict[str, Any],
    check: str,
    samples: list[dict[str, Any]] | None = None,
) -> dict[int, Verdict]:
    fleet = [
        GpuData(
            node="n",
            index=i,
            inventory=dict(inventory),
            samples=samples or [],
            records=r,
            events=[],
            planned_kernels=[],
        )
        for i, r in enumerate(records)
    ]
    ctx = CheckContext(thresholds=RunConfig().to_dict()["thresholds"], fleet=fleet)
    return {g.index: v for g in fleet for v in registered()[check](g, ctx)}


MEMBW = [
    # (name, GB/s per device, inventory, expected statuses, fragment in device -1's message)
    ("at spec", [2600.0], H100, ["PASS"], "0.78 of the H100-SXM5-80GB datasheet peak 3350"),
    ("below warn", [2100.0], H100, ["WARN"], "below 0.65"),
    ("below DCGM's minimum", [1800.0], H100, ["FAIL"], "below 0.57"),
    (
        "hbm-slow peer",
        [2600.0, 2600.0, 2600.0, 2080.0],
        H100,
        ["PASS", "PASS", "PASS", "WARN"],
        "0.80 x the median of 4 peers",
    ),
    (
        "cpu peers only",
        [20.0, 21.0, 19.0],
        CPU,
        ["SKIP", "SKIP", "SKIP"],  # logical CPU devices share cores and memory: not judged
        "no datasheet reference on the CPU fallback",
    ),
    ("cpu alone", [20.0], CPU, ["SKIP"], "0 comparable peer(s)"),
]


@pytest.mark.parametrize(
    ("name", "values", "inventory", "expected", "fragment"), MEMBW, ids=[m[0] for m in MEMBW]
)
def test_membw(
    name: str, values: list[float], inventory: dict[str, Any], expected: list[str], fragment: str
) -> None:
    verdicts = judge([[membw(v)] for v in values], inventory, "membw")
    assert [verdicts[i].status.name for i in range(len(values))] == expected
    assert fragment in verdicts[len(values) - 1].message
    if expected[-1] == "FAIL":
        assert verdicts[0].action == "rma" and verdicts[0].limit == pytest.approx(0.57 * 3350)


GEN5 = H100 | {"pcie_max_gen": 5, "pcie_max_width": 16}
PCIE = [
    ("healthy Gen5", [pcie(55.0, 53.0)], GEN5, None, "PASS", "Gen5 x16 63"),
    ("below Azure's line", [pcie(40.0)], GEN5, None, "WARN", "below 0.75"),
    ("half the link", [pcie(50.0, 25.0)], GEN5, None, "FAIL", "25 GB/s = 0.40"),
    (
        "downtrained under load",
        [pcie(12.0)],
        GEN5,
        [{"elapsed_s": 1.0, "pcie_gen": 3, "pcie_width": 16}],
        "FAIL",
        "ran at Gen3 x16 under load",
    ),
    ("link from the datasheet", [pcie(55.0)], H100, None, "PASS", "datasheet link Gen5 x16"),
    # A Gen5 card in a Gen4 x16 slot: 25.5 GB/s is 0.81 of Gen4, not a fault of the card.
    (
        "gen5 card in a gen4 slot",
        [pcie(25.5)],
        {**GEN5, "pcie_system_max_gen": 4, "pcie_system_max_width": 16},
        None,
        "PASS",
        "card and slot both support Gen4 x16",
    ),
    (
        "no link known",
        [pcie(10.0)],
        {"kind": "cuda", "name": "Mystery"},
        None,
        "SKIP",
        "reports no PCIe generation",
    ),
    (
        "cpu fallback",
        [pcie(5.0, 4.0, link="host-only")],
        CPU,
        None,
        "SKIP",
        "no PCIe link on the CPU fallback",
    ),
]


@pytest.mark.parametrize(
    ("name", "records", "inventory", "samples", "status", "fragment"),
    PCIE,
    ids=[p[0] for p in PCIE],
)
def test_pcie_bw(
    name: str,
    records: list[dict[str, Any]],
    inventory: dict[str, Any],
    samples: list[dict[str, Any]] | None,
    status: str,
    fragment: str,
) -> None:
    verdict = judge([records], inventory, "pcie-bw", samples)[0]
    assert verdict.status.name == status and fragment in verdict.message
    assert verdict.unit == "GB/s"
    if status == "FAIL":
        assert verdict.action == "reseat"


def test_pcie_peer_with_a_slow_link_is_named() -> None:
    verdicts = judge([[pcie(55.0)], [pcie(55.0)], [pcie(55.0)], [pcie(49.0)]], GEN5, "pcie-bw")
    assert [verdicts[i].status.name for i in range(4)] == ["PASS", "PASS", "PASS", "WARN"]


@pytest.mark.parametrize(
    ("gen", "width", "gbps"),
    [
        (1, 16, 4.0),
        (2, 16, 8.0),
        (3, 16, 15.754),
        (4, 16, 31.508),
        (5, 16, 63.015),
        (5, 8, 31.508),
        (6, 16, 121.0),
        (7, 16, None),
        (4, 0, None),
    ],
)
def test_link_rates(gen: int, width: int, gbps: float | None) -> None:
    rate = link_gbps(gen, width)
    assert rate == (None if gbps is None else pytest.approx(gbps, rel=1e-3))


class Rows(HTMLParser):
    """Collects the data-kind rows of the performance table and the findings rows."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: list[str] = []
        self.findings: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get("data-kind"):
            self.kinds.append(f"{a['data-kind']}:{a.get('data-dtype') or ''}")
        if tag == "tr" and a.get("data-kernel"):
            self.findings.append(f"{a['data-kernel']}/{a.get('data-check')}")


def test_report_shows_per_dtype_tflops_fractions_bandwidth_and_wrong_places(
    tmp_path: Path,
) -> None:
    matmul = {
        "type": "result",
        "kernel": "matmul",
        "dtype": "bf16",
        "size": 8192,
        "seed": 1,
        "metrics": {
            "matmul_tflops": 791.5,
            "matmul_bf16_tflops": 791.5,
            "matmul_fp32_tflops": 50.0,
            "matmul_verify_overhead": 0.012,
        },
        "verifications": 30,
        "failed_verifications": 0,
        "wrong_elements": 0,
        "dtypes": {
            "bf16": {"tflops": {"p50": 791.5, "min": 780.0, "p99": 795.0, "cv": 0.004}},
            "fp32": {"tflops": {"p50": 50.0, "min": 49.0, "p99": 51.0, "cv": 0.01}},
        },
        "cross": {"bf16": {"sha256": "ab" * 32, "probe": [1.0] * 16, "scale": 1.0}},
    }
    memtest = {
        "type": "result",
        "kernel": "memtest",
        "verifications": 39,
        "failed_verifications": 1,
        "wrong_elements": 1,
        "metrics": {"memtest_gib": 60.0, "memtest_passes": 39, "memtest_bad_words": 1},
    }
    stuck = {
        "type": "verify",
        "kernel": "memtest",
        "check": "pattern",
        "step": 0,
        "pattern": "zeros 0x00000000",
        "elapsed_s": 3.0,
        "wrong_elements": 1,
        "bit_histogram": {"19": 1},
        "word_bytes": 4,
        "locations": [
            {
                "offset_bytes": 8192,
                "address": "0x7f0000002000",
                "got": "0x00080000",
                "expected": "0x00000000",
                "bits": [19],
            }
        ],
    }
    run_dir = write_run(
        tmp_path,
        devices=1,
        results={
            0: [
                {"device": 0} | r for r in (matmul, membw(2600.0), pcie(55.0, 53.0), memtest, stuck)
            ]
        },
        inventory={
            0: {
                "name": "NVIDIA H100 80GB HBM3",
                "pci_device_id": "2330",
                "pcie_max_gen": 5,
                "pcie_max_width": 16,
            }
        },
    )
    evaluate(run_dir)
    context = write_reports(run_dir)
    gpu = json.loads((run_dir / "report.json").read_text())["gpus"][0]
    assert gpu["status"] == "FAIL"  # the stuck bit
    metrics = gpu["metrics"]
    assert metrics["matmul_bf16_peak_fraction"] == pytest.approx(791.5 / 989.4, abs=1e-4)
    assert metrics["membw_peak_fraction"] == pytest.approx(2600 / 3350, abs=1e-4)
    assert metrics["pcie_link_fraction"] == pytest.approx(53.0 / 63.015, abs=1e-3)
    perf = gpu["performance"]
    assert perf["sku"] == "H100-SXM5-80GB"
    assert [(m["dtype"], m["main"]) for m in perf["matmul"]] == [("bf16", True), ("fp32", False)]
    assert perf["pcie"]["link"] == "Gen5 x16" and perf["memtest"]["bad_words"] == 1
    assert gpu["wrong"][0]["locations"][0]["place"] == "offset 0x2000 (address 0x7f0000002000)"
    parser = Rows()
    parser.feed((run_dir / "report.html").read_text())
    assert parser.kinds == ["matmul:bf16", "matmul:fp32", "membw:", "pcie:", "memtest:"]
    assert parser.findings == ["memtest/pattern"]
    html = (run_dir / "report.html").read_text()
    assert "80 %" in html and "offset 0x2000 (address 0x7f0000002000)" in html
    assert context["gpus"][0]["performance"]["verification"]["digests"] == {"bf16": "ab" * 8}
