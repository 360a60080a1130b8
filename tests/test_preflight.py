"""Preflight: a busy GPU refuses to start unless forced; a check that cannot run is SKIP."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fake_pynvml import FakeNvml, error, gpu

from burnin.cli import cli
from burnin.config import load_config
from burnin.devices import cpu_devices
from burnin.errors import DeviceError, TelemetryError
from burnin.plan import build_plan
from burnin.preflight import (
    CHECK_SENSORS,
    check_device,
    describe_processes,
    mode_refusals,
    run_preflight,
)
from burnin.runtime import Runtime
from burnin.telemetry.base import DriverInfo, Event, Inventory, Sample
from burnin.telemetry.nvml import NvmlTelemetry
from burnin.verdicts import CheckContext, GpuData, Status
from burnin.verdicts.lifecycle import preflight as preflight_check

FULL_SAMPLE = {
    "temp_c": 40.0, "power_w": 100.0, "fan_pct": 30.0, "ecc_volatile_sbe": 0,
    "ecc_volatile_dbe": 0, "pcie_gen": 5, "pcie_width": 16, "pcie_replay_count": 0,
}  # fmt: skip


class Telemetry:
    """Scripted sensors, processes and XID support per device."""

    def __init__(
        self,
        count: int,
        procs: dict[int, list[dict[str, Any]]] | None = None,
        sample: dict[str, Any] | None = None,
        unsupported: tuple[str, ...] = (),
        xid: bool | None = True,
        fail: str | None = None,
        lists_processes: bool = True,
    ) -> None:
        self.count, self.procs = count, procs or {}
        self.values = FULL_SAMPLE if sample is None else sample
        self.unsupported, self.xid, self.fail = unsupported, xid, fail
        if not lists_processes:
            self.processes = None  # type: ignore[assignment]

    def device_count(self) -> int:
        return self.count

    def driver_info(self) -> DriverInfo:
        return DriverInfo(backend="fake")

    def inventory(self, index: int) -> Inventory:
        return Inventory(index=index, name=f"Fake {index}", xid_events_supported=self.xid)

    def sample(self, index: int, elapsed_s: float) -> Sample:
        if self.fail:
            raise TelemetryError(self.fail)
        return Sample(index=index, elapsed_s=elapsed_s, unsupported=self.unsupported, **self.values)

    def events(self, elapsed_s: float) -> list[Event]:
        return []

    def processes(self, index: int) -> list[dict[str, Any]]:
        if self.fail:
            raise TelemetryError(self.fail)
        return self.procs.get(index, [])

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("client", "cannot_run"),
    [
        (Telemetry(1), {}),
        (Telemetry(1, xid=False), {"xid": "XID events cannot be registered on this device"}),
        (Telemetry(1, xid=None), {"xid": "the telemetry backend has no XID event source"}),
        (
            Telemetry(1, sample={**FULL_SAMPLE, "temp_c": None}, unsupported=("temp_c",)),
            {"thermal": "temp_c not supported"},
        ),
        (
            Telemetry(1, sample={**FULL_SAMPLE, "pcie_width": None}),
            {"pcie-link": "pcie_width not supported"},
        ),
        (
            Telemetry(1, unsupported=("throttle_reasons", "fan_pct")),
            {"throttle": "throttle_reasons not supported", "fan": "fan_pct not supported"},
        ),
    ],
)
def test_checks_that_cannot_run(client: Telemetry, cannot_run: dict[str, str]) -> None:
    inventory = client.inventory(0).to_dict()
    result = check_device(client, 0, 0, inventory, set())
    assert result.cannot_run == cannot_run
    assert result.processes == []


def test_failing_or_missing_telemetry_means_nothing_can_run() -> None:
    failed = check_device(Telemetry(1, fail="NVML sample: Unknown Error"), 0, 0, {}, set())
    assert set(failed.cannot_run) == set(CHECK_SENSORS)
    assert all("Unknown Error" in why for why in failed.cannot_run.values())
    assert failed.processes is None and "Unknown Error" in failed.processes_note
    absent = check_device(Telemetry(1), 0, None, {}, set())
    assert set(absent.cannot_run) == set(CHECK_SENSORS)
    blind = check_device(Telemetry(1, lists_processes=False), 0, 0, {}, set())
    assert blind.processes is None and "cannot list" in blind.processes_note


def test_own_processes_do_not_count_as_busy() -> None:
    client = Telemetry(1, procs={0: [{"pid": os.getpid(), "name": "burnin"}]})
    assert not check_device(client, 0, 0, {}, {os.getpid()}).busy


def test_describe_processes_names_pids_and_caps_the_list() -> None:
    procs = [{"pid": i, "name": f"p{i}", "used_memory_mib": 100 * i} for i in range(1, 8)]
    text = describe_processes(procs)
    assert text.startswith("pid 1 (p1) 100 MiB, pid 2 (p2) 200 MiB")
    assert text.endswith("and 2 more")


def _plan(count: int, sets: list[str] = ()):  # type: ignore[assignment]
    config = load_config(None, list(sets))
    from dataclasses import replace

    devices = [replace(d, telemetry_index=d.index) for d in cpu_devices(count)]
    return build_plan(config, devices, "n"), config


@pytest.mark.parametrize(
    ("client", "sets", "message"),
    [
        (Telemetry(2, procs={1: [{"pid": 4242, "name": "train.py"}]}), [],
         "GPU 1 is busy with 1 other process(es): pid 4242 (train.py)"),
        (Telemetry(2, unsupported=("temp_c",), sample={**FULL_SAMPLE, "temp_c": None}),
         ['preflight.required_checks=["thermal"]'],
         "required check 'thermal' cannot run on GPU 0: temp_c not supported"),
    ],
)  # fmt: skip
def test_refusal_and_force(client: Telemetry, sets: list[str], message: str) -> None:
    plan, config = _plan(2, sets)
    with pytest.raises(DeviceError) as err:
        run_preflight(plan, client, config, {})
    assert message in str(err.value) and "--force" in str(err.value)
    forced = load_config(None, [*sets, "preflight.force=true"])
    results = run_preflight(plan, client, forced, {})
    assert any(r.forced for r in results)


def test_busy_check_can_be_switched_off() -> None:
    plan, _ = _plan(2)
    config = load_config(None, ["preflight.check_processes=false"])
    busy = Telemetry(2, procs={0: [{"pid": 1}]})
    assert run_preflight(plan, busy, config, {})[0].busy


def _gpu(event: dict[str, Any]) -> GpuData:
    return GpuData(
        node="n", index=0, inventory={}, samples=[], records=[], events=[event],
        planned_kernels=[],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("event", "statuses", "text"),
    [
        ({"processes": None, "processes_note": "the backend cannot list", "cannot_run": {}},
         [Status.SKIP], "could not check for other processes"),
        ({"processes": [], "cannot_run": {}}, [Status.PASS], "no other processes"),
        ({"processes": [{"pid": 7, "name": "job"}], "forced": True, "cannot_run": {}},
         [Status.WARN], "started with --force while 1 other process(es) used this GPU (pid 7"),
        ({"processes": [], "cannot_run": {"thermal": "temp_c not supported"}},
         [Status.PASS, Status.SKIP], "thermal (temp_c not supported)"),
    ],
)  # fmt: skip
def test_preflight_verdicts(event: dict[str, Any], statuses: list[Status], text: str) -> None:
    ctx = CheckContext(thresholds={}, fleet=[], manifest={})
    verdicts = list(preflight_check(_gpu({"kind": "preflight", "device": 0, **event}), ctx))
    assert [v.status for v in verdicts] == statuses
    assert any(text in v.message for v in verdicts)
    # A check that could not run is never reported as passed.
    assert not any(v.status == Status.PASS and "cannot" in v.message for v in verdicts)


def _run(tmp_path: Path, client: Telemetry, *args: str) -> Any:
    runtime = Runtime(hostname="node-a", telemetry_factory=lambda devices: client)
    return CliRunner().invoke(
        cli,
        ["run", "--device", "cpu", "--duration", "0.3", "--set", "cpu.devices=2",
         "--set", "kernels.matmul.cpu_size=32", "--out", str(tmp_path), *args],
        obj=runtime,
    )  # fmt: skip


@pytest.mark.slow
def test_cli_refuses_a_busy_gpu_then_force_records_it(tmp_path: Path) -> None:
    client = Telemetry(2, procs={1: [{"pid": 4242, "name": "train.py", "used_memory_mib": 30000}]})
    refused = _run(tmp_path, client)
    assert refused.exit_code == 2
    assert "GPU 1 is busy" in refused.output and "pid 4242 (train.py) 30000 MiB" in refused.output
    assert "Traceback" not in refused.output
    assert not list(tmp_path.iterdir())  # nothing started, no run directory

    forced = _run(tmp_path, client, "--force")
    assert forced.exit_code == 0, forced.output  # a WARN, not a failure
    run_dir = next(tmp_path.iterdir())
    report = json.loads((run_dir / "report.json").read_text())
    gpu1 = next(g for g in report["gpus"] if g["index"] == 1)
    warn = next(v for v in gpu1["verdicts"] if v["check"] == "preflight")
    assert warn["status"] == "WARN" and "pid 4242" in warn["message"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["preflight"] == {"busy_devices": [1], "forced": True}
    events = (run_dir / "nodes" / "node-a" / "events.jsonl").read_text().splitlines()
    recorded = [json.loads(e) for e in events if '"preflight"' in e]
    assert recorded[1]["processes"][0]["pid"] == 4242


# -- cards a whole-card burn-in cannot use: MIG, compute mode ---------------------------------

BUS = "00000000:9A:00.0"
HOLDER = [{"pid": 4242, "name": "train.py"}]


@pytest.mark.parametrize(
    ("inventory", "processes", "words"),
    [
        ({"mig_mode": "disabled", "compute_mode": "default"}, [], None),
        ({"mig_mode": None, "compute_mode": None}, None, None),  # a card without MIG
        ({"mig_mode": "enabled"}, [],
         f"GPU 1 (PCI {BUS}) has MIG mode enabled: burnin does not judge MIG slices against a "
         "whole card's datasheet"),
        ({"compute_mode": "prohibited"}, [], f"GPU 1 (PCI {BUS}) is in compute mode 'prohibited'"),
        ({"compute_mode": "exclusive-process"}, HOLDER,
         f"GPU 1 (PCI {BUS}) is in compute mode 'exclusive-process' and another process holds "
         "it: pid 4242 (train.py)"),
        ({"compute_mode": "exclusive-process"}, [], None),  # exclusive, and free: burnin takes it
        ({"compute_mode": "exclusive-process"}, None, None),  # cannot tell: the busy check says so
        ({"compute_mode": "default"}, HOLDER, None),  # busy, but that is the busy check's call
        # Device strings are escaped: a forged bus id cannot drive the terminal.
        ({"mig_mode": "enabled", "pci_bus_id": "00:01.0\x1b[2J"}, [],
         "GPU 1 (PCI 00:01.0\\x1b[2J) has MIG mode enabled"),
    ],
)  # fmt: skip
def test_mode_refusals(
    inventory: dict[str, Any], processes: list[dict[str, Any]] | None, words: str | None
) -> None:
    found = mode_refusals(1, {"pci_bus_id": BUS, **inventory}, processes)
    assert all(text.isprintable() for text in found)
    if words is None:
        assert found == []
        return
    assert len(found) == 1 and words in found[0]
    # The card is not at fault: nothing suggests returning or replacing it.
    assert "nothing is wrong with the card" in found[0]
    assert not re.search(r"\b(rma|return|replace)", found[0], re.IGNORECASE)


@pytest.mark.parametrize(
    ("card", "words"),
    [
        (gpu(mig_mode=(1, 1)), "has MIG mode enabled: burnin does not judge MIG slices"),
        (gpu(compute_mode=2), "is in compute mode 'prohibited'"),
        (gpu(compute_mode=3, processes=[(4242, 2**30, "train.py")]),
         "is in compute mode 'exclusive-process' and another process holds it: pid 4242"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("force", [False, True])
def test_cli_refuses_a_card_it_cannot_judge_even_forced(
    tmp_path: Path, card: Any, words: str, force: bool
) -> None:
    cards = [gpu(), dataclasses.replace(card, bus_id=BUS, uuid="GPU-two")]
    client = NvmlTelemetry(module=FakeNvml(cards))
    result = _run(tmp_path, client, *(["--force"] if force else []))  # type: ignore[arg-type]
    assert result.exit_code == 2, result.output
    assert f"GPU 1 (PCI {BUS}) {words}" in result.output
    assert "--force does not override this" in result.output
    assert "GPU 0" not in result.output and "Traceback" not in result.output
    assert not list(tmp_path.iterdir())  # nothing started, no run directory


def test_a_card_without_mig_support_is_not_refused() -> None:
    client = NvmlTelemetry(module=FakeNvml([gpu(mig_mode=error("NVMLError_NotSupported"))]))
    inventory = client.inventory(0).to_dict()
    assert inventory["mig_mode"] is None
    plan, config = _plan(1)
    assert run_preflight(plan, client, config, {0: inventory})[0].cannot_run.get("thermal") is None
