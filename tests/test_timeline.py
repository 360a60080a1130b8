"""The report's telemetry timeline: phases from results records, plots from samples and progress
records, throttle bars where a reason was active; rendered as inline SVG in report.html."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fakes import write_run

from burnin.reports import write_reports
from burnin.reports.timeline import MAX_POINTS, decimate, timeline
from burnin.verdicts import GpuData, evaluate

RECORDS = [
    {"device": 0, "type": "start", "elapsed_s": 0.0},
    {"device": 0, "type": "kernel-start", "kernel": "matmul", "elapsed_s": 1.0},
    {"device": 0, "type": "progress", "kernel": "matmul", "tflops": 700.0, "elapsed_s": 2.0},
    {"device": 0, "type": "progress", "kernel": "matmul", "tflops": 350.0, "elapsed_s": 3.0},
    {
        "device": 0,
        "type": "result",
        "kernel": "matmul",
        "elapsed_s": 4.0,
        "metrics": {"matmul_tflops": 500.0},
        "verifications": 3,
        "wrong_elements": 0,
    },
    {"device": 0, "type": "kernel-start", "kernel": "membw", "elapsed_s": 4.5},
    {"device": 0, "type": "progress", "kernel": "membw", "copy_gbps": 2900.0, "elapsed_s": 5.0},
    {"device": 0, "type": "result", "kernel": "membw", "elapsed_s": 6.0, "metrics": {}},
    {"device": 0, "type": "done", "elapsed_s": 6.1},
]
THROTTLE = [
    [],
    ["sw_power_cap"],
    ["hw_thermal_slowdown"],
    ["hw_thermal_slowdown"],
    [],
    [],
    ["gpu_idle"],
]
SAMPLES = [
    {
        "device": 0,
        "elapsed_s": float(t),
        "temp_c": 40.0 + 8 * t,
        "power_w": 100.0 + 90 * t,
        "sm_clock_mhz": 1980 - 300 * (t in (2, 3)),
        "throttle_reasons": THROTTLE[t],
    }
    for t in range(7)
]


def data(records: list[dict[str, Any]], samples: list[dict[str, Any]]) -> GpuData:
    return GpuData(
        node="n",
        index=0,
        inventory={},
        samples=samples,
        records=records,
        events=[],
        planned_kernels=["matmul"],
    )


def test_phases_plots_and_throttle_spans() -> None:
    t = timeline(data(RECORDS, SAMPLES))
    assert t is not None and t["duration_s"] == 6.0
    assert [(p["kernel"], p["start_s"], p["end_s"]) for p in t["phases"]] == [
        ("matmul", 1.0, 4.0),
        ("membw", 4.5, 6.0),
    ]
    labels = [p["label"] for p in t["plots"]]
    assert labels == [
        "temperature",
        "power",
        "SM clock",
        "matmul throughput",
        "memory copy bandwidth",
    ]
    clock = t["plots"][2]
    assert (clock["min"], clock["max"]) == (1680, 1980)
    reasons = {r["reason"]: r for r in t["throttle"]}
    assert set(reasons) == {"sw_power_cap", "hw_thermal_slowdown"}  # idle is not throttling
    assert reasons["hw_thermal_slowdown"]["active_s"] == 2.0  # samples at 2 s and 3 s, merged
    assert reasons["hw_thermal_slowdown"]["ranges"] == [(2.0, 4.0)]
    assert t["limits"] == {}  # no slowdown temperature or power limit reported
    assert all(len(p["points"]) <= 400 for p in t["plots"])


def test_limits_come_from_the_card() -> None:
    gpu = data(RECORDS, [{**s, "power_limit_w": 700.0} for s in SAMPLES])
    gpu.inventory["slowdown_temp_c"] = 89
    t = timeline(gpu)
    assert t is not None and t["limits"] == {"temp_c": 89.0, "power_w": 700.0}


def test_a_worker_that_died_mid_kernel_keeps_its_phase_open_to_the_data_end() -> None:
    t = timeline(data(RECORDS[:3], SAMPLES))
    assert t is not None and t["phases"] == [{"kernel": "matmul", "start_s": 1.0, "end_s": 6.0}]


def test_nothing_to_draw() -> None:
    assert timeline(data([], [])) is None
    assert timeline(data([], [{"elapsed_s": 1.0, "unsupported": ["temp_c"]}])) is None


class Timeline(HTMLParser):
    """The timeline figure's data attributes, its throttle reasons and its SVG text."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: list[dict[str, str | None]] = []
        self.reasons: list[str] = []
        self.texts: list[str] = []
        self._in_text = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "figure" and a.get("class") == "timeline":
            self.figures.append(a)
        if tag == "span" and a.get("data-reason"):
            self.reasons.append(a["data-reason"] or "")
        self._in_text = tag == "text"

    def handle_data(self, text: str) -> None:
        if self._in_text:
            self.texts.append(text.strip())
            self._in_text = False


