"""NVIDIA PCI device ids to model names, from the PCI ID database shipped as package data.

``burnin/data/pci-ids-nvidia.txt`` is the vendor 10de section of the PCI ID Project's
``pci.ids`` (its header names the release, the date and the command that extracted it). A
device line reads ``<TAB>20b2  GA100 [A100 SXM4 80GB]``: the chip, then in brackets the
model names sold on that id, ``/``-separated where one id carries several. This module answers
the identity questions the SKU table cannot for the thousands of NVIDIA devices it does not
list: what model a device id is, and whether the name a card reports is that model's, another
model's (a relabelled card) or neither. Names are compared loosely: case, punctuation, an
``NVIDIA``/``Tesla`` prefix, memory sizes and ``Rev. A`` suffixes do not count, because
nvidia-smi and the database spell the same model differently.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

DATA_FILE = "data/pci-ids-nvidia.txt"
_DEVICE = re.compile(r"^\t([0-9a-f]{4})\s+(.+?)\s*$")
_BRACKETS = re.compile(r"\[(.+)\]")
_DATE = re.compile(r"Date:\s*([0-9-]+)")
# Words that do not tell one model from another in either spelling.
_NOISE = re.compile(r"\b(nvidia|tesla|rev\.?\s*[a-z]|\d+\s*gb)\b")
_NON_ALNUM = re.compile(r"[^0-9a-z]")


@dataclass(frozen=True)
class PciDevice:
    """One device id's database entry: the full line text, the chip and its model names."""

    device_id: str
    text: str
    chip: str
    models: tuple[str, ...]


def _norm(name: str) -> str:
    return _NON_ALNUM.sub("", _NOISE.sub("", name.casefold()))


@functools.lru_cache(maxsize=1)
def _load() -> tuple[dict[str, PciDevice], str]:
    text = resources.files("burnin").joinpath(DATA_FILE).read_text(encoding="utf-8")
    devices: dict[str, PciDevice] = {}
    date = _DATE.search(text)
    for line in text.splitlines():
        m = _DEVICE.match(line)
        if m is None:
            continue
        bracket = _BRACKETS.search(m.group(2))
        chip = m.group(2)[: bracket.start()].strip() if bracket else m.group(2)
        models = tuple(p.strip() for p in bracket.group(1).split("/")) if bracket else ()
        devices[m.group(1)] = PciDevice(m.group(1), m.group(2), chip, models)
    return devices, date.group(1) if date else "unknown"


def database_date() -> str:
    """The release date of the shipped database (``YYYY-MM-DD``): newer cards may be missing."""
    return _load()[1]


def lookup(device_id: str | None) -> PciDevice | None:
    """The database entry of a 4-hex-digit NVIDIA device id; None if the database lacks it."""
    return _load()[0].get(device_id.lower()) if device_id else None


@functools.lru_cache(maxsize=512)
def ids_for_name(name: str) -> tuple[str, ...]:
    """Every device id one of whose model names is ``name`` (compared loosely)."""
    wanted = _norm(name)
    if not wanted:
        return ()
    return tuple(
        d.device_id for d in _load()[0].values() if any(_norm(m) == wanted for m in d.models)
    )


def name_matches(device_id: str, name: str) -> bool | None:
    """Whether ``name`` is a model sold on ``device_id``: None where the database cannot say
    (unknown id, or an entry naming only the chip). A model name contained in the card's name
    (or the other way round) counts as a match: the database often names the family only."""
    entry = lookup(device_id)
    if entry is None or not entry.models:
        return None
    wanted = _norm(name)
    models = [n for m in entry.models if len(n := _norm(m)) >= 3]
    return device_id in ids_for_name(name) or any(m in wanted or wanted in m for m in models)
