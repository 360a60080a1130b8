"""Tests for burnin.skus: the packaged SKU table, its loader's errors and card identification."""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

import pytest

from burnin.errors import ConfigError
from burnin.skus import (
    DTYPES,
    Sku,
    get_sku,
    load_skus,
    normalize_pci_device_id,
    resolve,
    sku_for_name,
    skus_for_pci_id,
)
from burnin.telemetry.base import Inventory

# docs/contracts.md "Simulated fleets", in file order.
SKU_KEYS = [
    "V100-SXM2-16GB",
    "V100-SXM2-32GB",
    "V100-PCIE-16GB",
    "V100-PCIE-32GB",
    "A100-SXM4-40GB",
    "A100-SXM4-80GB",
    "A100-PCIE-40GB",
    "A100-PCIE-80GB",
    "H100-SXM5-80GB",
    "H100-PCIE-80GB",
    "H100-NVL-94GB",
    "H200-SXM-141GB",
    "H200-NVL-141GB",
    "L40S-48GB",
    "A10-24GB",
    "L4-24GB",
    "RTX-4090-24GB",
    "RTX-3090-24GB",
]

NUMERIC_FIELDS = [
    "sm_count",
    "memory_gib_nominal",
    "memory_total_mib",
    "peak_membw_gbps",
    "tdp_w",
    "dcgm_target_power_w",
    "pcie_gen",
    "pcie_width",
    "nvlink_gbps",
    "dcgm_min_membw_gbps",
]

# PCI device ids documented in docs/nvml.md §4 (and DCGM for 233a) that name exactly one SKU.
UNIQUE_PCI_IDS = [
    ("1db0", "V100-SXM2-16GB"),
    ("1db5", "V100-SXM2-32GB"),
    ("1db4", "V100-PCIE-16GB"),
    ("1db6", "V100-PCIE-32GB"),
    ("20b0", "A100-SXM4-40GB"),
    ("20b2", "A100-SXM4-80GB"),
    ("20f1", "A100-PCIE-40GB"),
    ("20b1", "A100-PCIE-40GB"),
    ("20b5", "A100-PCIE-80GB"),
    ("2330", "H100-SXM5-80GB"),
    ("2331", "H100-PCIE-80GB"),
    ("2321", "H100-NVL-94GB"),
    ("233a", "H100-NVL-94GB"),
    ("2335", "H200-SXM-141GB"),
    ("233b", "H200-NVL-141GB"),
    ("26b9", "L40S-48GB"),
    ("2236", "A10-24GB"),
    ("27b8", "L4-24GB"),
    ("2684", "RTX-4090-24GB"),
    ("2204", "RTX-3090-24GB"),
]

# Names quoted in docs/nvml.md / public nvidia-smi output, with the key each must map to.
NVML_NAMES = [
    ("Tesla V100-SXM2-16GB", "V100-SXM2-16GB"),
    ("Tesla V100-SXM2-32GB", "V100-SXM2-32GB"),
    ("Tesla V100-PCIE-16GB", "V100-PCIE-16GB"),
    ("NVIDIA A100-SXM4-40GB", "A100-SXM4-40GB"),
    ("A100-SXM4-40GB", "A100-SXM4-40GB"),
    ("NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB"),
    ("NVIDIA A100-PCIE-40GB", "A100-PCIE-40GB"),
    ("NVIDIA A100 80GB PCIe", "A100-PCIE-80GB"),
    ("NVIDIA H100 80GB HBM3", "H100-SXM5-80GB"),
    ("NVIDIA H100 PCIe", "H100-PCIE-80GB"),
    ("NVIDIA H100 NVL", "H100-NVL-94GB"),
    ("NVIDIA H200", "H200-SXM-141GB"),
    ("NVIDIA H200 NVL", "H200-NVL-141GB"),
    ("NVIDIA L40S", "L40S-48GB"),
    ("NVIDIA A10", "A10-24GB"),
    ("NVIDIA L4", "L4-24GB"),
    ("NVIDIA GeForce RTX 4090", "RTX-4090-24GB"),
    ("NVIDIA GeForce RTX 3090", "RTX-3090-24GB"),
    ("  nvidia   geforce rtx 4090 ", "RTX-4090-24GB"),
    ("NVIDIA H100 80GB\tHBM3", "H100-SXM5-80GB"),
]


