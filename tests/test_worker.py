"""The device worker: records as made, stop flags, seam-realised lifecycle faults, orphan exit."""

from __future__ import annotations

import json
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


def test_worker_records_are_json_lines_written_as_made(tmp_path: Path) -> None:
    args = _args(tmp_path, duration_s=1.2)
    worker_main(args, [0.0], [0])
    lines = Path(args.results_path).read_text().splitlines()
    assert all(json.loads(line) for line in lines)
    progress = [json.loads(x) for x in lines if '"progress"' in x]
    assert progress and progress[0]["elapsed_s"] < json.loads(lines[-1])["elapsed_s"]
