"""burnin.smi_dump on real public nvidia-smi dumps (tests/data/dumps), bad input and fuzzing."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burnin.errors import DumpError
from burnin.smi_dump import parse_dump, parse_dump_state
from burnin.telemetry.base import Inventory

DUMPS = Path(__file__).parent / "data" / "dumps"
BAD = DUMPS / "bad"
FIXTURES = sorted(p for p in DUMPS.iterdir() if p.suffix in (".xml", ".txt"))

# file, GPU count, then GPU 0: name, pci_device_id, memory_total_mib, serial, other expected fields.
# Every value below was read off the fixture's text by hand.
CASES = [
    (
        "v100-sxm3-32gb-retired-pages_r410.xml",
        1,
        "Tesla V100-SXM3-32GB",
        "1db8",
        32480,
        "0323218034307",
        {
            "ecc_aggregate_sbe": 291,
            "ecc_aggregate_dbe": 7627,
            "retired_pages_sbe": 0,
            "retired_pages_dbe": 2,
            "retired_pages_pending": True,
            "driver_version": "410.104",
            "cuda_driver_version": "10.0",
            "power_limit_default_w": 350.0,
            "max_sm_clock_mhz": 1597,
            "slowdown_temp_c": 89.0,
            "shutdown_temp_c": 92.0,
            "board_part_number": "692-2G504-0200-000",  # printed as <gpu_part_number> (R410)
            "gpu_part_number": None,
            "ecc_volatile_sbe": 1,
            "ecc_volatile_dbe": 1,
            "pcie_replay_count": 0,
            "pcie_current_gen": 3,
            "pcie_current_width": 16,
            "processes": (),
            "remap_banks_none": None,  # no row remapper before Ampere
        },
    ),
    (
        "tesla-t4_r515.xml",
        1,
        "Tesla T4",
        "1eb8",
        15360,
        "0000000000000",
        {
            "retired_pages_dbe": 0,
            "retired_pages_pending": False,
            "ecc_aggregate_dbe": 0,
            "power_limit_min_w": 60.0,
            "power_limit_max_w": 70.0,
            "pcie_max_width": 16,
            "pci_bus_id": "00000000:00:1E.0",
            "ecc_volatile_sbe": 0,
            "ecc_volatile_dbe": 0,
            "pcie_current_gen": 3,
            "pcie_current_width": 8,  # x8 of x16 (AWS)
            "processes": ("/usr/lib/xorg/Xorg", "python"),
            "remap_banks_max": None,
        },
    ),
    (
        "a100-sxm4-80gb-mig_r535.xml",
        1,
        "NVIDIA A100-SXM4-80GB",
        "20b2",
        81920,
        "1650522003820",
        {
            "ecc_aggregate_sbe": 0,
            "ecc_aggregate_dbe": 0,
            "retired_pages_dbe": None,
            "power_limit_enforced_w": 500.0,
            "pcie_max_gen": 4,
            "pci_subsystem_id": "147f10de",
            "inforom_image_version": "G506.0212.00.01",
            "gpu_part_number": "20B2-895-A1",
            "board_part_number": "692-2G506-0212-002",
            "ecc_volatile_dbe": 0,
            "pcie_system_max_gen": 4,
            "pcie_current_gen": 4,
            "pcie_current_width": 16,
            "pcie_replay_count": 0,
            "processes": (),  # <processes />
            "remap_banks_max": None,  # <remapped_rows>N/A</remapped_rows>
        },
    ),
    (
        "geforce-rtx-2080-x2_r590.xml",
        2,
        "NVIDIA GeForce RTX 2080",
        "1e87",
        8192,
        None,
        {
            "power_limit_default_w": 215.0,
            "power_limit_min_w": 105.0,
            "power_limit_max_w": 240.0,
            "max_mem_clock_mhz": 7000,
            "ecc_enabled": None,
            "driver_version": "590.44.01",
            "cuda_driver_version": "13.1",
            "gpu_part_number": "1E87-400-A1",
            "board_part_number": None,
            "ecc_volatile_sbe": None,
            "pcie_system_max_gen": 3,
            "pcie_current_gen": 1,  # idle link downshifted
            "pcie_current_width": 8,
            "pcie_replay_count": 0,
            "processes": (),
        },
    ),
    (
        "rtx-pro-6000-blackwell-maxq_r590.xml",
        1,
        "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition",
        "2bb4",
        97887,
        "0123456789012",
        {
            "pcie_max_gen": 5,  # Device Max 5, not the Gen4 host's Max
            "remapped_rows_correctable": 0,
            "remapped_rows_uncorrectable": 0,
            "remapped_rows_pending": False,
            "remapped_rows_failure": False,
            "ecc_enabled": False,
            "max_sm_clock_mhz": 3090,
            "slowdown_temp_c": None,  # only T.Limit margins in this dump
            "pcie_system_max_gen": 4,  # <max_link_gen>: card and Gen4 slot together
            "pcie_system_max_width": 16,
            "pcie_current_gen": 1,
            "pcie_current_width": 16,
            "gpu_part_number": "2BB4-865-A1",
            "remap_banks_max": 512,
            "remap_banks_high": 0,
            "remap_banks_partial": 0,
            "remap_banks_low": 0,
            "remap_banks_none": 0,
            "ecc_volatile_dbe": None,
            "processes": ("/root/src/llama.cpp/build/bin/llama-server",),
        },
    ),
    (
        "geforce-gtx-1070-x2-mining_r384.xml",
        2,
        "GeForce GTX 1070",
        "1b81",
        8112,
        None,
        {
            "power_limit_default_w": 180.0,
            "power_limit_max_w": 200.0,
            "pci_subsystem_id": "37031458",
            "board_part_number": None,
            "vbios_version": "86.04.50.00.AB",
            "gpu_part_number": None,
            "ecc_volatile_sbe": None,
            "pcie_current_gen": 3,
            "pcie_current_width": 1,  # x1 riser
            "pcie_replay_count": 0,
            "processes": ("/usr/lib/xorg/Xorg", "/usr/bin/gnome-shell", "./ethminer"),
        },
    ),
    (
        "h100-nvl-x2_r550.txt",
        2,
        "NVIDIA H100 NVL",
        "2321",
        95830,
        "1650724004565",
        {
            "pcie_max_gen": 5,
            "power_limit_max_w": 400.0,
            "ecc_aggregate_dbe": 0,
            "remapped_rows_uncorrectable": 0,
            "board_part_number": "900-21010-0020-000",
            "shutdown_temp_c": None,
            "gpu_part_number": "2321-886-A1",
            "ecc_volatile_sbe": 0,
            "ecc_volatile_dbe": 0,
            "remap_banks_max": 3072,
            "remap_banks_none": 0,
            "pcie_system_max_gen": 5,
            "pcie_current_gen": 5,
            "pcie_current_width": 16,
            "pcie_replay_count": 0,
            "processes": (),  # "Processes : None"
        },
    ),
    (
        "a40-remapped-rows_r550.txt",
        1,
        "NVIDIA A40",
        "2235",
        46068,
        "1322221017584",
        {
            "ecc_aggregate_sbe": 10,
            "ecc_aggregate_dbe": 0,
            "remapped_rows_correctable": 2,
            "remapped_rows_uncorrectable": 0,
            "remapped_rows_pending": False,
            "remapped_rows_failure": False,
            "retired_pages_dbe": None,
            "slowdown_temp_c": 95.0,
            "shutdown_temp_c": 98.0,
            "gpu_part_number": "2235-895-A1",
            "ecc_volatile_sbe": 0,
            "ecc_volatile_dbe": 0,
            "remap_banks_max": 192,
            "remap_banks_high": 0,
            "remap_banks_partial": 0,
            "remap_banks_low": 0,
            "remap_banks_none": 0,
            "pcie_system_max_gen": 4,
            "pcie_current_gen": 1,
            "pcie_current_width": 16,
            "processes": (),
        },
    ),
    (
        "rtx-a6000-windows_r537.txt",
        1,
        "NVIDIA RTX A6000",
        "2230",
        49140,
        "1651022017098",
        {
            "ecc_enabled": False,
            "ecc_aggregate_sbe": None,
            "pcie_max_gen": 4,  # Device Max 4 although Host Max is 5
            "max_sm_clock_mhz": 2100,
            "driver_version": "537.99",
            "vbios_version": "94.02.5c.00.02",
            "pcie_system_max_gen": 4,  # "Max" 4: Host Max 5, Device Max 4
            "pcie_current_gen": 4,
            "pcie_current_width": 16,
            "pcie_replay_count": 0,
            "gpu_part_number": "2230-875-A1",
            "ecc_volatile_dbe": None,
            "remap_banks_max": 192,
            "remap_banks_none": 0,
            "processes": (),
        },
    ),
    (
        "v100-sxm2-32gb-power9_r418.txt",
        1,
        "Tesla V100-SXM2-32GB",
        "1db5",
        32480,
        "0561519020531",
        {
            "retired_pages_sbe": 0,
            "retired_pages_dbe": 0,
            "retired_pages_pending": False,
            "ecc_aggregate_sbe": 0,
            "power_limit_enforced_w": 300.0,
            "power_limit_min_w": 150.0,
            "pci_bus_id": "00000004:04:00.0",
            "board_part_number": "900-2G503-0430-000",
            "gpu_part_number": None,
            "ecc_volatile_sbe": 0,
            "ecc_volatile_dbe": 0,
            "pcie_system_max_gen": 3,
            "pcie_current_gen": 3,
            "pcie_current_width": 2,  # x2 of x16
            "pcie_replay_count": 0,
            "processes": (),
        },
    ),
    (
        "geforce-gtx-titan-black_r331.txt",
        1,
        "GeForce GTX TITAN Black",
        "100c",
        6143,
        None,
        {
            "pci_subsystem_id": "106610de",
            "power_limit_default_w": None,
            "pcie_max_gen": None,
            "driver_version": "331.79",
            "cuda_driver_version": None,
            "pcie_current_gen": None,
            "pcie_replay_count": None,  # absent from R331
            "ecc_volatile_dbe": None,
            "processes": None,  # "Compute Processes : N/A"
        },
    ),
]
CASE_IDS = [c[0] for c in CASES]


def test_table_covers_the_first_fixtures() -> None:
    assert set(CASE_IDS) <= {p.name for p in FIXTURES}
    assert len(CASE_IDS) >= 10
    assert {p.suffix for p in FIXTURES} == {".xml", ".txt"}


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_every_fixture_parses_with_state(path: Path) -> None:
    """Every real or edited dump in the folder parses: one Inventory and state per GPU."""
    parsed = parse_dump_state(path)
    assert parsed and [inv.index for inv, _ in parsed] == list(range(len(parsed)))
    for inv, state in parsed:
        assert inv.name or "name" in dict(state.hidden)
        assert all(getattr(inv, name) is None for name in inv.unsupported)


@pytest.mark.parametrize(
    ("filename", "count", "name", "device_id", "memory", "serial", "extra"), CASES, ids=CASE_IDS
)
def test_fixture_values(
    filename: str,
    count: int,
    name: str,
    device_id: str,
    memory: int,
    serial: str | None,
    extra: dict,
) -> None:
    gpus = parse_dump(DUMPS / filename)
    assert len(gpus) == count
    assert [g.index for g in gpus] == list(range(count))
    gpu = gpus[0]
    assert (gpu.name, gpu.pci_device_id, gpu.memory_total_mib, gpu.serial) == (
        name,
        device_id,
        memory,
        serial,
    )
    for key, value in extra.items():
        assert getattr(gpu, key) == value, key
    for g in gpus:
        assert g.name == name and g.pci_device_id == device_id
        for missing in g.unsupported:
            assert getattr(g, missing) is None, missing  # never a 0 for "could not read"


def test_multi_gpu_dumps_keep_file_order() -> None:
    gtx = parse_dump(DUMPS / "geforce-gtx-1070-x2-mining_r384.xml")
    assert [g.pci_bus_id for g in gtx] == ["00000000:01:00.0", "00000000:03:00.0"]
    assert [g.memory_total_mib for g in gtx] == [8112, 8114]
    assert [g.pcie_max_gen for g in gtx] == [3, 2]
    assert [(g.pcie_current_gen, g.pcie_current_width) for g in gtx] == [(3, 1), (2, 1)]
    assert gtx[1].processes == ("./ethminer",)  # the second card's own list, not the first's
    h100 = parse_dump(DUMPS / "h100-nvl-x2_r550.txt")
    assert [g.serial for g in h100] == ["1650724004565", "1650924002357"]
    assert h100[1].uuid == "GPU-db6d02a2-1413-eccf-8a17-d99eac29d365"
    rtx = parse_dump(DUMPS / "geforce-rtx-2080-x2_r590.xml")
    assert [g.pci_bus_id for g in rtx] == ["00000000:01:00.0", "00000000:02:00.0"]


def test_na_fields_are_none_and_listed() -> None:
    (titan,) = parse_dump(DUMPS / "geforce-gtx-titan-black_r331.txt")
    for key in ("serial", "inforom_image_version", "power_limit_max_w", "max_sm_clock_mhz"):
        assert getattr(titan, key) is None and key in titan.unsupported
    assert "ecc_aggregate_dbe" in titan.unsupported and titan.ecc_aggregate_dbe is None
    # absent from the R331 dump altogether: None but not "unsupported"
    assert titan.cuda_driver_version is None and "cuda_driver_version" not in titan.unsupported
    (a100,) = parse_dump(DUMPS / "a100-sxm4-80gb-mig_r535.xml")
    assert "retired_pages_pending" in a100.unsupported
    # <remapped_rows>N/A</remapped_rows> collapses every remapped-rows field
    for key in ("remapped_rows_correctable", "remapped_rows_pending", "remapped_rows_failure"):
        assert getattr(a100, key) is None and key in a100.unsupported
    assert a100.memory_total_mib == 81920  # not a MIG slice's fb_memory_usage
    assert "fan_count" in a100.unsupported  # passive card: Fan Speed N/A
    for key in ("remap_banks_max", "remap_banks_none"):
        assert getattr(a100, key) is None and key in a100.unsupported
    for key in ("ecc_volatile_sbe", "ecc_volatile_dbe", "pcie_current_gen", "processes"):
        assert getattr(titan, key) is None and key in titan.unsupported, key
    assert "pcie_replay_count" not in titan.unsupported  # absent from R331, not N/A
    (t4,) = parse_dump(DUMPS / "tesla-t4_r515.xml")
    # no <board_part_number> element: <gpu_part_number> is the board's, the chip's is unknown
    assert t4.gpu_part_number is None and "gpu_part_number" not in t4.unsupported
    (a40,) = parse_dump(DUMPS / "a40-remapped-rows_r550.txt")
    assert a40.fan_count is None and "fan_count" not in a40.unsupported
    (h100, _) = parse_dump(DUMPS / "h100-nvl-x2_r550.txt")
    assert "slowdown_temp_c" not in h100.unsupported
    assert list(h100.unsupported) == sorted(
        h100.unsupported, key=[f.name for f in dataclasses.fields(Inventory)].index
    )


MINI = """
==============NVSMI LOG==============

