"""A background thread that samples every device at a fixed interval into the run store.

It reads through the :class:`TelemetryClient` protocol only, writes each sample and event as it
is taken (so a crash keeps everything up to the last interval), and turns a failing read into an
event rather than an exception: losing a sensor must not stop the burn-in of the other cards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from burnin.errors import TelemetryError
from burnin.store import JsonlWriter
from burnin.telemetry.base import TelemetryClient


class Sampler:
    def __init__(
        self,
        client: TelemetryClient,
        devices: Sequence[tuple[int, int | None]],  # (run index, telemetry index)
        samples: JsonlWriter,
        events: JsonlWriter,
        interval_s: float,
        t0: float,
        monotonic: Callable[[], float] = time.monotonic,
        time_scale: float = 1.0,
    ) -> None:
        self._client = client
        self._devices = [(i, t) for i, t in devices if t is not None]
        self._samples, self._events = samples, events
        self._interval_s = interval_s
        self._t0 = t0
        self._monotonic = monotonic
        # A simulated fleet's clock runs time_scale times faster than the wall clock; the wait
        # between samples is wall time, so it shrinks by the same factor.
        self._time_scale = time_scale
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="burnin-sampler", daemon=True)
        self._failed: set[int] = set()
        self.count = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=max(5.0, 2 * self._interval_s))

    def sample_once(self) -> None:
        elapsed_s = self._monotonic() - self._t0
        for run_index, tel_index in self._devices:
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
        try:
            events = self._client.events(elapsed_s)
        except TelemetryError as exc:
            events = []
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
        next_t = self._monotonic()
        while not self._stop.is_set():
            self.sample_once()
            next_t += self._interval_s
            # Wait until the run's clock reaches the next tick, not a wall-time estimate of it:
            # a simulated clock stands still while a worker starts, and a sample per wall wait
            # would repeat the same instant.
            while not self._stop.is_set() and (left_s := next_t - self._monotonic()) > 0:
                self._stop.wait(left_s / self._time_scale)
