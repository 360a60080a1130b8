"""Fakes for the hardware seam and a builder of synthetic run stores for report tests.

``FakeTelemetry`` implements the TelemetryClient protocol with scripted values; ``write_run``
writes a complete run directory (manifest + JSONL streams) without running any worker, so
verdict and report tests take milliseconds. ``RecordingWriter`` stands in for a JsonlWriter and
keeps what was written; ``process_alive`` tells a live process from a gone or zombie one.
``FakeClock`` is a monotonic clock that moves only as it is read or slept on, so a kernel's
deadline comes after a fixed number of steps however fast or loaded the machine is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from burnin.store import RunStore
from burnin.telemetry.base import DriverInfo, Event, Inventory, Sample


class RecordingWriter:
    """A JsonlWriter stand-in that keeps what was written."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def close(self) -> None:
        pass


class FakeClock:
    """A monotonic clock (call it) that advances ``tick_s`` on every read and on ``sleep``."""

    def __init__(self, tick_s: float = 0.0, start_s: float = 1000.0) -> None:
        self.tick_s = tick_s
        self.now = start_s
        self.reads = 0

    def __call__(self) -> float:
        now = self.now
        self.now += self.tick_s
        self.reads += 1
        return now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


class FakeTelemetry:
    def __init__(
        self,
        count: int,
        temp_c: Sequence[float] | None = None,
        names: Sequence[str] | None = None,
        serials: Sequence[str] | None = None,
        slowdown_temp_c: float | None = 90.0,
    ) -> None:
        self.count = count
        self.temp_c = list(temp_c or [40.0] * count)
        self.names = list(names or [f"Fake GPU {i}" for i in range(count)])
        self.serials = list(serials or [f"SN{i:04d}" for i in range(count)])
        self.slowdown_temp_c = slowdown_temp_c
        self.closed = False

    def device_count(self) -> int:
        return self.count

    def driver_info(self) -> DriverInfo:
        return DriverInfo(driver_version="999.99", backend="fake")

    def inventory(self, index: int) -> Inventory:
        return Inventory(
            index=index,
            name=self.names[index],
            serial=self.serials[index],
            uuid=f"GPU-fake-{index}",
            slowdown_temp_c=self.slowdown_temp_c,
        )

    def sample(self, index: int, elapsed_s: float) -> Sample:
        return Sample(
            index=index, elapsed_s=elapsed_s, temp_c=self.temp_c[index], power_w=100.0 + index
        )

    def events(self, elapsed_s: float) -> list[Event]:
        return []

    def close(self) -> None:
        self.closed = True


def result_record(device: int, tflops: float = 1.0, wrong: int = 0) -> dict[str, Any]:
    return {
        "device": device,
        "type": "result",
        "kernel": "matmul",
        "elapsed_s": 1.0,
        "metrics": {"matmul_tflops": tflops},
        "verifications": 10,
        "failed_verifications": 1 if wrong else 0,
        "wrong_elements": wrong,
    }


def write_run(
    out: Path,
    devices: int = 2,
    host: str = "node-a",
    *,
    results: dict[int, list[dict[str, Any]]] | None = None,
    samples: dict[int, list[dict[str, Any]]] | None = None,
    events: list[dict[str, Any]] | None = None,
    inventory: dict[int, dict[str, Any]] | None = None,
    finished: bool = True,
    thresholds: dict[str, Any] | None = None,
) -> Path:
    """Write a run directory as a finished (or unfinished) run would leave it."""
    store = RunStore.create(out, host)
    store.write_manifest(
        {
            "run_id": store.path.name,
            "profile": "test",
            "argv": ["burnin", "run"],
            "config": {
                "thresholds": thresholds
                or {"warn_temp_c": 85.0, "fail_temp_c": 0.0, "min_matmul_tflops": 0.0}
            },
            "started_at": "2026-11-23T10:00:00Z",
            "finished_at": "2026-11-23T10:05:00Z" if finished else None,
            "versions": {"burnin": "test"},
            "device_note": "synthetic",
            "plan": [{"node": host, "device": d, "kernels": ["matmul"]} for d in range(devices)],
        }
    )
    streams: dict[str, list[dict[str, Any]]] = {
        "inventory": [],
        "samples": [],
        "results": [],
        "events": list(events or []),
    }
    for d in range(devices):
        inv = {
            "device": d,
            "kind": "cuda",
            "name": f"Fake GPU {d}",
            "uuid": f"GPU-{d}",
            "serial": f"SN{d}",
            "unsupported": [],
        }
        inv.update((inventory or {}).get(d, {}))
        streams["inventory"].append(inv)
        streams["results"] += (results or {}).get(d, [result_record(d)])
        streams["samples"] += (samples or {}).get(d, [])
    for name, records in streams.items():
        writer = store.writer(host, name)
        for record in records:
            writer.write(record)
        writer.close()
    return store.path