Driver Version                            : 535.54.03
CUDA Version                              : 12.2

Attached GPUs                             : 1
GPU 00000000:01:00.0
    Product Name                          : NVIDIA A100-SXM4-40GB
    Serial Number                         : {serial}
    PCI
        Device Id                         : 0x20B010DE
    GPU Power Readings
        Max Power Limit                   : {power}
    Remapped Rows
        Correctable Error                 : 0
        Uncorrectable Error               : 3
        Pending                           : Yes
        Remapping Failure Occurred        : Yes
"""


@pytest.mark.parametrize(
    "token",
    [
        "N/A",
        "[N/A]",
        "Not Supported",
        "[Not Supported]",
        "Unknown Error",
        "[Unknown Error]",
        "ERR!",
        "Requested functionality has been deprecated",
        "Insufficient Permissions",
        "[Insufficient Permissions]",
        "GPU is lost",
    ],
)
def test_unavailable_tokens(tmp_path: Path, token: str) -> None:
    path = tmp_path / "mini.txt"
    path.write_text(MINI.format(serial=token, power=token))
    (gpu,) = parse_dump(path)
    assert gpu.serial is None and gpu.power_limit_max_w is None
    assert {"serial", "power_limit_max_w"} <= set(gpu.unsupported)
    assert gpu.pci_device_id == "20b0"
    assert (gpu.remapped_rows_uncorrectable, gpu.remapped_rows_pending) == (3, True)
    assert gpu.remapped_rows_failure is True


def test_untrusted_strings_lose_control_characters(tmp_path: Path) -> None:
    path = tmp_path / "seller.txt"
    path.write_text(MINI.format(serial="16505\x1b[2J\x0722\u202e003820\x7f", power="400.00 W"))
    (gpu,) = parse_dump(path)
    assert gpu.serial == "16505[2J22003820"
    assert gpu.power_limit_max_w == 400.0


PROCS = """
==============NVSMI LOG==============

