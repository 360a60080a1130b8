"""Opt-in scheduler actions for nodes whose cards failed: Slurm drain, Kubernetes taint.

Off by default. ``--on-fail drain`` runs ``scontrol update NodeName=N State=DRAIN Reason=...``;
``--on-fail taint`` patches the Node through the kubernetes client with the taint
``burnin.io/health=failed:NoSchedule`` (existing taints are kept; the patch replaces the
``spec.taints`` list, which has no merge key). ``--dry-run`` prints the exact command or API call
and does nothing. Neither action touches a GPU: they only ask the scheduler to stop placing work
on the node, and a person (or the next passing sweep's operator) lifts them.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TAINT_KEY = "burnin.io/health"
TAINT_VALUE = "failed"
TAINT_EFFECT = "NoSchedule"
BAD = ("FAIL", "ERROR")


@dataclass(frozen=True)
class Action:
    node: str
    description: str  # the exact command line or API call
    done: bool
    error: str | None = None


def failed_nodes(context: dict[str, Any]) -> dict[str, str]:
    """{node: reason} for each node of the run with a FAIL or ERROR card."""
    reasons: dict[str, list[str]] = {}
    for gpu in context.get("gpus", []):
        if gpu.get("status") in BAD:
            checks = sorted({v["check"] for v in gpu.get("verdicts", []) if v["status"] in BAD})
            reasons.setdefault(gpu["node"], []).append(
                f"gpu{gpu['index']} {gpu['status']} ({','.join(checks) or '?'})"
            )
    run_id = context.get("run_id", "?")
    return {n: f"burnin {run_id}: " + "; ".join(r) for n, r in sorted(reasons.items())}


def scheduler_name(node: str, env_var: str, single: bool) -> str:
    """The scheduler's name for a node: ``env_var`` on a one-node run, else the run's name."""
    return (os.environ.get(env_var) or node) if single else node


def drain_argv(node: str, reason: str) -> list[str]:
    # Slurm's Reason is free text; scontrol takes it as one argument (no shell involved).
    return ["scontrol", "update", f"NodeName={node}", "State=DRAIN", f"Reason={reason[:200]}"]


def drain(
    context: dict[str, Any],
    dry_run: bool,
    runner: Callable[[list[str]], Any] | None = None,
) -> list[Action]:
    failed = failed_nodes(context)
    out = []
    for node, reason in failed.items():
        argv = drain_argv(scheduler_name(node, "SLURMD_NODENAME", len(failed) == 1), reason)
        line = shlex.join(argv)
        if dry_run:
            out.append(Action(node, line, done=False))
            continue
        try:
            (runner or _run)(argv)
            out.append(Action(node, line, done=True))
        except (OSError, subprocess.CalledProcessError) as exc:
            out.append(Action(node, line, done=False, error=str(exc)))
    return out


def _run(argv: list[str]) -> Any:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)


def burnin_taint() -> Any:
    from kubernetes.client import V1Taint

    return V1Taint(key=TAINT_KEY, value=TAINT_VALUE, effect=TAINT_EFFECT)


def taint_body(existing: list[Any] | None) -> dict[str, Any]:
    """The Node patch body: the node's taints plus burnin's, once (as the API receives it)."""
    from kubernetes.client import ApiClient, V1Node, V1NodeSpec

    taints = [t for t in existing or [] if not (t.key == TAINT_KEY and t.effect == TAINT_EFFECT)]
    node = V1Node(spec=V1NodeSpec(taints=[*taints, burnin_taint()]))
    return ApiClient().sanitize_for_serialization(node)


def default_api() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CoreV1Api()


def taint(
    context: dict[str, Any], dry_run: bool, api: Callable[[], Any] | None = None
) -> list[Action]:
    failed = failed_nodes(context)
    out = []
    core = None
    for node in failed:
        name = scheduler_name(node, "NODE_NAME", len(failed) == 1)
        if dry_run:
            shown = json.dumps(taint_body([]), sort_keys=True)
            call = f"CoreV1Api().patch_node(name={name!r}, body={shown}) (existing taints kept)"
            out.append(Action(node, call, done=False))
            continue
        try:
            core = core or (api or default_api)()
            existing = core.read_node(name).spec.taints
            body = taint_body(existing)
            call = f"CoreV1Api().patch_node(name={name!r}, body={json.dumps(body, sort_keys=True)})"
            core.patch_node(name, body)
            out.append(Action(node, call, done=True))
        except Exception as exc:  # the kubernetes client raises ApiException, config errors, ...
            out.append(Action(node, f"patch_node({name!r})", done=False, error=str(exc)))
    return out


def on_fail(context: dict[str, Any], how: str, dry_run: bool, **seams: Any) -> list[Action]:
    """Apply ``how`` (drain or taint) to every failed node of the run."""
    if how == "drain":
        return drain(context, dry_run, seams.get("runner"))
    if how == "taint":
        return taint(context, dry_run, seams.get("api"))
    raise ValueError(f"unknown on-fail action {how!r}")
