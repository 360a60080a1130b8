"""Lifecycle checks: what happened to each device's run, as opposed to how the card performed.

This is what keeps a broken run from looking like a passed one. Each planned kernel must have a
``result`` record; the runner's events say why one is missing: ``hang`` (no heartbeat for
``watchdog.timeout_s``), ``crash`` (the worker died), ``lost`` (the card disappeared: NVML's
"GPU is lost", XID 79), ``killed``/``not-started``/``interrupted`` (Ctrl-C, SIGTERM), or an
``orphaned`` worker (the parent was killed). Each of those is an ERROR whose message cites the
last telemetry reading and the events just before it, because "it hung" alone sends a
technician nowhere. Ranks of one all-reduce fall together: when a device hangs or dies inside
the node's all-reduce after a peer of that all-reduce stopped answering (NCCL's default error
handling tears the whole group down), the failure is the peer's, so this device gets an
``allreduce`` ERROR (re-test) naming the peer that stopped answering first, never a crash. A
``thermal-guard`` event (the runner stopped a card that reached its critical temperature) is a
``thermal`` FAIL with the reading. The ``preflight`` event gives a ``preflight`` verdict: PASS
when the GPU was free, WARN when the run was forced onto a busy GPU, SKIP (never PASS) for what
could not be checked, naming the checks that could not run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict
from burnin.verdicts.registry import check

_EVENT_CHECKS = {"hang": "hang", "crash": "crash", "lost": "lost"}
# A lost card is first reseated (XID 79, "fallen off the bus": seating, riser, power); a hang or
# a crash is first retested, since a driver or software fault looks the same once.
_ACTIONS = {"hang": "retest", "crash": "retest", "lost": "reseat"}
_QUIET_KINDS = {"device-start", "device-end", "preflight", "not-started"}
_READINGS = (("temp_c", "C"), ("power_w", "W"), ("sm_clock_mhz", "MHz"), ("util_pct", "% util"))
_MAX_TEXT = 120


def _num(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return f"{round(value, 2):g}"


def _text(value: Any) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def describe_sample(sample: Mapping[str, Any] | None) -> str:
    """The last telemetry reading in words, e.g. ``last telemetry at 3 s: 71 C, 312 W``."""
    if not isinstance(sample, Mapping):
        return "no telemetry sample before it"
    when = _num(sample.get("elapsed_s"))
    at = f" at {when} s" if when is not None else ""
    readings = [f"{v} {unit}" for key, unit in _READINGS if (v := _num(sample.get(key)))]
    if not readings:
        return f"last telemetry{at} had no readings (sensors not supported)"
    return f"last telemetry{at}: {', '.join(readings)}"


def describe_events(events: Any) -> str:
    """The device's events just before a failure, e.g. ``xid 79 at 2.9 s``; '' if none."""
    parts = []
    for event in events if isinstance(events, list) else []:
        if not isinstance(event, Mapping) or event.get("kind") in _QUIET_KINDS:
            continue
        text = _text(event.get("kind"))
        if event.get("code") is not None:
            text += f" {_text(event.get('code'))}"
        if event.get("message"):
            text += f" '{_text(event.get('message'))}'"
        if (when := _num(event.get("elapsed_s"))) is not None:
            text += f" at {when} s"
        parts.append(text)
    return f"events before it: {'; '.join(parts)}" if parts else "no events before it"


def _by_guard(event: Mapping[str, Any]) -> bool:
    return "thermal guard" in str(event.get("message"))


def _stopped_by(ctx: CheckContext) -> str:
    reason = ctx.manifest.get("stopped_by")
    return _text(reason) if reason else "a stop request"


def failed_at_s(event: Mapping[str, Any]) -> float | None:
    """When a hang/crash/lost event's device stopped answering: a hang's last progress (the
    watchdog notices only ``timeout_s`` later), else the event's time."""
    keys = ("last_progress_s", "elapsed_s") if event.get("kind") == "hang" else ("elapsed_s",)
    for key in keys:
        value = event.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _ran_allreduce(gpu: GpuData) -> bool:
    return any(s.get("kernel") == "allreduce" for s in gpu.of_type("kernel-start"))


