"""The run's time as the supervisor, the sampler, the ramp and the watchdog see it.

One :class:`Timeline` is injected into a node's run (``Runtime.timeline``). On hardware it is
:class:`WallTimeline`: the host's monotonic clock, heartbeats judged by their wall-clock age,
telemetry every ``interval_s`` of wall time. A simulated fleet injects its own (the simulator's
virtual clock), where each device's time is the modelled time of the work it ran, so the host's
speed and load never change when a device starts, what telemetry shows or when a device counts
as hung. Every time a record carries is seconds since the run's start (``elapsed_s``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol


class Timeline(Protocol):
    """When things happen on one node's run. Times are seconds since :meth:`start`."""

    def start(self) -> float:
        """Begin the run; returns its start on the clock the workers' devices read (``t0``)."""

    def elapsed(self) -> float:
        """The node's time now: what node-level records (stop requests, the end) carry."""

    def due(self, planned_s: float) -> bool:
        """Whether a device planned to start at ``planned_s`` may start now."""

    def ramped(self) -> bool:
        """Whether starts must also respect ``ramp.step_s``/``max_concurrent`` as they happen
        (False where every device starts exactly at its planned instant)."""

    def launch(self, dev: int, planned_s: float) -> tuple[float, float]:
        """A device's process exists now: (its recorded start, its first heartbeat value)."""

    def device_elapsed(self, dev: int) -> float:
        """A device's time now, for its end or crash record."""

    def no_progress(self, dev: int, beat: float, timeout_s: float) -> tuple[float, float] | None:
        """(time judged, time of last progress) when ``dev`` made no progress for
        ``timeout_s`` given its last heartbeat ``beat``; None while it is making progress."""

    def overrun_s(self, dev: int, launched: float, planned_s: float) -> float:
        """How long ``dev`` has run beyond ``planned_s`` seconds after it was launched (the
        heartbeat value :meth:`launch` returned); <= 0: not beyond."""

    def settled(self, dev: int) -> bool:
        """Whether ``dev``'s telemetry has caught up with it, so a lost or hung verdict on it
        now is the one its own history gives (always True on real hardware)."""

    def ended(self, dev: int) -> None:
        """``dev``'s worker is gone (finished, crashed or killed)."""

    def ticks(
        self, stop: threading.Event, interval_s: float, devices: Sequence[int]
    ) -> Iterator[tuple[float, list[int]]]:
        """(instant, devices) to sample, each yielded when due; the generator resumes once the
        caller has sampled them. Ends after ``stop`` is set."""


class WallTimeline:
    """Real hardware: the host's monotonic clock (injectable for tests).

    Args:
        monotonic: the node's clock (starts, ramp, sampling, records).
        beat_clock: the clock the workers' devices beat with (``DeviceSeam.clock``): the host's
            on hardware; a test whose devices run on a faster clock passes that one.
    """

    def __init__(
        self,
        monotonic: Callable[[], float] = time.monotonic,
        beat_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monotonic = monotonic
        self._beat_clock = beat_clock
        self._t0 = monotonic()
        self._launched_wall: dict[int, float] = {}

    def start(self) -> float:
        self._t0 = self._monotonic()
        return self._t0

    def elapsed(self) -> float:
        return round(self._monotonic() - self._t0, 6)

    def due(self, planned_s: float) -> bool:
        return planned_s <= self.elapsed()

    def ramped(self) -> bool:
        return True

    def launch(self, dev: int, planned_s: float) -> tuple[float, float]:
        # The start counts from the moment the process exists (the first start may wait for the
        # forkserver's torch import), not from the request.
        self._launched_wall[dev] = time.monotonic()
        return self.elapsed(), self._beat_clock()

    def device_elapsed(self, dev: int) -> float:
        return self.elapsed()

    def no_progress(self, dev: int, beat: float, timeout_s: float) -> tuple[float, float] | None:
        age_s = self._beat_clock() - beat  # workers beat with their devices' clock
        if age_s <= timeout_s:
            return None
        now = self.elapsed()
        return now, round(now - age_s, 3)

    def overrun_s(self, dev: int, launched: float, planned_s: float) -> float:
        # A safety net in the host's seconds, whatever clock the devices beat with.
        return time.monotonic() - self._launched_wall.get(dev, launched) - planned_s

    def settled(self, dev: int) -> bool:
        return True

    def ended(self, dev: int) -> None:
        return None

    def ticks(
        self, stop: threading.Event, interval_s: float, devices: Sequence[int]
    ) -> Iterator[tuple[float, list[int]]]:
        every = list(devices)
        next_t = self._monotonic()
        while not stop.is_set():
            yield self._monotonic() - self._t0, every
            next_t += interval_s
            while not stop.is_set() and (left_s := next_t - self._monotonic()) > 0:
                stop.wait(left_s)
