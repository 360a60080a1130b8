"""Ctrl-C and SIGTERM become a polite stop request, never an exception at a random point.

A burn-in is stopped by a person (Ctrl-C), by Slurm at the end of an allocation or by
Kubernetes deleting a pod (both SIGTERM, then SIGKILL after a grace period: Slurm's KillWait and
Kubernetes' terminationGracePeriodSeconds default to 30 s). Either way the run must stop the
stress, keep every record, write a partial report and exit 4. Raising ``KeyboardInterrupt``
wherever the signal lands could cut the runner between starting a worker and recording it, so
:class:`StopSignals` only records the request; the runner's loop polls ``requested`` every few
tens of milliseconds and shuts down in order. Later signals during that shutdown are logged and
otherwise ignored, so the report still gets written; ``kill -9`` remains the way to abandon it.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

log = logging.getLogger("burnin")
HANDLED = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Context manager: while active, SIGINT/SIGTERM set ``requested`` instead of raising.

    Outside the main thread (where Python cannot install handlers) it does nothing and
    ``requested`` stays None, so library callers in threads keep their own signal handling.
    """

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in HANDLED:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def request(self, reason: str) -> None:
        """Ask for a stop as if a signal named ``reason`` had arrived (tests, callers)."""
        if self.requested is None:
            self.requested = reason

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested is None:
            self.requested = name
            log.warning("%s: stopping every device and writing a partial report", name)
        else:
            log.warning("%s: already stopping (kill -9 abandons the report)", name)
