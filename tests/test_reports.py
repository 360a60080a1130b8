"""Reports from synthetic stores: ordering, report.json schema, escaping, machine formats."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fakes import result_record, write_run

from burnin.reports import OUTPUTS, write_reports
from burnin.verdicts import evaluate

HOSTILE = '<script>alert(1)</script>"\n{}\\\x1b[31m\x00'


class DeviceRows(HTMLParser):
    """Collects (status, node, gpu) of the device table rows, in page order."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, str, str]] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if a.get("data-card"):  # a flagged card's details or a PASS card's row
            node, gpu = (a["data-card"] or "").rsplit("/", 1)
            self.rows.append((a["data-status"] or "", node, gpu))


SCENARIOS = [
    # (name, write_run kwargs, expected statuses by device, run status, exit code)
    ("all pass", {}, {0: "PASS", 1: "PASS"}, "PASS", 0),
    (
        "sdc fail",
        {
            "results": {
                1: [
                    result_record(1, wrong=5),
                    {
                        "device": 1,
                        "type": "verify",
                        "kernel": "matmul",
                        "step": 7,
                        "wrong_elements": 5,
                        "locations": [{"row": 1, "col": 2, "got": 3.0, "expected": 4.0}],
                    },
                ]
            }
        },
        {0: "PASS", 1: "FAIL"},
        "FAIL",
        3,
    ),
    (
        "no result",
        {"results": {0: [{"device": 0, "type": "start"}]}},
        {0: "ERROR", 1: "PASS"},
        "ERROR",
        4,
    ),
    (
        "crash event",
        {"events": [{"device": 1, "kind": "crash", "exitcode": -9, "elapsed_s": 2.0}]},
        {0: "PASS", 1: "ERROR"},
        "ERROR",
        4,
    ),
    (
        "hot card",
        {
            "samples": {0: [{"device": 0, "elapsed_s": 1, "temp_c": 95.0}]},
            "inventory": {0: {"slowdown_temp_c": 90.0}},
        },
        {0: "FAIL", 1: "PASS"},
        "FAIL",
        3,
    ),
    (
        "warm card",
        {"samples": {0: [{"device": 0, "elapsed_s": 1, "temp_c": 86.0}]}},
        {0: "WARN", 1: "PASS"},
        "WARN",
        0,
    ),
    ("below floor", {"thresholds": {"min_matmul_tflops": 5.0}}, {0: "FAIL", 1: "FAIL"}, "FAIL", 3),
    ("unfinished", {"finished": False}, {0: "PASS", 1: "PASS"}, "ERROR", 4),
    (
        "fail beside a crash",
        {
            "results": {1: [result_record(1, wrong=3)]},
            "events": [{"device": 0, "kind": "crash", "exitcode": -9, "elapsed_s": 2.0}],
        },
        {0: "ERROR", 1: "FAIL"},
        "ERROR",
        3,
    ),
    (
        "unfinished with a fail",
        {"finished": False, "results": {1: [result_record(1, wrong=3)]}},
        {0: "PASS", 1: "FAIL"},
        "FAIL",
        3,
    ),
    # Only skipped checks (no result, no samples): nothing judged the card, so it is ERROR.
    (
        "nothing judged",
        {"results": {0: [{"device": 0, "type": "done"}]}, "inventory": {0: {"kind": "cpu"}}},
        {0: "ERROR", 1: "PASS"},
        "ERROR",
        4,
    ),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "statuses", "run_status", "code"), SCENARIOS, ids=[s[0] for s in SCENARIOS]
)
def test_scenarios(
    tmp_path: Path, name: str, kwargs: dict, statuses: dict[int, str], run_status: str, code: int
) -> None:
    run_dir = write_run(tmp_path, **kwargs)
    evaluate(run_dir)
    context = write_reports(run_dir)
    assert {g["index"]: g["status"] for g in context["gpus"]} == statuses
    assert (context["status"], context["exit_code"]) == (run_status, code)
    for output in OUTPUTS:
        assert (run_dir / output).stat().st_size > 0
    # Worst first in every output.
    ranks = ["SKIP", "PASS", "WARN", "FAIL", "ERROR"]
    order = [ranks.index(g["status"]) for g in context["gpus"]]
    assert order == sorted(order, reverse=True)
    parser = DeviceRows()
    parser.feed((run_dir / "report.html").read_text())
    assert [r[0] for r in parser.rows] == [g["status"] for g in context["gpus"]]


def test_report_json_schema(tmp_path: Path) -> None:
    run_dir = write_run(
        tmp_path,
        samples={
            0: [
                {"device": 0, "elapsed_s": 0, "power_w": 360.0},
                {"device": 0, "elapsed_s": 10, "power_w": 360.0},
            ]
        },
    )
    evaluate(run_dir)
    write_reports(run_dir)
    data = json.loads((run_dir / "report.json").read_text())
    assert data["schema"] == "burnin.report/1"
    assert {
        "run_id",
        "profile",
        "status",
        "exit_code",
        "started_at",
        "finished_at",
        "energy_kwh",
        "gpus",
        "nodes",
    } <= set(data)
    gpu = data["gpus"][0]
    assert {"node", "index", "uuid", "serial", "sku", "status", "verdicts", "metrics"} <= set(gpu)
    assert {"matmul_tflops", "membw_gbps", "max_temp_c", "energy_kwh"} <= set(gpu["metrics"])
    assert {"check", "status", "observed", "limit", "unit", "message", "action"} <= set(
        gpu["verdicts"][0]
    )
    assert "series" not in gpu
    assert data["nodes"][0]["node"] == "node-a"
    # 360 W for 10 s = 3600 J = 0.001 kWh
    assert data["energy_kwh"] == pytest.approx(0.001)


