"""Inventory helpers: SKU naming, SM counts from CUDA, live and dumps."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_pynvml import FakeNvml, error, gpu

from burnin.inventory import (
    Card,
    read_dumps,
    read_node,
    with_sm_count,
)
from burnin.skus import resolve
from burnin.telemetry.base import Inventory, from_dict
from burnin.telemetry.nvml import NvmlTelemetry

DUMPS = Path(__file__).parent / "data" / "dumps"


@pytest.mark.parametrize(
    ("record", "key"),
    [
        ({"pci_device_id": "2330", "name": "NVIDIA H100 80GB HBM3"}, "H100-SXM5-80GB"),
        ({"pci_device_id": "20b2"}, "A100-SXM4-80GB"),
        ({"name": "NVIDIA L4"}, "L4-24GB"),  # no PCI id: the name decides
        ({"pci_device_id": "1b81", "name": "NVIDIA L4"}, None),  # the silicon outranks a name
        ({"pci_device_id": "1db1", "memory_total_mib": 32480}, "V100-SXM2-32GB"),
        ({"kind": "cpu", "name": "CPU fallback (x86_64)"}, None),
        ({}, None),
    ],
)
def test_sku_of_a_record(record: dict[str, object], key: str | None) -> None:
    for found in (resolve(record), resolve(from_dict(Inventory, {"index": 3, **record}))):
        assert (found.key if found else None) == key


def test_with_sm_count_fills_only_what_nvml_lacks() -> None:
    inv = Inventory(index=0, unsupported=("sm_count", "serial"))
    filled = with_sm_count(inv, 132)
    assert filled.sm_count == 132 and filled.unsupported == ("serial",)
    assert with_sm_count(filled, 100).sm_count == 132
    assert with_sm_count(inv, None) is inv


def test_read_node_merges_sm_counts_and_keeps_lost_cards() -> None:
    module = FakeNvml([gpu(uuid="GPU-a"), gpu(uuid=error("NVMLError_GpuIsLost"))])
    cards = read_node(NvmlTelemetry(module=module), "node-07", {"GPU-a": 132})
    assert [c.source for c in cards] == ["node-07", "node-07"]
    assert cards[0].inventory.sm_count == 132 and cards[0].error is None
    assert cards[1].error and "GpuIsLost" in cards[1].error


def test_read_dumps_keeps_each_file_as_the_source() -> None:
    paths = [DUMPS / "h100-nvl-x2_r550.txt", DUMPS / "tesla-t4_r515.xml"]
    cards = read_dumps(paths)
    assert [(Path(c.source).name, c.inventory.index) for c in cards] == [
        ("h100-nvl-x2_r550.txt", 0),
        ("h100-nvl-x2_r550.txt", 1),
        ("tesla-t4_r515.xml", 0),
    ]


def test_read_dumps_keeps_a_bad_file_as_one_unreadable_card() -> None:
    good, bad = read_dumps([DUMPS / "tesla-t4_r515.xml", DUMPS / "bad" / "not-a-dump.txt"])
    assert good.state is not None and not good.unreadable and good.inventory.name == "Tesla T4"
    assert bad.unreadable and bad.source.endswith("not-a-dump.txt")
    assert bad.error is not None and "not-a-dump.txt" in bad.error


def test_snapshot_is_an_inventory_and_no_run() -> None:
    from burnin.verdicts.stage import snapshot

    inv = Inventory(index=1, name="NVIDIA H100 80GB HBM3", pci_device_id="2330", serial="S1")
    (data,) = snapshot([Card("seller.xml", inv, error="boom")])
    assert (data.node, data.index) == ("seller.xml", 1)
    assert data.samples == data.records == data.events == data.planned_kernels == []
    record = data.inventory
    assert record["device"] == 1 and "index" not in record
    assert record["sku"] == "H100-SXM5-80GB" and record["kind"] == "cuda"
    assert record["source"] == "seller.xml" and record["telemetry_error"] == "boom"