def in_allreduce(gpu: GpuData) -> bool:
    """Whether the device was inside the all-reduce kernel when its records end."""
    starts = gpu.of_type("kernel-start")
    return bool(starts) and starts[-1].get("kernel") == "allreduce" and not gpu.results("allreduce")


def first_failed_peers(gpu: GpuData, fleet: list[GpuData], before_s: float | None) -> list[int]:
    """The node's other all-reduce devices that stopped answering first, and earlier than
    ``before_s`` (None = at any time): those with the earliest failure time."""
    times: dict[int, float] = {}
    for peer in fleet:
        if peer.node != gpu.node or peer.index == gpu.index or not _ran_allreduce(peer):
            continue
        failed = [
            t
            for e in peer.events
            if e.get("kind") in _EVENT_CHECKS and (t := failed_at_s(e)) is not None
        ]
        if failed and (before_s is None or min(failed) < before_s):
            times[peer.index] = min(failed)
    first = min(times.values(), default=None)
    return sorted(d for d, t in times.items() if t == first)


def _collateral(gpu: GpuData, ctx: CheckContext, event: Mapping[str, Any]) -> list[int]:
    if event.get("kind") not in ("hang", "crash") or not in_allreduce(gpu):
        return []
    return first_failed_peers(gpu, ctx.fleet, failed_at_s(event))


