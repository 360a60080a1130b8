"""SKU spec database: the datasheet facts a genuine card of each SKU must match.

The table is package data (``burnin/data/skus.toml``: one TOML table per SKU key, a source for
every number, ``verified = false`` where the reference could not confirm one). This module
validates it into frozen :class:`Sku` records and answers the identity questions (which SKU is
this PCI device id, NVML name, :class:`~burnin.telemetry.base.Inventory`?) for the counterfeit
checks, while the peak figures feed the underperformer checks and the simulated fleet.
"""

from __future__ import annotations

import functools
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from burnin.errors import ConfigError

if TYPE_CHECKING:
    from burnin.telemetry.base import Inventory

DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8")
FORM_FACTORS = ("SXM", "PCIe", "NVL")
DEFAULT_SOURCE = "burnin/data/skus.toml"
_HEX4 = re.compile(r"^[0-9a-f]{4}$")
_CC = re.compile(r"^\d+\.\d+$")


@dataclass(frozen=True, kw_only=True)
class Sku:
    """One SKU's identity and datasheet peaks; dict fields are read-only and left out of hash."""

    key: str
    nvml_names: tuple[str, ...]
    pci_device_ids: tuple[str, ...]
    compute_capability: str
    sm_count: int
    memory_gib_nominal: int
    memory_type: str
    ecc_capable: bool
    peak_membw_gbps: float
    tdp_w: float
    pcie_gen: int
    pcie_width: int
    nvlink_gbps: float
    form_factor: str
    fans: bool
    memory_total_mib: int | None = None
    dcgm_target_power_w: float | None = None
    dcgm_min_membw_gbps: float | None = None
    nvlink_links: int | None = None  # None: unknown (a bridged PCIe card's depends on the bridge)
    peak_tflops: dict[str, float] = field(default_factory=dict, hash=False)
    sources: dict[str, str] = field(default_factory=dict, hash=False)
    verified: dict[str, bool] = field(default_factory=dict, hash=False)

    def peak_tflops_for(self, dtype: str) -> float | None:
        """Dense datasheet peak for ``dtype`` (fp32, tf32, bf16, fp16, fp8); None if unknown."""
        return self.peak_tflops.get(dtype.lower())

    def is_verified(self, name: str) -> bool:
        """False where the reference marks ``name`` (or ``peak_tflops.<dtype>``) unverified."""
        return self.verified.get(name, True)

    def expected_memory_total_mib(self) -> int:
        """Total NVML should report: the observed figure, else the nominal size in MiB."""
        return self.memory_total_mib or self.memory_gib_nominal * 1024


# Source/verified keys may name a field or one dtype of the peak table.
_SOURCE_KEYS = {f.name for f in fields(Sku) if f.name not in ("key", "sources", "verified")}
_SOURCE_KEYS |= {f"peak_tflops.{d}" for d in DTYPES}
# Zero would read as "measured nothing" to a ratio check; an unknown value is omitted instead.
_POSITIVE = {"sm_count", "memory_gib_nominal", "memory_total_mib", "peak_membw_gbps", "tdp_w"}
_POSITIVE |= {"pcie_gen", "pcie_width", "dcgm_target_power_w", "dcgm_min_membw_gbps"}


def _check(hint: object, value: Any, where: str, source: str) -> Any:
    """Return ``value`` converted to the field's type, or raise ConfigError naming ``where``."""
    if hint in (str, bool, int) and type(value) is hint:  # exact: a bool is not an int here
        return value
    if hint is float and type(value) in (int, float):
        return float(value)
    if hint == tuple[str, ...]:
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(where, f"expected a non-empty list of strings, got {value!r}", source)
    if typing.get_origin(hint) is dict and isinstance(value, dict):
        value_hint = typing.get_args(hint)[1]
        return {k: _check(value_hint, v, f"{where}.{k}", source) for k, v in value.items()}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # "X | None": X or omitted
        return _check(typing.get_args(hint)[0], value, where, source)
    expected = getattr(hint, "__name__", str(hint))
    raise ConfigError(where, f"expected {expected}, got {type(value).__name__} {value!r}", source)


