"""Opt-in scheduler actions on failed nodes: Slurm drain, Kubernetes taint, dry runs."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from history_helpers import DATA
from kubernetes.client import V1Taint

from burnin.cli import cli
from burnin.history import actions

BURNIN_TAINT = {"key": "burnin.io/health", "value": "failed", "effect": "NoSchedule"}


def _context(statuses: dict[tuple[str, int], str]) -> dict[str, Any]:
    gpus = [
        {
            "node": node,
            "index": index,
            "status": status,
            "verdicts": [{"check": "sdc" if status != "PASS" else "throughput", "status": status}],
        }
        for (node, index), status in statuses.items()
    ]
    return {"run_id": "r1", "gpus": gpus}


@pytest.fixture(autouse=True)
def _no_scheduler_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURMD_NODENAME", raising=False)
    monkeypatch.delenv("NODE_NAME", raising=False)


@pytest.mark.parametrize(
    ("statuses", "nodes"),
    [
        ({("n1", 0): "PASS", ("n1", 1): "WARN"}, []),
        ({("n1", 0): "PASS", ("n1", 1): "FAIL"}, ["n1"]),
        ({("n1", 0): "ERROR", ("n2", 0): "FAIL", ("n3", 0): "PASS"}, ["n1", "n2"]),
    ],
    ids=["warn-only", "one-fail", "fail-and-error"],
)
def test_only_nodes_with_a_failed_or_lost_card_are_acted_on(statuses, nodes) -> None:
    assert list(actions.failed_nodes(_context(statuses))) == nodes


def test_drain_dry_run_prints_the_exact_scontrol_command() -> None:
    (action,) = actions.drain(_context({("n1", 3): "FAIL"}), dry_run=True)
    assert action.description == (
        "scontrol update NodeName=n1 State=DRAIN 'Reason=burnin r1: gpu3 FAIL (sdc)'"
    )
    assert not action.done


@pytest.mark.parametrize(
    ("env", "runner_error", "name", "done"),
    [
        ({}, None, "n1", True),
        ({"SLURMD_NODENAME": "gpu-a17"}, None, "gpu-a17", True),
        ({}, subprocess.CalledProcessError(1, "scontrol"), "n1", False),
        ({}, FileNotFoundError("scontrol"), "n1", False),
    ],
    ids=["run-name", "slurm-name", "scontrol-fails", "no-scontrol"],
)
def test_drain_runs_scontrol_with_the_slurm_node_name(
    env, runner_error, name: str, done: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    seen: list[list[str]] = []

    def runner(argv: list[str]) -> None:
        seen.append(argv)
        if runner_error:
            raise runner_error

    (action,) = actions.drain(_context({("n1", 0): "FAIL"}), dry_run=False, runner=runner)
    assert seen == [
        [
            "scontrol",
            "update",
            f"NodeName={name}",
            "State=DRAIN",
            "Reason=burnin r1: gpu0 FAIL (sdc)",
        ]
    ]
    assert action.done is done and (action.error is None) is done


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        (None, [BURNIN_TAINT]),
        (
            [V1Taint(key="dedicated", value="ml", effect="NoExecute")],
            [{"key": "dedicated", "value": "ml", "effect": "NoExecute"}, BURNIN_TAINT],
        ),
        ([V1Taint(key="burnin.io/health", value="failed", effect="NoSchedule")], [BURNIN_TAINT]),
    ],
    ids=["none", "keeps-others", "no-duplicate"],
)
def test_taint_body_is_a_v1node_patch_with_the_burnin_taint(existing, expected) -> None:
    assert actions.taint_body(existing) == {"spec": {"taints": expected}}


class FakeCoreV1:
    """The two CoreV1Api methods the taint uses, answering with kubernetes client models."""

    def __init__(self, taints: list[V1Taint] | None) -> None:
        self.taints, self.patched = taints, []

    def read_node(self, name: str) -> Any:
        return SimpleNamespace(spec=SimpleNamespace(taints=self.taints))

    def patch_node(self, name: str, body: dict[str, Any]) -> None:
        self.patched.append((name, body))


def test_taint_patches_the_node_keeping_its_taints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "k8s-gpu-7")
    api = FakeCoreV1([V1Taint(key="dedicated", value="ml", effect="NoExecute")])
    (action,) = actions.taint(_context({("n1", 0): "FAIL"}), dry_run=False, api=lambda: api)
    assert action.done
    assert api.patched == [
        (
            "k8s-gpu-7",
            {
                "spec": {
                    "taints": [
                        {"key": "dedicated", "value": "ml", "effect": "NoExecute"},
                        BURNIN_TAINT,
                    ]
                }
            },
        )
    ]


def test_taint_failure_is_reported_not_raised() -> None:
    def no_cluster() -> Any:
        raise RuntimeError("no kubeconfig")

    (action,) = actions.taint(_context({("n1", 0): "FAIL"}), dry_run=False, api=no_cluster)
    assert not action.done and "no kubeconfig" in (action.error or "")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "expected"),
    [
        (
            "taint",
            "# on-fail taint node-00 (dry-run): CoreV1Api().patch_node(name='node-00', "
            'body={"spec": {"taints": [{"effect": "NoSchedule", "key": "burnin.io/health", '
            '"value": "failed"}]}}) (existing taints kept)',
        ),
        (
            "drain",
            "# on-fail drain node-00 (dry-run): scontrol update NodeName=node-00 "
            "State=DRAIN 'Reason=burnin {run}: gpu1 FAIL (allreduce,sdc)'",
        ),
        (None, None),
    ],
    ids=["taint", "drain", "off"],
)
def test_run_on_fail_dry_run_prints_the_call(how, expected, tmp_path: Path) -> None:
    args = [
        "run",
        "--simulate",
        str(DATA / "failing-node.toml"),
        "--duration",
        "5s",
        "--out",
        str(tmp_path),
        "--quiet",
    ]
    result = CliRunner().invoke(cli, [*args, *(["--on-fail", how, "--dry-run"] if how else [])])
    assert result.exit_code == 3, result.output
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    lines = [line for line in result.output.splitlines() if line.startswith("# on-fail")]
    assert lines == ([expected.replace("{run}", run_dir.name)] if expected else [])
