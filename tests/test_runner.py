"""The runner end to end on the CPU: hang, crash and lost devices, the ramp, the thermal guard.

Each scenario is a real `burnin run` through CliRunner with eight logical CPU devices and tiny
matmuls; faults enter through the devices' seams (``Runtime.seam_factories``, built by
burnin.sim.telemetry.with_faults) and are realised there, exactly as a simulated scenario's
faults are. The forkserver is warmed once per module so the timing
assertions measure the watchdog, not torch's import.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fakes import RecordingWriter, process_alive

from burnin.cli import cli
from burnin.plan import build_plan
from burnin.runtime import Runtime
from burnin.signals import StopSignals
from burnin.sim.faults import make_fault
from burnin.sim.seam import CRASH_EXIT_CODE
from burnin.sim.telemetry import with_faults
from burnin.store import RunStore
from burnin.supervisor import Supervisor, _Running, describe_exit, kill_group, mp_context
from burnin.telemetry.base import DriverInfo, Event, Inventory, Sample

DURATION_S, TIMEOUT_S = 2.0, 2.0
BASE = [
    "--device", "cpu", "--duration", str(DURATION_S),
    "--set", "kernels.matmul.cpu_size=64", "--set", f"watchdog.timeout_s={TIMEOUT_S}",
    "--set", "telemetry.interval_s=0.25",
    # Matmul alone: the all-reduce's rendezvous does not fit a 2 s watchdog on a loaded CPU.
    "--set", 'run.kernels=["matmul"]',
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def warm_forkserver() -> None:
    """Start the worker forkserver (and its torch import) before any timed run."""
    proc = mp_context().Process(target=os.getpid)
    proc.start()
    proc.join()


def run_cli(tmp_path: Path, args: list[str], runtime: Runtime) -> tuple[Any, Path, float]:
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["run", *BASE, "--out", str(tmp_path), *args], obj=runtime)
    wall_s = time.monotonic() - started
    runs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert runs, result.output
    return result, runs[-1], wall_s


def report(run_dir: Path) -> dict[int, dict[str, Any]]:
    data = json.loads((run_dir / "report.json").read_text())
    return {g["index"]: g for g in data["gpus"]}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "evidence"),
    [
        ("hang", "no progress for"),
        ("crash", f"exited with code {CRASH_EXIT_CODE}"),
        ("lost", "GPU is lost"),
    ],
)
def test_one_faulty_device_of_eight(tmp_path: Path, kind: str, evidence: str) -> None:
    faults = {3: (make_fault(kind, {"after_s": 0.5}),)}
    runtime = Runtime(hostname="node-a", **with_faults(faults))
    result, run_dir, wall_s = run_cli(tmp_path, ["--set", "cpu.devices=8"], runtime)

    assert result.exit_code == 4, result.output
    assert "Traceback" not in result.output
    assert wall_s < DURATION_S + TIMEOUT_S + 10
    gpus = report(run_dir)
    bad = gpus[3]
    assert bad["status"] == "ERROR"
    verdict = next(v for v in bad["verdicts"] if v["check"] == kind)
    assert verdict["status"] == "ERROR"
    assert evidence in verdict["message"]
    assert "last telemetry" in verdict["message"]  # the reading before it happened is cited

    node = RunStore(run_dir).load().nodes["node-a"]
    for dev in (0, 1, 2, 4, 5, 6, 7):
        assert gpus[dev]["status"] == "PASS", gpus[dev]["verdicts"]
        records = [r for r in node.results if r["device"] == dev]
        assert [r["type"] for r in records if r["type"] in ("result", "done")] == ["result", "done"]
        assert records[-1]["stop_reason"] is None
    event = next(e for e in node.events if e["kind"] == kind)
    assert event["device"] == 3
    assert "last_sample" in event and isinstance(event["recent_events"], list)
    if kind == "hang":
        # Detected once the last heartbeat is timeout_s old, and not much later.
        start = next(r for r in node.results if r["device"] == 3 and r["type"] == "start")
        assert start["elapsed_s"] < event["last_progress_s"] < start["elapsed_s"] + 0.6
        latency_s = event["elapsed_s"] - event["last_progress_s"]
        assert TIMEOUT_S <= latency_s < TIMEOUT_S + 1.0
    if kind == "lost":
        assert any(e["kind"] == "telemetry-error" for e in event["recent_events"])
    pid = next(e["pid"] for e in node.events if e["kind"] == "device-start" and e["device"] == 3)
    assert not process_alive(pid)
    starts = [r for r in node.results if r["type"] == "start"]
    assert all(r["pid"] == r["pgid"] for r in starts)  # every worker leads its own group


@pytest.mark.slow
def test_ramp_never_has_more_than_max_concurrent_ramping(tmp_path: Path) -> None:
    step_s = 0.4
    args = [
        "--duration", "0.6", "--set", "cpu.devices=8",
        "--set", f"ramp.step_s={step_s}", "--set", "ramp.max_concurrent=2",
    ]  # fmt: skip
    result, run_dir, _ = run_cli(tmp_path, args, Runtime(hostname="node-a"))
    assert result.exit_code == 0, result.output
    events = RunStore(run_dir).load().nodes["node-a"].events
    starts = sorted((e["elapsed_s"], e["planned_s"]) for e in events if e["kind"] == "device-start")
    assert len(starts) == 8
    times = [t for t, _ in starts]
    for t in times:  # devices inside the half-open window (t - step_s, t]
        assert sum(1 for s in times if t - step_s < s <= t) <= 2
    assert all(t >= planned for t, planned in starts)
    assert times[-1] >= 7 * step_s / 2  # one by one: the last start is not early
    power = json.loads((run_dir / "report.json").read_text())["power"][0]
    assert power["max_ramping"] <= 2 and len(power["device_starts"]) == 8


class RisingTelemetry:
    """Device 1 heats up 40 C per second from 0.5 s; the others stay at 45 C."""

    def __init__(self, count: int) -> None:
        self.count = count

    def device_count(self) -> int:
        return self.count

    def driver_info(self) -> DriverInfo:
        return DriverInfo(backend="fake")

    def inventory(self, index: int) -> Inventory:
        return Inventory(index=index, name=f"Fake {index}", slowdown_temp_c=95.0)

    def sample(self, index: int, elapsed_s: float) -> Sample:
        temp_c = 50 + 40 * max(0.0, elapsed_s - 0.5) if index == 1 else 45.0
        return Sample(index=index, elapsed_s=elapsed_s, temp_c=temp_c, power_w=200.0 + index)

    def events(self, elapsed_s: float) -> list[Event]:
        return []

    def close(self) -> None:
        pass


@pytest.mark.slow
def test_thermal_guard_stops_the_hot_device_at_once(tmp_path: Path) -> None:
    runtime = Runtime(hostname="node-a", telemetry_factory=lambda d: RisingTelemetry(len(d)))
    args = [
        "--duration", "3", "--set", "cpu.devices=3", "--set", "thermal_guard.max_temp_c=80",
        "--set", "telemetry.interval_s=0.1",
    ]  # fmt: skip
    result, run_dir, _ = run_cli(tmp_path, args, runtime)
    assert result.exit_code == 3, result.output
    gpus = report(run_dir)
    verdict = next(
        v for v in gpus[1]["verdicts"] if v["check"] == "thermal" and "guard" in v["message"]
    )
    assert verdict["status"] == "FAIL"
    assert verdict["observed"] >= 80 and verdict["limit"] == 80
    assert gpus[0]["status"] == gpus[2]["status"] == "PASS"

    node = RunStore(run_dir).load().nodes["node-a"]
    guard = next(e for e in node.events if e["kind"] == "thermal-guard")
    done = {r["device"]: r for r in node.results if r["type"] == "done"}
    assert done[1]["stop_reason"] == "thermal-guard"
    # Stopped within a batch or two of the reading, long before the others finished.
    assert guard["elapsed_s"] <= done[1]["elapsed_s"] < guard["elapsed_s"] + 1.0
    assert done[1]["elapsed_s"] < done[0]["elapsed_s"] - 1.0
    assert any(r["type"] == "result" and r["device"] == 1 for r in node.results)
    # The node's power plot is the sum of the devices' readings (200 + 201 + 202 W).
    assert json.loads((run_dir / "report.json").read_text())["power"][0]["peak_w"] == 603.0


@pytest.mark.parametrize(
    ("code", "text"),
    [(0, "exited with code 0"), (70, "exited with code 70"), (-9, "killed by signal SIGKILL"),
     (-11, "killed by signal SIGSEGV"), (None, "exit status unknown")],
)  # fmt: skip
def test_describe_exit(code: int | None, text: str) -> None:
    assert describe_exit(code) == text


class _Popen:
    """A subprocess in its own session, shaped like a multiprocessing.Process for kill_group."""

    def __init__(self, script: str) -> None:
        self.popen = subprocess.Popen(
            ["sh", "-c", script], start_new_session=True, stdout=subprocess.PIPE, text=True
        )
        self.pid = self.popen.pid

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        self.popen.kill()

    def join(self, timeout: float | None = None) -> None:
        self.popen.wait(timeout)


def test_kill_group_takes_the_workers_children_down_too() -> None:
    proc = _Popen("sleep 300 & echo $!; wait")
    assert proc.popen.stdout is not None
    child = int(proc.popen.stdout.readline())
    assert process_alive(child)
    kill_group(proc)
    deadline = time.monotonic() + 5
    while process_alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not process_alive(child) and proc.popen.returncode == -9


@pytest.mark.parametrize(
    ("beat_age_s", "running_s", "kind", "message"),
    [
        (0.0, 0.0, None, None),  # fresh heartbeat, within its time: left alone
        (5.0, 0.0, "hang", "no progress for 5.0 s"),
        # Beating, but still running long after its planned end: a hang too.
        (0.0, 100.0, "hang", "after its planned end"),
    ],
)
def test_watchdog_decisions(
    tmp_path: Path, beat_age_s: float, running_s: float, kind: str | None, message: str | None
) -> None:
    from burnin.config import load_config
    from burnin.devices import cpu_devices

    config = load_config(None, ["run.duration_s=10", "watchdog.timeout_s=2"])
    plan = build_plan(config, cpu_devices(1), "n")
    events = RecordingWriter()
    sup = Supervisor(plan, str(tmp_path / "r.jsonl"), RecordingWriter(), events, 0.0, StopSignals())  # type: ignore[arg-type]
    proc = _Popen("sleep 300")
    now = time.monotonic()
    sup._beats[0] = now - beat_age_s
    sup._running[0] = _Running(proc, plan.items[0], 0, now - running_s)
    sup._check(0)
    kinds = [e["kind"] for e in events.records]
    if kind is None:
        assert kinds == [] and proc.is_alive()
        kill_group(proc)
    else:
        assert kinds == [kind] and message in events.records[0]["message"]
        assert not proc.is_alive()


@pytest.mark.slow
@pytest.mark.parametrize(("torch_sees", "missing"), [(0, [0, 1, 2]), (2, [2])])
def test_missing_gpus_are_recorded_in_the_store(
    tmp_path: Path, torch_sees: int, missing: list[int]
) -> None:
    """A card the driver lists and CUDA does not show gets an inventory record of its own, so
    `burnin report` on the store alone fails the node again."""
    from fake_pynvml import FakeGpu, FakeNvml

    from burnin.devices import Device

    cards = [
        FakeGpu(uuid=f"GPU-{i}", serial=f"S{i}", bus_id=f"00000000:{i + 1:02x}:00.0")
        for i in range(3)
    ]
    shown = [
        Device(index=i, kind="simulated", name="sim", uuid=c.uuid, pci_bus_id=c.bus_id)
        for i, c in enumerate(cards[:torch_sees])
    ]
    runtime = Runtime(
        hostname="node-a",
        cuda_devices=lambda: shown,
        nvml_module=lambda: FakeNvml(cards),
        path_exists=lambda path: True,
        env={},
    )
    args = ["--device", "auto", "--duration", "1", "--set", "kernels.matmul.cpu_size=64"]
    result = CliRunner().invoke(cli, ["run", *args, "--out", str(tmp_path)], obj=runtime)
    assert result.exit_code == 3, result.output
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    inventory = RunStore(run_dir).load().nodes["node-a"].inventory
    recorded = [r["device"] for r in inventory if r.get("missing")]
    assert recorded == missing
    assert {r["serial"] for r in inventory if r.get("missing")} == {
        f"S{i}" for i in range(torch_sees, 3)
    }
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert "GPU(s) missing" in manifest["device_note"]
    assert [p["device"] for p in manifest["plan"]] == list(range(torch_sees))
    again = CliRunner().invoke(cli, ["report", str(run_dir), "--quiet"])
    assert again.exit_code == 3, again.output
