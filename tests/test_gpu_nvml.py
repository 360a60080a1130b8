"""On a real GPU node: the run's cards found by identity, TemperatureV, MIG refusal (``-m gpu``).

These run only where CUDA is present (``tests/conftest.py`` skips them elsewhere) and only read
the cards: the same calls a ``burnin run`` makes before its workers start, with real torch and
real NVML (through burnin's own backend; the test never imports pynvml itself).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from burnin.config import load_config
from burnin.errors import DeviceError
from burnin.preflight import run_preflight
from burnin.runner import prepare
from burnin.runtime import Runtime
from burnin.telemetry.nvml import NvmlTelemetry

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def prepared() -> Iterator[tuple[Any, Any, Any]]:
    """The plan and telemetry of a default run on this node (nothing is stressed)."""
    config = load_config(None, ["preflight.force=true", "preflight.check_processes=false"])
    plan, client = prepare(config, Runtime(env={}))
    try:
        yield plan, client, config
    finally:
        client.close()


def test_every_run_device_is_found_and_read_by_identity(prepared: tuple[Any, Any, Any]) -> None:
    import torch

    plan, client, _ = prepared
    assert isinstance(client, NvmlTelemetry), "NVML did not start on a CUDA node"
    assert plan.items and all(i.device.kind == "cuda" for i in plan.items)
    for item in plan.items:
        dev, record = item.device, plan.inventory[item.device.index]
        assert dev.telemetry_index is not None, f"GPU {dev.index}: {record}"
        assert "telemetry_error" not in record
        assert record["pci_bus_id"] and record["name"]
        if record.get("mig_mode") != "enabled":
            # CUDA names a MIG slice by its own UUID; a whole card has the card's UUID.
            assert (record["uuid"] or "").lower() == (dev.uuid or "").lower()
        props = torch.cuda.get_device_properties(dev.torch_index)
        assert record["sm_count"] == props.multi_processor_count
        assert "sm_count" not in record["unsupported"]
        assert record["compute_mode"] in ("default", "exclusive-process", "prohibited")
        affinity = record["cpu_affinity"]
        assert affinity is None or (affinity == sorted(affinity) and affinity[0] >= 0)
        assert record["numa_node"] is None or record["numa_node"] >= 0
        # The lookup is by identity: asking again gives the same NVML index.
        assert client.find_index(dev.uuid, dev.pci_bus_id) == dev.telemetry_index


def test_temperature_through_temperature_v_is_a_number(prepared: tuple[Any, Any, Any]) -> None:
    plan, client, _ = prepared
    n = client.nvml
    if not hasattr(n, "nvmlDeviceGetTemperatureV"):
        pytest.fail("the installed nvidia-ml-py has no nvmlDeviceGetTemperatureV")
    for item in plan.items:
        index = item.device.telemetry_index
        try:
            temp_v = n.nvmlDeviceGetTemperatureV(client.handle(index), 0)  # NVML_TEMPERATURE_GPU
        except n.NVMLError_FunctionNotFound:
            pytest.skip(f"driver {client.driver_info().driver_version} has no TemperatureV")
        assert isinstance(temp_v, int) and 0 < temp_v < 120
        sample = client.sample(index, 0.0)
        assert isinstance(sample.temp_c, int) and abs(sample.temp_c - temp_v) <= 10
        assert "temp_c" not in sample.unsupported


def test_preflight_refuses_a_card_iff_its_mig_mode_is_enabled(
    prepared: tuple[Any, Any, Any],
) -> None:
    plan, client, config = prepared
    mig = {
        plan.inventory[i.device.index]["pci_bus_id"]
        for i in plan.items
        if plan.inventory[i.device.index].get("mig_mode") == "enabled"
    }
    try:
        run_preflight(plan, client, config, plan.inventory)
    except DeviceError as exc:
        message = str(exc)
    else:
        message = ""
    for item in plan.items:
        bus = plan.inventory[item.device.index]["pci_bus_id"]
        named = f"(PCI {bus}) has MIG mode enabled" in message
        assert named == (bus in mig), message or "preflight accepted every card"
