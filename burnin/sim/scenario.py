"""Simulated-fleet scenarios: load and validate a scenario TOML.

The format is docs/contracts.md, "Simulated fleets".

A scenario describes a fleet that does not exist (nodes, GPUs per node, SKU, seed, noise) and
the faults its cards carry, so ``burnin run --simulate`` can run the real code path on a laptop
or in CI and show that every fault is caught. Everything is checked before anything runs: an
unknown key, fault kind or parameter, a value of the wrong type or out of range, a GPU that is
not in the fleet, or a fault a card of that SKU cannot have (retired pages on a GPU that remaps
rows, a fan fault on a passively cooled card) raises :class:`ConfigError` naming the key path
(``fault[3].factor``), which the CLI turns into exit code 2. Fault kinds, their parameters,
ranges and expected checks come from the fault registry (burnin/sim/faults.py).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from burnin.errors import ConfigError
from burnin.sim.faults import EXPECTED_CHECKS, FAULTS, Fault, Param, make_fault, parameters

# Upper bounds that catch typos, not hardware limits: no node holds more GPUs than this
# (HGX/DGX boards carry 8, PCIe servers up to 10-16) and no simulated fleet needs more nodes.
MAX_NODES = 512
MAX_GPUS_PER_NODE = 64
# Noise also spreads temperature, power and per-batch speed (burnin/sim/model.py): its
# per-batch cv is noise/sqrt(3), and the stability check warns at cv 0.05, so above about 0.05
# healthy simulated cards would start to WARN (0.08 gave stability and slow-link WARNs).
MAX_NOISE = 0.05

_FLEET_KEYS = ("name", "nodes", "gpus_per_node", "sku", "seed", "noise")
_NODE_KEYS = ("index", "sku", "gpus_per_node")
_HEX4 = re.compile(r"^[0-9a-fA-F]{4}$")
# PCIe link widths a device can train to (PCIe base specification: x1, x2, x4, x8, x16, x32).
_PCIE_WIDTHS = (1, 2, 4, 8, 16, 32)


@dataclass(frozen=True, kw_only=True)
class NodeSpec:
    index: int
    name: str  # node-00, node-01, ...
    sku: str
    gpus: int


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A validated scenario: the fleet, its nodes and the faults per (node, gpu)."""

    name: str
    seed: int
    noise: float
    sku: str
    nodes: tuple[NodeSpec, ...]
    faults: Mapping[tuple[int, int], tuple[Fault, ...]] = field(default_factory=dict)
    source: str = "<scenario>"

    @property
    def gpu_count(self) -> int:
        return sum(n.gpus for n in self.nodes)

    def node_faults(self, node: int) -> dict[int, tuple[Fault, ...]]:
        """Faults of one node as ``{gpu index: faults}`` (the Runtime's ``faults`` shape)."""
        return {g: f for (n, g), f in self.faults.items() if n == node}