@check("incomplete")
def incomplete(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """What happened to the run: hang, crash, lost card, killed, missing results."""
    explained = False
    errors = [_text(e.get("error")) for e in gpu.of_type("error")]
    for event in gpu.events:
        kind = event.get("kind")
        if kind in _EVENT_CHECKS:
            explained = True
            why = event.get("message") or f"exit code {event.get('exitcode')}"
            if kind == "crash" and errors:
                why = f"{_text(why)}: {errors.pop(0)}"
            evidence = f"{describe_sample(event.get('last_sample'))}; " + describe_events(
                event.get("recent_events")
            )
            peers = _collateral(gpu, ctx, event)
            if peers:
                names = ", ".join(f"gpu{d}" for d in peers)
                yield Verdict(
                    check="allreduce",
                    status=Status.ERROR,
                    observed=event.get("elapsed_s"),
                    unit="s",
                    action="retest",
                    message=f"peer {names} stopped answering in the all-reduce (its own verdicts "
                    f"say why) and this GPU's worker went down with the group ({kind} at "
                    f"{_num(event.get('elapsed_s'))} s: {_text(why)}); this GPU is not "
                    f"judged: re-test it once {names} is fixed ({evidence})",
                )
                continue
            yield Verdict(
                check=_EVENT_CHECKS[kind],
                status=Status.ERROR,
                observed=event.get("elapsed_s"),
                unit="s",
                action=_ACTIONS[kind],
                message=f"{kind} at {_num(event.get('elapsed_s'))} s: {_text(why)} ({evidence})",
            )
        elif kind == "killed" or (kind == "not-started" and not _by_guard(event)):
            explained = True
            what = "killed" if kind == "killed" else "never started"
            yield Verdict(
                check="incomplete",
                status=Status.ERROR,
                action="retest",
                message=f"{what}: {_text(event.get('message'))}",
            )
        elif kind == "thermal-guard" or any(e.get("kind") == "thermal-guard" for e in gpu.events):
            # The guard's thermal FAIL says why; a "not started by the guard" event without the
            # guard's own record (a torn line) must still leave the device incomplete.
            explained = True
    for error in errors:  # a worker error with no crash event (e.g. the parent died too)
        explained = True
        yield Verdict(
            check="crash", status=Status.ERROR, action="retest", message=f"worker failed: {error}"
        )
    yield from _stopped_early(gpu, ctx, explained)


def _stopped_early(gpu: GpuData, ctx: CheckContext, explained: bool) -> Iterator[Verdict]:
    done = gpu.of_type("done")
    if done and done[-1].get("stop_reason") == "interrupted":
        start = next(iter(gpu.of_type("start")), {})
        ran = _num(
            round(float(done[-1].get("elapsed_s") or 0) - float(start.get("elapsed_s") or 0), 1)
        )
        planned = _num(ctx.manifest.get("config", {}).get("run", {}).get("duration_s"))
        yield Verdict(
            check="incomplete",
            status=Status.ERROR,
            action="retest",
            message=f"stopped early by {_stopped_by(ctx)} after {ran} s of the planned "
            f"{planned} s: its results cover only part of the burn-in",
        )
        return
    finished = {r.get("kernel") for r in gpu.results()}
    missing = [k for k in gpu.planned_kernels if k not in finished]
    if not missing or explained:
        return
    if gpu.of_type("orphaned"):
        why = "the burnin parent process died while this device ran, so the worker stopped"
    elif not ctx.manifest.get("finished_at"):
        why = "the run did not finish (killed, or still running) before this device finished"
    else:
        why = "the run stopped before this device finished"
    yield Verdict(
        check="incomplete",
        status=Status.ERROR,
        observed=len(missing),
        limit=0,
        unit="kernels",
        action="retest",
        message=f"no result for {', '.join(map(_text, missing))}: {why}",
    )


@check("thermal-guard")
def thermal_guard(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """A ``thermal`` FAIL for each time the runner's thermal guard stopped this device."""
    for event in gpu.events:
        if event.get("kind") != "thermal-guard":
            continue
        temp, limit = _num(event.get("temp_c")), _num(event.get("limit_c"))
        yield Verdict(
            check="thermal",
            status=Status.FAIL,
            observed=event.get("temp_c"),
            limit=event.get("limit_c"),
            unit="C",
            action="inspect-cooling",
            message=f"thermal guard stopped the stress at {_num(event.get('elapsed_s'))} s: "
            f"{temp} C reached the limit of {limit} C ({_text(event.get('limit_source'))}); "
            "inspect airflow, fans and heatsink contact",
        )


@check("preflight")
def preflight(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Whether the GPU was free before the run, and which checks could not run on it."""
    required = ctx.manifest.get("config", {}).get("preflight", {}).get("required_checks") or []
    for event in gpu.events:
        if event.get("kind") != "preflight":
            continue
        procs = event.get("processes")
        if procs is None:
            yield Verdict(
                check="preflight",
                status=Status.SKIP,
                message="could not check for other processes on this GPU: "
                f"{_text(event.get('processes_note') or 'no process list')}",
            )
        elif procs:
            shown = ", ".join(
                f"pid {_text(p.get('pid'))}" + (f" ({_text(p['name'])})" if p.get("name") else "")
                for p in procs[:5]
            )
            forced = " with --force" if event.get("forced") else ""
            yield Verdict(
                check="preflight",
                status=Status.WARN,
                observed=len(procs),
                limit=0,
                unit="processes",
                action="retest",
                message=f"started{forced} while {len(procs)} other process(es) used this GPU "
                f"({shown}); its results may be low, retest it idle",
            )
        else:
            yield Verdict(
                check="preflight",
                status=Status.PASS,
                observed=0,
                limit=0,
                unit="processes",
                message="no other processes on this GPU",
            )
        cannot = event.get("cannot_run") or {}
        forced_required = [c for c in required if c in cannot]
        if forced_required:
            yield Verdict(
                check="preflight",
                status=Status.WARN,
                action="retest",
                message="required check(s) could not run (started with --force): "
                + "; ".join(f"{c}: {_text(cannot[c])}" for c in forced_required),
            )
        if cannot:
            yield Verdict(
                check="preflight",
                status=Status.SKIP,
                observed=len(cannot),
                unit="checks",
                message="checks that cannot run on this device: "
                + "; ".join(f"{_text(c)} ({_text(r)})" for c, r in sorted(cannot.items())),
            )