@pytest.fixture(scope="module")
def skus() -> dict[str, Sku]:
    return load_skus()


def test_all_keys_load_in_order(skus: dict[str, Sku]) -> None:
    assert list(skus) == SKU_KEYS
    assert all(sku.key == key for key, sku in skus.items())


def test_default_table_is_cached_but_dict_is_fresh(skus: dict[str, Sku]) -> None:
    again = load_skus()
    again.pop("L4-24GB")
    assert "L4-24GB" in load_skus()
    assert load_skus()["H100-SXM5-80GB"] is skus["H100-SXM5-80GB"]


def test_explicit_path_reads_same_table(tmp_path: Path, skus: dict[str, Sku]) -> None:
    copy = tmp_path / "skus.toml"
    copy.write_bytes(resources.files("burnin").joinpath("data/skus.toml").read_bytes())
    assert load_skus(copy) == skus


@pytest.mark.parametrize("key", SKU_KEYS)
def test_every_number_has_a_source(skus: dict[str, Sku], key: str) -> None:
    sku = skus[key]
    for name in [*NUMERIC_FIELDS, "compute_capability", "pci_device_ids", "nvml_names"]:
        if getattr(sku, name) is not None:
            assert sku.sources.get(name), f"{key}.{name} has no source"
    for dtype in sku.peak_tflops:
        assert sku.sources.get(f"peak_tflops.{dtype}") or sku.sources.get("peak_tflops"), dtype
    for name in sku.verified:
        assert name in sku.sources, f"{key}.verified.{name} marks a number with no source"


@pytest.mark.parametrize("key", SKU_KEYS)
def test_sanity_invariants(skus: dict[str, Sku], key: str) -> None:
    sku = skus[key]
    assert sku.tdp_w > 0
    assert sku.pci_device_ids and sku.nvml_names
    bf16, fp32 = sku.peak_tflops_for("bf16"), sku.peak_tflops_for("fp32")
    if bf16 is not None and fp32 is not None:
        assert bf16 >= fp32
    assert sku.peak_tflops_for("fp16") is not None and fp32 is not None
    if sku.dcgm_min_membw_gbps is not None:  # DCGM's floor is 0.75 x measured < datasheet
        assert sku.dcgm_min_membw_gbps < sku.peak_membw_gbps
    # The reported total is within 10 % of the name's capacity (ECC and reservations eat some).
    assert abs(sku.expected_memory_total_mib() / (sku.memory_gib_nominal * 1024) - 1) < 0.10
    assert str(sku.memory_gib_nominal) in key
    assert sku.fans == key.startswith("RTX-")
    assert (sku.form_factor == "NVL") == ("-NVL-" in key)
    if "fp8" in sku.peak_tflops:  # FP8 tensor cores arrived with Ada / Hopper
        assert float(sku.compute_capability) >= 8.9


@pytest.mark.parametrize(
    ("key", "dtype", "expected"),
    [
        ("H100-SXM5-80GB", "bf16", 989.4),
        ("H100-SXM5-80GB", "BF16", 989.4),
        ("H100-SXM5-80GB", "fp8", 1978.9),
        ("A100-SXM4-80GB", "tf32", 156.0),
        ("V100-SXM2-16GB", "fp16", 125.0),
        ("V100-SXM2-16GB", "bf16", None),
        ("V100-SXM2-16GB", "tf32", None),
        ("RTX-3090-24GB", "fp8", None),
        ("A10-24GB", "int8", None),
    ],
)
def test_peak_tflops_for(key: str, dtype: str, expected: float | None) -> None:
    assert get_sku(key).peak_tflops_for(dtype) == expected


def test_cross_sku_invariants(skus: dict[str, Sku]) -> None:
    h100, h200 = skus["H100-SXM5-80GB"], skus["H200-SXM-141GB"]
    assert h200.peak_membw_gbps > h100.peak_membw_gbps
    assert h200.peak_tflops == h100.peak_tflops  # same GH100 compute
    assert set(DTYPES) >= {d for s in skus.values() for d in s.peak_tflops}


