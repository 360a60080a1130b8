"""Worker processes of one node: staggered start, heartbeat watchdog, kill by process group.

Workers come from a ``forkserver`` that has already imported torch and burnin's worker code, so
starting one costs milliseconds instead of a fresh interpreter and torch import per device (a
64-GPU simulated fleet on two cores depends on that); the arguments stay picklable, so the
``spawn`` fallback works the same. The loop polls every few tens of milliseconds:

- start the next device once its planned offset has passed and fewer than
  ``ramp.max_concurrent`` devices started within the last ``ramp.step_s`` (the recorded
  ``device-start`` times obey the same rule, see burnin/plan.py);
- a worker that exited non-zero is a ``crash``; a card the telemetry reports gone is ``lost``;
  a worker whose heartbeat is older than ``watchdog.timeout_s``, or that is still running
  ``watchdog.timeout_s`` after its planned end, is a ``hang``. The last two are killed with
  their whole process group and the rest of the node goes on. Each such event carries the last
  telemetry sample and the recent events of that device.

Every "when" comes from the injected :class:`~burnin.clock.Timeline`: the host's clock on
hardware; in a simulated fleet each device's modelled time, where a device starts exactly at
its planned offset and counts as hung ``watchdog.timeout_s`` of its own time after it stopped
answering. So a run ends within its planned duration plus the watchdog timeout plus process
start-up, whatever the devices do. A stop request (Ctrl-C, SIGTERM) sets every device's stop
flag, gives the workers ``watchdog.grace_s`` to write their results and kills what is left.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from burnin.clock import Timeline, WallTimeline
from burnin.plan import Plan, WorkItem
from burnin.signals import StopSignals
from burnin.store import JsonlWriter
from burnin.watch import TelemetryWatch
from burnin.worker import STOP_INTERRUPTED, STOP_THERMAL, WorkerArgs, placement_of, worker_entry

log = logging.getLogger("burnin")
# Imported once in the forkserver, then shared copy-on-write by every worker it forks. Each
# child still re-runs the parent's main script (multiprocessing's rule for spawn-like starts;
# Python 3.11's forkserver cannot preload it), so what the `burnin` script imports is
# preloaded too, which makes that re-run a dictionary lookup.
PRELOAD = ["torch", "burnin.worker", "burnin.kernels", "burnin.kernels.base", "burnin.cli"]
_POLL_S = 0.05


def mp_context() -> Any:
    """The forkserver context with torch preloaded where the platform has one, else spawn."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        # Only takes effect when the server starts (first worker of this process); later
        # runs in the same process reuse the warm server.
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return mp.get_context("spawn")


def warm_up() -> None:
    """Start the forkserver (and its torch import) now, in the background of the run's setup."""
    if mp_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


# Every worker of this process is started and polled under this lock. multiprocessing's
# Popen.poll is not thread-safe, and Process.start() polls every child of the process
# (multiprocessing.process._cleanup): with several supervisors in one process (the nodes of a
# simulated fleet), a start in one thread and a poll in another read the same exit-status pipe,
# and the one that finds it drained gets end-of-file, which the forkserver reports as exit code
# 255: a healthy worker judged crashed.
_CHILDREN = threading.Lock()


def kill_group(proc: Any, join_s: float = 5.0) -> None:
    """SIGKILL a worker and everything in its process group, then reap it."""
    for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), proc.kill):
        # Already gone, or not yet its own group leader (then proc.kill covers it).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill()
    with _CHILDREN:
        proc.join(timeout=join_s)


def exit_code(proc: Any) -> int | None:
    """The worker's exit code once it has ended (then reaped); None while it runs."""
    with _CHILDREN:
        if proc.is_alive():
            return None
        proc.join(timeout=1.0)
        return int(proc.exitcode)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class _Running:
    proc: Any
    item: WorkItem
    slot: int
    started_mono: float  # the first heartbeat value (the timeline's launch instant)


