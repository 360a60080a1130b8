"""The runner's eyes on telemetry: last readings, lost cards, and the thermal guard.

The :class:`~burnin.telemetry.sampler.Sampler` writes every sample and event into the store.
:class:`TelemetryWatch` sits between the two as a pass-through writer, so it sees each record
the moment it is stored, whichever backend produced it (NVML, simulated, null), without a second
reader. From that it keeps the last sample and the recent events of every device (cited when a
device hangs, crashes or is lost), notices a card that disappears (``GPU is lost`` from NVML,
XID 79 "fallen off the bus", or a backend's ``lost`` event) and trips the thermal guard: a
reading at or above the device's limit stops that device's stress at once and records a
``thermal-guard`` event, which the lifecycle checks turn into a ``thermal`` FAIL.
A card with an injected ``lost`` fault reaches it the same way: its telemetry reports the card
gone, as NVML would (``FaultTelemetry`` in burnin/sim/telemetry.py).
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from burnin.config import RunConfig
from burnin.store import JsonlWriter, TappedWriter

# NVML raises NVMLError_GpuIsLost ("GPU is lost"); XID 79 is "GPU has fallen off the bus"
# (docs/nvml.md §2.12).
_LOST_TEXT = re.compile(r"\blost\b|GpuIsLost|fallen off the bus", re.IGNORECASE)
LOST_XID = 79
_RECENT = 5


def is_lost(record: Mapping[str, Any]) -> bool:
    """Whether an events.jsonl record says the card is gone."""
    kind = record.get("kind")
    if kind == "lost":
        return True
    if kind == "xid":
        return record.get("code") == LOST_XID
    return kind == "telemetry-error" and bool(_LOST_TEXT.search(str(record.get("message", ""))))


def guard_limit(config: RunConfig, inventory: Mapping[str, Any]) -> tuple[float | None, str]:
    """The thermal guard's limit for one device (C) and where it comes from."""
    if not config.thermal_guard.enabled:
        return None, "thermal guard disabled (thermal_guard.enabled = false)"
    if config.thermal_guard.max_temp_c > 0:
        return config.thermal_guard.max_temp_c, "thermal_guard.max_temp_c"
    for key, what in (("slowdown_temp_c", "slowdown"), ("shutdown_temp_c", "shutdown")):
        value = inventory.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value), f"the card's {what} threshold"
    return None, "no temperature limit known (no NVML threshold, thermal_guard.max_temp_c = 0)"


class TelemetryWatch:
    """Observes the sampler's output; thread-safe (the sampler thread writes, the runner reads).

    Args:
        samples: the store's samples writer.
        events: the store's events writer (the guard writes its events there too).
        limits: device index -> thermal guard limit in C and its source (devices absent: none).
        on_guard: called with the device index when the guard trips (sets its stop flag).
    """

    def __init__(
        self,
        samples: JsonlWriter,
        events: JsonlWriter,
        limits: Mapping[int, tuple[float, str]] | None = None,
        on_guard: Callable[[int], None] = lambda dev: None,
    ) -> None:
        self._events = events
        self._limits = dict(limits or {})
        self._on_guard = on_guard
        self._lock = threading.Lock()
        self._last: dict[int, dict[str, Any]] = {}
        self._recent: dict[int, deque[dict[str, Any]]] = {}
        self._lost: dict[int, dict[str, Any]] = {}
        self._guarded: dict[int, dict[str, Any]] = {}
        self.samples = TappedWriter(samples, self._saw_sample)
        self.events = TappedWriter(events, self._saw_event)

    def _saw_sample(self, record: dict[str, Any]) -> None:
        dev = record.get("device")
        if not isinstance(dev, int):
            return
        with self._lock:
            self._last[dev] = record
            limit = self._limits.get(dev)
            temp_c = record.get("temp_c")
            trip = (
                limit is not None
                and dev not in self._guarded
                and isinstance(temp_c, int | float)
                and temp_c >= limit[0]
            )
            if trip:
                assert limit is not None
                event = {
                    "device": dev,
                    "elapsed_s": record.get("elapsed_s"),
                    "kind": "thermal-guard",
                    "temp_c": temp_c,
                    "limit_c": limit[0],
                    "limit_source": limit[1],
                    "message": f"{temp_c:g} C reached the limit of {limit[0]:g} C "
                    f"({limit[1]}): stress stopped",
                }
                self._guarded[dev] = event
        if trip:
            self._on_guard(dev)
            self.events.write(event)

    def _saw_event(self, record: dict[str, Any]) -> None:
        dev = record.get("device")
        if not isinstance(dev, int):
            return
        with self._lock:
            self._recent.setdefault(dev, deque(maxlen=_RECENT)).append(record)
            if dev not in self._lost and is_lost(record):
                self._lost[dev] = record

    def last_sample(self, dev: int) -> dict[str, Any] | None:
        with self._lock:
            return self._last.get(dev)

    def recent_events(self, dev: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._recent.get(dev, ()))

    def lost(self, dev: int) -> dict[str, Any] | None:
        """The record that said ``dev`` is gone, if any did."""
        with self._lock:
            return self._lost.get(dev)

    def guarded(self, dev: int) -> bool:
        with self._lock:
            return dev in self._guarded
