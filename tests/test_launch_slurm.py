"""`burnin launch slurm`: the sbatch script, run under bash with fake Slurm tools, and --submit."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from burnin.cli import cli
from burnin.cli import run as run_command
from burnin.launch import Launchers
from burnin.launch.slurm import SlurmJob, render_sbatch

SHAPE = ["--nodes", "4", "--gpus-per-node", "8"]


def launch(args: list[str], obj: Any = None) -> Any:
    return CliRunner().invoke(cli, ["launch", "slurm", *args], obj=obj)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_slurm(tmp_path: Path) -> dict[str, Any]:
    """scontrol, srun and torchrun stand-ins: srun records its options and runs its command,
    torchrun records its arguments one per line (NUL-separated)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    log.mkdir()
    _write(
        bin_dir / "scontrol",
        '#!/bin/bash\n[ "$*" = "show hostnames rack-a-[01-04]" ] || exit 9\n'
        "printf 'rack-a-01\\nrack-a-02\\nrack-a-03\\nrack-a-04\\n'\n",
    )
    _write(
        bin_dir / "srun",
        f'#!/bin/bash\nwhile [[ "$1" == -* ]]; do echo "$1" >> {log}/srun; shift; done\n'
        'exec "$@"\n',
    )
    _write(bin_dir / "torchrun", f"#!/bin/bash\nprintf '%s\\0' \"$@\" > {log}/torchrun\n")
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_JOB_NODELIST": "rack-a-[01-04]",
        "SLURM_JOB_ID": "7781",
        "SLURM_SUBMIT_DIR": str(tmp_path / "submit"),
        "HOME": str(tmp_path / "home"),
    }
    return {"env": env, "log": log, "tmp": tmp_path}


def _run_script(script: str, fake: dict[str, Any]) -> list[str]:
    path = _write(fake["tmp"] / "job.sbatch", script)
    done = subprocess.run(
        ["bash", str(path)],
        env=fake["env"],
        cwd=fake["tmp"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return (fake["log"] / "torchrun").read_text().split("\0")[:-1]


@pytest.mark.parametrize(
    "args",
    [
        SHAPE,
        [*SHAPE, "--partition", "gpu,gpu-long", "--time", "1-12:00:00", "--port", "29555"],
        ["--nodes", "1", "--gpus-per-node", "1", "--profile", "my profile's.toml"],
        [*SHAPE, "--out", "/shared/burn in/$HOME/`id`/it's"],
    ],
)
def test_script_passes_bash_syntax_check(args: list[str], tmp_path: Path):
    result = launch(args)
    assert result.exit_code == 0, result.output
    path = _write(tmp_path / "job.sbatch", result.output)
    done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_script_requests_whole_nodes_one_task_each():
    out = launch([*SHAPE, "--partition", "gpu", "--time", "2:00:00", "--name", "rack-a"]).output
    directives = [line for line in out.splitlines() if line.startswith("#SBATCH")]
    assert directives == [
        "#SBATCH --job-name=rack-a",
        "#SBATCH --nodes=4",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --exclusive",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=2:00:00",
        "#SBATCH --output=%x-%j.out",
    ]
    assert 'RDZV_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)' in out


def test_each_node_runs_torchrun_with_the_rendezvous_on_the_first_node(fake_slurm):
    shared = fake_slurm["tmp"] / "shared"
    script = launch([*SHAPE, "--profile", "acceptance", "--out", str(shared)]).output
    argv = _run_script(script, fake_slurm)
    assert argv == [
        *("--nnodes", "4", "--nproc-per-node", "1", "--rdzv-backend", "c10d"),
        *("--rdzv-endpoint", "rack-a-01:29400", "--rdzv-id", "7781", "--no-python"),
        *("burnin", "run", "--profile", "acceptance", "--out", str(shared)),
        *("--expect-gpus", "8"),
    ]
    assert (fake_slurm["log"] / "srun").read_text().split() == ["--nodes=4", "--ntasks-per-node=1"]
    assert shared.is_dir()  # created before any node starts


def test_user_values_reach_torchrun_literally(fake_slurm):
    # Spaces, quotes, $ and backticks in a path or profile are data, never shell code.
    shared = fake_slurm["tmp"] / "shared dir" / "$HOME `touch pwned` it's"
    profile = "it's a $(touch pwned) profile.toml"
    script = launch([*SHAPE, "--profile", profile, "--out", str(shared)]).output
    argv = _run_script(script, fake_slurm)
    assert argv[argv.index("--profile") + 1] == profile
    assert argv[argv.index("--out") + 1] == str(shared)
    assert shared.is_dir()
    assert not list(fake_slurm["tmp"].rglob("pwned"))


def test_run_directory_defaults_to_the_submit_directory(fake_slurm):
    script = launch(SHAPE).output
    assert "burnin-runs in the directory sbatch was run from" in script
    argv = _run_script(script, fake_slurm)
    expected = fake_slurm["tmp"] / "submit" / "burnin-runs"
    assert argv[argv.index("--out") + 1] == str(expected)
    assert expected.is_dir()


def test_node_command_is_a_valid_burnin_run_command_line(fake_slurm):
    argv = _run_script(launch([*SHAPE, "--profile", "acceptance"]).output, fake_slurm)
    run_args = argv[argv.index("run") + 1 :]
    ctx = run_command.make_context("run", run_args)
    assert (ctx.params["profile"], ctx.params["expect_gpus"]) == ("acceptance", 8)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--nodes", "0", "--gpus-per-node", "8"], "--nodes"),
        (["--nodes", "4", "--gpus-per-node", "0"], "--gpus-per-node"),
        (["--nodes", "4"], "--gpus-per-node"),
        ([*SHAPE, "--port", "0"], "--port"),
        ([*SHAPE, "--partition", "gpu;reboot"], "--partition"),
        ([*SHAPE, "--partition", "-x"], "--partition"),
        ([*SHAPE, "--partition", "gpu\n#SBATCH --nodes=999"], "--partition"),
        ([*SHAPE, "--time", "2h"], "--time"),
        ([*SHAPE, "--time", "1:00 --exclusive"], "--time"),
        ([*SHAPE, "--name", "a b"], "--name"),
        ([*SHAPE, "--name", "x" * 65], "--name"),
        ([*SHAPE, "--out", "/shared/runs\nreboot"], "--out"),
        ([*SHAPE, "--out", "--help"], "--out"),
        ([*SHAPE, "--out", ""], "--out"),
        ([*SHAPE, "--profile", "--evil"], "--profile"),
        ([*SHAPE, "--profile", "quick\x1b[2J"], "--profile"),
    ],
)
def test_bad_options_exit_2_naming_the_option(args: list[str], option: str):
    result = launch(args)
    assert result.exit_code == 2, result.output
    assert option in result.output
    assert "Traceback" not in result.output
    assert "#!/bin/bash" not in result.output


