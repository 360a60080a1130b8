"""Multi-node runs through real torchrun processes on this machine: every node is a torchrun
agent plus ``burnin run`` on the CPU fallback, meeting on localhost through the c10d
rendezvous, writing one shared run directory.

These spawn several processes and run for tens of seconds each, so they are marked ``slow``.
Their figures come from the run (nothing asserts a speed): the slow-link test adds a delay to
one node's transfers through the test seam (tests/rack_node.py) that dwarfs a transfer of a few
MiB, and the lost-node test waits on heartbeats, not on a wall-clock guess.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

BURNIN = str(Path(sys.executable).parent / "burnin")
NODE_SCRIPT = str(Path(__file__).parent / "rack_node.py")
LIMIT_S = 240  # no node may take longer: a hung run fails the test instead of hanging it
GRACE_S = 20  # how long the other nodes' torchrun get once one has exited


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(
    tmp_path: Path,
    names: list[str],
    duration: str = "3",
    slow: dict[str, float] | None = None,
    extra: tuple[str, ...] = (),
    slow_rank: int | None = None,
) -> dict[str, subprocess.Popen[bytes]]:
    """Start one torchrun per node; ``slow`` delays a node's transfers (by name), or, with
    ``slow_rank``, the transfers of whichever node gets that rank."""
    port = _free_port()
    procs = {}
    for name in names:
        delay_s = (slow or {}).get(name)
        program = ["--no-python", BURNIN] if delay_s is None else [NODE_SCRIPT]
        env = {**os.environ, "BURNIN_TEST_SLOW_LINK_S": str(delay_s or 0)}
        if slow_rank is not None:
            env["BURNIN_TEST_SLOW_LINK_RANK"] = str(slow_rank)
        env.pop("TORCHELASTIC_RUN_ID", None)
        cmd = [
            sys.executable, "-m", "torch.distributed.run",
            "--nnodes", str(len(names)), "--nproc-per-node", "1",
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
            "--rdzv-id", "rack-test", "--max-restarts", "0",
            *program, "run", "--out", str(tmp_path / "shared"), "--node-name", name,
            "--device", "cpu", "--set", "cpu.devices=2", "--duration", duration, *extra,
        ]  # fmt: skip
        log = (tmp_path / f"{name}.log").open("wb")
        procs[name] = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return procs


def _wait(procs: dict[str, subprocess.Popen[bytes]], killed: str = "") -> dict[str, int]:
    """Every node's torchrun exit code; once one has exited, the others get GRACE_S.

    torchrun's agents meet in an exit barrier (300 s in torch/distributed/elastic/agent/
    server/api.py) that an agent whose burnin failed does not wait in, so the others would
    sit there; burnin itself has long finished by then.
    """
    codes: dict[str, int] = {}
    deadline = time.monotonic() + LIMIT_S
    try:
        while len(codes) < len(procs) and time.monotonic() < deadline:
            for name, proc in procs.items():
                if name not in codes and proc.poll() is not None:
                    codes[name] = proc.returncode
                    if name != killed:  # the killed node's exit says nothing of the others
                        deadline = min(deadline, time.monotonic() + GRACE_S)
            time.sleep(0.2)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return codes


def _kill_node(pid: int) -> None:
    """SIGKILL a torchrun agent and every process under it: torchrun starts its worker in a
    session of its own, and burnin its workers in groups of their own, so no one group holds
    the node."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    for member in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def _run_dir(tmp_path: Path) -> Path:
    (run,) = (tmp_path / "shared").iterdir()
    return run


def _rack(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "rack.jsonl").read_text().splitlines()]


def test_two_nodes_make_one_run(tmp_path: Path) -> None:
    started = time.monotonic()
    codes = _wait(_start(tmp_path, ["a", "b"]))
    took_s = time.monotonic() - started
    logs = {n: (tmp_path / f"{n}.log").read_text(errors="replace") for n in codes}
    assert codes == {"a": 0, "b": 0}, logs
    run = _run_dir(tmp_path)
    assert sorted(p.name for p in (run / "nodes").iterdir()) == ["a", "b"]
    rack = _rack(run)
    sums = [r for r in rack if r["type"] == "rack-allreduce"]
    # The all-reduce spans every device of every node: 2 nodes x 2 CPU devices = 4 ranks.
    assert sums and all(r["wrong"] == 0 and r["ranks"] == 4 and r["nodes"] == 2 for r in sums)
    assert all(r["backend"] == "gloo" and r["busbw_gbps"] > 0 for r in sums)
    assert [r["nodes"] for r in rack if r["type"] == "node-pair"] in ([["a", "b"]], [["b", "a"]])
    assert not [r for r in rack if r["type"] == "rack-error"]
    report = json.loads((run / "report.json").read_text())
    assert len(report["gpus"]) == 4 and report["exit_code"] == 0
    print(f"two nodes: {took_s:.1f} s; busbw {[round(r['busbw_gbps'], 4) for r in sums]} GB/s")