def test_hostile_device_strings_are_escaped_everywhere(tmp_path: Path) -> None:
    run_dir = write_run(
        tmp_path,
        inventory={0: {"name": HOSTILE, "serial": HOSTILE, "uuid": HOSTILE}},
        results={
            0: [
                result_record(0, wrong=1),
                {
                    "device": 0,
                    "type": "verify",
                    "kernel": HOSTILE,
                    "step": 1,
                    "wrong_elements": 1,
                    "locations": [],
                },
            ]
        },
    )
    evaluate(run_dir)
    write_reports(run_dir)
    html = (run_dir / "report.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    parser = DeviceRows()
    parser.feed(html)
    assert parser.scripts == 0
    assert json.loads((run_dir / "report.json").read_text())["gpus"][0]["serial"] == HOSTILE
    ET.parse(run_dir / "junit.xml")  # well-formed despite the hostile message
    prom = (run_dir / "burnin.prom").read_text()
    for line in prom.splitlines():
        assert line.startswith("#") or line.count('"') % 2 == 0, line
    assert 'serial="<script>alert(1)</script>\\"\\n{}\\\\\x1b[31m\x00"' in prom


def test_junit_counts(tmp_path: Path) -> None:
    run_dir = write_run(
        tmp_path,
        results={1: [result_record(1, wrong=2)]},
        events=[{"device": 0, "kind": "hang", "elapsed_s": 3.0}],
    )
    evaluate(run_dir)
    write_reports(run_dir)
    suite = ET.parse(run_dir / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert int(suite.get("errors", 0)) >= 1 and int(suite.get("failures", 0)) >= 1
    skipped = {
        case.get("name") for case in suite.iter("testcase") if case.find("skipped") is not None
    }
    assert {"node-a/gpu0/thermal", "node-a/gpu1/thermal"} <= skipped  # no samples on either card
    assert int(suite.get("skipped", 0)) == len(skipped)


def test_prometheus_values(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, results={1: [result_record(1, tflops=2.5, wrong=2)]})
    evaluate(run_dir)
    write_reports(run_dir)
    prom = (run_dir / "burnin.prom").read_text()
    assert "burnin_run_exit_code 3.0\n" in prom and "run_id" not in prom
    card = 'gpu="1",node="node-a",serial="SN1",sku="",'
    assert f'burnin_gpu_status{{{card}status="FAIL",uuid="GPU-1"}} 1.0' in prom
    assert f'burnin_gpu_status{{{card}status="PASS",uuid="GPU-1"}} 0.0' in prom
    assert f'burnin_gpu_matmul_tflops{{{card}uuid="GPU-1"}} 2.5' in prom


def test_terminal_summary_format(tmp_path: Path) -> None:
    from burnin.reports.terminal import summary

    run_dir = write_run(tmp_path, results={1: [result_record(1, wrong=2)]})
    evaluate(run_dir)
    text = summary(write_reports(run_dir))
    lines = text.splitlines()
    assert lines[0].startswith("# burnin")
    assert any("(TFLOP/s)" in line and "(C)" in line for line in lines)  # units row
    assert any(line.startswith("FAIL - node-a gpu1 sdc:") for line in lines)
    assert any(line.startswith("PASS - node-a gpu0") for line in lines)
    assert any(line.startswith("# sdc") and line.endswith("FAILED") for line in lines)
    assert lines[-1] == "# Result: FAIL  FAILED  (exit 3)"


@pytest.mark.slow
def test_strict_turns_warn_into_failure(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, samples={0: [{"device": 0, "elapsed_s": 1, "temp_c": 86.0}]})
    evaluate(run_dir)
    assert write_reports(run_dir)["exit_code"] == 0
    evaluate(run_dir)
    assert write_reports(run_dir, strict=True)["exit_code"] == 3


def test_terminal_summary_escapes_control_characters(tmp_path: Path) -> None:
    from burnin.reports.terminal import summary

    forged = "A100\nPASS - node-a gpu9\x1b[2J\u202e"
    run_dir = write_run(tmp_path, inventory={0: {"name": forged, "serial": "S\rN"}})
    evaluate(run_dir)
    text = summary(write_reports(run_dir))
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text
    assert not any(line.startswith("PASS - node-a gpu9") for line in text.splitlines())
    assert "A100\\nPASS - node-a gpu9\\x1b[2J\\u202e" in text


def test_non_finite_metrics_become_null_in_report_json(tmp_path: Path) -> None:
    record = result_record(0)
    record["metrics"]["matmul_tflops_cv"] = float("nan")
    record["metrics"]["matmul_tflops_p99"] = float("inf")
    run_dir = write_run(tmp_path, results={0: [record]})
    evaluate(run_dir)
    write_reports(run_dir)
    metrics = next(
        g for g in json.loads((run_dir / "report.json").read_text())["gpus"] if g["index"] == 0
    )["metrics"]
    assert metrics["matmul_tflops_cv"] is None and metrics["matmul_tflops_p99"] is None