def test_unverified_markers(skus: dict[str, Sku]) -> None:
    assert not skus["H100-PCIE-80GB"].is_verified("sm_count")  # docs/nvml.md §4 ✗
    assert skus["H100-SXM5-80GB"].is_verified("sm_count")  # docs/nvml.md §4 ✓
    assert not skus["V100-SXM2-16GB"].is_verified("pci_device_ids")


def test_get_sku_unknown_lists_known_keys() -> None:
    with pytest.raises(ConfigError) as info:
        get_sku("H100-SXM5-81GB")
    assert info.value.key_path == "sku"
    assert "H100-SXM5-80GB" in str(info.value) and "RTX-3090-24GB" in str(info.value)


@pytest.mark.parametrize(("pci_id", "key"), UNIQUE_PCI_IDS)
def test_pci_id_maps_to_sku(pci_id: str, key: str) -> None:
    for given in (pci_id, f"0x{pci_id.upper()}10DE"):
        assert [s.key for s in skus_for_pci_id(given)] == [key]
        assert resolve({"pci_device_id": given}).key == key  # type: ignore[union-attr]


def test_shared_v100_id_is_ambiguous_alone() -> None:
    assert {s.key for s in skus_for_pci_id("1db1")} == {"V100-SXM2-16GB", "V100-SXM2-32GB"}
    assert resolve({"pci_device_id": "1db1"}) is None


@pytest.mark.parametrize("pci_id", ["2237", "2901", "ffff", "not-an-id"])
def test_unknown_pci_id(pci_id: str) -> None:
    assert resolve({"pci_device_id": pci_id}) is None and skus_for_pci_id(pci_id) == ()


@pytest.mark.parametrize(("name", "key"), NVML_NAMES)
def test_nvml_name_maps_back(name: str, key: str) -> None:
    assert sku_for_name(name).key == key  # type: ignore[union-attr]


def test_every_listed_name_maps_back(skus: dict[str, Sku]) -> None:
    for sku in skus.values():
        for name in sku.nvml_names:
            assert sku_for_name(name) is sku, name


@pytest.mark.parametrize("name", ["NVIDIA A10G", "NVIDIA H100", "", "GeForce RTX 4090 Ti"])
def test_unknown_name(name: str) -> None:
    assert sku_for_name(name) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2330", "2330"),
        ("0x2330", "2330"),
        ("0X2330", "2330"),
        ("0x233010DE", "2330"),
        ("0x233010de", "2330"),
        ("233010de", "2330"),
        ("10de:2330", "2330"),
        ("10DE:26B9", "26b9"),
        (" 1db1\n", "1db1"),
        ("0x220410DE", "2204"),
    ],
)
def test_normalize_accepts(value: str, expected: str) -> None:
    assert normalize_pci_device_id(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        *("", "   ", "0x", "10de:", "233", "23301", "xyz1", "g330", "0x2330zz"),
        *("1002:2330", "0x23301002", "10de2330"),  # another vendor, or vendor-first order
    ],
)
def test_normalize_rejects(value: str) -> None:
    assert normalize_pci_device_id(value) is None


def _inv(**kw: object) -> Inventory:
    return Inventory(index=0, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("inv", "key"),
    [
        (_inv(pci_device_id="1db1", memory_total_mib=16130), "V100-SXM2-16GB"),
        (_inv(pci_device_id="1db1", memory_total_mib=32510), "V100-SXM2-32GB"),
        (_inv(pci_device_id="0x1db110de", memory_total_mib=32768), "V100-SXM2-32GB"),
        (_inv(pci_device_id="1db1", name="Tesla V100-SXM2-32GB"), "V100-SXM2-32GB"),
        (_inv(pci_device_id="1db1"), None),  # no memory, no name: cannot choose
        (_inv(pci_device_id="1db1", name="NVIDIA H100 PCIe"), None),  # name of neither
        (_inv(pci_device_id="2330", name="NVIDIA H100 PCIe"), "H100-SXM5-80GB"),  # id wins
        (_inv(pci_device_id="2237", name="NVIDIA A10"), None),  # valid foreign id: no fallback
        (_inv(name="NVIDIA L40S"), "L40S-48GB"),  # no id: name
        (_inv(pci_device_id="garbage", name="NVIDIA L4"), "L4-24GB"),
        (_inv(), None),
    ],
)
def test_resolve_an_inventory(inv: Inventory, key: str | None) -> None:
    sku = resolve(inv)
    assert (sku.key if sku else None) == key


