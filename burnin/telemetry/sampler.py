"""A background thread that samples every device at a fixed interval into the run store.

It reads through the :class:`TelemetryClient` protocol only, writes each sample and event as it
is taken (so a crash keeps everything up to the last interval), and turns a failing read into an
event rather than an exception: losing a sensor must not stop the burn-in of the other cards.
The instants come from the run's :class:`~burnin.clock.Timeline`: every ``interval_s`` of wall
time on hardware, each device's own instants as its (virtual) time reaches them in simulation.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

from burnin.clock import Timeline, WallTimeline
from burnin.errors import TelemetryError
from burnin.telemetry.base import TelemetryClient


class RecordWriter(Protocol):
    """Where records go: the store's JsonlWriter, or a watch's tap in front of one."""

    def write(self, record: dict[str, Any]) -> None: ...


class Sampler:
    def __init__(
        self,
        client: TelemetryClient,
        devices: Sequence[tuple[int, int | None]],  # (run index, telemetry index)
        samples: RecordWriter,
        events: RecordWriter,
        interval_s: float,
        timeline: Timeline | None = None,
    ) -> None:
        self._client = client
        self._devices = [(i, t) for i, t in devices if t is not None]
        self._samples, self._events = samples, events
        self._interval_s = interval_s
        self._timeline = timeline if timeline is not None else WallTimeline()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="burnin-sampler", daemon=True)
        self._failed: set[int] = set()
        self._events_s = float("-inf")  # the latest instant the node's events were read at
        self.count = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=max(5.0, 2 * self._interval_s))

    def sample_once(self, elapsed_s: float, only: Sequence[int] | None = None) -> None:
        """Read the node's events, then sample the devices (all, or the run indices in
        ``only``). Events come first, so an event before ``elapsed_s`` (an XID) is always
        stored before a sample error at ``elapsed_s`` that follows from it, however the
        devices' instants are grouped."""
        self._read_events(elapsed_s)
        for run_index, tel_index in self._devices:
            if only is not None and run_index not in only:
                continue
            try:
                sample = self._client.sample(tel_index, elapsed_s)
            except TelemetryError as exc:
                if run_index not in self._failed:
                    self._failed.add(run_index)
                    self._events.write(
                        {
                            "device": run_index,
                            "elapsed_s": elapsed_s,
                            "kind": "telemetry-error",
                            "message": str(exc),
                        }
                    )
                continue
            record = sample.to_dict()
            record.pop("index")
            record["device"] = run_index
            self._samples.write(record)
            self.count += 1

    def _read_events(self, elapsed_s: float) -> None:
        # Read at every sampled instant, even one behind another device's: a device that
        # started late has its events read before its own samples. A backend returns each
        # event once; a failure is recorded once per new instant.
        new_instant = elapsed_s > self._events_s
        self._events_s = max(self._events_s, elapsed_s)
        try:
            events = self._client.events(elapsed_s)
        except TelemetryError as exc:
            events = []
            if not new_instant:
                return
            self._events.write(
                {
                    "device": None,
                    "elapsed_s": elapsed_s,
                    "kind": "telemetry-error",
                    "message": str(exc),
                }
            )
        by_tel = {t: i for i, t in self._devices}
        for event in events:
            record = event.to_dict()
            record["device"] = by_tel.get(record.pop("index"))
            self._events.write(record)

    def _loop(self) -> None:
        devices = [run_index for run_index, _tel in self._devices]
        for elapsed_s, only in self._timeline.ticks(self._stop, self._interval_s, devices):
            self.sample_once(elapsed_s, only)
