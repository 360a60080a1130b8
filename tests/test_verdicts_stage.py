"""The verdicts stage: evaluate() writes verdicts.jsonl, reports render it, nothing else judges."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fakes import result_record, write_run

from burnin.cli import cli
from burnin.errors import StoreError
from burnin.reports import write_reports
from burnin.store import RunStore
from burnin.verdicts import GpuData, Status, evaluate, read_verdicts
from burnin.verdicts.stage import VERDICTS_FILE

KEYS = ["node", "index", "check", "status", "observed", "limit", "unit", "message", "action"]
HOT = {d: [{"device": d, "elapsed_s": 1.0, "temp_c": 70.0 + 10 * d}] for d in range(3)}

RUNS: list[tuple[str, dict[str, Any]]] = [
    ("healthy", {}),
    ("wrong answers", {"results": {1: [result_record(1, wrong=3)]}}),
    ("hot cards", {"devices": 3, "samples": HOT}),
    ("unfinished", {"finished": False}),
    ("untrusted strings", {"inventory": {0: {"name": "GPU\x1b[31m <b>é"}}}),
]


@pytest.mark.parametrize(("name", "kwargs"), RUNS, ids=[r[0] for r in RUNS])
def test_evaluate_twice_gives_the_same_file_byte_for_byte(
    tmp_path: Path, name: str, kwargs: dict[str, Any]
) -> None:
    run_dir = write_run(tmp_path, **kwargs)
    first = evaluate(run_dir)
    text = (run_dir / VERDICTS_FILE).read_bytes()
    assert evaluate(RunStore(run_dir).load()) == first  # a loaded store judges the same
    assert (run_dir / VERDICTS_FILE).read_bytes() == text
    rows = [json.loads(line) for line in text.decode().splitlines()]
    assert rows and all(list(row) == KEYS for row in rows)
    assert [(r["node"], r["index"]) for r in rows] == sorted((r["node"], r["index"]) for r in rows)
    assert read_verdicts(run_dir) == first


@pytest.mark.parametrize(
    ("thresholds", "status"),
    [(None, "PASS"), ({"warn_temp_c": 75.0}, "WARN"), ({"warn_temp_c": 95.0}, "PASS")],
)
def test_evaluate_takes_thresholds_over_the_manifests(
    tmp_path: Path, thresholds: dict[str, Any] | None, status: str
) -> None:
    run_dir = write_run(tmp_path, devices=1, samples={0: [{"device": 0, "temp_c": 80.0}]})
    verdicts = evaluate(run_dir, thresholds)
    (thermal,) = [v for v in verdicts[("node-a", 0)] if v.check == "thermal"]
    assert thermal.status.name == status


def test_reports_render_verdicts_jsonl_and_call_no_check(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path)
    evaluate(run_dir)
    path = run_dir / VERDICTS_FILE
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:  # a verdict the checks would never give: the report must show it as is
        if row["index"] == 1 and row["check"] == "sdc":
            row.update(status="FAIL", message="edited by hand", action="rma")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    context = write_reports(run_dir)
    gpu1 = next(g for g in context["gpus"] if g["index"] == 1)
    assert gpu1["status"] == "FAIL" and context["exit_code"] == 3
    assert any(v["message"] == "edited by hand" for v in gpu1["verdicts"])


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "no verdicts yet"), ("{not json\n", "line 1"), ('{"node": "n"}\n', "line 1")],
)
def test_reports_without_readable_verdicts_say_so(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    run_dir = write_run(tmp_path)
    if content is not None:
        (run_dir / VERDICTS_FILE).write_text(content)
    with pytest.raises(StoreError, match=problem):
        write_reports(run_dir)


def test_burnin_report_judges_again(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, results={1: [result_record(1, wrong=3)]})
    (run_dir / VERDICTS_FILE).write_text("")  # stale: the report must not trust it
    result = CliRunner().invoke(cli, ["report", str(run_dir), "--quiet"])
    assert result.exit_code == 3, result.output
    assert any(
        v.check == "sdc" and v.status == Status.FAIL for v in read_verdicts(run_dir)[("node-a", 1)]
    )


@pytest.mark.parametrize(
    ("inventory", "samples", "judged"),
    [
        # An inspect snapshot: only the checks that need nothing but the inventory judge it.
        ({"kind": "cuda", "name": "NVIDIA H100 80GB HBM3"}, [], {"identity", "firmware"}),
        # The CPU fallback: the card-only checks stay silent.
        ({"kind": "cpu"}, [{"temp_c": 40.0, "elapsed_s": 1.0}], {"thermal"}),
    ],
)
def test_evaluate_calls_the_checks_whose_data_a_device_has(
    inventory: dict[str, Any], samples: list[dict[str, Any]], judged: set[str]
) -> None:
    gpu = GpuData("n", 0, inventory, samples, [], [], [])
    found = {v.check for v in evaluate([gpu])[("n", 0)]}
    assert judged <= found
    if samples:
        assert not found & {"identity", "firmware", "wear", "power", "throttle", "fan"}
    else:
        assert not found & {"thermal", "throttle", "fan", "xid", "sdc", "pcie-link"}