def scenario_names() -> list[str]:
    """Names of the scenarios shipped in ``configs/scenarios/``."""
    root = resources.files("burnin.configs") / "scenarios"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (or a shipped scenario by name).

    Args:
        path: the scenario TOML file, or the name of one in ``configs/scenarios/``
            (``one-of-each-fault``).

    Returns:
        The validated :class:`Scenario`.

    Raises:
        ConfigError: a missing file, bad TOML, or a bad key or value (named by its key path).
    """
    name = str(path)
    shipped = resources.files("burnin.configs") / "scenarios" / f"{name}.toml"
    if not Path(name).exists() and "/" not in name and shipped.is_file():
        text = shipped.read_text(encoding="utf-8")
        return _parse_text(text, f"configs/scenarios/{name}.toml", name)
    path = Path(path)
    if not path.is_file():
        known = ", ".join(scenario_names())
        raise ConfigError("--simulate", f"no such scenario file: {path} (shipped: {known})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("(file)", f"cannot read: {exc}", str(path)) from None
    return _parse_text(text, str(path), path.stem)


def _parse_text(text: str, source: str, default_name: str) -> Scenario:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("(file)", f"not valid TOML: {exc}", source) from None
    except RecursionError:  # tomllib recurses per nesting level
        raise ConfigError("(file)", "not valid TOML: nested too deeply", source) from None
    return parse_scenario(raw, source=source, default_name=default_name)


def parse_scenario(
    raw: dict[str, Any], source: str = "<scenario>", default_name: str = "scenario"
) -> Scenario:
    """Validate an already parsed scenario table (see :func:`load_scenario`)."""
    from burnin.skus import load_skus

    skus = load_skus()
    _only(raw, ("fleet", "node", "fault"), "", source)
    fleet = raw.get("fleet")
    if not isinstance(fleet, dict):
        raise ConfigError("fleet", "missing [fleet] table (nodes, gpus_per_node, sku, ...)", source)
    _only(fleet, _FLEET_KEYS, "fleet", source)
    name = _string(fleet.get("name", default_name), "fleet.name", source)
    count = _integer(fleet.get("nodes", 1), "fleet.nodes", 1, MAX_NODES, source)
    gpus = _integer(
        fleet.get("gpus_per_node", 8), "fleet.gpus_per_node", 1, MAX_GPUS_PER_NODE, source
    )
    if "sku" not in fleet:
        raise ConfigError("fleet.sku", f"missing (a SKU key: {', '.join(skus)})", source)
    sku = _sku(fleet["sku"], "fleet.sku", skus, source)
    seed = _integer(fleet.get("seed", 0), "fleet.seed", 0, 2**63 - 1, source)
    noise = _number(fleet.get("noise", 0.01), "fleet.noise", 0.0, MAX_NOISE, source)

    overrides: dict[int, dict[str, Any]] = {}
    for i, table in enumerate(_tables(raw.get("node", []), "node", source)):
        where = f"node[{i}]"
        _only(table, _NODE_KEYS, where, source)
        if "index" not in table:
            raise ConfigError(f"{where}.index", "missing (the node index to override)", source)
        index = _integer(table["index"], f"{where}.index", 0, count - 1, source)
        if index in overrides:
            raise ConfigError(f"{where}.index", f"node {index} is overridden twice", source)
        entry: dict[str, Any] = {}
        if "sku" in table:
            entry["sku"] = _sku(table["sku"], f"{where}.sku", skus, source)
        if "gpus_per_node" in table:
            entry["gpus"] = _integer(
                table["gpus_per_node"], f"{where}.gpus_per_node", 1, MAX_GPUS_PER_NODE, source
            )
        overrides[index] = entry
    nodes = tuple(
        NodeSpec(
            index=n,
            name=node_name(n),
            sku=overrides.get(n, {}).get("sku", sku),
            gpus=overrides.get(n, {}).get("gpus", gpus),
        )
        for n in range(count)
    )

    faults: dict[tuple[int, int], tuple[Fault, ...]] = {}
    for i, table in enumerate(_tables(raw.get("fault", []), "fault", source)):
        node, gpu, fault = _fault(table, f"fault[{i}]", nodes, skus, source)
        existing = faults.get((node, gpu), ())
        if any(f.kind == fault.kind for f in existing):
            raise ConfigError(
                f"fault[{i}].kind",
                f"node {node} gpu {gpu} already has a {fault.kind!r} fault",
                source,
            )
        faults[(node, gpu)] = (*existing, fault)
    return Scenario(
        name=name, seed=seed, noise=noise, sku=sku, nodes=nodes, faults=faults, source=source
    )


def node_name(index: int) -> str:
    """Host name of simulated node ``index``: node-00, node-01, ..."""
    return f"node-{index:02d}"


def _fault(
    table: dict[str, Any], where: str, nodes: tuple[NodeSpec, ...], skus: Any, source: str
) -> tuple[int, int, Fault]:
    if "kind" not in table:
        raise ConfigError(f"{where}.kind", f"missing (one of: {', '.join(FAULTS)})", source)
    kind = table["kind"]
    if not isinstance(kind, str) or kind not in FAULTS:
        raise ConfigError(
            f"{where}.kind",
            f"unknown fault kind {kind!r} (known: {', '.join(FAULTS)})",
            source,
        )
    node = _integer(table.get("node", 0), f"{where}.node", 0, len(nodes) - 1, source)
    spec = nodes[node]
    gpu = _integer(table.get("gpu", 0), f"{where}.gpu", 0, spec.gpus - 1, source)
    allowed = parameters(kind)
    params: dict[str, Any] = {}
    for key, value in table.items():
        if key in ("kind", "node", "gpu"):
            continue
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise ConfigError(
                f"{where}.{key}",
                f"fault {kind!r} has no parameter {key!r} (known: {known})",
                source,
            )
        params[key] = _param(key, value, allowed[key], f"{where}.{key}", source)
    fault = make_fault(kind, params, where)
    if kind == "duplicate-serial":
        tn = _integer(fault.params["twin_node"], f"{where}.twin_node", 0, len(nodes) - 1, source)
        tg = _integer(fault.params["twin_gpu"], f"{where}.twin_gpu", 0, nodes[tn].gpus - 1, source)
        if (tn, tg) == (node, gpu):
            raise ConfigError(f"{where}.twin_gpu", "a card cannot be its own twin", source)
    _check_sku_supports(kind, skus[spec.sku], spec.sku, where, source)
    _check_changes_something(fault, skus[spec.sku], spec.sku, where, source)
    if kind == "duplicate-serial":
        twin_sku = nodes[int(fault.params["twin_node"])].sku
        _check_sku_supports(kind, skus[twin_sku], twin_sku, f"{where}.twin_node", source)
    return node, gpu, fault


def _check_sku_supports(kind: str, sku: Any, key: str, where: str, source: str) -> None:
    """Reject a fault a card of this SKU cannot show through NVML (it would go unseen)."""
    from burnin.sim.model import board_for

    spec = FAULTS[kind]
    if spec.needs and not getattr(board_for(key, sku), spec.needs):
        where = f"{where}.kind" if "." not in where else where
        raise ConfigError(where, f"{key} {spec.needs_why}", source)


def _check_changes_something(fault: Fault, sku: Any, key: str, where: str, source: str) -> None:
    """Reject a fault whose parameters describe the genuine card: it would rightly PASS, and
    the scenario's author would read that as a check that missed its fault."""
    from burnin.sim.model import board_for

    board, p = board_for(key, sku), fault.params
    if fault.kind == "pcie-degraded":
        gen, width = int(p["gen"]), int(p["width"])
        if gen >= board.pcie_gen and width >= board.pcie_width:
            raise ConfigError(
                f"{where}.gen",
                f"Gen{gen} x{width} is not below the Gen{board.pcie_gen} x{board.pcie_width} "
                f"link of the {key}: lower the generation or the width",
                source,
            )
    elif fault.kind == "identity":
        genuine = {
            "memory_mib": board.memory_total_mib,
            "name": board.name,
            "pci_device_id": board.pci_device_id.lower(),
            "sm_count": board.sm_count,
        }
        given = {k: str(v).lower() if k == "pci_device_id" else v for k, v in p.items()}
        same = [k for k in genuine if k in given and given[k] == genuine[k]]
        if same and len(same) == sum(k in given for k in genuine):
            raise ConfigError(
                f"{where}.{same[0]}",
                f"{', '.join(same)}: what a genuine {key} reports, so the card would pass; "
                "give a value that differs",
                source,
            )


