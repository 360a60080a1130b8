"""Node power for the report: the per-tick sum of devices' power, device starts, ramp count."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import write_run

from burnin.cli import cli
from burnin.reports.power import max_ramping, node_power
from burnin.store import RunStore


@pytest.mark.parametrize(
    ("starts", "step_s", "expected"),
    [
        ([], 10.0, 0),
        ([0.0, 5.0, 10.0, 15.0], 10.0, 2),  # half-open window: 0 is no longer ramping at 10
        ([0.0, 5.0, 9.99, 15.0], 10.0, 3),
        ([0.0, 0.0, 0.0], 0.0, 3),  # no ramp: every device counts
    ],
)
def test_max_ramping(starts: list[float], step_s: float, expected: int) -> None:
    assert max_ramping(starts, step_s) == expected


def test_node_power_sums_ticks_and_keeps_each_devices_last_reading(tmp_path: Path) -> None:
    samples = {
        0: [{"device": 0, "elapsed_s": t, "power_w": w} for t, w in [(0, 50), (1, 300), (2, 310)]],
        # Device 1 misses tick 1: its last reading (60 W) stands in for it.
        1: [{"device": 1, "elapsed_s": t, "power_w": w} for t, w in [(0, 60), (2, 320)]],
    }
    events = [
        {"device": 0, "elapsed_s": 0.5, "kind": "device-start"},
        {"device": 1, "elapsed_s": 1.5, "kind": "device-start"},
    ]
    run_dir = write_run(tmp_path, devices=2, samples=samples, events=events)
    power, series = node_power(RunStore(run_dir).load())
    (node,) = power
    assert series["node-a"] == [[0.0, 110.0], [1.0, 360.0], [2.0, 630.0]]
    assert (node["peak_w"], node["readings"], node["max_ramping"]) == (630.0, 3, 2)
    assert [s["x_frac"] for s in node["device_starts"]] == [0.25, 0.75]
    result = CliRunner().invoke(cli, ["report", str(run_dir), "--quiet"])
    assert result.exit_code == 0
    html = (run_dir / "report.html").read_text()
    assert 'data-peak-w="630.0"' in html and "gpu1 started at 1.5 s" in html


def test_no_power_readings_says_unknown(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, devices=1)
    power, series = node_power(RunStore(run_dir).load())
    assert power[0]["peak_w"] is None and series == {}
    CliRunner().invoke(cli, ["report", str(run_dir), "--quiet"])
    assert "total power unknown" in (run_dir / "report.html").read_text()
