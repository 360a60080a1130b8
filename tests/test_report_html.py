"""The HTML report's first screen, labels, plots and fleet summaries (reports/html.py, fleet.py,
labels.py, plots.py): what a technician reads, in the order they need it."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fakes import result_record, write_run

from burnin.config import load_config
from burnin.errors import ConfigError
from burnin.reports import write_reports
from burnin.reports.fleet import distributions, grid, outliers, pull_list
from burnin.reports.labels import LABELS, export, fmt, label
from burnin.reports.plots import distribution_svg, node_power_svg, timeline_svg
from burnin.verdicts import evaluate


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("matmul_bf16_peak_fraction", 0.8712, "87 %"),
        ("matmul_fp8_peak_fraction", 0.05, "5.0 %"),
        ("membw_gbps", 2541.37, "2541 GB/s"),
        ("matmul_tflops", 788.94, "788.9 TFLOP/s"),
        ("max_temp_c", 92.0, "92 °C"),
        ("energy_kwh", 0.03412, "0.034 kWh"),
        ("memtest_bad_words", 3, "3"),
        ("matmul_tflops", None, "n/a"),
        ("some_new_gbps", 12.345, "12.3 GB/s"),  # not in the table: still a unit
        ("a_new_figure", 1.23456, "1.23"),
    ],
)
def test_fmt(key: str, value: Any, shown: str) -> None:
    assert fmt(key, value) == shown


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("matmul_bf16_peak_fraction", "bf16 matmul, fraction of datasheet peak"),
        ("matmul_int4_peak_fraction", "int4 matmul, fraction of datasheet peak"),
        ("pcie_link_fraction", "PCIe copies, fraction of the link's rate"),
        ("foo_bar", "foo bar"),
    ],
)
def test_label_names(key: str, name: str) -> None:
    assert label(key).name == name


def test_export_is_the_whole_table() -> None:
    rows = export()
    assert len(rows) == len(LABELS)
    assert {"key", "name", "unit", "fmt"} <= set(rows[0])
    assert [r["key"] for r in rows] == sorted(LABELS)


def _gpu(node: str, index: int, status: str, **extra: Any) -> dict[str, Any]:
    verdicts = (
        []
        if status == "PASS"
        else [
            {
                "check": "thermal",
                "status": status,
                "message": "too hot",
                "action": "inspect-cooling",
            },
            {
                "check": "throttle",
                "status": "WARN",
                "message": "clocks cut",
                "action": "inspect-cooling",
            },
        ]
    )
    return {
        "node": node,
        "index": index,
        "status": status,
        "serial": f"SN{index}",
        "pci_bus_id": f"00000000:{index:02X}:00.0",
        "sku": "H100-SXM5-80GB",
        "verdicts": verdicts,
        "metrics": {"matmul_tflops": 790.0 + index, "max_temp_c": 60.0},
        "load_power_w": 650.0,
        "performance": {},
        **extra,
    }


def test_pull_list_has_every_flagged_card_with_place_reason_and_action() -> None:
    gpus = [_gpu("n1", 3, "FAIL"), _gpu("n0", 1, "WARN"), _gpu("n0", 0, "PASS")]
    rows = pull_list(gpus)
    assert [(r["node"], r["index"], r["status"]) for r in rows] == [
        ("n1", 3, "FAIL"),
        ("n0", 1, "WARN"),
    ]
    first = rows[0]
    assert first["pci_bus_id"] == "00000000:03:00.0" and first["serial"] == "SN3"
    assert (first["check"], first["reason"], first["action"]) == (
        "thermal",
        "too hot",
        "inspect-cooling",
    )
    assert first["anchor"] == "gpu-n1-3"


def test_grid_is_node_by_index_with_gaps() -> None:
    g = grid([_gpu("n0", 0, "PASS"), _gpu("n0", 1, "FAIL"), _gpu("n1", 1, "PASS")])
    assert g["columns"] == [0, 1]
    assert [r["node"] for r in g["rows"]] == ["n0", "n1"]
    assert g["rows"][1]["cells"][0] is None
    assert g["rows"][0]["cells"][1] == {"status": "FAIL", "anchor": "gpu-n0-1"}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([100.0] * 10 + [60.0], [10]),  # identical peers: the MAD floor, not noise, decides
        ([100.0, 101.0, 99.0, 100.5, 99.5], []),
        ([1.0, 2.0], []),  # too few to judge
    ],
)
def test_outliers(values: list[float], expected: list[int]) -> None:
    assert outliers([(str(i), v) for i, v in enumerate(values)], 3.5, 0.01) == expected


def test_distributions_per_sku_with_thresholds() -> None:
    gpus = [_gpu("n0", i, "PASS") for i in range(8)]
    gpus[0]["metrics"]["matmul_tflops"] = 400.0
    gpus[0]["performance"] = {"matmul": [{"main": True, "peak_tflops": 989.4}]}
    gpus[1]["slowdown_temp_c"] = 89
    thresholds = {"throughput_warn_peak_fraction": 0.5, "warn_temp_c": 85.0, "peer_z": 3.5}
    (sku,) = distributions(gpus, [{"node": "n0", "allreduce_busbw_gbps": 400.0}], thresholds)
    by_key = {m["key"]: m for m in sku["metrics"]}
    assert list(by_key) == ["matmul_tflops", "max_temp_c", "tflops_per_w", "allreduce_busbw_gbps"]
    tflops = by_key["matmul_tflops"]
    assert tflops["outliers"] == [("n0/0", 400.0)]
    assert tflops["lines"] == [(pytest.approx(494.7), "WARN 50% of peak")]
    assert by_key["max_temp_c"]["lines"] == [(85.0, "WARN"), (89.0, "slowdown (FAIL)")]
    assert by_key["tflops_per_w"]["values"][1] == pytest.approx(791.0 / 650.0)


TIMELINE = {
    "duration_s": 10.0,
    "phases": [{"kernel": "matmul", "start_s": 1.0, "end_s": 8.0}],
    "plots": [
        {
            "key": "temp_c",
            "label": "temperature",
            "unit": "°C",
            "min": 40,
            "max": 91,
            "points": [(float(t), 40.0 + 5 * t) for t in range(11)],
        },
    ],
    "limits": {"temp_c": 89.0},
    "throttle": [{"reason": "hw_thermal_slowdown", "active_s": 2.0, "ranges": [(8.0, 10.0)]}],
}


def test_plots_are_inline_svg_without_scripts_with_prefixed_ids() -> None:
    drawn = [
        timeline_svg(TIMELINE, "tl-a", "a <b> card"),
        node_power_svg({"n0": [[0.0, 100.0], [5.0, 5000.0]]}, {"n0": [0.0, 2.5]}, "pw"),
        distribution_svg(
            "matmul_tflops", [790.0, 791.0, 500.0], [("n0/2", 500.0)], [(495.0, "WARN")], "d"
        ),
    ]
    for svg, prefix in zip(drawn, ("tl-a", "pw", "d"), strict=True):
        assert svg.startswith("<svg ") and svg.rstrip().endswith("</svg>")
        assert "<script" not in svg and "<metadata" not in svg and "<?xml" not in svg
        ids = re.findall(r'\bid="([^"]+)"', svg)
        assert ids and all(i.startswith(prefix + "-") for i in ids)
        assert "<image" not in svg  # vectors and text only, no raster
    assert 'aria-label="a &lt;b&gt; card"' in drawn[0]
    for words in (
        "slowdown 89 °C",
        "hw_thermal_slowdown",
        "matmul",
        "time since the run started (s)",
    ):
        assert words in drawn[0], words
    assert "n0/2" in drawn[2] and "WARN" in drawn[2]
    # Deterministic: the same data gives the same bytes.
    assert timeline_svg(TIMELINE, "tl-a", "a <b> card") == drawn[0]


class Page(HTMLParser):
    """Section order, pull rows, open details and the header's text."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []
        self.pull: list[dict[str, str | None]] = []
        self.cards: list[tuple[str, bool]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id") in ("summary", "pull-list", "fleet-grid", "distributions", "cards"):
            self.order.append(a["id"] or "")
        if tag == "tr" and a.get("class") == "pull":
            self.pull.append(a)
        if a.get("data-card"):
            self.cards.append((tag, "open" in a))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_page_opens_on_verdict_counts_and_pull_list(tmp_path: Path) -> None:
    run_dir = write_run(
        tmp_path,
        devices=4,
        results={2: [result_record(2, wrong=3)]},
        inventory={d: {"pci_bus_id": f"00000000:{0x18 + d:02X}:00.0"} for d in range(4)},
    )
    manifest = (run_dir / "manifest.json").read_text()
    manifest = manifest.replace(
        '"config": {', '"config": {"report": {"site": "hall-2", "rack": "B07"}, ', 1
    )
    (run_dir / "manifest.json").write_text(manifest)
    evaluate(run_dir)
    write_reports(run_dir)
    html = (run_dir / "report.html").read_text()
    page = Page()
    page.feed(html)
    assert page.order == ["summary", "pull-list", "fleet-grid", "distributions", "cards"]
    (row,) = page.pull
    assert (row["data-node"], row["data-gpu"], row["data-pci"]) == (
        "node-a",
        "2",
        "00000000:1A:00.0",
    )
    assert row["data-action"] == "rma"
    # The flagged card is expanded; the PASS cards are one table row each, not drawn one by one.
    assert page.cards == [("details", True), ("tr", False), ("tr", False), ("tr", False)]
    text = " ".join(page.text)
    assert "burnin test report" in text and "hall-2" in text and "B07" in text
    assert 'href="#gpu-node-a-2"' in html and 'id="gpu-node-a-2"' in html
    assert "@media print" in html and "<script" not in html


def test_metric_keys_read_as_labels(tmp_path: Path) -> None:
    run_dir = write_run(
        tmp_path, devices=1, results={0: [result_record(0, tflops=512.25, wrong=1)]}
    )
    evaluate(run_dir)
    write_reports(run_dir)
    html = (run_dir / "report.html").read_text()
    assert "matmul throughput (main dtype)" in html and "512.2 TFLOP/s" in html
    assert ">matmul_tflops<" not in html


@pytest.mark.parametrize(
    ("override", "site", "rack"),
    [((), "", ""), (("report.site=hall 2", "report.rack=B07"), "hall 2", "B07")],
)
def test_report_labels_are_config_keys(override: tuple[str, ...], site: str, rack: str) -> None:
    config = load_config("quick", list(override))
    assert (config.report.site, config.report.rack) == (site, rack)
    assert config.to_dict()["report"] == {"site": site, "rack": rack}


def test_an_unknown_report_key_names_itself() -> None:
    with pytest.raises(ConfigError, match=r"report\.room"):
        load_config("quick", ["report.room=3"])


def test_only_the_worst_cards_get_a_telemetry_plot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("burnin.reports.html.MAX_TIMELINES", 1)
    samples = {
        d: [{"device": d, "elapsed_s": float(t), "temp_c": 50.0} for t in range(3)]
        for d in range(2)
    }
    run_dir = write_run(
        tmp_path,
        devices=2,
        samples=samples,
        results={d: [result_record(d, wrong=1)] for d in range(2)},
    )
    evaluate(run_dir)
    write_reports(run_dir)
    html = (run_dir / "report.html").read_text()
    assert html.count('<figure class="timeline"') == 1
    assert "only the 1 worst cards of a report get one" in html
    assert "nodes/node-a/samples.jsonl" in html
