"""The rack run's section: rack.jsonl read tolerantly, the rack block in report.json (validated
against its schema), the HTML section and the burnin.prom series, from generated rack files."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from fakes import write_run
from jsonschema import Draft202012Validator
from prometheus_client.parser import text_string_to_metric_families

from burnin.reports import write_reports
from burnin.reports.machine import report_schema
from burnin.reports.rack import rack_block, rack_power, read_rack
from burnin.store import NodeData, RunData
from burnin.verdicts import evaluate

NODES = ["rack-n0", "rack-n1", "rack-n2", "rack-n3"]


def allreduce(size: int, busbw: float, wrong: int = 0) -> dict[str, Any]:
    time_s = size / (busbw * 1e9 * 4 / 6)  # algbw = busbw · n / (2(n - 1)) at 4 ranks
    return {
        "type": "rack-allreduce",
        "ranks": 4,
        "backend": "gloo",
        "size_bytes": size,
        "time_s": time_s,
        "algbw_gbps": busbw * 4 / 6,
        "busbw_gbps": busbw,
        "wrong": wrong,
    }


def pair(a: str, b: str, busbw: float) -> dict[str, Any]:
    return {
        "type": "node-pair",
        "nodes": [a, b],
        "size_bytes": 1 << 24,
        "busbw_gbps": busbw,
        "wrong": 0,
    }


SIZES = [allreduce(1 << k, 2.0 + k) for k in (10, 16, 20, 24)]
PAIRS = [pair(a, b, 40.0 + i) for i, (a, b) in enumerate(pairwise(NODES))]
SLOW = pair("rack-n0", "rack-n3", 9.5)
SUMMARY = {
    "type": "rack-summary",
    "nodes": NODES,
    "busbw_gbps": 26.0,
    "slow_pairs": [["rack-n3", "rack-n0"]],
}
ERROR = {"type": "rack-error", "node": "rack-n2", "message": "<b>timeout</b> joining the group"}
FULL = [*SIZES, *PAIRS, SLOW, ERROR, SUMMARY]


def lines(records: list[dict[str, Any]], tail: str = "") -> str:
    return "".join(json.dumps(r) + "\n" for r in records) + tail


@pytest.mark.parametrize(
    ("text", "types"),
    [
        (None, []),
        ("", []),
        (lines(SIZES[:2]), ["rack-allreduce"] * 2),
        (lines(SIZES[:2], '{"type": "rack-allre'), ["rack-allreduce"] * 2),  # torn last line
        (lines([ERROR]) + '[1, 2]\n"text"\n{}\n', ["rack-error"]),  # not records: dropped
    ],
    ids=["no file", "empty", "two sizes", "torn last line", "non-records"],
)
def test_read_rack(tmp_path: Path, text: str | None, types: list[str]) -> None:
    if text is not None:
        (tmp_path / "rack.jsonl").write_text(text)
    assert [r["type"] for r in read_rack(tmp_path)] == types


@pytest.mark.parametrize(
    ("records", "best", "slow", "median", "wrong"),
    [
        (FULL, 26.0, [["rack-n0", "rack-n3"]], 41.0, 0),
        ([*SIZES, *PAIRS], 26.0, [], 41.0, 0),  # no summary: the best size's busbw
        ([*SIZES, allreduce(1 << 26, 30.0, wrong=3)], 30.0, [], None, 3),
        ([ERROR], None, [], None, 0),  # only an error: still a section, to list it
    ],
    ids=["full", "no summary", "wrong elements", "error only"],
)
def test_rack_block(
    records: list[dict[str, Any]],
    best: float,
    slow: list[list[str]],
    median: float | None,
    wrong: int,
) -> None:
    block = rack_block(records)
    assert block is not None
    assert (block["busbw_gbps"], block["slow_pairs"], block["pair_median_gbps"]) == (
        best,
        slow,
        median,
    )
    assert block["wrong"] == wrong
    sizes = [s["size_bytes"] for s in block["allreduce"]]
    assert sizes == sorted(sizes)
    if slow:  # the slow pair first, flagged, against the median of the others
        first = block["pairs"][0]
        assert first["slow"] and first["ratio"] == pytest.approx(9.5 / 41.0, abs=1e-4)
        assert not any(p["slow"] for p in block["pairs"][1:])


def test_no_records_no_block() -> None:
    assert rack_block([]) is None


def node(host: str, watts: list[tuple[float, int, float]]) -> NodeData:
    return NodeData(
        host=host, samples=[{"elapsed_s": t, "device": d, "power_w": w} for t, d, w in watts]
    )


@pytest.mark.parametrize(
    ("nodes", "peaks", "rack_w", "bound_w"),
    [
        # Two nodes peaking at different ticks: the rack's peak is below the sum of the peaks.
        (
            [
                node(
                    "a",
                    [(0, 0, 100), (0, 1, 100), (1, 0, 300), (1, 1, 300), (2, 0, 100), (2, 1, 100)],
                ),
                node("b", [(0, 0, 100), (1, 0, 100), (2, 0, 500)]),
            ],
            {"a": 600.0, "b": 500.0},
            700.0,
            1100.0,
        ),
        ([node("a", [(0, 0, 250)]), node("cpu", [])], {"a": 250.0, "cpu": None}, 250.0, 250.0),
        ([node("cpu", [])], {"cpu": None}, None, None),
    ],
    ids=["peaks apart", "a node without power", "no power at all"],
)
def test_rack_power(
    nodes: list[NodeData], peaks: dict, rack_w: float | None, bound_w: float | None
) -> None:
    run = RunData(path=Path("."), manifest={}, nodes={n.host: n for n in nodes})
    power = rack_power(run)
    assert {p["node"]: p["peak_w"] for p in power["nodes"]} == peaks
    assert (power["rack_peak_w"], power["sum_of_node_peaks_w"]) == (rack_w, bound_w)


@pytest.mark.parametrize(
    ("records", "pairs"),
    [(FULL, 4), ([*SIZES, *PAIRS, *PAIRS], 3), ([ERROR], 0), (None, 0)],
    ids=["full", "a pair twice", "error only", "no rack file"],
)
def test_rack_outputs(tmp_path: Path, records: list[dict[str, Any]] | None, pairs: int) -> None:
    run_dir = write_run(tmp_path)
    if records is not None:
        (run_dir / "rack.jsonl").write_text(lines(records))
    evaluate(run_dir)
    context = write_reports(run_dir)
    report = json.loads((run_dir / "report.json").read_text())
    errors = [e.message for e in Draft202012Validator(report_schema()).iter_errors(report)]
    assert errors == []
    page = (run_dir / "report.html").read_text()
    prom = (run_dir / "burnin.prom").read_text()
    families = {f.name: f for f in text_string_to_metric_families(prom)}
    series = [
        (s.name, tuple(sorted(s.labels.items()))) for f in families.values() for s in f.samples
    ]
    assert len(series) == len(set(series))  # no duplicate series
    if records is None:
        assert "rack_run" not in report and 'id="rack"' not in page
        assert not any(name.startswith("burnin_rack_") for name in families)
        return
    assert report["rack_run"] == json.loads(json.dumps(context["rack_run"]))
    assert report["rack"] == ""  # the rack's name (report.rack) stays apart
    assert 'id="rack"' in page
    got = families.get("burnin_rack_pair_busbw_gbps")
    assert len(got.samples if got else []) == pairs
    if records is FULL:
        assert families["burnin_rack_allreduce_busbw_gbps"].samples[0].value == 26.0
        assert '<tr class="pair slow WARN" data-nodes="rack-n0 rack-n3">' in page
        assert "&lt;b&gt;timeout&lt;/b&gt;" in page and "<b>timeout</b>" not in page
        assert "rack all-reduce busbw against message size" in page
        assert all(f'<tr data-size="{s["size_bytes"]}">' in page for s in SIZES)
