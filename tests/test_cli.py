"""Every command through CliRunner: help, kernels, plan, run (CPU, end to end) and report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import write_run

from burnin.cli import cli
from burnin.runtime import Runtime
from burnin.sim.faults import make_fault
from burnin.sim.telemetry import with_faults

FAST = [
    "--device",
    "cpu",
    "--duration",
    "1s",
    "--set",
    "kernels.matmul.cpu_size=64",
    "--set",
    "telemetry.interval_s=0.2",
]


def runtime(**kwargs: object) -> Runtime:
    return Runtime(hostname="test-node", cuda_devices=lambda: [], **kwargs)


def invoke(args: list[str], obj: Runtime | None = None):
    return CliRunner().invoke(cli, args, obj=obj if obj is not None else runtime())


def run_dir_of(output: str) -> Path:
    line = next(line for line in output.splitlines() if line.startswith("# report: "))
    return Path(line.removeprefix("# report: ")).parent


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["run", "--help"],
        ["plan", "--help"],
        ["report", "--help"],
        ["kernels", "--help"],
        ["--version"],
    ],
)
def test_help(args: list[str]) -> None:
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert "burnin" in result.output or "Usage" in result.output


def test_kernels_lists_matmul_options() -> None:
    result = invoke(["kernels"])
    assert result.exit_code == 0
    assert "matmul:" in result.output and "kernels.matmul.dtype = 'bf16'" in result.output


def test_plan_prints_schedule_and_runs_nothing(tmp_path: Path) -> None:
    result = invoke(["plan", *FAST, "--set", "cpu.devices=3", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "CPU fallback" in result.output
    assert len([line for line in result.output.splitlines() if "matmul" in line]) == 3
    assert not any(tmp_path.iterdir())


def test_run_end_to_end_on_cpu(tmp_path: Path) -> None:
    result = invoke(["run", *FAST, "--quiet", "--set", "cpu.devices=2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    run_dir = run_dir_of(result.output)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["schema"] == "burnin.report/1" and report["exit_code"] == 0
    assert [g["status"] for g in report["gpus"]] == ["PASS", "PASS"]
    assert all(g["metrics"]["matmul_tflops"] > 0 for g in report["gpus"])
    assert "CPU fallback" in report["device_note"]
    assert (run_dir / "report.html").exists()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config"]["run"]["duration_s"] == 1.0 and manifest["finished_at"]
    # Re-rendering from the store gives the same verdicts and exit code.
    again = invoke(["report", str(run_dir), "--quiet"])
    assert again.exit_code == 0


def test_injected_wrong_answer_fails_that_device(tmp_path: Path) -> None:
    obj = runtime(**with_faults({1: (make_fault("sdc-constant"),)}))
    result = invoke(
        ["run", *FAST, "--quiet", "--set", "cpu.devices=2", "--out", str(tmp_path)], obj
    )
    assert result.exit_code == 3, result.output
    report = json.loads((run_dir_of(result.output) / "report.json").read_text())
    by_index = {g["index"]: g for g in report["gpus"]}
    assert by_index[0]["status"] == "PASS"
    assert by_index[1]["status"] == "FAIL"
    sdc = next(v for v in by_index[1]["verdicts"] if v["check"] == "sdc")
    assert sdc["status"] == "FAIL" and sdc["observed"] > 0 and sdc["action"] == "rma"
    assert "FAIL - test-node gpu1 sdc:" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--set", "run.bogus=1"], "run.bogus"),
        (["run", "--duration", "soon"], "--duration"),
        (["run", "--profile", "nope"], "unknown profile"),
        (["run", "--gpus", "a,b"], "GPU indices"),
        (["run", "--device", "cuda"], "no CUDA GPU"),
        (["plan", "--set", "cpu.devices=-1"], "cpu.devices"),
        (["report", "/nonexistent/run"], "no such run directory"),
    ],
)
def test_bad_input_exits_2_with_a_message(args: list[str], message: str) -> None:
    result = invoke(args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_config_file_with_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text("[run]\nduration_s = 5\n[thermal]\nlimit = 3\n")
    result = invoke(["run", "--config", str(path)])
    assert result.exit_code == 2
    assert "config key 'thermal'" in result.output and str(path) in result.output


def test_report_on_corrupt_directory(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path)
    results = run_dir / "nodes" / "node-a" / "results.jsonl"
    results.write_text('{"device": 0}\ngarbage\n{"device": 1}\n')
    result = invoke(["report", str(run_dir)])
    assert result.exit_code == 2
    assert "results.jsonl line 2" in result.output


def test_report_exit_code_follows_verdicts(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, events=[{"device": 0, "kind": "hang", "elapsed_s": 1}])
    result = invoke(["report", str(run_dir)])
    assert result.exit_code == 4
    assert "ERROR - node-a gpu0 hang" in result.output


def test_python_dash_m() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "burnin", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "burnin" in done.stdout