def _validate(sku: Sku, source: str) -> None:
    """Range and vocabulary checks that types alone cannot express."""
    k = sku.key
    for pci_id in sku.pci_device_ids:
        if not _HEX4.match(pci_id):
            raise ConfigError(f"{k}.pci_device_ids", f"{pci_id!r} is not 4 lowercase hex", source)
    if not _CC.match(sku.compute_capability):
        raise ConfigError(f"{k}.compute_capability", "expected 'major.minor'", source)
    if sku.form_factor not in FORM_FACTORS:
        raise ConfigError(f"{k}.form_factor", f"expected one of {FORM_FACTORS}", source)
    for name in sorted(_POSITIVE):  # sorted: the same error first on every run
        if (value := getattr(sku, name)) is not None and value <= 0:
            raise ConfigError(f"{k}.{name}", "must be > 0 (omit it where unknown)", source)
    if sku.nvlink_gbps < 0:
        raise ConfigError(f"{k}.nvlink_gbps", "must be >= 0 (0 = no NVLink)", source)
    if sku.nvlink_links is not None and sku.nvlink_links < 0:
        raise ConfigError(f"{k}.nvlink_links", "must be >= 0 (0 = no NVLink)", source)
    for dtype, tflops in sku.peak_tflops.items():
        if dtype not in DTYPES or tflops <= 0:
            raise ConfigError(f"{k}.peak_tflops.{dtype}", f"dtype in {DTYPES}, value > 0", source)
    for table in ("sources", "verified"):
        for name in getattr(sku, table):
            if name not in _SOURCE_KEYS:
                raise ConfigError(f"{k}.{table}.{name}", "names no SKU field", source)


def _parse(text: str, source: str) -> dict[str, Sku]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("(file)", f"not valid TOML: {exc}", source) from None
    hints = typing.get_type_hints(Sku)
    required = {f.name for f in fields(Sku) if f.default is f.default_factory is MISSING}
    skus: dict[str, Sku] = {}
    for key, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(key, "expected a table of SKU fields", source)
        kwargs: dict[str, Any] = {"key": key}
        for name, value in table.items():
            if name not in hints or name == "key":
                raise ConfigError(f"{key}.{name}", "unknown field", source)
            kwargs[name] = _check(hints[name], value, f"{key}.{name}", source)
        if missing := sorted(required - kwargs.keys()):
            raise ConfigError(f"{key}.{missing[0]}", "required field is missing", source)
        skus[key] = Sku(**kwargs)
        _validate(skus[key], source)
    return skus


def load_skus(path: Path | None = None) -> dict[str, Sku]:
    """Load and validate the SKU table.

    Args:
        path: a TOML file in the ``skus.toml`` format; None reads the packaged table (cached).

    Returns:
        SKU key -> :class:`Sku`, in file order (a new dict each call; the records are shared).

    Raises:
        ConfigError: unreadable file, invalid TOML, unknown field or wrong type; the key path
            names the SKU and field, e.g. ``H100-SXM5-80GB.sm_count``.
    """
    if path is None:
        return dict(_load_default())
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("(file)", f"cannot read: {exc}", str(path)) from None
    return _parse(text, str(path))


@functools.lru_cache(maxsize=1)
def _load_default() -> dict[str, Sku]:
    text = resources.files("burnin").joinpath("data/skus.toml").read_text(encoding="utf-8")
    return _parse(text, DEFAULT_SOURCE)


def get_sku(key: str) -> Sku:
    """Return the SKU for ``key`` (e.g. ``"H100-SXM5-80GB"``); ConfigError lists known keys."""
    skus = _load_default()
    if key not in skus:
        raise ConfigError("sku", f"unknown SKU {key!r} (known: {', '.join(skus)})")
    return skus[key]