# A minimal valid table; each broken variant below edits one line of it.
VALID = """
[H100-SXM5-80GB]
nvml_names = ["NVIDIA H100 80GB HBM3"]
pci_device_ids = ["2330"]
compute_capability = "9.0"
sm_count = 132
memory_gib_nominal = 80
memory_type = "HBM3"
ecc_capable = true
peak_membw_gbps = 3350
peak_tflops = { fp32 = 66.9, bf16 = 989.4 }
tdp_w = 700
pcie_gen = 5
pcie_width = 16
nvlink_gbps = 900
form_factor = "SXM"
fans = false

[H100-SXM5-80GB.sources]
sm_count = "docs/nvml.md §4"
"""


def test_minimal_table_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(VALID, encoding="utf-8")
    sku = load_skus(path)["H100-SXM5-80GB"]
    assert sku.tdp_w == 700.0 and isinstance(sku.tdp_w, float)
    assert sku.memory_total_mib is None and sku.pci_device_ids == ("2330",)


@pytest.mark.parametrize(
    ("old", "new", "key_path"),
    [
        ("fans = false", "fans = false\nfan_count = 2", "H100-SXM5-80GB.fan_count"),
        ("sm_count = 132", 'sm_count = "132"', "H100-SXM5-80GB.sm_count"),
        ("sm_count = 132", "sm_count = 132.0", "H100-SXM5-80GB.sm_count"),
        ("sm_count = 132", "sm_count = true", "H100-SXM5-80GB.sm_count"),
        ("fans = false", "fans = 0", "H100-SXM5-80GB.fans"),
        ("tdp_w = 700", 'tdp_w = "700 W"', "H100-SXM5-80GB.tdp_w"),
        ("tdp_w = 700", "tdp_w = 0", "H100-SXM5-80GB.tdp_w"),
        ("tdp_w = 700\n", "", "H100-SXM5-80GB.tdp_w"),
        ('["2330"]', '"2330"', "H100-SXM5-80GB.pci_device_ids"),
        ('["2330"]', '["0x2330"]', "H100-SXM5-80GB.pci_device_ids"),
        ('["2330"]', "[]", "H100-SXM5-80GB.pci_device_ids"),
        ("bf16 = 989.4", 'bf16 = "989"', "H100-SXM5-80GB.peak_tflops.bf16"),
        ("bf16 = 989.4", "int4 = 1", "H100-SXM5-80GB.peak_tflops.int4"),
        ('form_factor = "SXM"', 'form_factor = "OAM"', "H100-SXM5-80GB.form_factor"),
        ('"9.0"', "9.0", "H100-SXM5-80GB.compute_capability"),
        ('sm_count = "docs', 'sm_counts = "docs', "H100-SXM5-80GB.sources.sm_counts"),
        ('sm_count = "docs/nvml.md §4"', "sm_count = 4", "H100-SXM5-80GB.sources.sm_count"),
        ("[H100-SXM5-80GB]", "H100 = 1\n[H100-SXM5-80GB]", "H100"),
        ("sm_count = 132", "sm_count = ", "(file)"),
    ],
)
def test_broken_table_names_key_path(tmp_path: Path, old: str, new: str, key_path: str) -> None:
    assert old in VALID
    path = tmp_path / "broken.toml"
    path.write_text(VALID.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_skus(path)
    assert info.value.key_path == key_path
    assert info.value.source == str(path)
    assert key_path in str(info.value)


def test_missing_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_skus(tmp_path / "absent.toml")


def test_sku_is_frozen_and_hashable(skus: dict[str, Sku]) -> None:
    sku = skus["A10-24GB"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        sku.tdp_w = 1.0  # type: ignore[misc]
    assert len({sku, skus["L4-24GB"], sku}) == 2
