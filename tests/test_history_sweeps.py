"""The README's "Nightly sweeps" examples: every burnin command parses, the scheduler files hold.

The examples are the documentation, so they are tested where they are written: each ``burnin``
command of the section goes through the CLI's own option parser (an unknown or misspelt option
fails here), the Slurm script passes ``bash -n``, and the Kubernetes manifests load as YAML with
the fields the taint needs (the node's name from the downward API, RBAC to get and patch Nodes).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import click
import pytest

from burnin.cli import cli

README = Path(__file__).parent.parent / "README.md"


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Nightly sweeps")
    return text[start : text.index("\n## ", start + 1)]


def _blocks(lang: str = "") -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", _section(), flags=re.S)


def _parse(args: list[str]) -> click.Context:
    """Parse ``burnin ARGS`` down to the leaf command, as the CLI would, without running it."""
    root = click.Context(cli, info_name="burnin")
    command = cli.commands[args[0]]
    if isinstance(command, click.Group):
        group = click.Context(command, info_name=args[0], parent=root)
        leaf = command.commands[args[1]]
        return leaf.make_context(args[1], list(args[2:]), parent=group)
    return command.make_context(args[0], list(args[1:]), parent=root)


def _burnin_commands() -> list[list[str]]:
    found = []
    for block in _blocks() + _blocks("yaml"):
        for line in block.splitlines():
            line = line.split("#", 1)[0] if line.lstrip().startswith("burnin ") else line
            if "burnin run" in line or line.lstrip().startswith("burnin "):
                command = line[line.index("burnin ") :].split(";")[0]
                words = shlex.split(command.replace("$(BURNIN_HISTORY)", "sqlite:///h.db"))
                found.append(words[1:])
    return found


def test_the_section_shows_every_history_command_and_the_three_schedulers() -> None:
    commands = _burnin_commands()
    assert {c[1] for c in commands if c[0] == "history"} == {
        "list",
        "show",
        "trends",
        "lemons",
        "compare",
        "ingest",
    }
    runs = [c for c in commands if c[0] == "run"]
    assert len(runs) == 2  # cron and Slurm; the CronJob's args are checked below
    assert "--on-fail" in runs[1] and "drain" in runs[1]


@pytest.mark.parametrize("args", _burnin_commands(), ids=lambda a: " ".join(a[:2]))
def test_every_burnin_command_parses(args: list[str], tmp_path: Path) -> None:
    # --prom-dir must name a directory that exists: node_exporter's, here a stand-in
    previous = ["", *args[:-1]]
    args = [str(tmp_path) if p == "--prom-dir" else a for p, a in zip(previous, args, strict=True)]
    ctx = _parse(args)
    assert ctx.command.name == (args[1] if args[0] == "history" else args[0])


def test_cron_line_is_a_cron_d_entry() -> None:
    (line,) = [
        line
        for block in _blocks()
        for line in block.splitlines()
        if "burnin run" in line and not line.startswith("srun")
    ]
    minute, hour, dom, month, dow, user, *_ = line.split()
    assert (minute, hour, dom, month, dow, user) == ("15", "2", "*", "*", "*", "root")
    assert "--prom-dir /var/lib/node_exporter/textfile" in line


def test_slurm_script_is_valid_bash_with_sbatch_headers() -> None:
    (script,) = [b for b in _blocks() if b.startswith("#!/bin/bash")]
    assert "#SBATCH --exclusive" in script and "scontrol update NodeName=" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_cronjob_taints_its_own_node_with_rbac_for_nodes() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with the kubernetes client (dev)")
    docs = {d["kind"]: d for d in yaml.safe_load_all(_blocks("yaml")[0])}
    job = docs["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = job["containers"]
    ctx = _parse([*container["args"]])
    assert ctx.params["on_fail"] == "taint" and not ctx.params["dry_run"]
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert "securityContext" not in container  # nothing privileged: it never touches settings
    (rule,) = docs["ClusterRole"]["rules"]
    assert rule["resources"] == ["nodes"] and set(rule["verbs"]) == {"get", "patch"}
    binding = docs["ClusterRoleBinding"]
    assert binding["subjects"][0]["name"] == job["serviceAccountName"] == "burnin"