class Supervisor:
    """Runs the plan's workers on this node; :meth:`run` returns when every device is done.

    Args:
        plan: the node's plan.
        results_path: the node's results.jsonl (workers append to it).
        samples: the node's samples writer (the sampler writes through ``self.watch``).
        events: the node's events writer.
        t0: the run's start on the devices' clock (what :meth:`Timeline.start` returned).
        signals: the active stop-signal handler.
        limits: thermal guard limits per device index (C, source).
        timeline: when devices start and when they count as hung (default: wall time).
    """

    def __init__(
        self,
        plan: Plan,
        results_path: str,
        samples: JsonlWriter,
        events: JsonlWriter,
        t0: float,
        signals: StopSignals,
        limits: dict[int, tuple[float, str]] | None = None,
        timeline: Timeline | None = None,
    ) -> None:
        cfg = plan.config
        self.plan = plan
        self._results_path = results_path
        self._events = events
        self._t0 = t0
        self._signals = signals
        self._timeline = timeline if timeline is not None else WallTimeline()
        self._timeout_s = cfg.watchdog.timeout_s
        self._grace_s = cfg.watchdog.grace_s
        self._step_s = cfg.ramp.step_s
        self._max_ramping = max(cfg.ramp.max_concurrent, 1)
        self._fsync_s = cfg.store.fsync_interval_s
        self._ctx = mp_context()
        n = len(plan.items)
        self._beats = self._ctx.RawArray("d", n)
        self._stops = self._ctx.RawArray("i", n)
        self._slot_of = {item.device.index: slot for slot, item in enumerate(plan.items)}
        self._running: dict[int, _Running] = {}
        self._starts: list[float] = []  # recorded elapsed_s of every device start
        self.watch = TelemetryWatch(samples, events, limits, on_guard=self.guard)

    def guard(self, dev: int) -> None:
        """Stop one device's stress now (thermal guard); its worker finishes its records."""
        slot = self._slot_of.get(dev)
        if slot is not None:
            self._stops[slot] = STOP_THERMAL

    def _elapsed(self) -> float:
        return self._timeline.elapsed()

    def _record(self, kind: str, dev: int | None, at_s: float | None = None, **extra: Any) -> None:
        at_s = self._elapsed() if at_s is None else at_s
        self._events.write({"device": dev, "elapsed_s": at_s, "kind": kind, **extra})

    def run(self) -> str | None:
        """Start, watch and finish every worker; returns the stop reason if one was requested."""
        alive_r, alive_w = self._ctx.Pipe(duplex=False)
        pending = sorted(enumerate(self.plan.items), key=lambda p: p[1].start_offset_s)
        try:
            while pending or self._running:
                if self._signals.requested:
                    self._stop_all(self._signals.requested, [item for _, item in pending])
                    return self._signals.requested
                while (
                    pending
                    and self._timeline.due(pending[0][1].start_offset_s)
                    and self._may_start()
                ):
                    slot, item = pending.pop(0)
                    self._start(slot, item, alive_r)
                for slot in list(self._running):
                    self._check(slot)
                time.sleep(_POLL_S)
            return None
        finally:
            for slot in list(self._running):  # only on an unexpected error: leave nothing behind
                kill_group(self._running.pop(slot).proc)
            alive_w.close()
            alive_r.close()

    def _may_start(self) -> bool:
        """Whether one more device may start now without exceeding the ramp limit."""
        if self._step_s <= 0 or not self._timeline.ramped():
            return True
        now = self._elapsed()
        ramping = sum(1 for s in self._starts if now - s < self._step_s)
        return ramping < self._max_ramping

    def _start(self, slot: int, item: WorkItem, alive_r: Any) -> None:
        dev = item.device.index
        if self.watch.guarded(dev):
            self._record("not-started", dev, message="the thermal guard tripped before its start")
            return
        args = WorkerArgs(
            item=item,
            slot=slot,
            results_path=self._results_path,
            t0=self._t0,
            fsync_interval_s=self._fsync_s,
            slots=dict(self._slot_of),
            placement=placement_of(self.plan.inventory.get(dev, {})),
        )
        proc = self._ctx.Process(
            target=worker_entry,
            name=f"burnin-dev{dev}",
            args=(args, self._beats, self._stops, alive_r),
            daemon=True,
        )
        launch = time.monotonic()
        # The first heartbeat value goes in before the process exists: the watchdog may look
        # at the slot as soon as it does.
        self._beats[slot] = self._timeline.launch(dev, item.start_offset_s)[1]
        try:
            with _CHILDREN:
                proc.start()
        except (OSError, EOFError, RuntimeError) as exc:
            self._timeline.ended(dev)
            self._record("crash", dev, message=f"could not start the worker process: {exc}")
            return
        # The recorded start and the watchdog count from the moment the process exists; a
        # later start can only be later, so the ramp rule holds on recorded times.
        launch_s = round(time.monotonic() - launch, 4)
        elapsed, beat = self._timeline.launch(dev, item.start_offset_s)
        self._beats[slot] = beat
        self._starts.append(elapsed)
        self._running[slot] = _Running(proc, item, slot, beat)
        self._events.write(
            {
                "device": dev,
                "elapsed_s": elapsed,
                "kind": "device-start",
                "pid": proc.pid,
                "planned_s": item.start_offset_s,
                "launch_s": launch_s,  # how long starting the process took
            }
        )

    def _evidence(self, run: _Running, last_progress_s: float | None = None) -> dict[str, Any]:
        dev = run.item.device.index
        if last_progress_s is None:
            found = self._timeline.no_progress(dev, self._beats[run.slot], -1.0)
            last_progress_s = found[1] if found is not None else self._elapsed()
        return {
            "pid": run.proc.pid,
            "last_progress_s": last_progress_s,
            "last_sample": self.watch.last_sample(dev),
            "recent_events": self.watch.recent_events(dev),
        }

    def _check(self, slot: int) -> None:
        run = self._running[slot]
        dev = run.item.device.index
        timeline = self._timeline
        code = exit_code(run.proc)
        if code is not None:
            kill_group(run.proc, join_s=0.1)  # anything the worker left in its group
            end_s = timeline.device_elapsed(dev)
            del self._running[slot]
            timeline.ended(dev)
            if code == 0:
                self._record("device-end", dev, end_s, exitcode=0)
                return
            lost = self.watch.lost(dev)
            kind = "lost" if lost else "crash"
            why = describe_exit(code)
            message = f"the GPU disappeared, then the worker {why}" if lost else f"worker {why}"
            evidence = self._evidence(run)
            self._record(kind, dev, end_s, message=message, exitcode=code, **evidence)
            return
        if not timeline.settled(dev):
            return
        lost = self.watch.lost(dev)
        stalled = timeline.no_progress(dev, self._beats[slot], self._timeout_s)
        over_s = timeline.overrun_s(dev, run.started_mono, run.item.duration_s + self._timeout_s)
        at_s, last_s = stalled if stalled is not None else (None, None)
        if lost is not None:
            reason = lost.get("message") or f"{lost.get('kind')} {lost.get('code') or ''}".strip()
            message = f"the GPU disappeared ({reason}); worker killed"
            at_s = timeline.device_elapsed(dev)
        elif stalled is not None:
            assert at_s is not None and last_s is not None
            message = (
                f"no progress for {at_s - last_s:.1f} s "
                f"(watchdog.timeout_s = {self._timeout_s:g}); worker killed"
            )
        elif over_s > 0:
            over = over_s + self._timeout_s
            message = f"still running {over:.1f} s after its planned end; worker killed"
        else:
            return
        evidence = self._evidence(run, last_s)
        kill_group(run.proc)
        del self._running[slot]
        timeline.ended(dev)
        self._record("lost" if lost else "hang", dev, at_s, message=message, **evidence)

    def _stop_all(self, reason: str, never_started: list[WorkItem]) -> None:
        for slot in self._running:
            self._stops[slot] = STOP_INTERRUPTED
        self._record("interrupted", None, message=f"stopped by {reason}", signal=reason)
        for item in never_started:
            self._record("not-started", item.device.index, message=f"stopped by {reason}")
        deadline = time.monotonic() + self._grace_s
        while self._running and time.monotonic() < deadline:
            for slot in list(self._running):
                run = self._running[slot]
                code = exit_code(run.proc)
                if code is not None:
                    kill_group(run.proc, join_s=0.1)
                    del self._running[slot]
                    if code != 0:
                        self._record(
                            "crash",
                            run.item.device.index,
                            message=f"worker {describe_exit(code)} while stopping",
                            exitcode=code,
                            **self._evidence(run),
                        )
            time.sleep(_POLL_S)
        for slot in list(self._running):
            run = self._running.pop(slot)
            kill_group(run.proc)
            self._record(
                "killed",
                run.item.device.index,
                message=f"did not stop within watchdog.grace_s = {self._grace_s:g} s",
            )
