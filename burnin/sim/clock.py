"""The virtual time of a simulated node: the :class:`~burnin.clock.Timeline` it runs on.

Each simulated device keeps its own clock, which starts at its planned start and advances by
the modelled device time of the work it runs (burnin/sim/seam.py); the shared
:class:`~burnin.sim.model.DeviceActivity` publishes it. Everything the node decides reads
those clocks, never the wall clock: a device starts exactly at its planned instant; telemetry
samples each device at its own instants ``k × interval_s`` as soon as its clock has passed
them, and the device waits at its next heartbeat until they are taken, so the thermal guard
stops it after the same batch whatever the host's load; a device counts as hung once its seam
says it stopped answering, ``watchdog.timeout_s`` of virtual time after its last progress. So
the same scenario and seed give the same records on an idle or a loaded host. A wall-clock
backstop (:data:`BACKSTOP_WALL_S`) still ends a worker that stops moving for reasons the
model does not know (a harness bug), so a simulated run cannot wait forever.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence

from burnin.sim.model import DeviceActivity

# Wall seconds a simulated device's clock may stand still before the watchdog ends it anyway:
# far beyond what a worker needs between two heartbeats, even sharing two cores with a node.
BACKSTOP_WALL_S = 120.0
# How often the sampler looks for devices whose clocks passed their next instant (wall s).
_POLL_S = 0.002


class VirtualTimeline:
    """The timeline of one simulated node (one supervisor, one sampler).

    Args:
        activity: the node's shared device state (the seams write the clocks).
        planned_s: each device's planned start (device index -> seconds since the start).
        timeout_s: the watchdog's limit, in virtual seconds.
    """

    def __init__(
        self, activity: DeviceActivity, planned_s: Mapping[int, float], timeout_s: float
    ) -> None:
        self._activity = activity
        self._devices = sorted(planned_s)
        self._timeout_s = timeout_s
        for dev, start_s in planned_s.items():
            activity.planned(dev, start_s)

    def start(self) -> float:
        return 0.0  # device clocks count from the node's start

    def elapsed(self) -> float:
        return max((self._activity.clock(d) for d in self._devices), default=0.0)

    def due(self, planned_s: float) -> bool:
        return True  # the device's clock starts at its planned instant, whenever it launches

    def ramped(self) -> bool:
        return False

    def launch(self, dev: int, planned_s: float) -> tuple[float, float]:
        return planned_s, planned_s

    def device_elapsed(self, dev: int) -> float:
        return self._activity.clock(dev)

    def no_progress(self, dev: int, beat: float, timeout_s: float) -> tuple[float, float] | None:
        last_s = self._activity.clock(dev)
        if timeout_s < 0:
            return last_s, last_s
        stalled = self._activity.state(dev) == DeviceActivity.STALLED
        if stalled or self._activity.quiet_wall_s(dev) > BACKSTOP_WALL_S:
            return round(last_s + timeout_s, 6), last_s
        return None

    def overrun_s(self, dev: int, launched: float, planned_s: float) -> float:
        return self._activity.clock(dev) - launched - planned_s

    def settled(self, dev: int) -> bool:
        activity = self._activity
        if activity.state(dev) == DeviceActivity.STALLED:
            return activity.sampled(dev) >= activity.clock(dev)
        return activity.quiet_wall_s(dev) > BACKSTOP_WALL_S

    def ended(self, dev: int) -> None:
        activity = self._activity
        now = activity.clock(dev)
        if activity.state(dev) == DeviceActivity.STALLED:
            now += self._timeout_s  # the watchdog ends it this long after its last progress
        activity.ended(dev, round(now, 6))

    def ticks(
        self, stop: threading.Event, interval_s: float, devices: Sequence[int]
    ) -> Iterator[tuple[float, list[int]]]:
        activity = self._activity
        step = max(interval_s, 1e-3)
        taken = dict.fromkeys(devices, 0)  # instants sampled per device
        while True:
            stopping = stop.is_set()
            # After the run, every device is sampled on to the node's end (cooling down).
            end_s = self.elapsed() if stopping else 0.0
            moved = False
            for dev in devices:
                horizon_s = end_s if stopping else activity.clock(dev)
                while (at_s := round(taken[dev] * step, 6)) <= horizon_s:
                    yield at_s, [dev]
                    taken[dev] += 1
                    moved = True
                if not stopping:
                    activity.sampled_to(dev, horizon_s)
            if stopping:
                return
            if not moved:
                stop.wait(_POLL_S)
