"""The NVML backend through a fake ``pynvml`` module (tests never import pynvml).

Covers: every field of the inventory and the sample with NVML's units converted, NotSupported as
None + the field name in ``unsupported`` (never 0), any other NVMLError as one TelemetryError,
XIDs through the event API without blocking, read-only use (no setter, reset or clear is ever
called), and the fake's names and constants against the installed binding's source text.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import fake_pynvml as fake
import pytest
from fake_pynvml import NOT_SUPPORTED, FakeNvml, error, gpu

from burnin.errors import TelemetryError
from burnin.telemetry import nvml as nvml_module
from burnin.telemetry import nvml_inventory, nvml_reads
from burnin.telemetry.nvml import NvmlTelemetry, throttle_names

# The NVML backend's modules: the only ones that call pynvml.
NVML_SOURCE = "\n".join(
    Path(m.__file__).read_text(encoding="utf-8") for m in (nvml_module, nvml_inventory)
)
FORBIDDEN = ("nvmlDeviceSet", "nvmlDeviceReset", "nvmlDeviceClear")
# NVML function names as nvml.py writes them (``n.nvmlDeviceGetName``), not struct fields.
CALLS = r"\.(nvml(?:Device|System|Event|Init|Shutdown|Gpm|Vgpu|Unit)\w*)"


def backend(*gpus: fake.FakeGpu, **kwargs: Any) -> tuple[NvmlTelemetry, FakeNvml]:
    module = FakeNvml(list(gpus) or [gpu()], **kwargs)
    return NvmlTelemetry(module=module), module


def test_inventory_of_a_healthy_h100() -> None:
    client, _ = backend()
    inv = client.inventory(0)
    assert (inv.name, inv.pci_device_id, inv.pci_subsystem_id) == (
        "NVIDIA H100 80GB HBM3",
        "2330",
        "16c110de",
    )
    assert inv.memory_total_mib == 81559 and inv.compute_capability == "9.0"
    assert (inv.power_limit_default_w, inv.power_limit_min_w, inv.power_limit_max_w) == (
        700.0,
        200.0,
        700.0,
    )
    assert (inv.max_sm_clock_mhz, inv.max_mem_clock_mhz) == (1980, 2619)
    assert (inv.slowdown_temp_c, inv.shutdown_temp_c, inv.gpu_max_temp_c, inv.mem_max_temp_c) == (
        89,
        92,
        87,
        95,
    )
    assert (inv.pcie_max_gen, inv.pcie_max_width, inv.pcie_system_max_gen) == (5, 16, 5)
    assert inv.inforom_valid is True and inv.ecc_enabled is True
    assert (inv.driver_version, inv.cuda_driver_version) == ("550.54.15", "12.4")
    assert (inv.nvlink_links_total, inv.nvlink_links_up) == (18, 18)
    assert inv.remap_banks_max == 640 and inv.remapped_rows_failure is False
    assert inv.total_energy_j == pytest.approx(123456.789)
    assert inv.xid_events_supported is True
    # Passive cooling and NVML's missing SM count are "not supported", not zero.
    assert inv.fan_count is None and inv.sm_count is None
    assert set(inv.unsupported) == {"fan_count", "sm_count"}


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"remapped_rows": (3, 1, 1, 0)}, "remapped_rows_uncorrectable", 1),
        ({"remapped_rows": (3, 1, 1, 0)}, "remapped_rows_pending", True),
        ({"remap_histogram": (600, 30, 5, 3, 2)}, "remap_banks_none", 2),
        ({"retired_pages": {0: [0x10, 0x20], 1: [0x30]}}, "retired_pages_sbe", 2),
        ({"retired_pages": {0: [0x10, 0x20], 1: [0x30]}}, "retired_pages_dbe", 1),
        ({"retired_pending": 1}, "retired_pages_pending", True),
        ({"ecc": {(0, 0): 4, (1, 0): 1, (0, 1): 900, (1, 1): 7}}, "ecc_aggregate_sbe", 900),
        ({"ecc": {(0, 0): 4, (1, 0): 1, (0, 1): 900, (1, 1): 7}}, "ecc_volatile_dbe", 1),
        ({"inforom": error("NVMLError_CorruptedInforom")}, "inforom_valid", False),
        ({"ecc_mode": (0, 0)}, "ecc_enabled", False),
        ({"nvlinks": [1, 0, 1, 1]}, "nvlink_links_up", 3),
        ({"power_enforced_mw": 300_000}, "power_limit_enforced_w", 300.0),
        ({"pci_device_id": 0x20B210DE}, "pci_device_id", "20b2"),
        ({"fans": 2}, "fan_count", 2),
    ],
)
def test_inventory_fields(changes: dict[str, Any], field: str, expected: Any) -> None:
    client, _ = backend(gpu(**changes))
    assert getattr(client.inventory(0), field) == expected


# (FakeGpu attribute set to NotSupported, the record field that must become None + unsupported)
INVENTORY_UNSUPPORTED = [
    ("serial", "serial"),
    ("board_part_number", "board_part_number"),
    ("inforom_image", "inforom_image_version"),
    ("inforom", "inforom_valid"),
    ("memory_total", "memory_total_mib"),
    ("power_default_mw", "power_limit_default_w"),
    ("power_constraints_mw", "power_limit_max_w"),
    ("gpu_max_pcie_gen", "pcie_max_gen"),
    ("ecc_mode", "ecc_enabled"),
    ("remapped_rows", "remapped_rows_uncorrectable"),
    ("remap_histogram", "remap_banks_none"),
    ("retired_pending", "retired_pages_pending"),
    ("energy_mj", "total_energy_j"),
    ("nvlinks", "nvlink_links_up"),
    ("pcie_replay", "pcie_replay_count"),
]
SAMPLE_UNSUPPORTED = [
    ("temp", "temp_c"),
    ("mem_temp", "mem_temp_c"),
    ("margin", "temp_margin_c"),
    ("power_mw", "power_w"),
    ("energy_mj", "energy_j"),
    ("utilization", "util_pct"),
    ("throttle", "throttle_reasons"),
    ("pcie_gen", "pcie_gen"),
    ("pcie_replay", "pcie_replay_count"),
    ("nvlinks", "nvlink_crc_errors"),
    ("fan_speed", "fan_pct"),
]


@pytest.mark.parametrize(("attr", "field"), INVENTORY_UNSUPPORTED)
def test_inventory_not_supported_is_none_never_zero(attr: str, field: str) -> None:
    client, _ = backend(gpu(**{attr: NOT_SUPPORTED}))
    inv = client.inventory(0)
    assert getattr(inv, field) is None
    assert field in inv.unsupported


@pytest.mark.parametrize(("attr", "field"), SAMPLE_UNSUPPORTED)
def test_sample_not_supported_is_none_never_zero(attr: str, field: str) -> None:
    fans = {"fans": 1, "fan_speed": 40, "fan_rpm": 1500, "fan_target": 40}
    client, _ = backend(gpu(**{**fans, attr: NOT_SUPPORTED}))
    sample = client.sample(0, 1.0)
    assert getattr(sample, field) in (None, ())
    assert field in sample.unsupported


def test_geforce_without_inforom_or_ecc() -> None:
    """What a consumer card answers (docs/nvml.md §2.18): identity and sensors, no history."""
    card = gpu(
        name="NVIDIA GeForce RTX 3090",
        pci_device_id=0x220410DE,
        serial=NOT_SUPPORTED,
        board_part_number=NOT_SUPPORTED,
        inforom_image=NOT_SUPPORTED,
        inforom=NOT_SUPPORTED,
        ecc_mode=NOT_SUPPORTED,
        ecc={},
        retired_pages={},
        retired_pending=NOT_SUPPORTED,
        remapped_rows=NOT_SUPPORTED,
        remap_histogram=NOT_SUPPORTED,
        nvlinks=NOT_SUPPORTED,
        mem_temp=0,  # GeForce GDDR6X answers 0 for the memory-temperature field
        fans=2,
        fan_speed=45,
        fan_rpm=1400,
        fan_target=45,
    )
    client, _ = backend(card)
    inv, sample = client.inventory(0), client.sample(0, 2.0)
    for name in (
        "serial",
        "inforom_valid",
        "ecc_aggregate_sbe",
        "retired_pages_sbe",
        "remapped_rows_correctable",
        "nvlink_links_up",
    ):
        assert getattr(inv, name) is None and name in inv.unsupported
    assert inv.name == "NVIDIA GeForce RTX 3090" and inv.fan_count == 2
    assert sample.mem_temp_c is None and "mem_temp_c" in sample.unsupported
    assert (sample.fan_pct, sample.fan_rpm, sample.fan_target_pct) == (45, 1400, 45)


def test_sample_units_and_names() -> None:
    client, _ = backend(gpu(throttle=0x4 | 0x40, nvlink_totals={38: 2, 45: 3, 52: 4, 59: 5}))
    s = client.sample(0, 12.5)
    assert s.elapsed_s == 12.5 and s.temp_c == 45 and s.mem_temp_c == 50
    assert s.power_w == 350.0 and s.power_limit_w == 700.0  # mW -> W
    assert s.energy_j == pytest.approx(123456.789)  # mJ -> J
    assert (s.sm_clock_mhz, s.mem_clock_mhz, s.util_pct) == (1980, 2619, 97)
    assert s.mem_used_mib == 512.0  # bytes -> MiB
    assert s.throttle_reasons == ("sw_power_cap", "hw_thermal_slowdown")
    assert (s.pcie_gen, s.pcie_width, s.pcie_replay_count) == (5, 16, 0)
    assert (s.nvlink_crc_errors, s.nvlink_replay_errors, s.nvlink_recovery_errors) == (5, 4, 5)
    assert s.nvlink_links_up == 18
    # A passively cooled card: fans are not supported, and never read as 0 %.
    assert s.fan_pct is None and {"fan_pct", "fan_rpm"} <= set(s.unsupported)


def test_throttle_falls_back_to_the_deprecated_name_on_old_drivers() -> None:
    client, module = backend(gpu(throttle=0x8, throttle_new_api=False))
    assert client.sample(0, 0.0).throttle_reasons == ("hw_slowdown",)
    assert module.called("nvmlDeviceGetCurrentClocksThrottleReasons") == 1


@pytest.mark.parametrize(
    ("mask", "names"),
    [
        (0x0, ()),
        (0x1, ("gpu_idle",)),
        (0x4 | 0x20, ("sw_power_cap", "sw_thermal_slowdown")),
        (0x8 | 0x40 | 0x80, ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown")),
        (
            0x2 | 0x10 | 0x100,
            ("applications_clocks_setting", "sync_boost", "display_clock_setting"),
        ),
        (0x1000, ("bit_0x1000",)),
    ],
)
def test_throttle_names(mask: int, names: tuple[str, ...]) -> None:
    assert throttle_names(mask) == names


@pytest.mark.parametrize("method", ["device_count", "inventory", "sample", "events"])
def test_any_other_nvml_error_becomes_one_telemetry_error(method: str) -> None:
    client, module = backend(gpu())
    lost = error("NVMLError_GpuIsLost")
    module.gpus[0].temp = lost
    module.gpus[0].uuid = lost

    def boom(*_: Any) -> Any:
        raise lost

    if method == "device_count":
        module.nvmlDeviceGetCount = boom  # type: ignore[method-assign]
    if method == "events":
        module.queue_xid(0, 79)
        module.nvmlDeviceGetIndex = boom  # type: ignore[method-assign]
    args = {"device_count": (), "inventory": (0,), "sample": (0, 1.0), "events": (1.0,)}[method]
    with pytest.raises(TelemetryError, match=f"NVML {method}"):
        getattr(client, method)(*args)


def test_nvml_that_cannot_start_is_a_telemetry_error() -> None:
    with pytest.raises(TelemetryError, match="could not start"):
        NvmlTelemetry(module=FakeNvml(init_error=error("NVMLError_LibraryNotFound")))


def test_xid_events_arrive_without_blocking() -> None:
    client, module = backend(gpu(), gpu(uuid="GPU-2"))
    assert client.events(0.5) == []
    module.queue_xid(1, 79)
    module.queue_xid(0, 48)
    found = sorted((e.index, e.code, e.kind) for e in client.events(3.0))
    assert found == [(0, 48, "xid"), (1, 79, "xid")]
    assert client.events(4.0) == []
    assert set(module.wait_timeouts) == {0}  # never a blocking wait


def test_an_xid_storm_is_read_in_bounded_polls() -> None:
    client, module = backend()
    for _ in range(1000):
        module.queue_xid(0, 94)
    first = client.events(1.0)
    assert 0 < len(first) < 1000
    total = len(first)
    while batch := client.events(2.0):
        total += len(batch)
    assert total == 1000


@pytest.mark.parametrize(
    "changes",
    [
        {"supported_events": 0x1},
        {"register_error": error("NVMLError_NotSupported")},
        {"register_error": error("NVMLError_Unknown")},
    ],
)
def test_a_card_without_xid_events_keeps_its_inventory(changes: dict[str, Any]) -> None:
    client, module = backend(gpu(**changes), gpu(uuid="GPU-2"))
    assert client.inventory(0).xid_events_supported is False
    assert client.inventory(1).xid_events_supported is True
    module.queue_xid(1, 31)
    assert [e.code for e in client.events(1.0)] == [31]


@pytest.mark.parametrize(
    ("processes", "expected"),
    [
        ([], []),
        (
            [(4242, 2 * 2**30, "python3")],
            [{"pid": 4242, "name": "python3", "used_memory_mib": 2048.0}],
        ),
        # Another container's process: no name, no memory figure; the pid is kept.
        ([(77, None, NOT_SUPPORTED)], [{"pid": 77, "name": "pid 77", "used_memory_mib": None}]),
    ],
)
def test_processes_for_preflight(processes: list[Any], expected: list[dict[str, Any]]) -> None:
    client, _ = backend(gpu(processes=processes))
    assert client.processes(0) == expected


def test_close_frees_the_event_set_and_shuts_down() -> None:
    client, module = backend()
    client.inventory(0)
    client.close()
    assert module.event_sets and all(s["freed"] for s in module.event_sets)
    assert module.called("nvmlShutdown") == 1 and not module.initialized


def test_read_only_no_setter_reset_or_clear_is_ever_called() -> None:
    """Use every method on several cards; the fake records each call by name."""
    client, module = backend(gpu(), gpu(fans=2, fan_speed=50, fan_rpm=1500, fan_target=50))
    client.driver_info()
    for i in range(client.device_count()):
        client.inventory(i)
        client.sample(i, 1.0)
    module.queue_xid(0, 79)
    client.events(2.0)
    client.close()
    names = {name for name, _ in module.calls}
    assert len(names) > 40
    assert not [n for n in names if n.startswith(FORBIDDEN)]


def test_the_fake_refuses_setters() -> None:
    """The guard above can fail: a setter call would be recorded and raise."""
    module = FakeNvml()
    with pytest.raises(AssertionError, match="setter"):
        module.nvmlDeviceSetPowerManagementLimit(None, 100)
    assert module.calls[-1][0] == "nvmlDeviceSetPowerManagementLimit"


def test_nvml_module_source_names_only_getters() -> None:
    used = set(re.findall(CALLS, NVML_SOURCE))
    assert "nvmlDeviceGetRemappedRows" in used and "nvmlEventSetWait" in used
    assert not [n for n in used if n.startswith(FORBIDDEN)]


def _binding_source() -> str:
    spec = importlib.util.find_spec("pynvml")  # locates the file without importing it
    if spec is None or spec.origin is None:
        pytest.skip("nvidia-ml-py is not installed")
    return Path(spec.origin).read_text(encoding="utf-8")


def test_names_used_exist_in_the_installed_binding() -> None:
    """Exact API names: every nvml* call of nvml.py and of the fake is a pynvml function."""
    source = _binding_source()
    defined = set(re.findall(r"^def (nvml\w+)\(", source, re.MULTILINE))
    used = set(re.findall(CALLS, NVML_SOURCE))
    faked = {n for n in dir(FakeNvml) if n.startswith("nvml") and n != "nvmlExceptionClass"}
    assert used - defined == set()
    assert faked - defined == set()
    assert used - faked == set()  # the fake covers every call nvml.py makes


def test_constants_and_error_codes_match_the_installed_binding() -> None:
    source = _binding_source()
    assigned = dict(re.findall(r"^(\w+)\s*=\s*(0x[0-9A-Fa-f]+|\d+)\b", source, re.MULTILINE))
    for name, value in fake.CONSTANTS.items():
        assert int(assigned[name], 0) == value, name
    codes = {n: int(v, 0) for n, v in assigned.items() if n.startswith("NVML_ERROR_")}
    for class_name, code in fake._ERRORS.items():
        error_name = re.sub(r"(?<!^)(?=[A-Z])", "_", class_name.removeprefix("NVMLError_")).upper()
        assert codes[f"NVML_ERROR_{error_name}"] == code, class_name
    # nvml.py's own copies of the enum values
    for bit, name in nvml_module.THROTTLE_BITS:
        camel = "".join(part.capitalize() for part in name.split("_"))
        key = f"nvmlClocksThrottleReason{camel}"
        if key in assigned:
            assert int(assigned[key], 0) == bit, name
    m, inv, r = nvml_module, nvml_inventory, nvml_reads
    copies = {
        "NVML_FI_DEV_MEMORY_TEMP": m._FI_MEMORY_TEMP,
        "NVML_TEMPERATURE_GPU": m._TEMP_GPU,
        "NVML_CLOCK_SM": r._CLOCK_SM,
        "NVML_CLOCK_MEM": r._CLOCK_MEM,
        "NVML_MEMORY_ERROR_TYPE_CORRECTED": r._CORRECTED,
        "NVML_MEMORY_ERROR_TYPE_UNCORRECTED": r._UNCORRECTED,
        "NVML_VOLATILE_ECC": r._VOLATILE,
        "NVML_AGGREGATE_ECC": r._AGGREGATE,
        "NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS": inv._RETIRED_SBE,
        "NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR": inv._RETIRED_DBE,
        "NVML_DEVICE_MIG_ENABLE": inv._MIG_ENABLE,
        "nvmlEventTypeXidCriticalError": m._EVENT_XID,
        "NVML_NVLINK_MAX_LINKS": m._NVLINK_MAX_LINKS,
    }
    for code, mode in inv.COMPUTE_MODES.items():
        copies[f"NVML_COMPUTEMODE_{mode.upper().replace('-', '_')}"] = code
    thresholds = dict(inv._THRESHOLDS)
    for kind, field in (
        ("SHUTDOWN", "shutdown"),
        ("SLOWDOWN", "slowdown"),
        ("MEM_MAX", "mem_max"),
        ("GPU_MAX", "gpu_max"),
    ):
        copies[f"NVML_TEMPERATURE_THRESHOLD_{kind}"] = thresholds[f"{field}_temp_c"]
    totals = dict(m._FI_NVLINK_TOTALS)
    copies["NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"] = totals["nvlink_crc_flit"]
    copies["NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL"] = totals["nvlink_crc_data"]
    copies["NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL"] = totals["nvlink_replay_errors"]
    copies["NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL"] = totals["nvlink_recovery_errors"]
    for name, value in copies.items():
        assert int(assigned[name], 0) == value, name


# -- one card, one field: failures stay where they happen --------------------------------------


@pytest.mark.parametrize(
    ("attr", "field"),
    [
        ("power_mw", "power_w"),
        ("utilization", "util_pct"),
        ("pcie_gen", "pcie_gen"),
        ("throttle", "throttle_reasons"),
        ("margin", "temp_margin_c"),
    ],
)
def test_one_failing_getter_drops_one_field_logged_once(
    attr: str, field: str, caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = backend(gpu(**{attr: error("NVMLError_Unknown")}))
    samples = [client.sample(0, float(t)) for t in range(3)]
    for s in samples:
        assert getattr(s, field) in (None, ())
        assert field in s.unsupported and s.failed == (field,)
        assert s.temp_c == 45 and s.sm_clock_mhz == 1980  # the rest of the reading is there
    warnings = [r for r in caplog.records if field in r.getMessage()]
    assert len(warnings) == 1 and "GPU 0" in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("attr", "field"),
    [("serial", "serial"), ("vbios", "vbios_version"), ("remapped_rows", "remapped_rows_pending")],
)
def test_one_failing_inventory_getter_drops_one_field(attr: str, field: str) -> None:
    client, _ = backend(gpu(**{attr: error("NVMLError_Unknown")}))
    inv = client.inventory(0)
    assert getattr(inv, field) is None and field in inv.failed
    assert inv.uuid and inv.memory_total_mib == 81559


@pytest.mark.parametrize("name", ["NVMLError_GpuIsLost", "NVMLError_ResetRequired"])
def test_a_card_that_is_gone_fails_the_whole_reading(name: str) -> None:
    client, _ = backend(gpu(power_mw=error(name)))
    with pytest.raises(TelemetryError, match="NVML sample"):
        client.sample(0, 1.0)


# -- finding a run's card by identity ----------------------------------------------------------

UUIDS = [f"GPU-{i}1111111-2222-3333-4444-555555555555" for i in range(4)]
BUSES = [f"00000000:{0x18 + 0x10 * i:02x}:00.0" for i in range(4)]


def node(**broken: Any) -> list[fake.FakeGpu]:
    """Four cards; ``broken`` maps an NVML index (as "gpuN") to a handle error."""
    return [
        gpu(uuid=UUIDS[i], bus_id=BUSES[i], handle_error=broken.get(f"gpu{i}")) for i in range(4)
    ]


@pytest.mark.parametrize(
    ("uuid", "bus", "expected"),
    [
        (UUIDS[2], BUSES[2], 2),
        (UUIDS[3], None, 3),
        # CUDA reports a MIG slice's UUID; the PCI bus id still finds the card.
        ("MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", BUSES[1], 1),
        (None, "0000:28:00.0", 1),  # a 4-digit domain names the same card
        (None, None, None),
    ],
)
def test_find_index_by_uuid_then_bus_id(uuid: str | None, bus: str | None, expected: Any) -> None:
    client, _ = backend(*node(gpu0=error("NVMLError_GpuIsLost")))
    assert client.find_index(uuid, bus) == expected
    if expected is not None:
        assert client.sample(expected, 1.0).temp_c == 45


@pytest.mark.parametrize(
    "handle_error", ["NVMLError_GpuIsLost", "NVMLError_InsufficientPower", "NVMLError_Unknown"]
)
def test_an_unreachable_card_fails_only_its_own_lookup(handle_error: str) -> None:
    client, module = backend(*node(gpu1=error(handle_error)))
    with pytest.raises(TelemetryError, match=f"no NVML device for UUID {UUIDS[1]}"):
        client.find_index(UUIDS[1], BUSES[1])
    assert [client.find_index(UUIDS[i], BUSES[i]) for i in (0, 2, 3)] == [0, 2, 3]
    assert module.called("nvmlDeviceGetHandleByIndex") == 0  # never walked the node by position
    assert client.inventory(2).uuid == UUIDS[2]


# -- temperature: TemperatureV first, the deprecated call after --------------------------------


@pytest.mark.parametrize(
    ("changes", "missing", "temp_c", "calls_v", "calls_old", "failed"),
    [
        # V answers: the deprecated call is never made.
        ({"temp_v": 61, "temp": NOT_SUPPORTED}, (), 61, 3, 0, ()),
        # The binding has no V (older nvidia-ml-py): the deprecated call, every time.
        ({}, ("nvmlDeviceGetTemperatureV",), 45, 0, 3, ()),
        # The driver does not support V: tried once, then the deprecated call only.
        ({"temp_v": NOT_SUPPORTED}, (), 45, 1, 3, ()),
        ({"temp_v": error("NVMLError_FunctionNotFound")}, (), 45, 1, 3, ()),
        ({"temp_v": error("NVMLError_ArgumentVersionMismatch")}, (), 45, 1, 3, ()),
        # A passing fault in V: fall back this time, try V again next time.
        ({"temp_v": error("NVMLError_Unknown")}, (), 45, 3, 3, ()),
        # Both fail: no temperature, said in the record and in the log.
        ({"temp_v": NOT_SUPPORTED, "temp": NOT_SUPPORTED}, (), None, 1, 3, ()),
        ({"temp_v": error("NVMLError_Unknown"), "temp": error("NVMLError_Unknown")}, (), None,
         3, 3, ("temp_c",)),
        ({"temp": NOT_SUPPORTED}, ("nvmlDeviceGetTemperatureV",), None, 0, 3, ()),
    ],
)  # fmt: skip
def test_temperature_v_first_then_the_deprecated_call(
    changes: dict[str, Any],
    missing: tuple[str, ...],
    temp_c: int | None,
    calls_v: int,
    calls_old: int,
    failed: tuple[str, ...],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, module = backend(gpu(**changes), missing=missing)
    readings = [client.sample(0, float(t)) for t in range(3)]
    assert [s.temp_c for s in readings] == [temp_c] * 3
    assert module.called("nvmlDeviceGetTemperatureV") == calls_v
    assert module.called("nvmlDeviceGetTemperature") == calls_old
    assert readings[-1].failed == failed
    blind = [r for r in caplog.records if "thermal guard cannot watch" in r.getMessage()]
    if temp_c is None:
        assert "temp_c" in readings[-1].unsupported
        assert len(blind) == 1  # once per card, not once per sample
    else:
        assert "temp_c" not in readings[-1].unsupported and not blind


# -- modes and placement ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"mig_mode": (0, 0)}, "mig_mode", "disabled"),
        ({"mig_mode": (1, 1)}, "mig_mode", "enabled"),
        ({"mig_mode": (1, 0)}, "mig_mode", "enabled"),  # disabling waits for a reset
        ({"mig_mode": (0, 1)}, "mig_mode", "disabled"),  # enabling waits for a reset
        ({"mig_mode": NOT_SUPPORTED}, "mig_mode", None),  # a card without MIG
        ({"compute_mode": 0}, "compute_mode", "default"),
        ({"compute_mode": 2}, "compute_mode", "prohibited"),
        ({"compute_mode": 3}, "compute_mode", "exclusive-process"),
        ({"compute_mode": NOT_SUPPORTED}, "compute_mode", None),
        ({"numa_node": 1}, "numa_node", 1),
        ({"numa_node": -1}, "numa_node", None),
        ({"numa_node": NOT_SUPPORTED}, "numa_node", None),
        ({"numa_node": error("NVMLError_Unknown")}, "numa_node", None),
    ],
)
def test_modes_and_numa_node(changes: dict[str, Any], field: str, expected: Any) -> None:
    client, _ = backend(gpu(**changes))
    inv = client.inventory(0)
    assert getattr(inv, field) == expected
    assert (field in inv.unsupported) == (expected is None)


def test_numa_node_where_the_binding_has_no_call() -> None:
    client, _ = backend(missing=("nvmlDeviceGetNumaNodeId",))
    inv = client.inventory(0)
    assert inv.numa_node is None and "numa_node" in inv.unsupported


@pytest.mark.parametrize(
    ("cpu_count", "words", "size", "cpus"),
    [
        (16, [0xFFFF], 1, list(range(16))),
        (2, [0b101], 1, [0, 2]),
        (64, [1 << 63], 1, [63]),
        # 130 CPUs need three 64-bit words; CPU 64 is bit 0 of the second.
        (130, [0, 0b11, 0b10], 3, [64, 65, 129]),
        (128, [0, 1 << 5], 2, [69]),
        (16, [0], 1, None),  # an empty mask places nothing: not reported
        (16, NOT_SUPPORTED, 1, None),
        (16, error("NVMLError_Unknown"), 1, None),
    ],
)
def test_cpu_affinity(
    cpu_count: int, words: Any, size: int, cpus: list[int] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nvml_inventory.os, "cpu_count", lambda: cpu_count)
    client, module = backend(gpu(cpu_affinity=words))
    record = client.inventory(0).to_dict()
    assert record["cpu_affinity"] == cpus
    asked = [args for name, args in module.calls if name == "nvmlDeviceGetCpuAffinity"]
    assert [a[1] for a in asked] == [size]  # ceil(cpu_count / 64) words
    assert ("cpu_affinity" in record["unsupported"]) == (cpus is None)


def test_the_fake_lacks_what_it_is_told_to() -> None:
    """The missing-function switch the tests above rely on can fail."""
    assert hasattr(FakeNvml(), "nvmlDeviceGetTemperatureV")
    assert not hasattr(
        FakeNvml(missing=("nvmlDeviceGetTemperatureV",)), "nvmlDeviceGetTemperatureV"
    )
