"""Machine outputs: report.json against its schema, burnin.prom, junit.xml, telemetry.parquet,
energy and cost.

Real outputs come from a CPU run and a simulated run through the CLI (once per module); the
rest from synthetic stores (tests/fakes.py), judged by the real verdicts stage.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from fakes import result_record, write_run
from jsonschema import Draft202012Validator
from junitparser import Error, Failure, JUnitXml, Skipped
from prometheus_client.parser import text_string_to_metric_families

from burnin.cli import cli
from burnin.reports import OUTPUTS, write_reports
from burnin.reports.figures import energy_j, kernel_seconds
from burnin.reports.machine import report_schema
from burnin.reports.parquet import sample_schema
from burnin.runtime import Runtime
from burnin.store import RunStore
from burnin.verdicts import evaluate

HOSTILE = '<script>alert(1)</script>"\n{}\\\x1b[31m\u202e'
SCENARIO = """
[fleet]
name = "mini"
nodes = 2
gpus_per_node = 2
sku = "H100-SXM5-80GB"
seed = 3
"""
FAST = ["--device", "cpu", "--duration", "1s", "--set", "kernels.matmul.cpu_size=64"]
FAST += ["--set", "telemetry.interval_s=0.2"]


def _run(args: list[str], out: Path) -> Path:
    runtime = Runtime(hostname="cpu-node", cuda_devices=lambda: [])
    result = CliRunner().invoke(cli, ["run", *args, "--out", str(out), "--quiet"], obj=runtime)
    assert result.exit_code in (0, 3, 4), result.output
    (run_dir,) = [p for p in out.iterdir() if (p / "report.json").is_file()]
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real CPU run (with --prom-dir) and a simulated two-node run."""
    root = tmp_path_factory.mktemp("machine")
    scenario = root / "mini.toml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    prom_dir = root / "textfile"
    prom_dir.mkdir()
    price = ["--set", "energy.price_per_kwh=0.25", "--set", "energy.currency=EUR"]
    return {
        "cpu": _run([*FAST, "--prom-dir", str(prom_dir)], root / "cpu"),
        "simulated": _run(["--simulate", str(scenario), "--duration", "30s", *price], root / "sim"),
        "textfile": prom_dir,
    }


def _report(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "report.json").read_text(encoding="utf-8"))


def _validator() -> Draft202012Validator:
    schema = report_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _synthetic(tmp_path: Path, strict: bool = False, **kwargs: Any) -> tuple[Path, dict]:
    run_dir = write_run(tmp_path, **kwargs)
    evaluate(run_dir)
    return run_dir, write_reports(run_dir, strict=strict)


# --- report.json and its schema ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cpu", "simulated"])
def test_real_reports_match_the_schema(runs: dict[str, Path], kind: str) -> None:
    report = _report(runs[kind])
    errors = [f"{list(e.path)}: {e.message}" for e in _validator().iter_errors(report)]
    assert errors == []
    assert report["gpus"] and report["nodes"]
    for output in OUTPUTS:
        assert (runs[kind] / output).stat().st_size > 0


@pytest.mark.slow
def test_simulated_report_carries_energy_and_cost(runs: dict[str, Path]) -> None:
    report = _report(runs["simulated"])
    cards = [g["metrics"]["energy_kwh"] for g in report["gpus"]]
    assert all(kwh and kwh > 0 for kwh in cards)
    assert report["energy_kwh"] == pytest.approx(sum(cards), abs=1e-5)
    for node in report["nodes"]:
        mine = [g["metrics"]["energy_kwh"] for g in report["gpus"] if g["node"] == node["node"]]
        assert node["energy_kwh"] == pytest.approx(sum(mine), abs=1e-5)
        assert node["cost"] == pytest.approx(node["energy_kwh"] * 0.25, abs=1e-5)
    assert report["cost"]["currency"] == "EUR" and report["cost"]["price_per_kwh"] == 0.25
    assert report["cost"]["amount"] == pytest.approx(report["energy_kwh"] * 0.25, abs=1e-5)


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def change(report: dict[str, Any]) -> None:
        node: Any = report
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def _drop(path: tuple[Any, ...]) -> Any:
    def change(report: dict[str, Any]) -> None:
        node: Any = report
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return change


