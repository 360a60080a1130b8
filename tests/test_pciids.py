"""burnin.pciids: the shipped NVIDIA section of the PCI ID database, and loose name matching."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from burnin import pciids


def test_the_data_file_is_the_nvidia_section_with_its_provenance() -> None:
    text = resources.files("burnin").joinpath(pciids.DATA_FILE).read_text(encoding="utf-8")
    header = [ln for ln in text.splitlines() if ln.startswith("#")]
    assert any("pci-ids.ucw.cz" in ln for ln in header)
    assert any("awk" in ln for ln in header) and pciids.database_date() == "2023-04-10"
    vendors = [ln for ln in text.splitlines() if re.match(r"^[0-9a-f]{4}\s", ln)]
    assert vendors == ["10de  NVIDIA Corporation"]
    assert sum(1 for ln in text.splitlines() if re.match(r"^\t[0-9a-f]{4}\s", ln)) > 1500


@pytest.mark.parametrize(
    ("device_id", "chip", "models"),
    [
        ("20b2", "GA100", ("A100 SXM4 80GB",)),
        ("1b81", "GP104", ("GeForce GTX 1070",)),
        ("100c", "GK110B", ("GeForce GTX TITAN Black",)),
        ("2321", "GH100", ()),  # the database names the chip only
        ("28e0", "AD107M", ("GeForce RTX 4060 Max-Q", "Mobile")),
    ],
)
def test_lookup(device_id: str, chip: str, models: tuple[str, ...]) -> None:
    entry = pciids.lookup(device_id)
    assert entry is not None and (entry.chip, entry.models) == (chip, models)


@pytest.mark.parametrize("device_id", ["2bb4", "ffff", None, ""])
def test_lookup_of_an_unknown_id_is_none(device_id: str | None) -> None:
    assert pciids.lookup(device_id) is None


@pytest.mark.parametrize(
    ("device_id", "name", "expected"),
    [
        ("20b2", "NVIDIA A100-SXM4-80GB", True),
        ("1db5", "Tesla V100-SXM2-32GB", True),
        ("1e87", "NVIDIA GeForce RTX 2080", True),  # database: "GeForce RTX 2080 Rev. A"
        ("1eb8", "Tesla T4", True),
        ("1b81", "GeForce GTX 1080", False),  # a GTX 1070's id under a GTX 1080's name
        ("2684", "NVIDIA GeForce RTX 3090", False),
        ("2321", "NVIDIA H100 NVL", None),  # chip only: cannot say
        ("2bb4", "NVIDIA RTX PRO 6000", None),  # newer than the database
    ],
)
def test_name_matches(device_id: str, name: str, expected: bool | None) -> None:
    assert pciids.name_matches(device_id, name) is expected


@pytest.mark.parametrize(
    ("name", "ids"),
    [("GeForce GTX 1080", ("1b80",)), ("NVIDIA GeForce GTX 1070", ("1b81",)), ("", ())],
)
def test_ids_for_name(name: str, ids: tuple[str, ...]) -> None:
    assert set(ids) <= set(pciids.ids_for_name(name))
    assert bool(ids) == bool(pciids.ids_for_name(name))