@pytest.mark.slow
def test_report_html_shows_the_timeline(tmp_path: Path) -> None:
    records = [*RECORDS[:4], {**RECORDS[4], "wrong_elements": 1}, *RECORDS[5:]]  # flagged
    samples = [{**s, "power_limit_w": 700.0} for s in SAMPLES]
    run_dir = write_run(tmp_path, devices=1, results={0: records}, samples={0: samples})
    evaluate(run_dir)
    write_reports(run_dir)
    parser = Timeline()
    parser.feed((run_dir / "report.html").read_text())
    (figure,) = parser.figures
    assert (figure["data-series"] or "").split("|") == [
        "temperature",
        "power",
        "SM clock",
        "matmul throughput",
        "memory copy bandwidth",
    ]
    assert figure["data-phases"] == "matmul|membw"
    assert parser.reasons == ["hw_thermal_slowdown", "sw_power_cap"]
    # Axes with units, the phases and the limit line are labelled in the SVG itself.
    for words in ("temperature", "(°C)", "matmul", "membw", "power limit 700 W"):
        assert any(words in t for t in parser.texts), words
    assert "time since the run started (s)" in parser.texts
    report = json.loads((run_dir / "report.json").read_text())
    assert "telemetry" not in report["gpus"][0]  # presentation only


def test_a_pass_card_gets_no_plot(tmp_path: Path) -> None:
    calm = [{**s, "temp_c": 50.0, "throttle_reasons": []} for s in SAMPLES]
    run_dir = write_run(tmp_path, devices=1, results={0: RECORDS}, samples={0: calm})
    evaluate(run_dir)
    context = write_reports(run_dir)
    assert context["gpus"][0]["status"] == "PASS" and context["gpus"][0]["telemetry"] is None
    parser = Timeline()
    parser.feed((run_dir / "report.html").read_text())
    assert parser.figures == []


@pytest.mark.slow
def test_kernel_names_are_escaped(tmp_path: Path) -> None:
    records = [dict(r) for r in RECORDS]
    records[1]["kernel"] = "<script>alert(1)</script>"
    records[4]["wrong_elements"] = 1  # flagged, so its timeline is drawn
    run_dir = write_run(tmp_path, devices=1, results={0: records}, samples={0: SAMPLES})
    evaluate(run_dir)
    write_reports(run_dir)
    html = (run_dir / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


SPIKY = [(float(t), 60.0 + (t % 7) * 0.1) for t in range(900)]
SPIKY[437] = (437.0, 93.0)  # one hot second
SPIKY[612] = (612.0, 20.0)  # one reading far below


@pytest.mark.parametrize(
    ("points", "most"),
    [
        (SPIKY, MAX_POINTS),
        (SPIKY, 10),
        (SPIKY[:401], MAX_POINTS),
        ([(float(t), float(t % 2)) for t in range(5000)], 300),
        ([(0.0, 1.0), (1.0, 5.0), (2.0, 3.0)], 2),
    ],
)
def test_decimation_keeps_the_ends_peaks_and_troughs_in_time_order(
    points: list[tuple[float, float]], most: int
) -> None:
    shown = decimate(points, most)
    assert len(shown) <= max(most, 4) and shown == sorted(shown)
    assert shown[0] == points[0] and shown[-1] == points[-1]
    assert max(v for _, v in shown) == max(v for _, v in points)
    assert min(v for _, v in shown) == min(v for _, v in points)
    assert all(p in points for p in shown)


def test_short_series_are_drawn_whole() -> None:
    assert decimate(SPIKY[:400], MAX_POINTS) == SPIKY[:400]


def test_a_timeline_shows_the_hottest_second() -> None:
    samples = [{"elapsed_s": t, "temp_c": v} for t, v in SPIKY]
    t = timeline(data(RECORDS, samples))
    assert t is not None
    (temp,) = [p for p in t["plots"] if p["key"] == "temp_c"]
    assert len(temp["points"]) <= MAX_POINTS and (437.0, 93.0) in temp["points"]
