"""The runner over fake NVML: a run's cards found one by one, CUDA's SM count in the inventory.

This is the path of a real ``burnin run`` on a GPU node up to the workers: ``Runtime.cuda_devices``
gives CUDA's view (its order, after ``CUDA_VISIBLE_DEVICES``), :class:`NvmlTelemetry` over
``tests/fake_pynvml.py`` gives NVML's view of the whole node, then ``runner.prepare``, the
preflight, the sampler with its XID events, and the thermal guard's limits. One card that NVML
cannot reach (lost, unpowered) or that the run does not use (hidden) must cost only itself.
"""

from __future__ import annotations

from typing import Any

import pytest
from fake_pynvml import FakeNvml, error, gpu
from fakes import RecordingWriter

from burnin.config import load_config
from burnin.devices import Device
from burnin.preflight import run_preflight
from burnin.runner import prepare
from burnin.runtime import Runtime
from burnin.telemetry.nvml import NvmlTelemetry
from burnin.telemetry.sampler import Sampler
from burnin.verdicts import CheckContext, GpuData, Status, registered
from burnin.watch import guard_limit

UUIDS = [f"GPU-{i}0000000-aaaa-bbbb-cccc-dddddddddddd" for i in range(5)]
BUSES = [f"00000000:{0x18 + 0x10 * i:02x}:00.0" for i in range(5)]
# CUDA order differs from NVML's, and NVML card 4 is hidden by CUDA_VISIBLE_DEVICES.
CUDA_TO_NVML = [3, 0, 2, 1]


def cuda_devices(sm_count: int | None = 132) -> list[Device]:
    return [
        Device(
            index=i,
            kind="cuda",
            name="NVIDIA H100 80GB HBM3",
            torch_index=i,
            uuid=UUIDS[n],
            pci_bus_id=BUSES[n],
            sm_count=sm_count,
        )
        for i, n in enumerate(CUDA_TO_NVML)
    ]


def nvml_node(broken: dict[int, Any]) -> FakeNvml:
    return FakeNvml(
        [gpu(uuid=UUIDS[i], bus_id=BUSES[i], handle_error=broken.get(i)) for i in range(5)]
    )


def prepared(module: FakeNvml, sm_count: int | None = 132) -> tuple[Any, NvmlTelemetry, Any]:
    client = NvmlTelemetry(module=module)
    runtime = Runtime(
        hostname="node-a",
        telemetry_factory=lambda devices: client,
        cuda_devices=lambda: cuda_devices(sm_count),
        # The job was given four of the node's five cards, as a scheduler does.
        env={"CUDA_VISIBLE_DEVICES": ",".join(UUIDS[n] for n in CUDA_TO_NVML)},
    )
    config = load_config(None, [])
    plan, _ = prepare(config, runtime)
    return plan, client, config


