"""Crash safety: kill -9, SIGINT and SIGTERM of a real `burnin run`, torn lines, fsync cadence.

The kill tests start the real CLI in its own session (so the test's own signals stay out of
it), wait on the store until the run is where the test wants it, then signal it: the store is
the only synchronisation, no fixed sleeps.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fakes import process_alive, result_record, write_run

from burnin import store as store_module
from burnin.cli import cli
from burnin.store import JsonlWriter, read_jsonl

BURNIN = [sys.executable, "-m", "burnin"]
SMALL = [
    "--device",
    "cpu",
    "--set",
    "kernels.matmul.cpu_size=32",
    "--set",
    "telemetry.interval_s=0.2",
    # Matmul alone keeps each device's timeline simple (no all-reduce rendezvous between them).
    "--set",
    'run.kernels=["matmul"]',
]


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*BURNIN, "run", *SMALL, "--out", str(tmp_path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _node(tmp_path: Path) -> Path | None:
    found = list(tmp_path.glob("*/nodes/*"))
    return found[0] if found else None


def _wait_for(tmp_path: Path, ready: Any, proc: subprocess.Popen[str], limit_s: float = 60) -> Path:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        node = _node(tmp_path)
        if node is not None and ready(read_jsonl(node / "results.jsonl")[0]):
            return node
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the run never reached the expected point")


def _wait_dead(pids: list[int], limit_s: float = 10) -> None:
    deadline = time.monotonic() + limit_s
    while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(process_alive(p) for p in pids), "a worker outlived its parent"


@pytest.mark.slow
def test_kill_9_keeps_every_flushed_record_and_orphans_stop(tmp_path: Path) -> None:
    # Device 0 runs 0-1 s; device 1 starts at 1.5 s (ramp), so a kill while device 1 runs
    # leaves one finished device and one cut off.
    proc = _start(
        tmp_path, "--duration", "1", "--set", "cpu.devices=2",
        "--set", "ramp.step_s=1.5", "--set", "ramp.max_concurrent=1",
    )  # fmt: skip

    def halfway(records: list[dict[str, Any]]) -> bool:
        done = {r["device"] for r in records if r["type"] == "done"}
        return 0 in done and any(r["device"] == 1 and r["type"] == "kernel-start" for r in records)

    node = _wait_for(tmp_path, halfway, proc)
    before = {s: read_jsonl(node / f"{s}.jsonl")[0] for s in ("results", "events", "samples")}
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    pids = [e["pid"] for e in read_jsonl(node / "events.jsonl")[0] if e["kind"] == "device-start"]
    _wait_dead(pids)  # the orphaned worker noticed and killed its own group

    after = {s: read_jsonl(node / f"{s}.jsonl")[0] for s in before}
    for stream, records in before.items():
        assert after[stream][: len(records)] == records  # nothing flushed was lost
    assert any(r["type"] == "orphaned" and r["device"] == 1 for r in after["results"])

    run_dir = node.parent.parent
    result = CliRunner().invoke(cli, ["report", str(run_dir)])
    assert result.exit_code == 4, result.output
    report = json.loads((run_dir / "report.json").read_text())
    gpus = {g["index"]: g for g in report["gpus"]}
    measured = next(r for r in after["results"] if r["type"] == "result" and r["device"] == 0)
    assert gpus[0]["status"] == "PASS"
    assert gpus[0]["metrics"]["matmul_tflops"] == round(measured["metrics"]["matmul_tflops"], 6)
    assert gpus[1]["status"] == "ERROR"
    assert any("parent process died" in v["message"] for v in gpus[1]["verdicts"])
    assert any("did not finish" in w for w in report["warnings"])


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_stress_and_writes_a_partial_report(tmp_path: Path, sig: int) -> None:
    proc = _start(tmp_path, "--duration", "60", "--set", "cpu.devices=2")
    node = _wait_for(
        tmp_path,
        lambda rs: {r["device"] for r in rs if r["type"] == "kernel-start"} == {0, 1},
        proc,
    )
    sent = time.monotonic()
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 4, out
    assert time.monotonic() - sent < 10  # stopped, not run to the end of its 60 s
    name = signal.Signals(sig).name
    assert f"stopped early by {name}" in out and "Traceback" not in out
    run_dir = node.parent.parent
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["interrupted"] is True and manifest["stopped_by"] == name
    report = json.loads((run_dir / "report.json").read_text())
    assert report["exit_code"] == 4 and report["interrupted"] is True
    assert (run_dir / "report.html").is_file()
    results = read_jsonl(node / "results.jsonl")[0]
    # Each worker stopped in order: its partial result and a done record saying why.
    for dev in (0, 1):
        done = [r for r in results if r["device"] == dev and r["type"] == "done"]
        assert done and done[0]["stop_reason"] == "interrupted"
        assert any(r["device"] == dev and r["type"] == "result" for r in results)
    pids = [e["pid"] for e in read_jsonl(node / "events.jsonl")[0] if e["kind"] == "device-start"]
    _wait_dead(pids, limit_s=2)


@pytest.mark.parametrize(
    "torn",
    [
        b'{"device": 0, "type": "progr',  # a write cut off by a kill
        b"\x00\x00\x00\x00",  # a power loss leaves zeroed blocks
        b'{"device": 0, "elapsed_s": 1.0, "type": "result", "metrics": {"matmul_tfl',
    ],
)
def test_torn_last_line_is_tolerated_and_reported(tmp_path: Path, torn: bytes) -> None:
    run_dir = write_run(tmp_path, devices=2)
    results = run_dir / "nodes" / "node-a" / "results.jsonl"
    with results.open("ab") as fh:
        fh.write(torn)
    result = CliRunner().invoke(cli, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    report = json.loads((run_dir / "report.json").read_text())
    assert any("torn last line in results.jsonl" in w for w in report["warnings"])
    assert "torn last line in results.jsonl" in (run_dir / "report.html").read_text()


def test_corrupt_line_in_the_middle_is_bad_input(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, devices=1)
    results = run_dir / "nodes" / "node-a" / "results.jsonl"
    results.write_text("not json\n" + json.dumps(result_record(0)) + "\n")
    result = CliRunner().invoke(cli, ["report", str(run_dir)])
    assert result.exit_code == 2
    assert "results.jsonl line 1: corrupt record" in result.output


@pytest.mark.parametrize(
    ("finished", "results", "code", "status"),
    [
        (True, None, 0, "PASS"),
        (False, None, 4, "ERROR"),  # everything recorded, but the run never finished
        (True, {0: [], 1: [result_record(1)]}, 4, "ERROR"),  # a device without a result
    ],
)
def test_missing_data_is_incomplete_never_pass(
    tmp_path: Path, finished: bool, results: Any, code: int, status: str
) -> None:
    run_dir = write_run(tmp_path, devices=2, finished=finished, results=results)
    result = CliRunner().invoke(cli, ["report", str(run_dir)])
    assert result.exit_code == code
    assert json.loads((run_dir / "report.json").read_text())["status"] == status


@pytest.mark.parametrize(
    ("every", "interval_s", "writes", "expected"),
    [
        (0, 0.0, 5, 0),  # no fsync at all
        (2, 0.0, 5, 3),  # records 2 and 4, then close
        (0, 3600.0, 5, 1),  # the interval never passes: only close
        (0, 1e-9, 5, 6),  # the interval always passes: every record, then close
    ],
)
def test_fsync_cadence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: int, interval_s: float,
    writes: int, expected: int,
) -> None:  # fmt: skip
    calls: list[int] = []
    monkeypatch.setattr(store_module.os, "fsync", lambda fd: calls.append(fd))
    writer = JsonlWriter(tmp_path / "x.jsonl", fsync_every=every, fsync_interval_s=interval_s)
    for i in range(writes):
        writer.write({"i": i})
    writer.close()
    assert len(calls) == expected
    assert len(read_jsonl(tmp_path / "x.jsonl")[0]) == writes