BROKEN = [
    ("no schema", _drop(("schema",))),
    ("other schema", _set(("schema",), "burnin.report/2")),
    ("unknown run status", _set(("status",), "OK")),
    ("run status SKIP", _set(("status",), "SKIP")),
    ("exit code out of range", _set(("exit_code",), 7)),
    ("exit code as text", _set(("exit_code",), "0")),
    ("negative energy", _set(("energy_kwh",), -1.0)),
    ("no gpus", _drop(("gpus",))),
    ("gpu without verdicts", _drop(("gpus", 0, "verdicts"))),
    ("negative index", _set(("gpus", 0, "index"), -1)),
    ("index as text", _set(("gpus", 0, "index"), "0")),
    ("metric as text", _set(("gpus", 0, "metrics", "matmul_tflops"), "fast")),
    ("metric without matmul", _drop(("gpus", 0, "metrics", "matmul_tflops"))),
    ("figure that is a list", _set(("gpus", 0, "metrics", "extra_gbps"), [1, 2])),
    ("verified products fractional", _set(("gpus", 0, "metrics", "matmul_products"), 1.5)),
    ("verdict status unknown", _set(("gpus", 0, "verdicts", 0, "status"), "MAYBE")),
    ("verdict without action", _drop(("gpus", 0, "verdicts", 0, "action"))),
    ("verdict with a stray key", _set(("gpus", 0, "verdicts", 0, "extra"), 1)),
    ("node without status", _drop(("nodes", 0, "status"))),
    ("node energy as text", _set(("nodes", 0, "energy_kwh"), "1 kWh")),
    ("cost without currency", _drop(("cost", "currency"))),
    ("cost currency lowercase", _set(("cost", "currency"), "eur")),
    ("cost as a number", _set(("cost",), 1.5)),
]