@pytest.mark.parametrize(
    ("broken", "unreached"),
    [
        ({}, set()),
        ({0: error("NVMLError_GpuIsLost")}, {1}),  # NVML card 0 is run device 1
        ({2: error("NVMLError_InsufficientPower")}, {2}),  # unpowered
        ({1: error("NVMLError_Unknown")}, {3}),
        ({4: error("NVMLError_GpuIsLost")}, set()),  # the hidden card is none of the run's
        ({0: error("NVMLError_GpuIsLost"), 3: error("NVMLError_GpuIsLost")}, {0, 1}),
    ],
)
def test_one_unreachable_card_leaves_the_others_fully_watched(
    broken: dict[int, Any], unreached: set[int]
) -> None:
    module = nvml_node(broken)
    plan, client, config = prepared(module)
    expected = {i: None if i in unreached else n for i, n in enumerate(CUDA_TO_NVML)}
    assert {i.device.index: i.device.telemetry_index for i in plan.items} == expected
    healthy = [d for d in expected if d not in unreached]

    # Inventory: identity from NVML for each reachable card, read for the run's cards only.
    for dev in healthy:
        record = plan.inventory[dev]
        assert record["uuid"] == UUIDS[CUDA_TO_NVML[dev]] and record["slowdown_temp_c"] == 89
        assert record["xid_events_supported"] is True and "telemetry_error" not in record
        assert guard_limit(config, record)[0] == 89.0  # the thermal guard has its limit
        assert (record["cpu_affinity"], record["numa_node"]) == (list(range(16)), 0)
    for dev in unreached:
        record = plan.inventory[dev]
        assert "no telemetry device matches" in record["telemetry_error"]
        assert record["uuid"] == UUIDS[CUDA_TO_NVML[dev]]  # identity from CUDA discovery
        assert (record["cpu_affinity"], record["numa_node"]) == (None, None)
    read = {args[0].index for name, args in module.calls if name == "nvmlDeviceGetSerial"}
    # Never a broken card; the hidden card only for its identity, to count the node's GPUs.
    assert read - {4} == {CUDA_TO_NVML[d] for d in healthy}
    assert not any(plan.inventory[d].get("missing") for d in plan.inventory)

    # Preflight: the reachable cards have every sensor that matters.
    results = {r.device: r for r in run_preflight(plan, client, config, plan.inventory)}
    for dev in healthy:
        assert not {"thermal", "power", "xid", "ecc"} & set(results[dev].cannot_run)
    for dev in unreached:
        assert results[dev].cannot_run["thermal"] == "no telemetry for this device"

    # Sampling: every reachable card is sampled in full; an XID reaches its run device.
    samples, events = RecordingWriter(), RecordingWriter()
    pairs = [(i.device.index, i.device.telemetry_index) for i in plan.items]
    sampler = Sampler(client, pairs, samples, events, 1.0)  # type: ignore[arg-type]
    for dev in healthy:
        module.queue_xid(CUDA_TO_NVML[dev], 79)
    if 4 not in broken:
        module.queue_xid(4, 48)  # the hidden card is not the run's: never registered
    sampler.sample_once(5.0)
    sampled = {s["device"]: s for s in samples.records}
    assert set(sampled) == set(healthy)
    for s in sampled.values():
        assert (s["temp_c"], s["power_w"], s["failed"]) == (45, 350.0, [])
    assert sorted((e["device"], e["code"]) for e in events.records) == [(d, 79) for d in healthy]
    client.close()


@pytest.mark.parametrize(
    ("sm_count", "status", "words"),
    [
        (132, Status.PASS, "132 SMs"),
        (114, Status.FAIL, "has 114 SMs; H100-SXM5-80GB has 132"),  # a cut-down chip
        (None, Status.PASS, "SM count not known"),  # no CUDA count: the check says so
    ],
)
def test_cuda_sm_count_reaches_the_identity_check(
    sm_count: int | None, status: Status, words: str
) -> None:
    plan, client, _ = prepared(nvml_node({}), sm_count)
    client.close()
    record = plan.inventory[0]
    assert record["sm_count"] == sm_count
    assert ("sm_count" in record["unsupported"]) == (sm_count is None)
    data = GpuData(
        node="node-a", index=0, inventory=record, samples=[], records=[], events=[],
        planned_kernels=[],
    )  # fmt: skip
    ctx = CheckContext(thresholds={}, fleet=[data], manifest={})
    verdict = next(iter(registered()["identity"](data, ctx)))
    assert verdict.status == status
    assert words in verdict.message


class EnumerateOnly:
    """A backend without ``find_index``: the runner reads each index's identity on its own."""

    def __init__(self, client: NvmlTelemetry) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        if name == "find_index":
            raise AttributeError(name)
        return getattr(self._client, name)


@pytest.mark.parametrize(
    ("broken", "unreached"),
    [
        ({}, set()),
        ({0: error("NVMLError_GpuIsLost")}, {1}),
        ({4: error("NVMLError_InsufficientPower")}, set()),
    ],
)
def test_a_backend_without_lookup_still_loses_only_the_unreadable_card(
    broken: dict[int, Any], unreached: set[int]
) -> None:
    client = NvmlTelemetry(module=nvml_node(broken))
    runtime = Runtime(
        hostname="node-a",
        telemetry_factory=lambda devices: EnumerateOnly(client),  # type: ignore[arg-type,return-value]
        cuda_devices=cuda_devices,
        env={},
    )
    plan, _ = prepare(load_config(None, []), runtime)
    client.close()
    expected = {i: None if i in unreached else n for i, n in enumerate(CUDA_TO_NVML)}
    assert {i.device.index: i.device.telemetry_index for i in plan.items} == expected
    for dev in expected:
        assert plan.inventory[dev]["sm_count"] == 132
        assert ("telemetry_error" in plan.inventory[dev]) == (dev in unreached)
