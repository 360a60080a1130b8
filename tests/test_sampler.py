"""The sampler thread: one sample per device and instant of the run's timeline, written as
taken: every interval of the host's clock on hardware, each device's own instants as its
virtual clock passes them in simulation, whatever the host's load."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fakes import FakeTelemetry

from burnin.clock import WallTimeline
from burnin.sim.clock import VirtualTimeline
from burnin.sim.model import DeviceActivity
from burnin.store import JsonlWriter, read_jsonl
from burnin.telemetry.sampler import Sampler


def run_sampler(tmp_path: Path, timeline, interval_s: float, during) -> list[dict]:
    samples = JsonlWriter(tmp_path / "samples.jsonl")
    events = JsonlWriter(tmp_path / "events.jsonl")
    timeline.start()
    sampler = Sampler(FakeTelemetry(2), [(0, 0), (1, 1)], samples, events, interval_s, timeline)
    sampler.start()
    try:
        during()
    finally:
        sampler.stop()
        samples.close()
        events.close()
    records, _torn = read_jsonl(tmp_path / "samples.jsonl")
    return records


def _times(records: list[dict], device: int) -> list[float]:
    return [r["elapsed_s"] for r in records if r["device"] == device]


@pytest.mark.slow
def test_on_the_hosts_clock_one_sample_per_device_and_interval(tmp_path: Path) -> None:
    records = run_sampler(tmp_path, WallTimeline(), 0.05, lambda: time.sleep(0.6))
    for device in (0, 1):
        times = _times(records, device)
        assert len(times) == len(set(times)) and times == sorted(times)
        assert 0.6 / 0.05 * 0.5 <= len(times) <= 0.6 / 0.05 * 1.5 + 1


@pytest.mark.parametrize(
    ("name", "clocks", "expected"),
    [
        # Each device is sampled at its own instants up to its clock, the rest at the end
        # (the node's end is the latest device's time): 0, 5, ... 30 s for both.
        ("one ahead", {0: 30.0, 1: 12.0}, {0: 7, 1: 7}),
        ("both done", {0: 10.0, 1: 10.0}, {0: 3, 1: 3}),
        ("not started", {0: 0.0, 1: 0.0}, {0: 1, 1: 1}),
    ],
)
def test_in_simulation_each_device_is_sampled_at_its_own_instants(
    tmp_path: Path, name: str, clocks: dict[int, float], expected: dict[int, int]
) -> None:
    activity = DeviceActivity(2)
    timeline = VirtualTimeline(activity, {0: 0.0, 1: 0.0}, timeout_s=10.0)

    def during() -> None:
        for dev, now in clocks.items():
            activity.started(dev, 0.0)
            activity.busy(dev, now)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(activity.sampled(d) < clocks[d] for d in clocks):
            time.sleep(0.01)

    records = run_sampler(tmp_path, timeline, 5.0, during)
    for dev, count in expected.items():
        times = _times(records, dev)
        assert times == [5.0 * k for k in range(count)], (name, dev, times)
        assert activity.sampled(dev) >= clocks[dev]


def test_a_device_ahead_does_not_wait_for_one_behind(tmp_path: Path) -> None:
    """Sampling never couples devices: a device may wait on a peer (a collective) while the
    peer waits on the sampler, so each device's instants are taken on their own."""
    activity = DeviceActivity(2)
    timeline = VirtualTimeline(activity, {0: 0.0, 1: 50.0}, timeout_s=10.0)
    reached = threading.Event()

    def during() -> None:
        activity.started(0, 0.0)
        activity.busy(0, 40.0)
        deadline = time.monotonic() + 10
        while activity.sampled(0) < 40.0 and time.monotonic() < deadline:
            time.sleep(0.01)
        reached.set()

    records = run_sampler(tmp_path, timeline, 5.0, during)
    assert reached.is_set() and activity.sampled(0) >= 40.0
    assert _times(records, 0)[:9] == [5.0 * k for k in range(9)]
    assert _times(records, 1) == [5.0 * k for k in range(11)]  # up to its start, then the end