class FakeSbatch:
    def __init__(self, returncode: int = 0, stdout: str = "", stderr: str = "") -> None:
        self.result = subprocess.CompletedProcess([], returncode, stdout, stderr)
        self.calls: list[tuple[list[str], str]] = []

    def __call__(self, argv: Sequence[str], stdin: str) -> subprocess.CompletedProcess[str]:
        self.calls.append((list(argv), stdin))
        return self.result


def test_submit_hands_the_printed_script_to_sbatch_and_prints_the_job_id():
    sbatch = FakeSbatch(stdout="4242;cluster-a\n")
    result = launch([*SHAPE, "--submit"], obj=Launchers(run_command=sbatch))
    assert result.exit_code == 0, result.output
    assert result.output == "4242\n"
    assert sbatch.calls == [(["sbatch", "--parsable"], launch(SHAPE).output)]


def _missing(argv: Sequence[str], stdin: str) -> Any:
    raise FileNotFoundError(argv[0])


@pytest.mark.parametrize(
    ("runner", "message"),
    [
        (
            FakeSbatch(1, stderr="sbatch: error: invalid partition specified: gpu\n"),
            "sbatch exited with 1: sbatch: error: invalid partition specified: gpu",
        ),
        (FakeSbatch(0, stdout="Submitted batch job\n"), "printed no job id"),
        (_missing, "sbatch was not found on PATH"),
    ],
)
def test_submit_failures_exit_1_with_the_reason(runner: Any, message: str):
    result = launch([*SHAPE, "--submit"], obj=Launchers(run_command=runner))
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_submit_runs_the_real_sbatch_client_found_on_path(tmp_path: Path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    received = tmp_path / "received.sbatch"
    _write(
        bin_dir / "sbatch",
        f'#!/bin/bash\n[ "$*" = "--parsable" ] || exit 7\n'
        f"cat > {shlex.quote(str(received))}\necho 991\n",
    )
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    result = launch([*SHAPE, "--submit"])  # no injected runner: the default one
    assert result.exit_code == 0, result.output
    assert result.output == "991\n"
    assert received.read_text() == render_sbatch(SlurmJob(nodes=4, gpus_per_node=8))


def test_launch_slurm_help_documents_the_default_run_directory():
    result = CliRunner().invoke(cli, ["launch", "slurm", "--help"])
    assert result.exit_code == 0
    assert "$SLURM_SUBMIT_DIR/burnin-runs" in click.unstyle(result.output)


@pytest.mark.parametrize("kind", ["slurm", "k8s"])
def test_default_profile_staggers_the_nodes(kind: str):
    from burnin.config import load_config
    from burnin.plan import node_placement

    output = CliRunner().invoke(cli, ["launch", kind, *SHAPE]).output
    profile = "acceptance"
    assert f"--profile {profile} " in output or f'"{profile}"' in output
    ramp = load_config(profile).ramp
    # Node 3 of a rack of 8-GPU nodes starts three whole node ramps after node 0.
    place = node_placement(ramp, {"SLURM_NODEID": "3", "SLURM_NNODES": "4"}, 8)
    assert place.offset_s > 0
    assert place.offset_s == 3 * 8 * ramp.step_s / ramp.max_concurrent
