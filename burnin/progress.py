"""What a running burn-in has done so far, per device, for the live view and progress lines.

:class:`Progress` is fed only with records the run writes anyway: the sampler's samples and
the supervisor's events pass through :meth:`Progress.tap` on their way into the store, and the
workers' results.jsonl is followed by reading its new complete lines
(:class:`ResultsFollower`). From those and the plan's schedule it keeps, per device, its state
(waiting, ramping, running, done), current kernel, last temperature and power, the mean
TFLOP/s of the matmul windows seen and the first fault; :meth:`Progress.eta_s` is the time
left until the last device's planned end. Time comes from the run's injected clock, so a test
drives it with a fake one. :func:`live_view` is how the CLI asks for the view;
:func:`start_live` is how the runner starts it for one node (a no-op when none was asked).
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from burnin.store import TappedWriter

# Events that mean a device's run went wrong (burnin/supervisor.py, burnin/watch.py).
FAULT_EVENTS = frozenset({"crash", "hang", "lost", "killed", "thermal-guard", "not-started"})
# Wall seconds between redraws of the live view, and between checks of the clock for the
# plain lines: about once a second, as a person reads a terminal.
REFRESH_S = 1.0


@dataclass(frozen=True)
class Step:
    kernel: str
    duration_s: float


@dataclass
class DeviceState:
    """One device's progress; ``started_s``/``kernel_started_s`` are run-elapsed seconds."""

    device: int
    node: str
    steps: tuple[Step, ...]
    planned_start_s: float
    started_s: float | None = None
    kernel: str | None = None
    kernel_index: int = -1
    kernel_started_s: float | None = None
    done_s: float | None = None
    temp_c: float | None = None
    power_w: float | None = None
    tflops_sum: float = 0.0
    tflops_n: int = 0
    fault: str | None = None

    @property
    def duration_s(self) -> float:
        return sum(s.duration_s for s in self.steps)

    @property
    def tflops(self) -> float | None:
        return self.tflops_sum / self.tflops_n if self.tflops_n else None

    def state(self, now_s: float, ramp_s: float) -> str:
        if self.done_s is not None:
            return "done"
        if self.started_s is None:
            return "waiting"
        if self.kernel is None or now_s - self.started_s < ramp_s:
            return "ramping"
        return "running"

    def end_s(self, now_s: float) -> float:
        """When this device is expected to finish (run-elapsed seconds)."""
        if self.done_s is not None:
            return self.done_s
        if self.started_s is None:  # a device not started yet starts no earlier than now
            return max(self.planned_start_s, now_s) + self.duration_s
        return max(self.started_s + self.duration_s, now_s)


@dataclass(frozen=True)
class Row:
    """One device's line of the view, in plain values (what both renderers draw)."""

    device: str
    state: str
    kernel: str
    kernel_done_s: float | None
    kernel_total_s: float | None
    temp_c: float | None
    power_w: float | None
    tflops: float | None
    status: str


@dataclass(frozen=True)
class Snapshot:
    elapsed_s: float
    eta_s: float
    rows: tuple[Row, ...] = field(default_factory=tuple)