GPU 00000000:01:00.0
    Product Name                          : NVIDIA H100 80GB HBM3
    Board Part Number                     : 692-2G520-0200-000
    GPU Part Number                       : {chip}
    PCI
        GPU Link Info
            PCIe Generation
                Max                       : 4
                Current                   : {gen}
                Device Current            : 5
                Device Max                : 5
                Host Max                  : 4
            Link Width
                Max                       : 16x
                Current                   : {width}
        Replays Since Reset               : {replays}
    Remapped Rows
        Correctable Error                 : 0
        Bank Remap Availability Histogram
            Max                           : {banks}
            None                          : 2 bank(s)
    Processes
        GPU instance ID                   : N/A
        Compute instance ID               : N/A
        Process ID                        : 4242
            Type                          : C
            Name                          : ./miner\x1b[31m\u202e --pool x
            Used GPU Memory               : 100 MiB
        Process ID                        : 17
            Type                          : C
            Name                          : N/A
            Used GPU Memory               : 100 MiB
        Process ID                        : 99
            Type                          : G
            Name                          : /usr/bin/python3
"""


@pytest.mark.parametrize(
    ("fill", "expected", "unsupported"),
    [
        (
            {
                "chip": "2330-885-A1",
                "gen": "2",
                "width": "8x",
                "replays": "12",
                "banks": "638 bank(s)",
            },
            {
                "gpu_part_number": "2330-885-A1",
                "pcie_max_gen": 5,
                "pcie_system_max_gen": 4,
                "pcie_current_gen": 2,
                "pcie_current_width": 8,
                "pcie_replay_count": 12,
                "remap_banks_max": 638,
                "remap_banks_none": 2,
                "remap_banks_low": None,  # not printed: None and not "unsupported"
            },
            set(),
        ),
        (
            {"chip": "N/A", "gen": "N/A", "width": "[N/A]", "replays": "N/A", "banks": "N/A"},
            {"gpu_part_number": None, "pcie_current_gen": 5, "remap_banks_max": None},
            {"gpu_part_number", "pcie_current_width", "pcie_replay_count", "remap_banks_max"},
        ),
    ],
)
def test_link_part_number_histogram_and_processes(
    tmp_path: Path, fill: dict, expected: dict, unsupported: set
) -> None:
    path = tmp_path / "h100.txt"
    path.write_text(PROCS.format(**fill))
    (gpu,) = parse_dump(path)
    for key, value in expected.items():
        assert getattr(gpu, key) == value, key
    assert set(gpu.unsupported) == unsupported
    # control and bidi characters dropped; an unnamed process keeps its PID
    assert gpu.processes == ("./miner[31m --pool x", "pid 17", "/usr/bin/python3")


@pytest.mark.parametrize(
    ("section", "processes", "unsupported"),
    [
        ("    Processes                             : None\n", (), False),
        ("    Compute Processes                     : N/A\n", None, True),
        ("    Processes                             : [Not Supported]\n", None, True),
        ("", None, False),
    ],
)
def test_process_section_states(
    tmp_path: Path, section: str, processes: tuple | None, unsupported: bool
) -> None:
    path = tmp_path / "p.txt"
    path.write_text("GPU 00000000:01:00.0\n    Product Name : Tesla T4\n" + section)
    (gpu,) = parse_dump(path)
    assert gpu.processes == processes
    assert ("processes" in gpu.unsupported) is unsupported


def test_xml_process_names_are_cleaned_and_capped(tmp_path: Path) -> None:
    # XML 1.0 forbids most C0 controls even as references; tab, C1 (U+009B = CSI) and bidi pass
    name = "/opt/\t&#x9b;31m&#x202e;x" + "a" * 400
    path = tmp_path / "p.xml"
    path.write_text(
        "<nvidia_smi_log><gpu id='00000000:01:00.0'><product_name>Tesla T4</product_name>"
        f"<processes><process_info><pid>1</pid><process_name>{name}</process_name>"
        "</process_info><process_info><pid>2</pid><process_name />"
        "</process_info></processes></gpu></nvidia_smi_log>"
    )
    (gpu,) = parse_dump(path)
    first, second = gpu.processes
    assert first.startswith("/opt/31mxaaa") and len(first) == 256
    assert second == "pid 2"


def test_bank_count_with_a_foreign_unit_is_named_not_fatal(tmp_path: Path) -> None:
    fill = {"chip": "x", "gen": "1", "width": "16x", "replays": "0", "banks": "7 rows"}
    path = tmp_path / "h.txt"
    text = PROCS.format(**fill)
    path.write_text(text)
    lineno = next(i for i, ln in enumerate(text.split("\n"), 1) if "7 rows" in ln)
    ((gpu, state),) = parse_dump_state(path)
    assert gpu.remap_banks_max is None
    assert dict(state.hidden)["remap_banks_max"] == f"line {lineno}: 7 rows"


def _variant(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_windows_utf16_crlf_and_pasted_markdown_parse_the_same(tmp_path: Path) -> None:
    original = DUMPS / "rtx-a6000-windows_r537.txt"
    text = original.read_text()
    expected = parse_dump(original)
    utf16 = _variant(tmp_path, "a.txt", text.replace("\n", "\r\n").encode("utf-16"))
    pasted = _variant(tmp_path, "b.md", f"$ nvidia-smi -q\n```{text}```\nthanks!\n".encode())
    assert parse_dump(utf16) == expected
    assert parse_dump(pasted) == expected
    xml = (DUMPS / "tesla-t4_r515.xml").read_bytes()
    fenced = _variant(tmp_path, "c.xml", b"WARNING: something\n" + xml + b"\n```\n")
    assert parse_dump(fenced) == parse_dump(DUMPS / "tesla-t4_r515.xml")


def test_corrupt_inforom_warning_marks_that_gpu(tmp_path: Path) -> None:
    text = (DUMPS / "h100-nvl-x2_r550.txt").read_text()
    path = tmp_path / "h100.txt"
    path.write_text("WARNING: infoROM is corrupted at gpu 0000:AE:00.0\n" + text)
    first, second = parse_dump(path)
    assert (first.inforom_valid, second.inforom_valid) == (None, False)


@pytest.mark.parametrize(
    ("filename", "fragment"),
    [
        ("truncated-a100.xml", "malformed XML"),
        ("not-a-dump.txt", "not an nvidia-smi dump"),
        ("lshw-display.xml", "root element <list>, expected <nvidia_smi_log>"),
        ("zero-gpus.xml", "lists no GPUs"),
    ],
)
def test_bad_files_raise_dump_error_naming_the_file(filename: str, fragment: str) -> None:
    with pytest.raises(DumpError) as info:
        parse_dump(BAD / filename)
    assert filename in str(info.value) and fragment in str(info.value)


@pytest.mark.parametrize(
    ("name", "data", "fragment"),
    [
        ("empty.txt", b"", "empty file"),
        ("blank.txt", b" \n\t\n", "empty file"),
        ("random.bin", random.Random(7).randbytes(4096), "not a text file"),
        ("nul.txt", b"GPU 0000:01:00.0\x00\x00", "binary file"),
        ("seller.xml", b"<!DOCTYPE html><html><body>A100</body></html>", "root element <html>"),
        (
            "bomb.xml",
            b'<?xml version="1.0"?><!DOCTYPE nvidia_smi_log [<!ENTITY a "aaaa">]>'
            b"<nvidia_smi_log><gpu>&a;</gpu></nvidia_smi_log>",
            "entity",
        ),
    ],
)
def test_unreadable_input_raises_dump_error(
    tmp_path: Path, name: str, data: bytes, fragment: str
) -> None:
    with pytest.raises(DumpError) as info:
        parse_dump(_variant(tmp_path, name, data))
    assert name in str(info.value) and fragment in str(info.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    for path in (tmp_path / "nope.txt", tmp_path):
        with pytest.raises(DumpError, match="cannot read"):
            parse_dump(path)


# A value edited or hidden in one field: that field is None, the state names it with its line,
# and everything else in the dump is still read.
@pytest.mark.parametrize(
    ("fixture", "key", "value", "edited", "field"),
    [
        ("a40-remapped-rows_r550.txt", "Total", "46068 MiB", "lots MiB", "memory_total_mib"),
        ("a40-remapped-rows_r550.txt", "Total", "46068 MiB", "[REDACTED]", "memory_total_mib"),
        ("a40-remapped-rows_r550.txt", "Device Id", "0x223510DE", "[REDACTED]", "pci_device_id"),
        ("a40-remapped-rows_r550.txt", "Device Id", "0x223510DE", "0xZZZZ", "pci_device_id"),
        ("a40-remapped-rows_r550.txt", "Serial Number", "1322221017584", "XXXXXXXX", "serial"),
        ("a40-remapped-rows_r550.txt", "Pending  ", "No", "maybe", "remapped_rows_pending"),
        (
            "h100-nvl-x2_r550.txt",
            "Default Power Limit",
            "310.00 W",
            "*****",
            "power_limit_default_w",
        ),
        ("tesla-t4_r515.xml", "<serial>", "0000000000000", "[REDACTED]", "serial"),
    ],
)
def test_a_hidden_or_edited_value_is_named_not_fatal(
    tmp_path: Path, fixture: str, key: str, value: str, edited: str, field: str
) -> None:
    lines = (DUMPS / fixture).read_text().split("\n")
    lineno = next(i for i, ln in enumerate(lines, 1) if key in ln and value in ln)
    lines[lineno - 1] = lines[lineno - 1].replace(value, edited)
    path = _variant(tmp_path, "dump" + Path(fixture).suffix, "\n".join(lines).encode())
    (gpu, state), *_ = parse_dump_state(path)
    assert getattr(gpu, field) is None
    where = f"line {lineno}: " if fixture.endswith(".txt") else ""
    assert dict(state.hidden)[field] == where + edited
    assert gpu.name == parse_dump(DUMPS / fixture)[0].name


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parses_or_dump_error(path: Path) -> None:
    try:
        gpus = parse_dump(path)
    except DumpError as exc:
        assert str(path) in str(exc)
        return
    assert gpus and [g.index for g in gpus] == list(range(len(gpus)))
    for gpu in gpus:
        assert all(getattr(gpu, name) is None for name in gpu.unsupported)


@pytest.mark.slow
@FUZZ
@given(data=st.one_of(st.binary(max_size=2048), st.text(max_size=2048).map(str.encode)))
def test_fuzz_random_input(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "random.dump"
    path.write_bytes(data)
    _parses_or_dump_error(path)


@pytest.mark.slow
@FUZZ
@given(fixture=st.sampled_from(FIXTURES), data=st.data())
def test_fuzz_mutated_fixtures(
    tmp_path_factory: pytest.TempPathFactory, fixture: Path, data: st.DataObject
) -> None:
    raw = fixture.read_bytes()
    mode = data.draw(st.sampled_from(["truncate", "delete", "both", "garble"]))
    if mode in ("delete", "both", "garble"):
        lines = raw.split(b"\n")
        picks = data.draw(st.sets(st.integers(0, len(lines) - 1), max_size=25))
        if mode == "garble":
            junk = data.draw(st.binary(max_size=40))
            lines = [junk if i in picks else ln for i, ln in enumerate(lines)]
        else:
            lines = [ln for i, ln in enumerate(lines) if i not in picks]
        raw = b"\n".join(lines)
    if mode in ("truncate", "both"):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    path = tmp_path_factory.mktemp("mutant") / fixture.name
    path.write_bytes(raw)
    _parses_or_dump_error(path)
