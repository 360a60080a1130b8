"""``burnin history`` commands through CliRunner, and the pure parts they print."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from history_helpers import write_report_run

from burnin.cli import cli
from burnin.history.figures import card_figures
from burnin.history.prom import history_series
from burnin.history.trends import judge
from burnin.verdicts.regression import Thresholds

DAYS = [f"2026-01-0{d}T02:00:00Z" for d in range(1, 6)]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'h.sqlite'}"


def _ingest(url: str, tmp_path: Path, runs: list[list[dict[str, Any]]]) -> list[str]:
    ids = []
    for day, gpus in enumerate(runs):
        run_dir = write_report_run(tmp_path / "runs", f"run-{day}", DAYS[day], gpus)
        ids.append(run_dir.name)
        result = CliRunner().invoke(cli, ["history", "--db", url, "ingest", str(run_dir)])
        assert result.exit_code == 0, result.output
    return ids


def _h(url: str, *args: str) -> Any:
    return CliRunner().invoke(cli, ["history", "--db", url, *args])


FAIL_RMA = {"status": "FAIL", "action": "rma"}

LEMON_CASES = [
    # (runs of one serial, lemon?, rma-returned?)
    ([{"status": "FAIL"}, {"status": "PASS"}, {"status": "FAIL"}], True, "no"),
    ([{"status": "FAIL"}, {"status": "PASS"}, {"status": "PASS"}], False, None),
    ([FAIL_RMA, None, {"status": "FAIL"}], True, "yes"),
    ([FAIL_RMA, None, {"status": "PASS"}], False, None),
    ([{"status": "ERROR"}, {"status": "FAIL"}], True, "no"),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("life", "lemon", "rma"),
    LEMON_CASES,
    ids=["failed-twice", "failed-once", "back-from-rma", "rma-fixed", "lost-then-failed"],
)
def test_lemons(life, lemon: bool, rma: str | None, url: str, tmp_path: Path) -> None:
    runs = [
        [
            {"serial": "S-0001", **({} if state is None else state)},
            {"serial": "S-HEALTHY", "index": 1},
        ]
        if state is not None
        else [{"serial": "S-HEALTHY", "index": 1}]
        for state in life
    ]
    _ingest(url, tmp_path, runs)
    result = _h(url, "lemons")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if not line.startswith("#")]
    if not lemon:
        assert rows == [] and "no serial failed more than once" in result.output
        return
    assert [r[0] for r in rows] == ["S-0001"]
    assert rows[0][3] == rma


def test_list_show_and_compare(url: str, tmp_path: Path) -> None:
    ids = _ingest(
        url,
        tmp_path,
        [
            [{"serial": "S-1", "tflops": 800.0}, {"serial": "S-2", "index": 1}],
            [{"serial": "S-1", "tflops": 744.0, "node": "node-09", "status": "WARN"}],
        ],
    )
    listed = _h(url, "list")
    assert listed.exit_code == 0
    assert [line.split()[0] for line in listed.output.splitlines()[1:]] == ["run-1", "run-0"]
    html_file = tmp_path / "card.html"
    shown = _h(url, "show", "--serial", "S-1", "--html", str(html_file))
    assert shown.exit_code == 0, shown.output
    life = [line.split() for line in shown.output.splitlines() if not line.startswith("#")]
    assert [(r[1], r[2], r[4]) for r in life] == [
        ("run-0", "node-00/gpu0", "800.0"),
        ("run-1", "node-09/gpu0", "744.0"),
    ]
    page = html_file.read_text()
    assert (
        page.count("<svg") == 2
    )  # the figures these reports carry: TFLOP/s, GB/s and "<polyline" in page and "S-1" in page
    compared = _h(url, "compare", *ids)
    rows = {line.split()[0]: line.split() for line in compared.output.splitlines()[1:]}
    assert rows["S-1"][1:3] == ["PASS", "WARN"] and rows["S-1"][5] == "-7.0%"
    assert rows["S-2"][1:3] == ["PASS", "absent"]
    trends = _h(url, "trends")
    assert "S-1" in trends.output and "matmul_tflops" in trends.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "--serial", "NOPE"], "serial 'NOPE' is not in the history"),
        (["compare", "run-0", "run-x"], "run(s) not in the history: run-x"),
    ],
)
def test_unknown_serial_or_run_is_exit_2(args, message: str, url: str, tmp_path: Path) -> None:
    _ingest(url, tmp_path, [[{"serial": "S-1"}]])
    result = _h(url, *args)
    assert result.exit_code == 2 and message in result.output


def test_escaped_serial_in_html(url: str, tmp_path: Path) -> None:
    _ingest(url, tmp_path, [[{"serial": "<script>x</script>"}]])
    page = tmp_path / "p.html"
    assert _h(url, "show", "--serial", "<script>x</script>", "--html", str(page)).exit_code == 0
    assert "<script>" not in page.read_text()


P = [("2026-01-01T00:00:00Z", 100.0, "a"), ("2026-01-08T00:00:00Z", 102.0, "b")]


@pytest.mark.parametrize(
    ("figure", "past", "latest", "flagged", "change"),
    [
        ("matmul_tflops", P, ("2026-01-15T00:00:00Z", 96.5, "c"), False, -0.0446),
        ("matmul_tflops", P, ("2026-01-15T00:00:00Z", 94.0, "c"), True, -0.0692),
        ("membw_gbps", P, ("2026-01-15T00:00:00Z", 110.0, "c"), False, 0.0891),
        ("temp_c_per_kw", P, ("2026-01-15T00:00:00Z", 113.0, "c"), True, 0.1188),
        (
            "ecc_sbe_per_h",
            [("2026-01-01T00:00:00Z", 2.0, "a")],
            ("2026-01-08T00:00:00Z", 11.0, "c"),
            False,
            9.0,
        ),
        (
            "ecc_sbe_per_h",
            [("2026-01-01T00:00:00Z", 2.0, "a")],
            ("2026-01-08T00:00:00Z", 12.5, "c"),
            True,
            10.5,
        ),
    ],
    ids=["small-drop", "drop", "faster", "hotter", "ecc-below", "ecc-grows"],
)
def test_judge_against_own_median(figure, past, latest, flagged, change) -> None:
    trend = judge(figure, past, latest, Thresholds())
    assert trend is not None and trend.flagged is flagged
    assert trend.change == pytest.approx(change, abs=1e-3)
    assert trend.runs == (*[p[2] for p in past], latest[2])


def test_judge_needs_the_past_the_thresholds_ask_for() -> None:
    latest = ("2026-01-15T00:00:00Z", 50.0, "c")
    assert judge("matmul_tflops", P, latest, Thresholds(regression_min_past_runs=3)) is None
    assert judge("matmul_tflops", P, latest, Thresholds(regression_min_past_runs=2)).flagged


@pytest.mark.parametrize(
    ("samples", "key", "value"),
    [
        (
            [
                {"elapsed_s": 0, "power_w": 100, "temp_c": 30},
                {"elapsed_s": 1, "power_w": 700, "temp_c": 70},
                {"elapsed_s": 2, "power_w": 600, "temp_c": 66},
            ],
            "temp_c_per_kw",
            104.6154,
        ),
        (
            [{"elapsed_s": 0, "ecc_volatile_sbe": 10}, {"elapsed_s": 1800, "ecc_volatile_sbe": 40}],
            "ecc_sbe_per_h",
            60.0,
        ),
        ([{"elapsed_s": 0, "ecc_volatile_sbe": 10}], "ecc_sbe_per_h", None),
        ([], "temp_c_per_kw", None),
    ],
    ids=["temp-at-load", "ecc-rate", "one-sample", "no-samples"],
)
def test_card_figures(samples, key: str, value) -> None:
    got = card_figures({"matmul_tflops": 700.0}, samples)
    assert got[key] == (pytest.approx(value) if value is not None else None)
    assert got["matmul_tflops"] == 700.0


@pytest.mark.parametrize(
    ("status", "verdict", "last_pass", "expected"),
    [
        (
            "PASS",
            "PASS",
            "2026-01-01T00:00:00Z",
            {"burnin_gpu_days_since_pass": 0.0, "burnin_gpu_regression": 0.0},
        ),
        (
            "WARN",
            "WARN",
            "2026-01-01T00:00:00Z",
            {"burnin_gpu_days_since_pass": 9.5, "burnin_gpu_regression": 1.0},
        ),
        ("FAIL", "PASS", None, {"burnin_gpu_regression": 0.0}),
    ],
    ids=["passed", "regressed", "never-passed"],
)
def test_history_series_per_gpu(status, verdict, last_pass, expected) -> None:
    context = {
        "started_at": "2026-01-10T12:00:00Z",
        "gpus": [
            {
                "node": "n",
                "index": 0,
                "serial": "S",
                "uuid": "U",
                "status": status,
                "verdicts": [{"check": "regression", "status": verdict}],
            }
        ],
        "history": {"cards": {"S|U": {"runs": ["a"], "last_pass_at": last_pass}}},
    }
    series = history_series(context)[("n", 0)]
    assert {k: v for k, v in series.items() if k != "burnin_gpu_history_runs"} == expected
    assert series["burnin_gpu_history_runs"] == 1.0
    assert history_series({"gpus": context["gpus"]}) == {}


def test_help_does_not_import_sqlalchemy_torch_or_pynvml() -> None:
    import subprocess
    import sys

    code = (
        "from click.testing import CliRunner\nfrom burnin.cli import cli\n"
        "for a in (['--help'], ['history', '--help'], ['history', 'trends', '--help'], "
        "['run', '--help']):\n    assert CliRunner().invoke(cli, a).exit_code == 0\n"
        "import sys\nprint(' '.join(sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert not {"sqlalchemy", "alembic", "torch", "pynvml", "kubernetes"} & loaded