def test_slow_link_names_the_node(tmp_path: Path) -> None:
    """Three nodes, c's transfers delayed: c is in both slow pairs, a-b is fast."""
    codes = _wait(_start(tmp_path, ["a", "b", "c"], slow={"c": 0.3}))
    run = _run_dir(tmp_path)
    rack = _rack(run)
    assert not [r for r in rack if r["type"] == "rack-error"], rack
    summary = rack[-1]
    assert summary["type"] == "rack-summary"
    assert sorted(map(sorted, summary["slow_pairs"])) == [["a", "c"], ["b", "c"]]
    verdicts = [json.loads(line) for line in (run / "verdicts.jsonl").read_text().splitlines()]
    slow = [v for v in verdicts if v["check"] == "slow-link" and v["status"] == "FAIL"]
    assert [v["node"] for v in slow] == ["c"]
    assert "node c is in every slow pair" in slow[0]["message"]
    assert "median of the other pairs" in slow[0]["message"]
    assert set(codes.values()) <= {0, 1}  # torchrun's 1: a node's burnin exited 3 (FAIL)


def test_killed_node_is_lost(tmp_path: Path) -> None:
    """Kill the rank-1 node mid-run: rank 0 finishes, marks its cards lost, exits 4."""
    procs = _start(tmp_path, ["a", "b"], duration="40", extra=("--set", "watchdog.timeout_s=10"))
    shared = tmp_path / "shared"
    deadline = time.monotonic() + LIMIT_S
    ranks: dict[str, int] = {}
    while len(ranks) < 2 and time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs.values()), "a node ended before its run began"
        for manifest in shared.glob("*/nodes/*/manifest.json"):
            try:
                ranks[manifest.parent.name] = json.loads(manifest.read_text())["placement"]["rank"]
            except (ValueError, KeyError):
                continue
        time.sleep(0.2)
    victim = next(name for name, rank in ranks.items() if rank == 1)
    survivor = next(name for name in ranks if name != victim)
    time.sleep(2)  # the victim is inside its stress stage
    _kill_node(procs[victim].pid)
    started = time.monotonic()
    codes = _wait(procs, killed=victim)
    took_s = time.monotonic() - started
    run = _run_dir(tmp_path)
    report = json.loads((run / "report.json").read_text())
    assert report["exit_code"] == 4, codes
    verdicts = [json.loads(line) for line in (run / "verdicts.jsonl").read_text().splitlines()]
    lost = {(v["node"], v["index"]) for v in verdicts if v["check"] == "lost"}
    assert lost == {(victim, 0), (victim, 1)}
    assert not [v for v in verdicts if v["node"] == survivor and v["check"] == "lost"]
    print(f"lost node: rank 0 ended {took_s:.1f} s after the kill")


def test_a_node_hung_in_the_cross_node_stage_ends_in_errors(tmp_path: Path) -> None:
    """Rank 1's transfers in the cross-node stage never start (a delay far past every
    timeout): rank 0 still ends, within its timeouts, with ERROR verdicts and exit 4."""
    started = time.monotonic()
    procs = _start(
        tmp_path, ["a", "b"], slow={"a": 3600.0, "b": 3600.0}, slow_rank=1,
        extra=("--set", "watchdog.timeout_s=5"),
    )  # fmt: skip
    codes = _wait(procs)
    took_s = time.monotonic() - started
    run = _run_dir(tmp_path)
    report = json.loads((run / "report.json").read_text())
    assert report["exit_code"] == 4, codes
    errors = [r for r in _rack(run) if r["type"] == "rack-error"]
    assert errors and not any(r.get("lost") for r in errors), errors
    verdicts = [json.loads(line) for line in (run / "verdicts.jsonl").read_text().splitlines()]
    failed = {v["node"] for v in verdicts if v["check"] == "allreduce" and v["status"] == "ERROR"}
    assert failed, verdicts
    print(f"hung stage: rank 0 done {took_s:.1f} s after the start; errors {errors}")
