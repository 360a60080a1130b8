"""Lifecycle verdicts: hang/crash/lost cite their evidence, stops and orphans are never a pass."""

from __future__ import annotations

from typing import Any

import pytest

from burnin.verdicts import CheckContext, GpuData, Status, device_status
from burnin.verdicts.lifecycle import (
    describe_events,
    describe_sample,
    incomplete,
    thermal_guard,
)

SAMPLE = {"device": 0, "elapsed_s": 3.0, "temp_c": 71.0, "power_w": 312.5, "sm_clock_mhz": 1980}
XID = {"device": 0, "elapsed_s": 2.9, "kind": "xid", "code": 79, "message": "fallen off the bus"}
RESULT = {"device": 0, "type": "result", "kernel": "matmul", "metrics": {"matmul_tflops": 1.0}}


def _gpu(records: list[dict[str, Any]] = (), events: list[dict[str, Any]] = ()) -> GpuData:  # type: ignore[assignment]
    return GpuData(
        node="n", index=0, inventory={}, samples=[], records=list(records),
        events=list(events), planned_kernels=["matmul"],
    )  # fmt: skip


def _ctx(**manifest: Any) -> CheckContext:
    return CheckContext(thresholds={}, fleet=[], manifest={"finished_at": "x", **manifest})


@pytest.mark.parametrize(
    ("sample", "text"),
    [
        (SAMPLE, "last telemetry at 3 s: 71 C, 312.5 W, 1980 MHz"),
        (
            {"elapsed_s": 1.234567, "temp_c": None},
            "last telemetry at 1.23 s had no readings (sensors not supported)",
        ),
        (None, "no telemetry sample before it"),
        ("garbage", "no telemetry sample before it"),
    ],
)
def test_describe_sample(sample: Any, text: str) -> None:
    assert describe_sample(sample) == text


def test_describe_events_skips_bookkeeping_and_cites_the_rest() -> None:
    events = [{"kind": "device-start", "elapsed_s": 0.0}, XID, "junk"]
    assert describe_events(events) == "events before it: xid 79 'fallen off the bus' at 2.9 s"
    assert describe_events([]) == "no events before it"


@pytest.mark.parametrize(
    ("kind", "extra", "action", "text"),
    [
        ("hang", {"message": "no progress for 60.1 s"}, "retest", "hang at 61 s: no progress"),
        ("crash", {"message": "worker exited with code 70", "exitcode": 70}, "retest",
         "crash at 61 s: worker exited with code 70"),
        ("lost", {"message": "the GPU disappeared"}, "reseat", "lost at 61 s: the GPU disappeared"),
    ],
)  # fmt: skip
def test_hang_crash_lost_cite_the_last_telemetry_and_events(
    kind: str, extra: dict[str, Any], action: str, text: str
) -> None:
    event = {"device": 0, "elapsed_s": 61.0, "kind": kind, "last_sample": SAMPLE,
             "recent_events": [XID], **extra}  # fmt: skip
    (verdict,) = incomplete(_gpu(events=[event]), _ctx())
    assert (verdict.check, verdict.status, verdict.action) == (kind, Status.ERROR, action)
    assert text in verdict.message
    assert "71 C, 312.5 W" in verdict.message and "xid 79" in verdict.message


def test_crash_message_includes_the_workers_error_once() -> None:
    error = {"device": 0, "type": "error", "error": "RuntimeError: CUDA error: unspecified"}
    crash = {"device": 0, "elapsed_s": 5.0, "kind": "crash", "message": "worker exited with code 1"}
    verdicts = list(incomplete(_gpu(records=[error], events=[crash]), _ctx()))
    assert len(verdicts) == 1 and "CUDA error: unspecified" in verdicts[0].message


@pytest.mark.parametrize(
    ("records", "events", "manifest", "expected"),
    [
        ([RESULT], [], {}, []),  # finished: nothing to say
        ([], [], {}, ["no result for matmul: the run stopped before this device finished"]),
        ([], [], {"finished_at": None}, ["the run did not finish"]),
        ([{"device": 0, "type": "orphaned"}], [], {"finished_at": None},
         ["the burnin parent process died"]),
        ([{"type": "start", "elapsed_s": 1.0}, RESULT,
          {"type": "done", "elapsed_s": 4.5, "stop_reason": "interrupted"}], [],
         {"stopped_by": "SIGTERM", "config": {"run": {"duration_s": 60}}},
         ["stopped early by SIGTERM after 3.5 s of the planned 60 s"]),
        ([], [{"kind": "killed", "message": "did not stop within watchdog.grace_s = 5 s"}], {},
         ["killed: did not stop within"]),
        ([], [{"kind": "not-started", "message": "stopped by SIGINT"}], {},
         ["never started: stopped by SIGINT"]),
        # Stopped by the thermal guard: the thermal FAIL explains it, no ERROR on top.
        ([], [{"kind": "thermal-guard", "temp_c": 96.0, "limit_c": 90.0},
              {"kind": "not-started", "message": "the thermal guard tripped before its start"}],
         {}, []),
        # ... but without the guard's own record (a torn line) nothing explains it: ERROR.
        ([], [{"kind": "not-started", "message": "the thermal guard tripped before its start"}],
         {}, ["no result for matmul"]),
        ([{"type": "start", "elapsed_s": 1.0}, RESULT,
          {"type": "done", "elapsed_s": 2.0, "stop_reason": "thermal-guard"}], [], {}, []),
    ],
)  # fmt: skip
def test_incomplete(records, events, manifest, expected) -> None:
    verdicts = list(incomplete(_gpu(records=records, events=events), _ctx(**manifest)))
    assert len(verdicts) == len(expected)
    for verdict, text in zip(verdicts, expected, strict=True):
        assert verdict.status == Status.ERROR and text in verdict.message


