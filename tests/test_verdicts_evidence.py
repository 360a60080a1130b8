"""burnin.verdicts.evidence and the discovery it judges: missing GPUs and unwatched telemetry.

Discovery (burnin.runtime.discover, burnin.devices.missing_cards) is driven by fake worlds: the
driver's device node, a fake pynvml (tests/fake_pynvml.py) and the devices torch shows. The
checks are driven by inventory records as the runner writes them. End-to-end runs through the
CLI are in tests/test_cli.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fake_pynvml import FakeGpu, FakeNvml
from fake_pynvml import error as nvml_error
from fakes import FakeTelemetry

from burnin.config import load_config
from burnin.devices import Device, DriverCard, missing_cards
from burnin.errors import DeviceError
from burnin.runtime import NVIDIACTL, Runtime, UnwatchedTelemetry, discover
from burnin.telemetry.null import NullTelemetry
from burnin.verdicts import CheckContext, GpuData, Status, checks
from burnin.verdicts.evidence import gpu_count, telemetry

CARDS = [
    FakeGpu(
        uuid=f"GPU-{i:08x}-1111-2222-3333-444444444444",
        serial=f"SER{i}",
        bus_id=f"00000000:{0x18 + i:02x}:00.0",
    )
    for i in range(8)
]
DRIVER_CARDS = [
    DriverCard(nvml_index=i, name=c.name, uuid=c.uuid, serial=c.serial, pci_bus_id=c.bus_id)
    for i, c in enumerate(CARDS)
]


def cuda(*nvml: int, kind: str = "cuda") -> list[Device]:
    """The cards at these NVML indices as torch shows them, in CUDA order."""
    return [
        Device(
            index=i,
            kind=kind,
            name=CARDS[n].name,
            torch_index=i if kind == "cuda" else None,
            uuid=CARDS[n].uuid,
            pci_bus_id=CARDS[n].bus_id,
        )
        for i, n in enumerate(nvml)
    ]


def no_nvml() -> FakeNvml:
    return FakeNvml([], init_error=nvml_error("NVMLError_LibraryNotFound"))


def not_installed() -> Any:
    raise ImportError("No module named 'pynvml'")


ALL_BUT_3 = (0, 1, 2, 4, 5, 6, 7)


@pytest.mark.parametrize(
    ("visible", "cuda_visible", "missing", "wanted"),
    [
        (ALL_BUT_3, None, [3], 8),
        (range(8), None, [], 8),
        ((), None, list(range(8)), 8),
        # Bus id alone identifies a card whose UUID torch did not report.
        ((0,), None, list(range(1, 8)), 8),
        # CUDA_VISIBLE_DEVICES narrows what CUDA should show; UUID entries name the card.
        ((0,), f"{CARDS[0].uuid},{CARDS[5].uuid[:12]}", [5], 2),
        ((0, 5), f"{CARDS[0].uuid},{CARDS[5].uuid}", [], 2),
        # Ordinals follow CUDA's order, not NVML's: a shortfall, but no card to name.
        ((0,), "0,1", [None], 2),
        # CUDA stops reading at the first invalid entry.
        ((0,), "0,bogus,1", [], 1),
        ((), "", [], 0),  # hides every GPU: discover still fails the node (below)
    ],
)
def test_missing_cards(
    visible: tuple[int, ...], cuda_visible: str | None, missing: list[int | None], wanted: int
) -> None:
    found, should_show = missing_cards(cuda(*visible), DRIVER_CARDS, cuda_visible)
    assert [c.nvml_index for c in found] == missing
    assert should_show == wanted


def test_missing_cards_matches_by_bus_id_without_uuid() -> None:
    shown = [Device(index=0, kind="cuda", name="x", pci_bus_id=CARDS[2].bus_id.lower())]
    found, _ = missing_cards(shown, DRIVER_CARDS[:3])
    assert [c.nvml_index for c in found] == [0, 1]


def world(
    torch_shows: list[Device],
    nvml: Callable[[], Any] = no_nvml,
    nvidiactl: bool = False,
    env: dict[str, str] | None = None,
    telemetry_factory: Any = None,
) -> Runtime:
    extra = {"telemetry_factory": telemetry_factory} if telemetry_factory else {}
    return Runtime(
        hostname="n",
        cuda_devices=lambda: list(torch_shows),
        nvml_module=nvml,
        path_exists=lambda path: nvidiactl and path == NVIDIACTL,
        env=env or {},
        **extra,
    )


@pytest.mark.parametrize(
    ("case", "runtime", "overrides", "kinds", "missing", "unwatched"),
    [
        ("no driver at all", world([]), [], ["cpu"], [], None),
        ("pynvml not installed", world([], nvml=not_installed), [], ["cpu"], [], None),
        ("explicit CPU on a GPU node", world(cuda(0)), ["run.device=cpu"], ["cpu"], [], None),
        ("driver node, no NVML, no CUDA", world([], nvidiactl=True), [], [], [None], "NVML"),
        (
            "NVML lists 8, CUDA none",
            world([], lambda: FakeNvml(CARDS)),
            [],
            [],
            list(range(8)),
            None,
        ),
        (
            "NVML 8, CUDA 7",
            world(cuda(*ALL_BUT_3), lambda: FakeNvml(CARDS)),
            [],
            ["cuda"] * 7,
            [3],
            None,
        ),
        (
            "NVML 8, CUDA 8",
            world(cuda(*range(8)), lambda: FakeNvml(CARDS)),
            [],
            ["cuda"] * 8,
            [],
            None,
        ),
        ("NVML down, CUDA 2", world(cuda(0, 1)), [], ["cuda"] * 2, [], "LibraryNotFound"),
        (
            "expect 8, simulated 7",
            world(cuda(*range(7), kind="simulated"), lambda: FakeNvml(CARDS[:7])),
            ["run.expect_gpus=8"],
            ["simulated"] * 7,
            [None],
            None,
        ),
        (
            "expect 8, the simulator's own telemetry lists 7",
            world(
                [
                    Device(index=i, kind="simulated", name="sim", uuid=f"GPU-fake-{i}")
                    for i in range(7)
                ],
                telemetry_factory=lambda d: FakeTelemetry(len(d)),
            ),
            ["run.expect_gpus=8"],
            ["simulated"] * 7,
            [None],
            None,
        ),
        (
            "CUDA_VISIBLE_DEVICES hides every GPU",
            world([], lambda: FakeNvml(CARDS), env={"CUDA_VISIBLE_DEVICES": ""}),
            [],
            [],
            [None],
            None,
        ),
        (
            "expect 3, NVML 8, CUDA none",
            world([], lambda: FakeNvml(CARDS)),
            ["run.expect_gpus=3"],
            [],
            list(range(8)),
            None,
        ),
        (
            "expect 4, NVML down, CUDA 2",
            world(cuda(0, 1)),
            ["run.expect_gpus=4"],
            ["cuda"] * 2,
            [None, None],
            "LibraryNotFound",
        ),
        (
            "Slurm gives 2 of 8, CUDA shows 2",
            world(cuda(0, 1), lambda: FakeNvml(CARDS), env={"CUDA_VISIBLE_DEVICES": "0,1"}),
            [],
            ["cuda"] * 2,
            [],
            None,
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_discover(
    case: str,
    runtime: Runtime,
    overrides: list[str],
    kinds: list[str],
    missing: list[int | None],
    unwatched: str | None,
) -> None:
    found = discover(load_config(None, overrides), runtime)
    try:
        assert [d.kind for d in found.devices] == kinds
        assert [c.nvml_index for c in found.missing] == missing
        assert (found.unwatched is None) == (unwatched is None)
        if unwatched:
            assert unwatched in found.unwatched  # type: ignore[operator]
        assert found.gpu_run == (kinds != ["cpu"])
        if missing:
            assert "GPU(s) missing" in found.note
        for card in (c for c in found.missing if c.nvml_index is not None):
            assert f"PCI {card.pci_bus_id} serial {card.serial}" in found.note
    finally:
        found.client.close()


@pytest.mark.parametrize(
    ("runtime", "gpus", "message"),
    [
        (world([]), (0,), "--gpus 0: the CPU fallback has no GPUs to choose"),
        (world([]), (0, 1), "no NVIDIA driver on this node"),
        (world(cuda(0)), (3,), "--gpus: no GPU 3"),
    ],
)
def test_discover_rejects_gpus_it_cannot_choose(
    runtime: Runtime, gpus: tuple[int, ...], message: str
) -> None:
    overrides = [f"run.gpus=[{','.join(map(str, gpus))}]"]
    with pytest.raises(DeviceError, match=message.replace("(", r"\(")):
        discover(load_config(None, overrides), runtime)


def test_a_node_whose_gpus_cuda_cannot_see_fails_even_with_gpus_chosen() -> None:
    """--gpus on a driver-present node with no CUDA GPU is the node's FAIL, not a usage error."""
    found = discover(load_config(None, ["run.gpus=[0]"]), world([], lambda: FakeNvml(CARDS)))
    found.client.close()
    assert found.devices == [] and len(found.missing) == 8 and found.gpu_run


