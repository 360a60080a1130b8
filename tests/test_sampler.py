"""The sampler thread: one sample per device and tick of the run's clock, written as taken,
including on a simulated clock that runs fast or stands still while a worker starts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fakes import FakeTelemetry

from burnin.simseam import holdable_clock
from burnin.store import JsonlWriter, read_jsonl
from burnin.telemetry.sampler import Sampler


def run_sampler(tmp_path: Path, clock, interval_s: float, scale: float, during) -> list[dict]:
    samples = JsonlWriter(tmp_path / "samples.jsonl")
    events = JsonlWriter(tmp_path / "events.jsonl")
    sampler = Sampler(
        FakeTelemetry(2),
        [(0, 0), (1, 1)],
        samples,
        events,
        interval_s=interval_s,
        t0=clock(),
        monotonic=clock,
        time_scale=scale,
    )
    sampler.start()
    try:
        during()
    finally:
        sampler.stop()
        samples.close()
        events.close()
    records, _torn = read_jsonl(tmp_path / "samples.jsonl")
    return records


@pytest.mark.parametrize(
    ("name", "scale", "interval_s", "held_s"),
    [
        ("wall clock", 1.0, 0.05, 0.0),
        ("simulated 100x", 100.0, 5.0, 0.0),
        ("simulated, held for a start", 100.0, 5.0, 0.3),
    ],
)
def test_one_sample_per_device_and_tick(
    tmp_path: Path, name: str, scale: float, interval_s: float, held_s: float
) -> None:
    clock = holdable_clock(scale)

    def during() -> None:
        time.sleep(0.3)
        if held_s:
            clock.hold()
            time.sleep(held_s)
            clock.release()
        time.sleep(0.3)

    records = run_sampler(tmp_path, clock, interval_s, scale, during)
    for device in (0, 1):
        times = [r["elapsed_s"] for r in records if r["device"] == device]
        # Never the same instant twice (a held clock once gave one sample per wall wait), and
        # about one per tick of the clock's 0.6 s of running time.
        assert len(times) == len(set(times)), times
        assert times == sorted(times)
        assert 0.6 / 0.05 * 0.5 <= len(times) <= 0.6 / 0.05 * 1.5 + 1
