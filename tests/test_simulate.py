"""burnin.sim.run and burnin.sim.seam: the seam's device model and clock, the adapted config,
the contract.

The end-to-end tests run ``burnin run --simulate`` through the real code path (supervisor,
worker processes, kernels on the CPU, sampler, store, checks, reports). The detection contract
(docs/contracts.md "Simulated fleets") is checked on the shipped one-of-each-fault scenario, one
test per fault kind, so a failure names the kind whose check did not flag its card; the same
scenario run again must give the same report, figure for figure.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from burnin.cli import cli
from burnin.config import load_config
from burnin.kernels import registry
from burnin.sim.faults import EXPECTED_CHECKS, make_fault
from burnin.sim.model import PCIE_LANE_GBPS, DeviceActivity, board_for, build_gpu
from burnin.sim.run import (
    BATCHES_PER_KERNEL,
    GROUP_TIMEOUT_S,
    WATCHDOG_S,
    kernel_paces,
    node_slots,
    prepare_simulation,
)
from burnin.sim.scenario import load_scenario
from burnin.sim.seam import BATCH_STEPS, IDLE_STEP_S, SimulatedSeam, exact_time_s, scaled_sdc

H100 = "H100-SXM5-80GB"
NOT_FLAGGED = ("PASS", "SKIP")


def seam(
    *faults: tuple[str, dict[str, Any]],
    sku: str = H100,
    pace_s: dict[str, float] | None = None,
    activity: DeviceActivity | None = None,
    start_s: float = 500.0,
) -> SimulatedSeam:
    made = [make_fault(kind, params) for kind, params in faults]
    gpu = build_gpu(board_for(sku), seed=1, node=0, index=0, noise=0.0, faults=made)
    dev = SimulatedSeam(
        seed=3,
        gpu=gpu,
        pace_s=pace_s or {},
        dtypes={"matmul": "bf16"},
        activity=activity,
    )
    dev.clock(start_s)
    return dev


# kernel, fault, expected device rate (work per second) of a noise-free H100 SXM5
RATES = [
    ("matmul", None, 989.4e12 * 0.8),  # issue 4: ~0.8 of the dense bf16 peak
    ("matmul", ("slow", {"factor": 0.85}), 989.4e12 * 0.8 * 0.85),
    ("membw", None, 1905.0e9 / 0.75),  # DCGM's minimum is 0.75 x measured
    ("membw", ("hbm-slow", {"factor": 0.8}), 1905.0e9 / 0.75 * 0.8),
    ("pcie", None, PCIE_LANE_GBPS[5] * 16 * 0.85e9),
    ("pcie", ("pcie-degraded", {"gen": 3, "width": 8}), PCIE_LANE_GBPS[3] * 8 * 0.85e9),
    ("allreduce", None, 900 * 0.45e9),
    ("allreduce", ("slow-link", {"factor": 0.5}), 900 * 0.45e9 * 0.5),
]


@pytest.mark.parametrize(("kernel", "fault", "rate"), RATES)
def test_seam_reports_the_sku_models_time(kernel: str, fault: Any, rate: float) -> None:
    dev = seam(*([fault] if fault else []))
    assert dev.rate(kernel) == pytest.approx(rate)
    assert dev.device_time_s(kernel, elapsed_s=1.23, work=rate * 2) == pytest.approx(2.0)
    assert dev.delay_s(5.0, kernel) == 0.0  # slowness is modelled, never slept on the CPU


def test_seam_keeps_measured_time_for_kernels_it_does_not_model() -> None:
    assert seam().device_time_s("not-a-kernel", elapsed_s=0.5, work=1e9) == 0.5


def test_throttling_faults_slow_matmul_as_the_telemetry_shows() -> None:
    capped = seam(("power-cap", {"limit_w": 300.0}))
    assert capped.rate("matmul") < 0.85 * seam().rate("matmul")
    hot = seam(("thermal", {"max_temp_c": 95.0}))
    cool_rate = hot.rate("matmul")
    hot.advance(300.0)  # long enough (device time) to pass the HW slowdown temperature
    assert hot.rate("matmul") < 0.6 * cool_rate


@pytest.mark.parametrize(
    ("kernel", "calls", "expected_s"),
    [
        ("matmul", 3, 530.0),  # each call stands for its pace of the card's time
        ("pcie", 2, 504.0),
        ("not-a-kernel", 5, 500.0),  # no pace: the clock stands
    ],
)
def test_the_device_clock_advances_by_the_modelled_time_of_its_work(
    kernel: str, calls: int, expected_s: float
) -> None:
    dev = seam(pace_s={"matmul": 10.0, "pcie": 2.0})
    for _ in range(calls):
        dev.device_time_s(kernel, 0.001, 1e12)
    assert dev.now() == expected_s


def test_a_memtest_pass_advances_the_clock_once_whatever_its_chunks() -> None:
    torch = pytest.importorskip("torch")
    dev = seam(pace_s={"memtest": 3.0})
    words = torch.zeros(16, dtype=torch.int32)
    for pass_id in (0, 0, 0, 1, 1, 2):  # three passes, read back in several chunks
        dev.read_back(words, 0, 64, pass_id)
    assert dev.now() == 509.0


@pytest.mark.parametrize("measured", [1, 7, 12345])
def test_a_simulated_batch_holds_a_fixed_number_of_steps(measured: int) -> None:
    dev = seam()
    assert dev.batch_steps("matmul", measured) == BATCH_STEPS["matmul"]
    assert dev.batch_steps("allreduce", measured) == BATCH_STEPS["allreduce"]


@pytest.mark.parametrize(
    ("work", "rate"), [(1e12, 7.9e14), (3 * 2.0 * 64**3, 7.913e14), (1.7e9, 53.55e9), (1.0, 3.0)]
)
def test_device_times_divide_back_to_the_rate_exactly(work: float, rate: float) -> None:
    t = exact_time_s(work, rate)
    assert work / t == rate and math.isclose(t, work / rate, rel_tol=1e-15)


def test_the_sampler_catches_up_before_a_device_goes_on() -> None:
    activity = DeviceActivity(1)
    dev = seam(pace_s={"matmul": 10.0}, activity=activity)
    dev.device_time_s("matmul", 0.001, 1e12)
    assert activity.clock(0) == 510.0
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (dev.check_faults(10.0), done.set()), daemon=True)
    waiter.start()
    assert not done.wait(0.1)  # the sampler has not reached 510 s yet
    activity.sampled_to(0, 510.0)
    assert done.wait(5.0)


def test_waiting_on_peers_lets_the_clock_run_until_the_next_work() -> None:
    dev = seam(pace_s={"matmul": 10.0})
    # After work a device beats at the batch's end and before its next kernel; only the beats
    # beyond those wait (here three).
    for _ in range(5):
        dev.check_faults(0.0)
    assert dev.now() == 500.0 + 3 * IDLE_STEP_S
    dev.device_time_s("matmul", 0.001, 1e12)
    assert dev.now() == 510.0  # what the device records afterwards does not depend on it


def test_seam_records_progress_and_a_hang_for_the_telemetry() -> None:
    activity = DeviceActivity(1)
    dev = seam(("hang", {"after_s": 5.0}), pace_s={"matmul": 3.0}, activity=activity)
    assert activity.read(0) == (500.0, 500.0, False)
    dev.device_time_s("matmul", 0.001, 1e12)
    activity.sampled_to(0, 1e9)
    dev.check_faults(3.0)
    assert activity.read(0) == (500.0, 503.0, False)
    assert activity.state(0) == DeviceActivity.RUNNING
    dev.device_time_s("matmul", 0.001, 1e12)
    # Past after_s the device stops answering for good: only a kill would end this thread.
    threading.Thread(target=dev.check_faults, args=(6.0,), daemon=True).start()
    deadline = time.monotonic() + 5
    while not activity.read(0)[2] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert activity.read(0) == (500.0, 506.0, True)
    assert activity.state(0) == DeviceActivity.STALLED


@pytest.mark.parametrize(("batches", "expected"), [(1, 0.05), (10, 1 - 0.95**10), (200, 1.0)])
def test_one_cpu_verification_stands_for_many_device_ones(batches: float, expected: float) -> None:
    faults = (make_fault("sdc", {"rate": 0.05}), make_fault("slow"))
    scaled = scaled_sdc(faults, batches)
    assert scaled[0].params["rate"] == pytest.approx(expected, abs=1e-4)
    assert scaled[1] == faults[1]


def test_simulation_adapts_the_config_but_keeps_what_the_user_set(tmp_path: Path) -> None:
    config = load_config("quick", ["kernels.matmul.cpu_size=48"], {"run.device": "cpu"})
    sim = prepare_simulation("one-of-each-fault", config)
    cfg = sim.config
    assert cfg.run.device == "auto" and cfg.run.duration_s == config.run.duration_s
    for name in ("membw", "allreduce"):  # hbm-slow and slow-link need them
        assert (name in cfg.run.kernels) == (name in registry.names())
    assert cfg.watchdog.timeout_s == WATCHDOG_S
    # Collectives give up on the device clock; gloo's wall-clock limit is only a far net.
    allreduce = cfg.kernels["allreduce"]
    assert allreduce.timeout_s == 0.8 * WATCHDOG_S and allreduce.group_timeout_s == GROUP_TIMEOUT_S
    assert cfg.kernels["matmul"].cpu_size == 48  # the user's value wins
    assert cfg.kernels["matmul"].cpu_dtype == cfg.kernels["matmul"].dtype
    assert cfg.kernels["matmul"].batch_s < config.kernels["matmul"].batch_s
    # All-reduce sizes shrink as well: the model gives the bandwidth, the CPU the exact sums.
    assert max(cfg.kernels["allreduce"].cpu_sizes_bytes) < max(
        config.kernels["allreduce"].cpu_sizes_bytes
    )
    assert cfg.telemetry.interval_s >= config.telemetry.interval_s
    # The modelled TFLOP/s are judged against the datasheet whatever size the CPU computed,
    # unless the user set the limit.
    assert cfg.thresholds.throughput_min_size_for_peak == 1
    mine = load_config("quick", ["thresholds.throughput_min_size_for_peak=64"])
    kept = prepare_simulation("one-of-each-fault", mine).config
    assert kept.thresholds.throughput_min_size_for_peak == 64


def test_each_kernels_calls_share_its_simulated_duration() -> None:
    cfg = prepare_simulation("healthy-rack", load_config("quick")).config
    paces = kernel_paces(cfg, gpus=8)
    from burnin.plan import kernel_durations

    durations = kernel_durations(cfg)
    assert paces["matmul"] * BATCHES_PER_KERNEL == pytest.approx(durations["matmul"])
    assert paces["membw"] * 2 * BATCHES_PER_KERNEL == pytest.approx(durations["membw"])
    ar = cfg.kernel_config("allreduce")
    calls = BATCHES_PER_KERNEL + len(ar.cpu_sizes_bytes) + 7 * ar.iterations
    assert paces["allreduce"] * calls == pytest.approx(durations["allreduce"])


@pytest.mark.parametrize(
    ("nodes", "gpus", "cpus", "slots"),
    [(32, 8, 2, 4), (32, 8, 16, 32), (1, 8, 2, 1), (6, 4, 2, 6), (3, 64, 2, 1)],
)
def test_worker_processes_at_once_are_bounded_by_the_cpus(
    tmp_path: Path, nodes: int, gpus: int, cpus: int, slots: int
) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(
        f'[fleet]\nname = "f"\nnodes = {nodes}\ngpus_per_node = {gpus}\nsku = "{H100}"\n',
        encoding="utf-8",
    )
    assert node_slots(load_scenario(path), cpus) == slots


def invoke_run(args: list[str], out: Path) -> tuple[Any, dict[str, Any], Path]:
    result = CliRunner().invoke(cli, ["run", *args, "--out", str(out), "--quiet"])
    run_dirs = [p for p in out.iterdir() if (p / "report.json").is_file()]
    assert len(run_dirs) == 1, result.output
    report = json.loads((run_dirs[0] / "report.json").read_text(encoding="utf-8"))
    return result, report, run_dirs[0]


@pytest.fixture(scope="module")
def one_of_each(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("one-of-each")
    return invoke_run(["--simulate", "one-of-each-fault"], out)


def _gpus(report: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(g["node"], g["index"]): g for g in report["gpus"]}


SCENARIO = load_scenario("one-of-each-fault")
CARDS = {f.kind: where for where, faults in SCENARIO.faults.items() for f in faults}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(CARDS))
def test_every_faulty_card_is_flagged_by_its_expected_check(
    one_of_each: tuple[Any, dict[str, Any], Path], kind: str
) -> None:
    _result, report, _run_dir = one_of_each
    node, gpu = CARDS[kind]
    entry = _gpus(report)[(SCENARIO.nodes[node].name, gpu)]
    flagged = {v["check"] for v in entry["verdicts"] if v["status"] not in NOT_FLAGGED}
    assert entry["status"] != "PASS", f"{kind} card passed"
    missing = set(EXPECTED_CHECKS[kind]) - flagged
    assert not missing, f"{kind}: no non-PASS {sorted(missing)} verdict (flagged: {flagged})"


@pytest.mark.slow
def test_every_other_card_passes(one_of_each: tuple[Any, dict[str, Any], Path]) -> None:
    _result, report, _run_dir = one_of_each
    twins = [
        (int(f.params["twin_node"]), int(f.params["twin_gpu"]))
        for faults in SCENARIO.faults.values()
        for f in faults
        if f.kind == "duplicate-serial"
    ]  # a duplicated serial flags both cards
    faulty = {(SCENARIO.nodes[n].name, g) for n, g in [*SCENARIO.faults, *twins]}
    healthy = {k: g for k, g in _gpus(report).items() if k not in faulty}
    assert len(healthy) == SCENARIO.gpu_count - len(faulty) > 10
    bad = {
        k: [(v["check"], v["status"]) for v in g["verdicts"] if v["status"] not in NOT_FLAGGED]
        for k, g in healthy.items()
        if g["status"] != "PASS"
    }
    assert not bad


@pytest.mark.slow
def test_every_node_lands_in_one_run_directory(
    one_of_each: tuple[Any, dict[str, Any], Path],
) -> None:
    result, report, run_dir = one_of_each
    names = [n.name for n in SCENARIO.nodes]
    assert result.exit_code == report["exit_code"] != 0
    assert sorted(p.name for p in (run_dir / "nodes").iterdir()) == names
    assert not (run_dir / ".nodes").exists()  # the per-node staging is gone
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["nodes"] == names and len(manifest["plan"]) == SCENARIO.gpu_count
    assert manifest["claimed_sku"]["node-04"] == "V100-SXM2-32GB"
    assert manifest["simulation"]["scenario"] == "one-of-each"
    assert {n["node"] for n in report["nodes"]} == set(names)
    assert len(report["gpus"]) == SCENARIO.gpu_count
    # Simulated time: the report spans the profile's minutes, whatever the wall time was.
    assert manifest["elapsed_s"] >= 360.0


# What only the wall clock or the run's identity decides: left out of the comparison (the
# verification's overhead is the host's CPU time, measured: kernels/matmul.py).
_WALL_KEYS = {"run_id", "started_at", "finished_at", "generated_at", "wall_s", "run_dir"}
_WALL_KEYS |= {"matmul_verify_overhead", "verify_overhead"}


def _without_wall(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_wall(v) for k, v in value.items() if k not in _WALL_KEYS}
    if isinstance(value, list):
        return [_without_wall(v) for v in value]
    return value


def _verdict_lines(report: dict[str, Any]) -> set[tuple[Any, ...]]:
    return {
        (g["node"], g["index"], v["check"], v["status"], v.get("message"))
        for g in report["gpus"]
        for v in g["verdicts"]
    }


def _events(run_dir: Path, kind: str) -> dict[tuple[str, int], dict[str, Any]]:
    return {
        (node.name, e["device"]): e
        for node in (run_dir / "nodes").iterdir()
        for e in map(json.loads, (node / "events.jsonl").read_text(encoding="utf-8").splitlines())
        if e.get("kind") == kind
    }


@pytest.mark.slow
def test_same_seed_same_report(
    one_of_each: tuple[Any, dict[str, Any], Path], tmp_path: Path
) -> None:
    """Every verdict and every figure of the one-of-each fleet, run twice with its seed.

    The second run shares the host with a busy thread, so the two runs see different loads.
    """
    _result, first, first_dir = one_of_each
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            sum(i * i for i in range(10_000))

    spinner = threading.Thread(target=busy, daemon=True)
    spinner.start()
    try:
        _result, second, second_dir = invoke_run(["--simulate", "one-of-each-fault"], tmp_path)
    finally:
        stop.set()
    # The verdicts that differ, with their messages, first: a bare dict diff hides them.
    assert _verdict_lines(first) ^ _verdict_lines(second) == set()
    assert _without_wall(first) == _without_wall(second)
    verdicts = [v for g in first["gpus"] for v in g["verdicts"]]
    assert len(verdicts) > 500
    for run_dir in (first_dir, second_dir):
        starts = _events(run_dir, "device-start")
        assert len(starts) == SCENARIO.gpu_count
        assert {e["elapsed_s"] for e in starts.values()} == {0.0}  # quick.toml: all at once
    for kind in ("hang", "crash", "lost"):
        assert _events(first_dir, kind).keys() == _events(second_dir, kind).keys() != set()


@pytest.mark.slow
def test_starts_follow_the_plan_and_energy_stays_within_tdp(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(
        f'[fleet]\nname = "ramp"\nnodes = 1\ngpus_per_node = 4\nsku = "{H100}"\nseed = 3\n',
        encoding="utf-8",
    )
    args = ["--simulate", str(path), "--set", "ramp.step_s=5", "--set", "ramp.max_concurrent=1"]
    args += ["--set", 'run.kernels=["matmul","membw"]', "--duration", "30m"]
    result, report, run_dir = invoke_run(args, tmp_path / "runs")
    assert result.exit_code == 0, result.output
    starts = _events(run_dir, "device-start")
    assert {dev: e["elapsed_s"] for (_n, dev), e in starts.items()} == {
        0: 0.0,
        1: 5.0,
        2: 10.0,
        3: 15.0,
    }
    assert all(e["planned_s"] == e["elapsed_s"] for e in starts.values())
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    tdp_kwh = 700.0 * manifest["elapsed_s"] / 3.6e6  # H100 SXM5: 700 W
    for gpu in report["gpus"]:
        assert 0.0 < gpu["metrics"]["energy_kwh"] <= tdp_kwh


@pytest.mark.slow
def test_a_workers_exit_status_is_read_under_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nodes run in threads of one process. multiprocessing's Popen.poll is not thread-safe and
    Process.start() polls every child, so a worker polled outside the supervisor's lock can
    read as exit code 255 (crash) while it ended well."""
    from multiprocessing import popen_forkserver

    from burnin import supervisor

    unlocked: set[int] = set()
    real_poll = popen_forkserver.Popen.poll

    def poll(self: Any, flag: int = os.WNOHANG) -> int | None:
        if self.returncode is None and not supervisor._CHILDREN.locked():
            unlocked.add(self.pid)
        return real_poll(self, flag)

    monkeypatch.setattr(popen_forkserver.Popen, "poll", poll)
    path = tmp_path / "fleet.toml"
    path.write_text(
        f'[fleet]\nname = "threads"\nnodes = 3\ngpus_per_node = 2\nsku = "{H100}"\nseed = 5\n',
        encoding="utf-8",
    )
    args = ["--simulate", str(path), "--set", 'run.kernels=["matmul"]', "--duration", "1m"]
    result, _report, run_dir = invoke_run(args, tmp_path / "runs")
    assert result.exit_code == 0, result.output
    workers = {e["pid"] for e in _events(run_dir, "device-start").values()}
    assert len(workers) == 6 and not workers & unlocked
