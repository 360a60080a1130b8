"""Planning: ramp offsets, node rank from the launcher, power estimate, `burnin plan` output."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from click.testing import CliRunner

from burnin.cli import cli
from burnin.config import load_config
from burnin.devices import Device, cpu_devices
from burnin.errors import InputError
from burnin.plan import build_plan, format_plan, node_placement, power_estimate, start_offsets
from burnin.runtime import Runtime
from burnin.telemetry.base import DriverInfo, Event, Inventory, Sample


def _ramping_at_most(offsets: list[float], step_s: float) -> int:
    """Most starts inside any half-open ramp window (t - step_s, t], give or take float error
    (the runner enforces the rule exactly on the start times it records)."""
    return max(sum(1 for s in offsets if t - step_s + 1e-9 < s <= t) for t in offsets)


@pytest.mark.parametrize(
    ("count", "step_s", "max_concurrent", "expected"),
    [
        (4, 0.0, 0, [0.0, 0.0, 0.0, 0.0]),  # no ramp: all at once
        (4, 0.0, 2, [0.0, 0.0, 0.0, 0.0]),  # a limit without a window changes nothing
        (4, 10.0, 0, [0.0, 10.0, 20.0, 30.0]),  # 0 counts as 1 once there is a ramp
        (4, 10.0, 1, [0.0, 10.0, 20.0, 30.0]),
        (5, 10.0, 2, [0.0, 5.0, 10.0, 15.0, 20.0]),  # one by one, half a window apart
        (3, 9.0, 3, [0.0, 3.0, 6.0]),
    ],
)
def test_start_offsets(count: int, step_s: float, max_concurrent: int, expected: list[float]):
    assert start_offsets(count, step_s, max_concurrent) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("count", "step_s", "max_concurrent"),
    list(itertools.product([1, 7, 8, 64], [0.5, 10], [1, 2, 3])),
)
def test_planned_starts_never_exceed_max_concurrent(count: int, step_s: float, max_concurrent: int):
    offsets = start_offsets(count, step_s, max_concurrent)
    assert _ramping_at_most(offsets, step_s) == min(count, max_concurrent)


def _ramp(**values: Any):
    sets = [f"ramp.{k}={v}" for k, v in values.items()]
    return load_config(None, sets).ramp


@pytest.mark.parametrize(
    ("env", "ramp", "rank", "nodes", "source"),
    [
        ({}, {}, 0, 1, "default (single node)"),
        ({"RANK": "3", "WORLD_SIZE": "4"}, {}, 3, 4, "RANK"),
        ({"SLURM_NODEID": "2", "SLURM_NNODES": "5", "RANK": "0"}, {}, 2, 5, "SLURM_NODEID"),
        ({"GROUP_RANK": "1", "RANK": "9", "WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "8"}, {}, 1, 2,
         "GROUP_RANK"),
        ({"RANK": "3", "WORLD_SIZE": "4"}, {"node_rank": 1}, 1, 4, "ramp.node_rank"),
        # A Kubernetes Indexed Job: the pod index, the count from the generated Job's env.
        ({"JOB_COMPLETION_INDEX": "2", "BURNIN_NODES": "4"}, {}, 2, 4, "JOB_COMPLETION_INDEX"),
        ({"JOB_COMPLETION_INDEX": "1", "RANK": "0", "BURNIN_NODES": "3"}, {}, 1, 3,
         "JOB_COMPLETION_INDEX"),
        # torchrun inside either launcher: its group rank and group count come first.
        ({"GROUP_RANK": "3", "GROUP_WORLD_SIZE": "4", "JOB_COMPLETION_INDEX": "0",
          "BURNIN_NODES": "9"}, {}, 3, 4, "GROUP_RANK"),
        ({"SLURM_NODEID": "1", "SLURM_JOB_NUM_NODES": "2"}, {}, 1, 2, "SLURM_NODEID"),
        ({"SLURM_NODEID": "1", "SLURM_NNODES": "2", "SLURM_JOB_NUM_NODES": "8"}, {}, 1, 2,
         "SLURM_NODEID"),
        ({"JOB_COMPLETION_INDEX": "2", "BURNIN_NODES": "4"}, {"nodes": 6}, 2, 6,
         "JOB_COMPLETION_INDEX"),
        ({}, {"node_rank": 2, "nodes": 3}, 2, 3, "ramp.node_rank"),
    ],
)  # fmt: skip
def test_node_placement_sources(env, ramp, rank, nodes, source):
    place = node_placement(_ramp(step_s=10, max_concurrent=2, **ramp), env, 8)
    assert (place.rank, place.nodes, place.source) == (rank, nodes, source)
    # Default offset between nodes: one whole node's ramp (8 devices, one every 5 s).
    assert place.node_offset_s == 40.0
    assert place.offset_s == rank * 40.0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RANK": "x"}, "RANK='x'"),
        ({"RANK": "-1"}, "RANK='-1'"),
        ({"RANK": " 1"}, "RANK=' 1'"),
        ({"SLURM_NODEID": "1.0"}, "SLURM_NODEID='1.0'"),
        ({"GROUP_RANK": ""}, "GROUP_RANK=''"),
        ({"RANK": "١"}, "RANK='١'"),  # a non-ASCII digit int() would accept
        ({"RANK": "4", "WORLD_SIZE": "4"}, "outside a run of 4 node"),
        ({"JOB_COMPLETION_INDEX": "x1"}, "JOB_COMPLETION_INDEX='x1'"),
        ({"JOB_COMPLETION_INDEX": "0", "BURNIN_NODES": "0"}, "BURNIN_NODES: a run needs"),
        ({"JOB_COMPLETION_INDEX": "4", "BURNIN_NODES": "4"}, "(from BURNIN_NODES)"),
        ({"GROUP_RANK": "0", "GROUP_WORLD_SIZE": "-2"}, "GROUP_WORLD_SIZE='-2'"),
        ({"SLURM_NODEID": "0", "SLURM_NNODES": "0"}, "at least one node"),
        ({"RANK": "0", "WORLD_SIZE": "0"}, "positive multiple"),
        ({"RANK": "0", "WORLD_SIZE": "6", "LOCAL_WORLD_SIZE": "4"}, "positive multiple"),
        ({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc'"),
    ],
)
def test_node_placement_rejects_bad_launcher_values(env: dict[str, str], message: str):
    with pytest.raises(InputError) as err:
        node_placement(_ramp(), env, 4)
    assert message in str(err.value)


def test_explicit_node_offset_and_plan_offsets_include_the_rank():
    config = load_config(
        None, ["ramp.step_s=4", "ramp.max_concurrent=2", "ramp.node_offset_s=1.5", "run.seed=1"]
    )
    plan = build_plan(config, cpu_devices(3), "n", env={"RANK": "2", "WORLD_SIZE": "3"})
    assert [i.start_offset_s for i in plan.items] == [3.0, 5.0, 7.0]
    assert plan.total_s == 7.0 + config.run.duration_s


@pytest.mark.parametrize(
    ("tdp", "sets", "env", "node_peak", "run_peak"),
    [
        ([700.0] * 4, [], {}, 2800.0, 2800.0),  # all at once
        # One every 5 s but each runs 300 s: all four overlap at the end.
        ([700.0] * 4, ["ramp.step_s=10", "ramp.max_concurrent=2"], {}, 2800.0, 2800.0),
        # Runs shorter than the gap never overlap: one card at a time.
        ([700.0] * 4, ["ramp.step_s=20", "ramp.max_concurrent=1", "run.duration_s=10"], {},
         700.0, 700.0),
        # Two nodes, each ramping one card every 20 s for 10 s: nodes never overlap either.
        ([700.0] * 2, ["ramp.step_s=20", "ramp.max_concurrent=1", "run.duration_s=10"],
         {"RANK": "1", "WORLD_SIZE": "2"}, 700.0, 700.0),
        # Two nodes, no ramp: the run draws twice the node.
        ([350.0, 700.0], [], {"SLURM_NODEID": "0", "SLURM_NNODES": "2"}, 1050.0, 2100.0),
        ([700.0, None], [], {}, 700.0, 700.0),  # an unknown TDP is left out, and said so
    ],
)  # fmt: skip
def test_power_estimate(tdp, sets, env, node_peak, run_peak):
    config = load_config(None, sets)
    plan = build_plan(config, cpu_devices(len(tdp)), "n", env=env, tdp_w=dict(enumerate(tdp)))
    est = power_estimate(plan)
    assert (est.node_peak_w, est.run_peak_w) == (node_peak, run_peak)
    assert est.unknown == tdp.count(None)
    duration_s = config.run.duration_s
    known = sum(w for w in tdp if w is not None)
    assert est.node_energy_kwh == pytest.approx(known * duration_s / 3.6e6)


def test_power_unknown_without_tdp():
    plan = build_plan(load_config(None), cpu_devices(2), "n")
    assert power_estimate(plan).node_peak_w is None
    assert "power: unknown (the CPU fallback has no TDP)" in format_plan(plan)


class H100Telemetry:
    """Cards that identify as H100 SXM5 (PCI 10de:2330), for the SKU TDP lookup."""

    def __init__(self, count: int, name: str = "NVIDIA H100 80GB HBM3") -> None:
        self.count, self.name = count, name

    def device_count(self) -> int:
        return self.count

    def driver_info(self) -> DriverInfo:
        return DriverInfo(backend="fake")

    def inventory(self, index: int) -> Inventory:
        return Inventory(index=index, name=self.name, pci_device_id="2330", memory_total_mib=81559)

    def sample(self, index: int, elapsed_s: float) -> Sample:
        return Sample(index=index, elapsed_s=elapsed_s, temp_c=40.0, power_w=100.0)

    def events(self, elapsed_s: float) -> list[Event]:
        return []

    def close(self) -> None:
        pass


def _plan_cli(args: list[str], env: dict[str, str], telemetry: Any = None) -> Any:
    runtime = Runtime(
        hostname="rack-a-07",
        env=env,
        cuda_devices=lambda: [],
        **({"telemetry_factory": telemetry} if telemetry else {}),
    )
    return CliRunner().invoke(cli, ["plan", "--device", "cpu", *args], obj=runtime)


def test_plan_command_shows_schedule_and_peak_power():
    result = _plan_cli(
        ["--set", "cpu.devices=8", "--set", "ramp.step_s=10", "--set", "ramp.max_concurrent=2"],
        {"SLURM_NODEID": "1", "SLURM_NNODES": "4"},
        telemetry=lambda devices: H100Telemetry(len(devices)),
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "# ramp: one device every 5 s, at most 2 ramping at once" in out
    assert "# node rank 1 of 4 (from SLURM_NODEID): starts 40 s after rank 0" in out
    # 8 × 700 W on this node; 4 nodes 40 s apart each running 360 s all overlap at the peak.
    assert "estimated peak 5600 W on this node, 22400 W for the run (4 node(s))" in out
    rows = [line.split() for line in out.splitlines() if not line.startswith("#")][1:]
    first_kernel = [r for r in rows if r[2] == "matmul"]  # each device's start
    assert [float(r[1]) for r in first_kernel] == [40.0 + 5 * i for i in range(8)]
    assert all(r[4] == "700" for r in rows)


def test_plan_command_cpu_power_unknown_and_bad_rank():
    ok = _plan_cli(["--set", "cpu.devices=2"], {})
    assert ok.exit_code == 0
    assert "power: unknown" in ok.output
    bad = _plan_cli([], {"RANK": "two"})
    assert bad.exit_code == 2
    assert "environment variable RANK='two'" in bad.output
    assert "Traceback" not in bad.output


def test_format_plan_escapes_control_characters_in_device_names():
    device = Device(index=0, kind="cuda", name="evil\nPASS - forged\x1b[2J line", torch_index=0)
    out = format_plan(build_plan(load_config(None), [device], "n"))
    assert "\nPASS - forged" not in out and "\x1b" not in out
    assert "evil\\nPASS - forged\\x1b[2J line" in out


def test_plan_command_takes_rank_from_a_kubernetes_indexed_job():
    result = _plan_cli(
        ["--set", "cpu.devices=2", "--set", "ramp.step_s=10", "--set", "ramp.max_concurrent=1"],
        {"JOB_COMPLETION_INDEX": "2", "BURNIN_NODES": "4"},
    )
    assert result.exit_code == 0, result.output
    # Two devices 10 s apart make one node's ramp 20 s, so rank 2 starts 40 s after rank 0.
    assert "# node rank 2 of 4 (from JOB_COMPLETION_INDEX): starts 40 s after rank 0" in (
        result.output
    )
    rows = [line.split() for line in result.output.splitlines() if not line.startswith("#")][1:]
    assert [float(r[1]) for r in rows if r[2] == "matmul"] == [40.0, 50.0]