def test_thermal_guard_event_is_a_thermal_fail_with_the_reading() -> None:
    event = {"device": 0, "elapsed_s": 12.3, "kind": "thermal-guard", "temp_c": 91.0,
             "limit_c": 89.0, "limit_source": "the card's slowdown threshold"}  # fmt: skip
    (verdict,) = thermal_guard(_gpu(events=[event]), _ctx())
    assert (verdict.check, verdict.status, verdict.observed, verdict.limit) == (
        "thermal", Status.FAIL, 91.0, 89.0)  # fmt: skip
    assert "91 C reached the limit of 89 C (the card's slowdown threshold)" in verdict.message
    assert device_status([verdict]) == Status.FAIL


AR = {"type": "kernel-start", "kernel": "allreduce"}
MM = {"type": "kernel-start", "kernel": "matmul"}


def _dev(index: int, records: list[dict[str, Any]], events: list[dict[str, Any]]) -> GpuData:
    return GpuData(
        node="n", index=index, inventory={}, samples=[], records=records, events=events,
        planned_kernels=["allreduce"],
    )  # fmt: skip


def _event(kind: str, at_s: float, last_progress_s: float | None = None) -> dict[str, Any]:
    event = {"kind": kind, "elapsed_s": at_s, "message": f"worker {kind}", "last_sample": SAMPLE}
    if last_progress_s is not None:
        event["last_progress_s"] = last_progress_s
    return event


@pytest.mark.parametrize(
    ("mine", "peers", "check", "action", "text"),
    [
        # gpu1 stopped answering at 5 s (the watchdog saw it at 11 s); NCCL tore gpu0 down at
        # 9 s with the group: gpu0's is an all-reduce ERROR naming gpu1, never a crash.
        (([AR], [_event("crash", 9.0)]), {1: ([AR], [_event("hang", 11.0, 5.0)])},
         "allreduce", "retest", "peer gpu1 stopped answering in the all-reduce"),
        # A rank that hung behind a peer that had crashed earlier.
        (([AR], [_event("hang", 12.0, 6.0)]), {1: ([AR], [_event("crash", 4.0)])},
         "allreduce", "retest", "peer gpu1 stopped answering"),
        # The first to fail keeps its own verdict.
        (([AR], [_event("hang", 11.0, 5.0)]), {1: ([AR], [_event("crash", 9.0)])},
         "hang", "retest", "hang at 11 s"),
        # Not inside the all-reduce (matmul ran after it): its own crash.
        (([AR, {"type": "result", "kernel": "allreduce"}, MM], [_event("crash", 9.0)]),
         {1: ([AR], [_event("hang", 11.0, 5.0)])}, "crash", "retest", "crash at 9 s"),
        # The peer never ran the all-reduce: unrelated, its own crash.
        (([AR], [_event("crash", 9.0)]), {1: ([MM], [_event("crash", 2.0)])},
         "crash", "retest", "crash at 9 s"),
        # A lost card is its own fault whatever its peers did.
        (([AR], [_event("lost", 9.0)]), {1: ([AR], [_event("hang", 11.0, 5.0)])},
         "lost", "reseat", "lost at 9 s"),
    ],
)  # fmt: skip
def test_ranks_that_fall_with_the_group_are_blamed_on_the_first_failure(
    mine: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    peers: dict[int, tuple[list[dict[str, Any]], list[dict[str, Any]]]],
    check: str,
    action: str,
    text: str,
) -> None:
    me = _dev(0, *mine)
    fleet = [me, *(_dev(d, r, e) for d, (r, e) in peers.items())]
    ctx = CheckContext(thresholds={}, fleet=fleet, manifest={"finished_at": "x"})
    (verdict,) = incomplete(me, ctx)
    assert (verdict.check, verdict.status, verdict.action) == (check, Status.ERROR, action)
    assert text in verdict.message and "71 C" in verdict.message
