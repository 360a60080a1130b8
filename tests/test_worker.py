"""The device worker: records as made, stop flags, seam-realised lifecycle faults, orphan exit."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from burnin.config import load_config
from burnin.devices import cpu_devices
from burnin.plan import KernelStep, build_plan
from burnin.sim.faults import make_fault
from burnin.sim.seam import CRASH_EXIT_CODE, FaultySeam
from burnin.store import read_jsonl
from burnin.supervisor import kill_group, mp_context
from burnin.worker import (
    STOP_INTERRUPTED,
    STOP_THERMAL,
    WorkerArgs,
    cpu_binding,
    node_peers,
    placement_of,
    worker_entry,
    worker_main,
)


def _args(tmp_path: Path, duration_s: float = 0.2, **item_changes: Any) -> WorkerArgs:
    from dataclasses import replace

    config = load_config(None, [f"run.duration_s={duration_s}", "kernels.matmul.cpu_size=32"])
    item = build_plan(config, cpu_devices(1), "n", cpu_count=1).items[0]
    return WorkerArgs(
        item=replace(item, **item_changes),
        slot=0,
        results_path=str(tmp_path / "results.jsonl"),
        t0=time.monotonic(),
    )


def _records(args: WorkerArgs) -> list[dict[str, Any]]:
    return read_jsonl(Path(args.results_path))[0]


@pytest.mark.parametrize(
    ("stop", "reason", "kernel_ran"),
    [
        (0, None, True),
        (STOP_INTERRUPTED, "interrupted", False),
        (STOP_THERMAL, "thermal-guard", False),
    ],
)
def test_worker_records_and_stop_reasons(
    tmp_path: Path, stop: int, reason: str | None, kernel_ran: bool
) -> None:
    args = _args(tmp_path)
    beats, stops = [0.0], [stop]
    worker_main(args, beats, stops)
    records = _records(args)
    types = [r["type"] for r in records]
    assert types[0] == "start" and types[-1] == "done"
    assert ("result" in types) is kernel_ran
    assert records[-1]["stop_reason"] == reason
    assert records[-1]["interrupted"] is (reason == "interrupted")
    assert all(r["device"] == 0 and r["node"] == "n" for r in records)
    assert beats[0] > 0  # the heartbeat was written


def test_worker_error_becomes_a_record_and_exit_1(tmp_path: Path) -> None:
    args = _args(tmp_path, kernels=(KernelStep(name="no-such-kernel", duration_s=1, config=None),))
    with pytest.raises(SystemExit) as exc:
        worker_main(args, [0.0], [0])
    assert exc.value.code == 1
    error = _records(args)[-1]
    assert error["type"] == "error" and "no-such-kernel" in error["error"]
    assert "Traceback" in error["traceback"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "elapsed_s", "exitcode"),
    [
        (None, 100.0, 0),
        ("crash", 0.4, 0),  # before after_s: nothing happens
        ("crash", 0.5, CRASH_EXIT_CODE),
        ("hang", 0.6, None),  # never returns: still alive when the test gives up
        ("lost", 0.6, None),
    ],
)
def test_seam_check_faults_realises_lifecycle_faults(
    kind: str | None, elapsed_s: float, exitcode: int | None
) -> None:
    faults = [make_fault(kind, {"after_s": 0.5})] if kind else []
    seam = FaultySeam(faults, seed=1)
    proc = mp_context().Process(target=seam.check_faults, args=(elapsed_s,))
    proc.start()
    proc.join(timeout=1.0 if exitcode is None else 20.0)
    if exitcode is None:
        assert proc.is_alive()
        kill_group(proc)
    else:
        assert proc.exitcode == exitcode


def test_orphaned_worker_stops_when_the_parents_pipe_closes(tmp_path: Path) -> None:
    """A worker whose parent is gone (its pipe at EOF) records that and kills its group."""
    ctx = mp_context()
    args = _args(tmp_path, duration_s=30.0)
    beats, stops = ctx.RawArray("d", 1), ctx.RawArray("i", 1)
    alive_r, alive_w = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=worker_entry, args=(args, beats, stops, alive_r), daemon=True)
    proc.start()
    try:
        deadline = time.monotonic() + 20
        while not any(r["type"] == "kernel-start" for r in _records(args)):
            assert time.monotonic() < deadline, "worker never started its kernel"
            time.sleep(0.02)
        alive_w.close()  # what the kernel does to the pipe when the parent dies
        proc.join(timeout=5)
        assert proc.exitcode == -9  # it killed its own process group
    finally:
        kill_group(proc)
        alive_r.close()
    records = _records(args)
    assert records[-1]["type"] == "orphaned"
    assert not any(r["type"] == "result" for r in records)
    start = records[0]
    assert start["pid"] == start["pgid"]  # a session and group of its own


@pytest.mark.slow
def test_worker_records_are_json_lines_written_as_made(tmp_path: Path) -> None:
    args = _args(tmp_path, duration_s=1.2)
    worker_main(args, [0.0], [0])
    lines = Path(args.results_path).read_text().splitlines()
    assert all(json.loads(line) for line in lines)
    progress = [json.loads(x) for x in lines if '"progress"' in x]
    assert progress and progress[0]["elapsed_s"] < json.loads(lines[-1])["elapsed_s"]


PLAN = [
    {"node": "node-t", "device": 0, "kernels": ["matmul", "allreduce"], "start_offset_s": 0},
    {"node": "node-t", "device": 1, "kernels": ["matmul", "allreduce"], "start_offset_s": 5},
    {"node": "node-t", "device": 2, "kernels": ["matmul"], "start_offset_s": 10},
    {"node": "other", "device": 3, "kernels": ["allreduce"], "start_offset_s": 0},
]


@pytest.mark.parametrize(
    ("device", "kernel", "devices", "spread_s"),
    [
        (1, "allreduce", [0, 1], 5.0),
        (2, "matmul", [0, 1, 2], 10.0),
        (2, "allreduce", [0, 1, 2], 5.0),
    ],
)
def test_node_peers_come_from_the_manifest(
    tmp_path: Path, device: int, kernel: str, devices: list[int], spread_s: float
) -> None:
    manifest = {"plan": PLAN, "config": {"watchdog": {"timeout_s": 20.0}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    results = tmp_path / "nodes" / "node-t" / "results.jsonl"
    peers = node_peers(results, "node-t", device, kernel)
    assert peers == {
        "meet_dir": str(results.parent),
        "devices": devices,
        "start_spread_s": spread_s,
        "watchdog_s": 20.0,
    }


def test_node_peers_name_an_unreadable_manifest(tmp_path: Path) -> None:
    results = tmp_path / "nodes" / "node-t" / "results.jsonl"
    peers = node_peers(results, "node-t", 0, "allreduce")
    assert peers["meet_dir"] == str(results.parent) and "devices" not in peers
    assert "cannot read the node's plan" in peers["plan_error"]


HERE = sorted(os.sched_getaffinity(0))  # the CPUs this test may run on


@pytest.mark.parametrize(
    ("placement", "available", "expected"),
    [
        ({"cpu_affinity": [0, 1, 2, 3], "numa_node": 0}, {0, 1, 2, 3, 4, 5, 6, 7}, [0, 1, 2, 3]),
        ({"cpu_affinity": [6, 4, 5]}, {0, 1, 4, 5}, [4, 5]),  # only CPUs that exist here, sorted
        ({"cpu_affinity": [8, 9]}, {0, 1}, None),  # none of them here: no binding at all
        ({"cpu_affinity": None, "numa_node": None}, {0, 1}, None),  # unknown
        ({}, {0, 1}, None),  # keys absent (CPU fallback, older inventory): no binding
        ({"cpu_affinity": "0-3"}, {0, 1}, None),  # not a list of ids: not guessed at
        ({"cpu_affinity": [True, 1]}, {0, 1}, [1]),
    ],
)
def test_cpu_binding(
    placement: dict[str, Any], available: set[int], expected: list[int] | None
) -> None:
    assert cpu_binding(placement, available) == expected


@pytest.mark.slow
@pytest.mark.parametrize(
    ("placement", "bound"),
    [
        ({"cpu_affinity": HERE[:1], "numa_node": 0}, HERE[:1]),
        ({"cpu_affinity": [*HERE[-1:], 100000]}, HERE[-1:]),
        ({"numa_node": 1}, None),
        ({}, None),
    ],
)
def test_worker_binds_to_its_gpus_cpus_and_records_it(
    tmp_path: Path, placement: dict[str, Any], bound: list[int] | None
) -> None:
    """Run in a child process: binding the test process itself would outlive the test."""
    ctx = mp_context()
    args = dataclasses.replace(_args(tmp_path), placement=placement)
    out = ctx.Queue()
    proc = ctx.Process(target=_worker_then_affinity, args=(args, out))
    proc.start()
    affinity = out.get(timeout=60)
    proc.join(timeout=10)
    assert proc.exitcode == 0
    assert affinity == (bound or HERE)  # what the process really runs on afterwards
    start = _records(args)[0]
    assert start["binding"] == {"cpu_affinity": bound, "numa_node": placement.get("numa_node")}


def _worker_then_affinity(args: WorkerArgs, out: Any) -> None:
    worker_main(args, [0.0], [0])
    out.put(sorted(os.sched_getaffinity(0)))


@pytest.mark.slow
def test_placement_of_keeps_only_the_placement_keys() -> None:
    record = {"device": 0, "cpu_affinity": [0, 1], "numa_node": None, "uuid": "GPU-x"}
    assert placement_of(record) == {"cpu_affinity": [0, 1], "numa_node": None}
    assert placement_of({"device": 0}) == {}