@pytest.mark.slow
@pytest.mark.parametrize("change", [b[1] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_schema_rejects_a_broken_report(runs: dict[str, Path], change: Any) -> None:
    report = copy.deepcopy(_report(runs["simulated"]))
    assert _validator().is_valid(report)
    change(report)
    assert not _validator().is_valid(report)


def test_schema_ships_in_the_package() -> None:
    from importlib import resources

    from burnin.reports.machine import SCHEMA_FILE

    assert (resources.files("burnin.reports") / SCHEMA_FILE).is_file()
    assert report_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


# --- burnin.prom --------------------------------------------------------------------------------


def _series(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cpu", "simulated"])
def test_prom_series_are_unique_and_carry_no_run_id(runs: dict[str, Path], kind: str) -> None:
    series = _series((runs[kind] / "burnin.prom").read_text(encoding="utf-8"))
    keys = Counter((name, tuple(sorted(labels.items()))) for name, labels, _v in series)
    assert [k for k, n in keys.items() if n > 1] == []
    assert not any("run_id" in labels for _n, labels, _v in series)
    names = {name for name, _l, _v in series}
    assert {
        "burnin_run_status",
        "burnin_run_exit_code",
        "burnin_run_end_timestamp_seconds",
        "burnin_gpu_status",
        "burnin_check_status",
        "burnin_gpu_matmul_tflops",
    } <= names


@pytest.mark.slow
def test_prom_has_the_simulated_figures_and_energy(runs: dict[str, Path]) -> None:
    report = _report(runs["simulated"])
    series = _series((runs["simulated"] / "burnin.prom").read_text(encoding="utf-8"))
    by_name: dict[str, list[tuple[dict[str, str], float]]] = {}
    for name, labels, value in series:
        by_name.setdefault(name, []).append((labels, value))
    for metric, prom, scale in [
        ("matmul_tflops", "burnin_gpu_matmul_tflops", 1.0),
        ("membw_gbps", "burnin_gpu_membw_gbps", 1.0),
        ("allreduce_busbw_gbps", "burnin_gpu_allreduce_busbw_gbps", 1.0),
        ("max_temp_c", "burnin_gpu_max_temp_celsius", 1.0),
        ("energy_kwh", "burnin_gpu_energy_joules", 3.6e6),
    ]:
        got = {(lab["node"], lab["gpu"]): v for lab, v in by_name[prom]}
        for gpu in report["gpus"]:
            labels = next(lab for lab, _v in by_name[prom] if lab["uuid"] == gpu["uuid"])
            assert labels["serial"] == gpu["serial"] and labels["sku"] == gpu["sku"]
            want = gpu["metrics"][metric] * scale
            assert got[(gpu["node"], str(gpu["index"]))] == pytest.approx(want, rel=1e-6)
    (run_joules,) = [v for _l, v in by_name["burnin_run_energy_joules"]]
    assert run_joules == pytest.approx(report["energy_kwh"] * 3.6e6, rel=1e-5)
    (cost,) = by_name["burnin_run_cost"]
    assert cost[0] == {"currency": "EUR"} and cost[1] == pytest.approx(report["cost"]["amount"])
    assert len(by_name["burnin_node_energy_joules"]) == len(report["nodes"])


def test_prom_statuses_one_series_per_value(tmp_path: Path) -> None:
    run_dir, context = _synthetic(tmp_path, results={1: [result_record(1, wrong=2)]})
    series = _series((run_dir / "burnin.prom").read_text(encoding="utf-8"))
    checks = [(lab, v) for name, lab, v in series if name == "burnin_check_status"]
    current = {(lab["gpu"], lab["check"]): lab["status"] for lab, v in checks if v == 1.0}
    per_check = Counter((lab["gpu"], lab["check"]) for lab, _v in checks)
    assert set(per_check.values()) == {5}  # SKIP, PASS, WARN, FAIL, ERROR
    assert len(current) == len(per_check)  # exactly one current status each
    assert current[("1", "sdc")] == "FAIL" and current[("0", "sdc")] == "PASS"
    assert current[("0", "thermal")] == "SKIP"  # no samples: judged by nothing, not passed
    gpu = {
        lab["gpu"]: lab["status"] for name, lab, v in series if name == "burnin_gpu_status" and v
    }
    assert gpu == {"0": "PASS", "1": "FAIL"}
    (end,) = [v for name, _l, v in series if name == "burnin_run_end_timestamp_seconds"]
    assert end == dt.datetime(2026, 11, 23, 10, 5, tzinfo=dt.UTC).timestamp()
    (code,) = [v for name, _l, v in series if name == "burnin_run_exit_code"]
    assert code == context["exit_code"] == 3


def test_prom_hostile_device_strings_survive(tmp_path: Path) -> None:
    inventory = {0: {"serial": HOSTILE, "uuid": HOSTILE, "sku": HOSTILE}}
    run_dir, _context = _synthetic(tmp_path, inventory=inventory)
    series = _series((run_dir / "burnin.prom").read_text(encoding="utf-8"))
    mine = [lab for name, lab, _v in series if name == "burnin_gpu_status" and lab["gpu"] == "0"]
    assert mine and all(lab["serial"] == HOSTILE == lab["uuid"] == lab["sku"] for lab in mine)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["run", "report"])
def test_prom_dir_gets_the_textfile_atomically(
    runs: dict[str, Path], tmp_path: Path, command: str
) -> None:
    if command == "run":
        textfile = runs["textfile"]
    else:
        textfile = tmp_path / "textfile"
        textfile.mkdir()
        result = CliRunner().invoke(
            cli, ["report", str(runs["simulated"]), "--quiet", "--prom-dir", str(textfile)]
        )
        assert result.exit_code == 0, result.output
    assert [p.name for p in textfile.iterdir()] == ["burnin.prom"]  # no temporary file left
    names = {n for n, _l, _v in _series((textfile / "burnin.prom").read_text(encoding="utf-8"))}
    assert "burnin_run_end_timestamp_seconds" in names


def test_prom_dir_must_exist(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "runs")
    result = CliRunner().invoke(cli, ["report", str(run_dir), "--prom-dir", str(tmp_path / "no")])
    assert result.exit_code == 2 and "--prom-dir" in result.output


# --- junit.xml ----------------------------------------------------------------------------------


def _cases(run_dir: Path) -> list[Any]:
    xml = JUnitXml.fromfile(str(run_dir / "junit.xml"))
    return [case for suite in xml for case in suite]


def _properties(run_dir: Path, name: str) -> dict[str, str]:
    """A testcase's properties (junitparser reads only a suite's)."""
    root = ET.parse(run_dir / "junit.xml").getroot()
    case = next(c for c in root.iter("testcase") if c.get("name") == name)
    return {p.get("name", ""): p.get("value", "") for p in case.iter("property")}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cpu", "simulated"])
def test_junit_names_unique_and_counts_match(runs: dict[str, Path], kind: str) -> None:
    report = _report(runs[kind])
    xml = JUnitXml.fromfile(str(runs[kind] / "junit.xml"))
    cases = [case for suite in xml for case in suite]
    names = [c.name for c in cases]
    assert len(names) == len(set(names)) == sum(len(g["verdicts"]) for g in report["gpus"])
    statuses = Counter(v["status"] for g in report["gpus"] for v in g["verdicts"])
    assert xml.tests == len(cases)
    assert (
        xml.failures
        == statuses["FAIL"]
        == sum(isinstance(r, Failure) for c in cases for r in c.result)
    )
    assert xml.errors == statuses["ERROR"]
    assert (
        xml.skipped
        == statuses["SKIP"]
        == sum(isinstance(r, Skipped) for c in cases for r in c.result)
    )
    cards = {f"{g['node']}/gpu{g['index']}" for g in report["gpus"]}
    assert {n.rsplit("/", 1)[0] for n in names} == cards


@pytest.mark.slow
def test_junit_times_come_from_the_kernels(runs: dict[str, Path]) -> None:
    report = _report(runs["simulated"])
    cases = {c.name: c for c in _cases(runs["simulated"])}
    for gpu in report["gpus"]:
        base = f"{gpu['node']}/gpu{gpu['index']}"
        assert gpu["kernel_s"]["matmul"] > 0
        assert cases[f"{base}/throughput"].time == pytest.approx(
            gpu["kernel_s"]["matmul"], abs=1e-3
        )
        assert cases[f"{base}/membw"].time == pytest.approx(gpu["kernel_s"]["membw"], abs=1e-3)
        assert cases[f"{base}/ecc"].time == 0.0


STATUS_CASES = [
    # (name, write_run kwargs, strict, the case, expected result class or None, system-out head)
    (
        "fail",
        {"results": {1: [result_record(1, wrong=2)]}},
        False,
        "node-a/gpu1/sdc",
        Failure,
        "FAIL",
    ),
    (
        "error",
        {"events": [{"device": 0, "kind": "hang", "elapsed_s": 3.0}]},
        False,
        "node-a/gpu0/hang",
        Error,
        "ERROR",
    ),
    ("skip", {}, False, "node-a/gpu0/thermal", Skipped, "SKIP"),
    (
        "warn passes",
        {"samples": {0: [{"device": 0, "elapsed_s": 1, "temp_c": 86.0}]}},
        False,
        "node-a/gpu0/thermal",
        None,
        "WARN",
    ),
    (
        "warn fails when strict",
        {"samples": {0: [{"device": 0, "elapsed_s": 1, "temp_c": 86.0}]}},
        True,
        "node-a/gpu0/thermal",
        Failure,
        "WARN",
    ),
    ("pass", {}, False, "node-a/gpu0/sdc", None, "PASS"),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kwargs", "strict", "name", "kind", "head"),
    [c[1:] for c in STATUS_CASES],
    ids=[c[0] for c in STATUS_CASES],
)
def test_junit_status_mapping(
    tmp_path: Path, kwargs: dict, strict: bool, name: str, kind: Any, head: str
) -> None:
    run_dir, _context = _synthetic(tmp_path, strict=strict, **kwargs)
    case = {c.name: c for c in _cases(run_dir)}[name]
    assert [type(r) for r in case.result] == ([kind] if kind else [])
    assert case.system_out.startswith(f"{head}: ")
    assert _properties(run_dir, name)["burnin.status"] == head


@pytest.mark.slow
def test_junit_repeated_check_gets_distinct_names(runs: dict[str, Path]) -> None:
    names = [c.name for c in _cases(runs["simulated"])]
    preflight = [n for n in names if n.startswith("node-00/gpu0/preflight")]
    assert len(preflight) == len(set(preflight)) >= 2


def test_junit_hostile_strings_parse(tmp_path: Path) -> None:
    hostile = HOSTILE + "\x00\x07"
    run_dir, _context = _synthetic(
        tmp_path, inventory={0: {"serial": hostile}}, results={0: [result_record(0, wrong=1)]}
    )
    assert "node-a/gpu0/sdc" in {c.name for c in _cases(run_dir)}
    shown = HOSTILE.replace("\x1b", "\ufffd") + "\ufffd\ufffd"  # XML 1.0 forbids them
    assert _properties(run_dir, "node-a/gpu0/sdc")["burnin.serial"] == shown


# --- telemetry.parquet --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cpu", "simulated"])
def test_parquet_has_every_sample_typed(runs: dict[str, Path], kind: str) -> None:
    run = RunStore(runs[kind]).load()
    table = pq.read_table(runs[kind] / "telemetry.parquet")
    assert table.num_rows == sum(len(n.samples) for n in run.nodes.values()) > 0
    expected = sample_schema()
    for field in expected:
        assert table.schema.field(field.name).type == field.type, field.name
    assert table.schema.field("throttle_reasons").type == pa.list_(pa.string())
    assert set(table.column("node").to_pylist()) == set(run.nodes)


def test_parquet_of_a_run_without_samples_keeps_its_columns(tmp_path: Path) -> None:
    run_dir, _context = _synthetic(tmp_path)
    table = pq.read_table(run_dir / "telemetry.parquet")
    assert table.num_rows == 0 and table.schema.field("power_w").type == pa.float64()


def test_parquet_keeps_a_field_beyond_the_sample_type(tmp_path: Path) -> None:
    samples = {0: [{"device": 0, "elapsed_s": 1, "power_w": 300, "board_w": 12.5}]}
    run_dir, _context = _synthetic(tmp_path, samples=samples)
    table = pq.read_table(run_dir / "telemetry.parquet")
    assert table.column("power_w").to_pylist() == [300.0]
    assert table.column("board_w").to_pylist() == [12.5]


# --- energy and durations -----------------------------------------------------------------------


def _s(t: float, energy: float | None = None, watts: float | None = None) -> dict[str, Any]:
    return {"elapsed_s": t, "energy_j": energy, "power_w": watts}


ENERGY = [
    ("counter", [_s(0, 1000.0, 100), _s(10, 2000.0, 100)], 1000.0),
    ("counter out of order", [_s(10, 2000.0), _s(0, 1000.0), _s(5, 1500.0)], 1000.0),
    # A driver reload restarts the counter: the interval falls back to the power integral.
    ("counter reset", [_s(0, 5000.0, 100), _s(10, 6000.0, 100), _s(20, 50.0, 100)], 2000.0),
    (
        "counter reset, no power",
        [_s(0, 5000.0), _s(10, 6000.0), _s(20, 50.0), _s(30, 550.0)],
        1500.0,
    ),
    ("power only", [_s(0, None, 100), _s(10, None, 300)], 2000.0),
    ("counter then power", [_s(0, 0.0, 100), _s(10, 1000.0, 100), _s(20, None, 100)], 2000.0),
    ("same instant twice", [_s(0, 0.0), _s(0, None, 50), _s(10, 800.0)], 800.0),
    ("one sample", [_s(0, 1000.0, 100)], None),
    ("nothing", [], None),
    ("no readings", [_s(0), _s(10)], None),
    ("non-finite", [_s(0, float("nan"), 100), _s(10, float("inf"), 100)], 1000.0),
]


@pytest.mark.parametrize(("samples", "joules"), [e[1:] for e in ENERGY], ids=[e[0] for e in ENERGY])
def test_energy(samples: list[dict[str, Any]], joules: float | None) -> None:
    assert energy_j(samples) == (None if joules is None else pytest.approx(joules))


@pytest.mark.slow
def test_simulated_energy_stays_within_tdp_times_time(runs: dict[str, Path]) -> None:
    run = RunStore(runs["simulated"]).load()
    report = _report(runs["simulated"])
    tdp_w = 700.0  # H100-SXM5-80GB, burnin/data/skus.toml
    for gpu in report["gpus"]:
        times = [
            s["elapsed_s"] for s in run.nodes[gpu["node"]].samples if s["device"] == gpu["index"]
        ]
        assert gpu["metrics"]["energy_kwh"] * 3.6e6 <= tdp_w * (max(times) - min(times))


KERNEL_RECORDS = [
    ("one kernel", [("kernel-start", "matmul", 1.0), ("result", "matmul", 4.5)], {"matmul": 3.5}),
    (
        "two kernels",
        [
            ("kernel-start", "matmul", 0.0),
            ("progress", "matmul", 1.0),
            ("result", "matmul", 2.0),
            ("kernel-start", "membw", 2.0),
            ("result", "membw", 5.0),
        ],
        {"matmul": 2.0, "membw": 3.0},
    ),
    ("crashed", [("kernel-start", "matmul", 1.0), ("progress", "matmul", 3.0)], {"matmul": 2.0}),
    ("none", [("start", None, 0.0), ("done", None, 1.0)], {}),
]


@pytest.mark.parametrize(
    ("records", "expected"), [k[1:] for k in KERNEL_RECORDS], ids=[k[0] for k in KERNEL_RECORDS]
)
def test_kernel_seconds(records: list[tuple[str, Any, float]], expected: dict[str, float]) -> None:
    rows = [{"type": t, "kernel": k, "elapsed_s": e} for t, k, e in records]
    assert kernel_seconds(rows) == expected


def test_no_price_no_cost(tmp_path: Path) -> None:
    samples = {0: [_s(0, None, 360.0) | {"device": 0}, _s(10, None, 360.0) | {"device": 0}]}
    run_dir, context = _synthetic(tmp_path, samples=samples)
    assert context["cost"] is None and context["energy_kwh"] == pytest.approx(0.001)
    assert {n["node"]: n["cost"] for n in context["nodes"]} == {"node-a": None}
    assert _validator().is_valid(_report(run_dir))
