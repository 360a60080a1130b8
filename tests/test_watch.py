"""The runner's eyes on telemetry: lost cards, the thermal guard's limit and trip, the evidence
kept for a hang report, and the CPU path's injected ``lost`` fault, as scenario tables."""

from __future__ import annotations

from typing import Any

import pytest
from fakes import RecordingWriter

from burnin.config import load_config
from burnin.watch import TelemetryWatch, guard_limit, is_lost


@pytest.mark.parametrize(
    ("record", "lost"),
    [
        ({"kind": "lost", "device": 0}, True),
        ({"kind": "xid", "code": 79, "device": 0}, True),  # fallen off the bus
        ({"kind": "xid", "code": 48, "device": 0}, False),  # a DBE: bad, but still there
        ({"kind": "telemetry-error", "message": "GPU 0: GpuIsLost"}, True),
        ({"kind": "telemetry-error", "message": "device 0: GPU is lost (injected)"}, True),
        ({"kind": "telemetry-error", "message": "Not Supported"}, False),
        ({"kind": "telemetry-error", "message": "the clock was lost"}, True),  # word match
        ({"kind": "telemetry-error", "message": "closed"}, False),  # not a substring match
        ({"kind": "preflight", "message": "lost"}, False),
    ],
)
def test_is_lost(record: dict[str, Any], lost: bool) -> None:
    assert is_lost(record) is lost


@pytest.mark.parametrize(
    ("overrides", "inventory", "limit", "source"),
    [
        ([], {"slowdown_temp_c": 89.0, "shutdown_temp_c": 92.0}, 89.0, "slowdown"),
        ([], {"slowdown_temp_c": None, "shutdown_temp_c": 92.0}, 92.0, "shutdown"),
        ([], {"slowdown_temp_c": 0, "shutdown_temp_c": True}, None, "no temperature limit"),
        ([], {}, None, "no temperature limit known"),
        (["thermal_guard.max_temp_c=80"], {"slowdown_temp_c": 89.0}, 80.0, "max_temp_c"),
        (["thermal_guard.enabled=false"], {"slowdown_temp_c": 89.0}, None, "disabled"),
    ],
)
def test_guard_limit(
    overrides: list[str], inventory: dict[str, Any], limit: float | None, source: str
) -> None:
    got, why = guard_limit(load_config(None, overrides), inventory)
    assert got == limit and source in why


def watch_with(
    limits: dict[int, tuple[float, str]],
) -> tuple[TelemetryWatch, RecordingWriter, list]:
    samples, events, stopped = RecordingWriter(), RecordingWriter(), []
    watch = TelemetryWatch(samples, events, limits, on_guard=stopped.append)  # type: ignore[arg-type]
    return watch, events, stopped


@pytest.mark.parametrize(
    ("temps_c", "trips_at"),
    [
        ([70.0, 85.0, 88.9], None),  # under the limit
        ([70.0, 89.0, 95.0, 96.0], 1),  # at the limit: trips once, on the first reading
        ([None, "hot", 91.0], 2),  # readings that are not numbers never trip it
    ],
)
def test_the_guard_trips_once_at_the_limit(temps_c: list[Any], trips_at: int | None) -> None:
    watch, events, stopped = watch_with({0: (89.0, "the card's slowdown threshold")})
    for i, temp in enumerate(temps_c):
        watch.samples.write({"device": 0, "elapsed_s": float(i), "temp_c": temp})
    guards = [e for e in events.records if e["kind"] == "thermal-guard"]
    if trips_at is None:
        assert not guards and not stopped and not watch.guarded(0)
        return
    assert stopped == [0] and watch.guarded(0)
    (event,) = guards
    assert event["elapsed_s"] == float(trips_at)  # the tripping sample's time
    assert (event["limit_c"], event["temp_c"]) == (89.0, temps_c[trips_at])
    assert "the card's slowdown threshold" in event["message"]


def test_a_device_without_a_limit_is_never_stopped() -> None:
    watch, events, stopped = watch_with({0: (89.0, "x")})
    watch.samples.write({"device": 1, "elapsed_s": 1.0, "temp_c": 120.0})
    assert not stopped and not events.records and watch.last_sample(1)["temp_c"] == 120.0


def test_evidence_kept_for_a_hang_report_and_the_first_lost_record() -> None:
    watch, events, _stopped = watch_with({})
    for i in range(8):
        watch.events.write({"device": 0, "kind": "xid", "code": 13, "elapsed_s": float(i)})
    watch.events.write({"device": 0, "kind": "xid", "code": 79, "elapsed_s": 9.0})
    watch.events.write({"device": 0, "kind": "lost", "elapsed_s": 10.0})
    watch.events.write({"device": None, "kind": "telemetry-error", "message": "GPU is lost"})
    assert len(events.records) == 11  # every record reaches the store
    recent = watch.recent_events(0)
    assert len(recent) == 5 and recent[-1]["kind"] == "lost"
    assert watch.lost(0)["code"] == 79  # the first record that said so
    assert watch.lost(1) is None and watch.recent_events(1) == []