class Progress:
    """Per-device progress of one node's run; thread-safe (sampler thread, reporter thread).

    Args:
        devices: the plan's devices in order: (node, device index, start offset s, steps).
        elapsed: seconds since the run's start, on the clock the records' ``elapsed_s`` count
            on (the run's injected clock; a test's fake one).
        ramp_s: ``ramp.step_s``; a device is "ramping" that long after its start.
    """

    def __init__(
        self,
        devices: list[tuple[str, int, float, tuple[Step, ...]]],
        elapsed: Callable[[], float],
        ramp_s: float = 0.0,
    ) -> None:
        self._devices = {
            dev: DeviceState(dev, node, steps, offset) for node, dev, offset, steps in devices
        }
        self._elapsed, self._ramp_s = elapsed, ramp_s
        self._lock = threading.Lock()

    @classmethod
    def from_plan(cls, plan: Any, elapsed: Callable[[], float]) -> Progress:
        devices = [
            (
                item.node,
                item.device.index,
                item.start_offset_s,
                tuple(Step(k.name, k.duration_s) for k in item.kernels),
            )
            for item in plan.items
        ]
        return cls(devices, elapsed, plan.config.ramp.step_s)

    def elapsed_s(self) -> float:
        return self._elapsed()

    def tap(self, writer: Any) -> TappedWriter:
        """A stand-in for ``writer`` that stores each record, then feeds it to this progress."""
        return TappedWriter(writer, self.feed)

    def feed(self, record: Mapping[str, Any]) -> None:
        """Take one samples, events or results record."""
        dev = record.get("device")
        with self._lock:
            state = self._devices.get(dev) if isinstance(dev, int) else None
            if state is None:
                return
            at = _num(record.get("elapsed_s"))
            at_s = at if at is not None else self.elapsed_s()
            if "type" in record:
                _result(state, record, at_s)
            elif "kind" in record:
                _event(state, record, at_s)
            else:
                _sample(state, record)

    def eta_s(self) -> float:
        now = self.elapsed_s()
        with self._lock:
            ends = [d.end_s(now) for d in self._devices.values()]
        return max([*ends, now]) - now

    def snapshot(self, with_node: bool = False) -> Snapshot:
        now = self.elapsed_s()
        with self._lock:
            rows = tuple(self._row(d, now, with_node) for d in self._devices.values())
            ends = [d.end_s(now) for d in self._devices.values()]
        return Snapshot(elapsed_s=now, eta_s=max([*ends, now]) - now, rows=rows)

    def _row(self, d: DeviceState, now_s: float, with_node: bool) -> Row:
        name = f"{d.node}/gpu{d.device}" if with_node else f"gpu{d.device}"
        total = None
        if 0 <= d.kernel_index < len(d.steps):
            total = d.steps[d.kernel_index].duration_s
        done = None
        if d.kernel_started_s is not None and total is not None:
            end = d.done_s if d.done_s is not None else now_s
            done = min(max(end - d.kernel_started_s, 0.0), total)
        return Row(
            device=name,
            state=d.state(now_s, self._ramp_s),
            kernel=d.kernel or "-",
            kernel_done_s=done,
            kernel_total_s=total,
            temp_c=d.temp_c,
            power_w=d.power_w,
            tflops=d.tflops,
            status=d.fault or "",
        )


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _sample(state: DeviceState, record: Mapping[str, Any]) -> None:
    for key in ("temp_c", "power_w"):
        value = _num(record.get(key))
        if value is not None:
            setattr(state, key, value)


def _event(state: DeviceState, record: Mapping[str, Any], at_s: float) -> None:
    kind = record.get("kind")
    if kind == "device-start":
        state.started_s = at_s
    elif kind == "device-end":
        state.done_s = at_s
    elif kind in FAULT_EVENTS:
        state.fault = state.fault or str(kind)
        if kind != "thermal-guard":  # the guarded worker still writes its records and ends
            state.done_s = at_s


def _result(state: DeviceState, record: Mapping[str, Any], at_s: float) -> None:
    kind = record.get("type")
    if kind == "start" and state.started_s is None:
        state.started_s = at_s
    elif kind == "kernel-start":
        state.kernel = str(record.get("kernel"))
        state.kernel_index += 1
        state.kernel_started_s = at_s
    elif kind == "progress" and record.get("kernel") == "matmul":
        tflops = _num(record.get("tflops"))
        if tflops is not None:
            state.tflops_sum += tflops
            state.tflops_n += 1
    elif kind == "error":
        state.fault = state.fault or "error"
    elif kind == "done":
        state.done_s = at_s
        if record.get("stop_reason") and not state.fault:
            state.fault = str(record.get("stop_reason"))


class ResultsFollower:
    """Reads the complete lines a results.jsonl gained since the last :meth:`poll`."""

    def __init__(self, path: Path, feed: Callable[[Mapping[str, Any]], None]) -> None:
        self._path, self._feed = path, feed
        self._offset = 0

    def poll(self) -> int:
        try:
            with self._path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except OSError:  # not created yet: no worker has written
            return 0
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next poll
        self._offset += end
        count = 0
        for line in data[:end].splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    self._feed(record)
                    count += 1
        return count


