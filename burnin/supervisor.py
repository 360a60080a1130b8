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

So a run ends within its planned duration plus the watchdog timeout plus process start-up,
whatever the devices do. A stop request (Ctrl-C, SIGTERM) sets every device's stop flag, gives
the workers ``watchdog.grace_s`` to write their results and kills what is left.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from burnin.plan import Plan, WorkItem
from burnin.signals import StopSignals
from burnin.store import JsonlWriter
from burnin.watch import FaultTelemetry, TelemetryWatch
from burnin.worker import STOP_INTERRUPTED, STOP_THERMAL, WorkerArgs, placement_of, worker_entry

log = logging.getLogger("burnin")
# Imported once in the forkserver, then shared copy-on-write by every worker it forks. Each
# child still re-runs the parent's main script (multiprocessing's rule for spawn-like starts;
# Python 3.11's forkserver cannot preload it), so what the `burnin` script imports is
# preloaded too, which makes that re-run a dictionary lookup.
PRELOAD = ["torch", "burnin.worker", "burnin.kernels", "burnin.kernels.base", "burnin.cli"]
_POLL_S = 0.05
# A clock that can be held (a simulated fleet's) stands still from a worker's launch until its
# first heartbeat, but never longer than this many wall seconds, so a worker that never
# answers cannot stop the run's time: the watchdog (wall time) deals with it.
_START_HOLD_MAX_S = 2.0


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


def kill_group(proc: Any, join_s: float = 5.0) -> None:
    """SIGKILL a worker and everything in its process group, then reap it."""
    for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), proc.kill):
        # Already gone, or not yet its own group leader (then proc.kill covers it).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill()
    proc.join(timeout=join_s)


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
    started_mono: float