def _param(key: str, value: Any, param: Param, where: str, source: str) -> Any:
    default = param.default
    if key == "pci_device_id":
        if not isinstance(value, str) or not _HEX4.match(value):
            raise ConfigError(where, f"expected 4 hex digits like '2330', got {value!r}", source)
        return value.lower()
    if key == "width":
        if isinstance(value, bool) or value not in _PCIE_WIDTHS:
            widths = ", ".join(map(str, _PCIE_WIDTHS))
            raise ConfigError(
                where, f"expected a PCIe link width ({widths}), got {value!r}", source
            )
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(where, f"expected true or false, got {value!r}", source)
        return value
    if isinstance(default, str):
        return _string(value, where, source)
    lo, hi = param.lo, param.hi
    if isinstance(default, int) and not isinstance(default, float):
        number: float = _integer(value, where, int(lo), hi, source)
    else:
        number = _number(value, where, lo, hi, source)
    if param.lo_open and number <= lo:
        raise ConfigError(where, f"must be > {lo:g}, got {value!r}", source)
    return number


def _only(table: dict[str, Any], allowed: tuple[str, ...], path: str, source: str) -> None:
    for key in table:
        if key not in allowed:
            key_path = f"{path}.{key}" if path else key
            raise ConfigError(
                key_path, f"unknown key (known keys here: {', '.join(allowed)})", source
            )


def _tables(value: Any, path: str, source: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ConfigError(path, f"expected [[{path}]] tables", source)
    return value


def _sku(value: Any, where: str, skus: Mapping[str, Any], source: str) -> str:
    if not isinstance(value, str) or value not in skus:
        raise ConfigError(where, f"unknown SKU {value!r} (known: {', '.join(skus)})", source)
    return value


def _string(value: Any, where: str, source: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(where, f"expected a non-empty string, got {value!r}", source)
    return value


def _integer(value: Any, where: str, lo: float, hi: float, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(where, f"expected an integer, got {value!r}", source)
    if not lo <= value <= hi:
        raise ConfigError(where, f"{value!r} is out of range [{lo:g}, {hi:g}]", source)
    return value


def _number(value: Any, where: str, lo: float, hi: float, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigError(where, f"expected a number, got {value!r}", source)
    if not lo <= value <= hi:
        raise ConfigError(where, f"{value!r} is out of range [{lo:g}, {hi:g}]", source)
    return float(value)


__all__ = [
    "EXPECTED_CHECKS",
    "NodeSpec",
    "Scenario",
    "load_scenario",
    "node_name",
    "parse_scenario",
    "scenario_names",
]