def test_gpu_telemetry_without_nvml_is_unwatched_with_its_reason() -> None:
    client = world(cuda(0)).telemetry_factory(cuda(0))
    assert isinstance(client, UnwatchedTelemetry) and "LibraryNotFound" in client.reason
    assert client.driver_info().extra["nvml_error"] == client.reason
    cpu = world([]).telemetry_factory([Device(index=0, kind="cpu", name="cpu")])
    assert type(cpu) is NullTelemetry


def test_annotate_places_missing_cards_after_every_visible_gpu() -> None:
    runtime = world(cuda(*ALL_BUT_3), lambda: FakeNvml(CARDS))
    found = discover(load_config(None, ["run.gpus=[0,1]"]), runtime)
    found.client.close()
    records = found.annotate({}, found.devices)
    assert sorted(records) == [0, 1, 7]  # --gpus 0,1 of 7 visible: the missing card is gpu7
    assert records[7]["missing"] is True and records[7]["serial"] == "SER3"
    assert records[7]["name"] == "missing GPU" and records[7]["nvml_name"] == CARDS[3].name
    assert records[0]["gpu_count"]["listed"] == 8 and records[0]["gpu_count"]["visible"] == 7
    cpu = discover(load_config(None), world([]))
    assert cpu.annotate({0: {"device": 0}}, cpu.devices) == {0: {"device": 0}}