class Supervisor:
    """Runs the plan's workers on this node; :meth:`run` returns when every device is done.

    Args:
        plan: the node's plan.
        results_path: the node's results.jsonl (workers append to it).
        samples: the node's samples writer (the sampler writes through ``self.watch``).
        events: the node's events writer.
        t0: the run's start, on ``clock``.
        signals: the active stop-signal handler.
        limits: thermal guard limits per device index (C, source).
        fault_telemetry: the CPU path's lost-fault hook, told when each device starts.
        clock: monotonic clock (records' elapsed_s); heartbeats use ``time.monotonic``.
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
        fault_telemetry: FaultTelemetry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        cfg = plan.config
        self.plan = plan
        self._results_path = results_path
        self._events = events
        self._t0 = t0
        self._signals = signals
        self._faults = fault_telemetry
        self._clock = clock
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
        # slot -> (the heartbeat value the parent set at launch, wall deadline of the hold)
        self._holding: dict[int, tuple[float, float]] = {}
        self.watch = TelemetryWatch(samples, events, limits, on_guard=self.guard)

    def guard(self, dev: int) -> None:
        """Stop one device's stress now (thermal guard); its worker finishes its records."""
        slot = self._slot_of.get(dev)
        if slot is not None:
            self._stops[slot] = STOP_THERMAL

    def _elapsed(self) -> float:
        return round(self._clock() - self._t0, 6)

    def _record(self, kind: str, dev: int | None, **extra: Any) -> None:
        self._events.write({"device": dev, "elapsed_s": self._elapsed(), "kind": kind, **extra})

    def run(self) -> str | None:
        """Start, watch and finish every worker; returns the stop reason if one was requested."""
        alive_r, alive_w = self._ctx.Pipe(duplex=False)
        pending = sorted(enumerate(self.plan.items), key=lambda p: p[1].start_offset_s)
        try:
            while pending or self._running:
                if self._signals.requested:
                    self._stop_all(self._signals.requested, [item for _, item in pending])
                    return self._signals.requested
                elapsed = self._elapsed()
                while pending and pending[0][1].start_offset_s <= elapsed and self._may_start():
                    slot, item = pending.pop(0)
                    self._start(slot, item, alive_r)
                self._release_started()
                for slot in list(self._running):
                    self._check(slot)
                time.sleep(_POLL_S)
            return None
        finally:
            for slot in list(self._holding):
                self._release(slot)
            for slot in list(self._running):  # only on an unexpected error: leave nothing behind
                kill_group(self._running.pop(slot).proc)
            alive_w.close()
            alive_r.close()

    def _may_start(self) -> bool:
        """Whether one more device may start now without exceeding the ramp limit."""
        if self._step_s <= 0:
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
        self._beats[slot] = time.monotonic()
        proc = self._ctx.Process(
            target=worker_entry,
            name=f"burnin-dev{dev}",
            args=(args, self._beats, self._stops, alive_r),
            daemon=True,
        )
        launch = time.monotonic()
        self._hold(slot)
        try:
            proc.start()
        except (OSError, EOFError, RuntimeError) as exc:
            self._release(slot)
            self._record("crash", dev, message=f"could not start the worker process: {exc}")
            return
        # The start time, the ramp and the watchdog all count from the moment the process
        # exists (the first start may wait for the forkserver's torch import), not from the
        # request; a later start can only be later, so the ramp rule holds on recorded times.
        self._beats[slot] = time.monotonic()
        launch_s = round(self._beats[slot] - launch, 4)
        if slot in self._holding:
            self._holding[slot] = (self._beats[slot], self._beats[slot] + _START_HOLD_MAX_S)
        elapsed = self._elapsed()
        self._starts.append(elapsed)
        self._running[slot] = _Running(proc, item, slot, time.monotonic())
        if self._faults is not None and item.device.telemetry_index is not None:
            self._faults.mark_started(item.device.telemetry_index)
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

    def _hold(self, slot: int) -> None:
        hold = getattr(self._clock, "hold", None)
        if hold is not None:
            hold()
            self._holding[slot] = (self._beats[slot], time.monotonic() + _START_HOLD_MAX_S)

    def _release(self, slot: int) -> None:
        if self._holding.pop(slot, None) is not None:
            self._clock.release()  # type: ignore[attr-defined]

    def _release_started(self) -> None:
        """Let the clock run again for workers that beat, died or took too long to start."""
        now = time.monotonic()
        for slot, (beat, until) in list(self._holding.items()):
            run = self._running.get(slot)
            if run is None or self._beats[slot] != beat or not run.proc.is_alive() or now > until:
                self._release(slot)

    def _evidence(self, run: _Running) -> dict[str, Any]:
        dev = run.item.device.index
        return {
            "pid": run.proc.pid,
            # Heartbeats are wall time; the run's clock may be a simulated one, so go back
            # from "now" by the heartbeat's age rather than mixing the two clocks.
            "last_progress_s": round(
                self._elapsed() - (time.monotonic() - self._beats[run.slot]), 3
            ),
            "last_sample": self.watch.last_sample(dev),
            "recent_events": self.watch.recent_events(dev),
        }

    def _check(self, slot: int) -> None:
        run = self._running[slot]
        dev = run.item.device.index
        lost = self.watch.lost(dev)
        now = time.monotonic()
        if not run.proc.is_alive():
            run.proc.join(timeout=1.0)
            kill_group(run.proc, join_s=0.1)  # anything the worker left in its group
            code = run.proc.exitcode
            del self._running[slot]
            if code == 0:
                self._record("device-end", dev, exitcode=0)
                return
            kind = "lost" if lost else "crash"
            why = describe_exit(code)
            message = f"the GPU disappeared, then the worker {why}" if lost else f"worker {why}"
            self._record(kind, dev, message=message, exitcode=code, **self._evidence(run))
            return
        if lost is not None:
            reason = lost.get("message") or f"{lost.get('kind')} {lost.get('code') or ''}".strip()
            message = f"the GPU disappeared ({reason}); worker killed"
        elif now - self._beats[slot] > self._timeout_s:
            message = (
                f"no progress for {now - self._beats[slot]:.1f} s "
                f"(watchdog.timeout_s = {self._timeout_s:g}); worker killed"
            )
        elif now - run.started_mono > run.item.duration_s + self._timeout_s:
            over = now - run.started_mono - run.item.duration_s
            message = f"still running {over:.1f} s after its planned end; worker killed"
        else:
            return
        evidence = self._evidence(run)
        kill_group(run.proc)
        del self._running[slot]
        self._record("lost" if lost else "hang", dev, message=message, **evidence)

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
                if not run.proc.is_alive():
                    run.proc.join(timeout=1.0)
                    kill_group(run.proc, join_s=0.1)
                    del self._running[slot]
                    if run.proc.exitcode != 0:
                        self._record(
                            "crash",
                            run.item.device.index,
                            message=f"worker {describe_exit(run.proc.exitcode)} while stopping",
                            exitcode=run.proc.exitcode,
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