class Reporter:
    """Draws the progress of every node run inside one :func:`live_view` block.

    ``mode`` is ``live`` (a rich table on a terminal) or ``plain`` (lines every
    ``interval_s`` of run time). Several simulated nodes run at once in one process; they share
    this one reporter, since a terminal holds one live view. Tests call :meth:`tick` with fake
    clocks; a run's thread ticks about every :data:`REFRESH_S` wall seconds.
    """

    def __init__(self, mode: str, interval_s: float, stream: TextIO, threaded: bool = True) -> None:
        self.mode, self._interval_s, self._stream = mode, interval_s, stream
        self._threaded = threaded
        self._next_s = interval_s
        self._nodes: list[tuple[Progress, ResultsFollower | None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Any = None
        self._finished_drawn = False

    def attach(self, progress: Progress, follower: ResultsFollower | None = None) -> None:
        with self._lock:
            self._nodes.append((progress, follower))
            if self._thread is None and self._threaded:
                self._thread = threading.Thread(target=self._loop, name="burnin-progress")
                self._thread.daemon = True
                self._thread.start()

    def snapshot(self) -> Snapshot:
        with self._lock:
            nodes = list(self._nodes)
        for _, follower in nodes:
            if follower is not None:
                follower.poll()
        snaps = [p.snapshot(with_node=len(nodes) > 1) for p, _ in nodes]
        return Snapshot(
            elapsed_s=max((s.elapsed_s for s in snaps), default=0.0),
            eta_s=max((s.eta_s for s in snaps), default=0.0),
            rows=tuple(row for s in snaps for row in s.rows),
        )

    def tick(self) -> None:
        snap = self.snapshot()
        finished = bool(snap.rows) and all(r.state == "done" for r in snap.rows)
        if finished and self._finished_drawn:
            return  # the run's clock goes on while the reports are written; nothing changes
        if self.mode == "live":
            from burnin.live import open_live, table

            if self._live is None:
                self._live = open_live(snap, self._stream)
            else:
                self._live.update(table(snap))
            self._finished_drawn = finished
            return
        if snap.rows and snap.elapsed_s >= self._next_s:
            from burnin.live import plain_lines

            while self._next_s <= snap.elapsed_s:
                self._next_s += self._interval_s
            for line in plain_lines(snap):
                print(line, file=self._stream, flush=True)
            self._finished_drawn = finished

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if self._nodes:
            with contextlib.suppress(Exception):  # a view that cannot draw must not lose a run
                self.tick()
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self.tick()
            if self._stop.wait(REFRESH_S):
                return


_ACTIVE: list[Reporter] = []


@contextlib.contextmanager
def live_view(interval_s: float, quiet: bool, stream: TextIO | None = None) -> Iterator[None]:
    """Show the progress of every node run inside this block: live on a terminal, else lines."""
    out = stream if stream is not None else sys.stderr
    if quiet:
        yield
        return
    isatty = getattr(out, "isatty", None)
    reporter = Reporter("live" if callable(isatty) and isatty() else "plain", interval_s, out)
    _ACTIVE.append(reporter)
    try:
        yield
    finally:
        _ACTIVE.remove(reporter)
        reporter.close()


class _Feed:
    """A node's handle on the view: taps its writers; the records it saw stay shown."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress

    def tap(self, writer: Any) -> Any:
        return writer if self._progress is None else self._progress.tap(writer)


def start_live(plan: Any, results_path: Path, elapsed: Callable[[], float]) -> _Feed:
    """Show one node's run in the view the CLI asked for; a no-op when none was.

    ``elapsed``: seconds since the node's run started, on the run's injected clock.
    """
    if not _ACTIVE:
        return _Feed(None)
    progress = Progress.from_plan(plan, elapsed)
    _ACTIVE[-1].attach(progress, ResultsFollower(results_path, progress.feed))
    return _Feed(progress)