# -- the checks ---------------------------------------------------------------------------------

COUNT = {"visible": 7, "listed": 8, "expected": 0, "wanted": 8, "source": "NVML"}
FULL = {**COUNT, "visible": 8}
MISSING = {
    "missing": True,
    "nvml_index": 3,
    "nvml_name": "NVIDIA H100 80GB HBM3",
    "pci_bus_id": "00000000:1b:00.0",
    "serial": "1654822019876",
    "gpu_count": COUNT,
}


def gpu(**inventory: Any) -> GpuData:
    return GpuData(
        node="n",
        index=0,
        inventory={"device": 0, "kind": "cuda", **inventory},
        samples=[],
        records=[],
        events=[],
        planned_kernels=[],
    )


def ctx(required: Any = True) -> CheckContext:
    config = {"telemetry": {"required": required}} if required is not None else {}
    return CheckContext(thresholds={}, fleet=[], manifest={"config": config})


@pytest.mark.parametrize(
    ("inventory", "status", "words"),
    [
        (MISSING, Status.FAIL, ["PCI 00000000:1b:00.0", "serial 1654822019876", "NVML lists 8"]),
        (
            {"missing": True, "gpu_count": {**COUNT, "listed": 7, "expected": 8}},
            Status.FAIL,
            ["should have is not visible", "8 expected (--expect-gpus)"],
        ),
        (
            {"missing": True, "gpu_count": {**COUNT, "visible": 0, "listed": None, "wanted": 0}},
            Status.FAIL,
            ["driver is present, but no GPU is usable by CUDA"],
        ),
        ({"gpu_count": FULL}, Status.PASS, ["every GPU", "CUDA shows 8, NVML lists 8"]),
        ({"gpu_count": {**FULL, "listed": None, "expected": 8}}, Status.PASS, ["8 expected"]),
        ({"gpu_count": {**FULL, "listed": None, "wanted": 0}}, Status.SKIP, ["--expect-gpus"]),
        ({"gpu_count": COUNT}, None, []),  # the missing card's own entry carries the FAIL
        ({}, None, []),  # the CPU fallback, or a store from before the check
        ({"gpu_count": "garbage"}, None, []),
        ({"missing": True, "gpu_count": {"visible": "x"}}, Status.FAIL, ["CUDA shows ?"]),
    ],
)
def test_gpu_count(inventory: dict[str, Any], status: Status | None, words: list[str]) -> None:
    verdicts = list(gpu_count(gpu(**inventory), ctx()))
    assert [v.status for v in verdicts] == ([status] if status is not None else [])
    for verdict in verdicts:
        assert verdict.check == "gpu-count"
        assert all(w in verdict.message for w in words), verdict.message
        if status == Status.FAIL:
            assert verdict.action == "reseat" and verdict.unit == "GPUs"


@pytest.mark.parametrize(
    ("inventory", "required", "status", "words"),
    [
        ({"telemetry_watched": True}, True, Status.PASS, ["watched"]),
        (
            {"telemetry_watched": False, "telemetry_unwatched": "NVML could not start"},
            True,
            Status.ERROR,
            ["NVML could not start", "not certified"],
        ),
        (
            {"telemetry_watched": False, "telemetry_unwatched": "NVML could not start"},
            False,
            Status.WARN,
            ["telemetry.required = false"],
        ),
        ({"telemetry_watched": False}, None, Status.ERROR, ["no telemetry backend"]),
        ({"telemetry_watched": False}, "no", Status.ERROR, []),  # only false turns it off
        ({}, True, None, []),  # the CPU fallback: not a GPU run
        ({"telemetry_watched": False, **MISSING}, True, None, []),  # gpu-count judges it
    ],
)
def test_telemetry(
    inventory: dict[str, Any], required: Any, status: Status | None, words: list[str]
) -> None:
    verdicts = list(telemetry(gpu(**inventory), ctx(required)))
    assert [v.status for v in verdicts] == ([status] if status is not None else [])
    for verdict in verdicts:
        assert verdict.check == "telemetry"
        assert all(w in verdict.message for w in words), verdict.message


def test_checks_are_registered_under_their_ids() -> None:
    found = checks()
    assert found["gpu-count"].fn is gpu_count and found["telemetry"].fn is telemetry


@pytest.mark.gpu
def test_a_healthy_gpu_machine_shows_every_card_the_driver_lists() -> None:
    """On real hardware: torch's GPUs match NVML's by UUID or bus id, none is missing, and
    every GPU is watched (a mismatch here would fail every healthy node)."""
    found = discover(load_config(None, ["run.device=cuda"]), Runtime(hostname="gpu-lane"))
    try:
        assert found.gpu_run and found.devices and found.source == "NVML"
        assert found.missing == () and found.unwatched is None
        assert found.listed is not None and found.listed >= found.visible == len(found.devices)
    finally:
        found.client.close()