def normalize_pci_device_id(value: str) -> str | None:
    """Return the 4-lowercase-hex PCI device id, or None if ``value`` is not an NVIDIA id.

    Accepts ``"2330"``, ``"0x2330"``, ``"10de:2330"`` and NVML's combined ``"0x233010DE"``
    (device id in the upper 16 bits, vendor id in the lower), any letter case.
    """
    text = value.strip().lower() if isinstance(value, str) else ""
    if text.startswith("10de:"):  # NVIDIA's PCI vendor id, lspci style
        text = text[5:]
    elif text.startswith("0x"):
        text = text[2:]
    if len(text) == 8 and text.endswith("10de"):
        text = text[:4]  # another vendor's combined id falls through to the length check
    return text if _HEX4.match(text) else None


def skus_for_pci_id(pci_device_id: str) -> tuple[Sku, ...]:
    """Every SKU listing this PCI device id (V100 SXM2 16/32 GB share ``1db1``)."""
    wanted = normalize_pci_device_id(pci_device_id)
    return tuple(s for s in _load_default().values() if wanted in s.pci_device_ids)


def _name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def sku_for_name(name: str) -> Sku | None:
    """The SKU whose ``nvml_names`` holds ``name`` (case- and whitespace-insensitive)."""
    wanted = _name_key(name)
    for sku in _load_default().values():
        if any(_name_key(n) == wanted for n in sku.nvml_names):
            return sku
    return None


def resolve(record: Mapping[str, Any] | Inventory, *, named: bool = False) -> Sku | None:
    """The SKU of a card record (a store inventory line, a dump's card, an Inventory).

    This is the one SKU lookup of burnin: the card's PCI device id first, then its name
    (see ``_identify``); the CPU fallback has none.

    Args:
        record: the card's facts; ``pci_device_id``, ``name``, ``memory_total_mib``, ``kind``,
            ``simulated`` and ``sku`` are read.
        named: the record's own ``sku`` key comes first. A simulated card names the SKU it
            models, and its performance is that SKU's even where an injected fault gives it
            another PCI id; identity checks ask what the silicon says (``named=False``).
    """
    get = record.get if isinstance(record, Mapping) else lambda k: getattr(record, k, None)
    if get("kind") == "cpu" and not get("simulated") and not get("pci_device_id"):
        return None
    key = get("sku") if named else None
    pci, name, mem = get("pci_device_id"), get("name"), get("memory_total_mib")
    return _resolve(
        key if isinstance(key, str) else None,
        pci if isinstance(pci, str) else None,
        name if isinstance(name, str) else None,
        mem if isinstance(mem, int) and not isinstance(mem, bool) else None,
    )


@functools.lru_cache(maxsize=1024)
def _resolve(key: str | None, pci: str | None, name: str | None, mem: int | None) -> Sku | None:
    if key is not None and key in _load_default():
        return _load_default()[key]
    if pci is None and name is None:
        return None
    pci_id = normalize_pci_device_id(pci) if pci else None
    return _identify(pci_id, name, mem)


def _identify(pci_id: str | None, name: str | None, mem: int | None) -> Sku | None:
    """Best SKU for a card: PCI device id first, the NVML name only when no usable id.

    The silicon id outranks the name, which is what a counterfeit or a mocked NVML fakes first:
    a valid id no SKU lists gives None, never a name match. Where SKUs share an id, the nearest
    expected memory total wins, then the name; an ambiguity that remains gives None.
    """
    if pci_id is None:
        return sku_for_name(name) if name else None
    candidates = skus_for_pci_id(pci_id)
    if len(candidates) < 2:
        return next(iter(candidates), None)
    if mem is not None:
        gaps = [abs(s.expected_memory_total_mib() - mem) for s in candidates]
        if gaps.count(min(gaps)) == 1:  # a tie is no evidence either way
            return candidates[gaps.index(min(gaps))]
    by_name = sku_for_name(name) if name else None
    return by_name if by_name in candidates else None
