"""Every command through CliRunner: help, kernels, plan, run (CPU, end to end) and report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fake_pynvml import FakeGpu, FakeNvml
from fake_pynvml import error as nvml_error
from fakes import write_run

from burnin.cli import cli
from burnin.devices import Device
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


def no_driver() -> FakeNvml:
    """pynvml on a node without the NVIDIA driver: nvmlInit cannot find libnvidia-ml."""
    return FakeNvml([], init_error=nvml_error("NVMLError_LibraryNotFound"))


def runtime(**kwargs: object) -> Runtime:
    """A node without GPU and without NVIDIA driver, unless ``kwargs`` say otherwise."""
    world: dict[str, object] = {
        "cuda_devices": lambda: [],
        "path_exists": lambda path: False,
        "nvml_module": no_driver,
        **kwargs,
    }
    return Runtime(hostname="test-node", **world)  # type: ignore[arg-type]


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
        ["checks", "--help"],
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


@pytest.mark.parametrize(
    ("check", "lines"),
    [
        ("sdc", ["needs: run; CPU fallback: yes"]),
        (
            "thermal",
            [
                "needs: telemetry; CPU fallback: yes",
                "thresholds.warn_temp_c = 85.0 C  (float)",
                "source: Meta GCM gpu_temperature",
            ],
        ),
        (
            "identity",
            [
                "needs: inventory; CPU fallback: no (cards only)",
                "thresholds.identity_memory_tolerance = 0.02 fraction of the SKU's memory",
            ],
        ),
        ("retired-pages", ["thresholds.retired_pages_fail = 63 pages  (int)", "DCGM_LIMIT_MAX"]),
        ("slow-link", ["thresholds.slow_link_fail_ratio = 0.75 fraction of the typical pair"]),
    ],
)
def test_checks_lists_each_check_with_its_thresholds(check: str, lines: list[str]) -> None:
    from burnin.verdicts import checks

    result = invoke(["checks"])
    assert result.exit_code == 0, result.output
    blocks = {}
    for line in result.output.splitlines():
        if not line.startswith(" "):
            name = line.split(":", 1)[0]
            blocks[name] = line
        else:
            blocks[name] += "\n" + line
    assert list(blocks) == list(checks())  # every registered check, in registry order
    assert all(line in blocks[check] for line in lines), blocks[check]
    # Every threshold line is followed by its source.
    text = blocks[check].splitlines()
    for i, line in enumerate(text):
        if line.strip().startswith("thresholds."):
            assert text[i + 1].strip().startswith("source: ") and len(text[i + 1]) > 20


def test_plan_prints_schedule_and_runs_nothing(tmp_path: Path) -> None:
    result = invoke(["plan", *FAST, "--set", "cpu.devices=3", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "CPU fallback" in result.output
    assert len([line for line in result.output.splitlines() if "matmul" in line]) == 3
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
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


@pytest.mark.slow
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
        (["run", "--gpus", "0"], "--gpus 0: the CPU fallback has no GPUs"),
        (["run", "--device", "cpu", "--gpus", "0,1"], "--gpus 0,1: the CPU fallback"),
        (["plan", "--gpus", "0"], "--gpus 0: the CPU fallback has no GPUs"),
        (["run", "--expect-gpus", "0"], "--expect-gpus"),
        (["run", "--set", "run.expect_gpus=-1"], "run.expect_gpus"),
        (["run", "--set", "telemetry.required=maybe"], "telemetry.required"),
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


@pytest.mark.slow
def test_report_exit_code_follows_verdicts(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, events=[{"device": 0, "kind": "hang", "elapsed_s": 1}])
    result = invoke(["report", str(run_dir)])
    assert result.exit_code == 4
    assert "ERROR - node-a gpu0 hang" in result.output


@pytest.mark.slow
def test_python_dash_m() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "burnin", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "burnin" in done.stdout


# -- a GPU node never passes without its GPUs or its telemetry --------------------------------

CARDS = [
    FakeGpu(
        uuid=f"GPU-{i:08x}-1111-2222-3333-444444444444",
        serial=f"165482201{i:04d}",
        bus_id=f"00000000:{0x18 + i:02x}:00.0",
    )
    for i in range(8)
]
GPU_RUN = [
    "--duration", "1s", "--quiet",
    "--set", "kernels.matmul.cpu_size=64", "--set", "telemetry.interval_s=0.2",
    "--set", 'run.kernels=["matmul"]',
]  # fmt: skip


def torch_sees(count: int) -> list[Device]:
    """The first ``count`` of CARDS as the GPUs torch shows (computing on the CPU, as the
    simulator's GPUs do, so the run really stresses and judges them here)."""
    return [
        Device(index=i, kind="simulated", name=c.name, uuid=c.uuid, pci_bus_id=c.bus_id)
        for i, c in enumerate(CARDS[:count])
    ]


def gpu_node(torch_count: int, nvml: FakeNvml, nvidiactl: bool = True) -> Runtime:
    return runtime(
        cuda_devices=lambda: torch_sees(torch_count),
        nvml_module=lambda: nvml,
        path_exists=lambda path: nvidiactl and path == "/dev/nvidiactl",
        env={},
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "world", "args", "code", "statuses"),
    [
        (
            "8 cards, torch sees 7",
            lambda: gpu_node(7, FakeNvml(CARDS)),
            [],
            3,
            {**dict.fromkeys(range(7), (None, "PASS")), 7: ("FAIL", None)},
        ),
        (
            "8 cards, torch sees none",
            lambda: gpu_node(0, FakeNvml(CARDS)),
            [],
            3,
            dict.fromkeys(range(8), ("FAIL", None)),
        ),
        (
            "driver node only, no NVML, torch sees none",
            lambda: gpu_node(0, no_driver()),
            ["--device", "cuda"],
            3,
            {0: ("FAIL", None)},
        ),
        (
            "GPUs without NVML",
            lambda: gpu_node(2, no_driver()),
            [],
            4,
            dict.fromkeys(range(2), ("SKIP", "ERROR")),
        ),
        (
            "GPUs without NVML, telemetry not required",
            lambda: gpu_node(2, no_driver()),
            ["--set", "telemetry.required=false"],
            0,
            dict.fromkeys(range(2), ("SKIP", "WARN")),
        ),
        (
            "CPU fallback: no driver at all",
            lambda: gpu_node(0, no_driver(), nvidiactl=False),
            [],
            0,
            dict.fromkeys(range(1), (None, None)),
        ),
    ],
    ids=lambda value: value.replace(" ", "-") if isinstance(value, str) else None,
)
def test_gpu_node_never_passes_without_evidence(
    tmp_path: Path,
    case: str,
    world: Any,
    args: list[str],
    code: int,
    statuses: dict[int, tuple[str | None, str | None]],
) -> None:
    """(gpu-count, telemetry) status per device index; None = the check has no verdict."""
    result = invoke(["run", *GPU_RUN, *args, "--out", str(tmp_path)], world())
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    report = json.loads((run_dir_of(result.output) / "report.json").read_text())
    assert report["exit_code"] == code
    by_index = {g["index"]: g for g in report["gpus"]}
    assert set(by_index) == set(statuses)
    for index, (count, telemetry) in statuses.items():
        found = {v["check"]: v for v in by_index[index]["verdicts"]}
        assert (
            found.get("gpu-count", {}).get("status"),
            found.get("telemetry", {}).get("status"),
        ) == (count, telemetry)
    for index, gpu in by_index.items():
        if statuses[index][0] == "FAIL":
            assert gpu["status"] == "FAIL"
            assert f"FAIL - test-node gpu{index} gpu-count: GPU missing" in result.output
    for gpu in report["gpus"]:
        count = next((v for v in gpu["verdicts"] if v["check"] == "gpu-count"), None)
        if count and count["status"] == "FAIL" and gpu["uuid"]:
            card = next(c for c in CARDS if c.uuid == gpu["uuid"])
            assert card.bus_id in count["message"] and card.serial in count["message"]
            assert count["action"] == "reseat"
    if code == 3:
        assert [n["status"] for n in report["nodes"]] == ["FAIL"]
    if statuses.get(0, (None, None))[1] == "WARN":
        warn = next(v for v in by_index[0]["verdicts"] if v["check"] == "telemetry")
        assert "telemetry.required = false" in warn["message"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("node_gpus", "expect", "code", "count_status"),
    [(7, 8, 3, "FAIL"), (7, 7, 0, "PASS")],
)
def test_expect_gpus_on_a_simulated_node(
    tmp_path: Path, node_gpus: int, expect: int, code: int, count_status: str
) -> None:
    """The expectation reaches a simulated node through the same discovery as a real one."""
    scenario = tmp_path / "short-node.toml"
    scenario.write_text(
        f'[fleet]\nname = "short"\nnodes = 1\ngpus_per_node = {node_gpus}\n'
        'sku = "H100-SXM5-80GB"\nseed = 7\nnoise = 0.01\n'
    )
    out = tmp_path / "runs"
    args = ["run", "--simulate", str(scenario), "--expect-gpus", str(expect), "--quiet"]
    result = invoke([*args, "--out", str(out)])
    assert result.exit_code == code, result.output
    report = json.loads((run_dir_of(result.output) / "report.json").read_text())
    counts = [
        (g["index"], v["status"])
        for g in report["gpus"]
        for v in g["verdicts"]
        if v["check"] == "gpu-count"
    ]
    if count_status == "FAIL":
        assert counts == [(node_gpus, "FAIL")]
        (missing,) = [g for g in report["gpus"] if g["index"] == node_gpus]
        assert missing["status"] == "FAIL" and missing["node"] == "node-00"
        assert f"{expect} expected (--expect-gpus)" in missing["verdicts"][0]["message"]
    else:
        assert sorted(counts) == [(i, "PASS") for i in range(node_gpus)]


def test_plan_names_the_missing_cards() -> None:
    result = invoke(["plan", "--set", 'run.kernels=["matmul"]'], gpu_node(7, FakeNvml(CARDS)))
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert "7 simulated GPU(s); 1 GPU(s) missing (CUDA shows 7, the driver lists 8)" in first
    assert f"NVML index 7 PCI {CARDS[7].bus_id} serial {CARDS[7].serial}" in first
