"""Run configuration: frozen dataclasses loaded from TOML profiles, validated key by key.

Precedence, lowest to highest: dataclass defaults < the profile file (``configs/<name>.toml`` or
a path) < ``--set section.key=value`` overrides (in order) < dedicated CLI flags (``--duration``,
``--device``, ``--gpus``, ``--strict``). Each step is covered by ``tests/test_config.py``. Unknown
keys, wrong types and out-of-range values raise :class:`ConfigError` naming the key path, which
the CLI turns into exit code 2. Kernel sections (``[kernels.<name>]``) are validated against the
``Config`` class each kernel registers, so a kernel owns its options.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from burnin.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# One week: a burn-in longer than that is a typo, and it would outlive any scheduler allocation.
MAX_DURATION_S = 7 * 86400.0
# Upper bound for a number whose field declares no range: 2^53, the largest integer that JSON
# readers (and float64) represent exactly; anything bigger in a burn-in config is a typo.
_MAX_PLAIN_NUMBER = 2**53


def parse_duration(value: object, key_path: str = "duration") -> float:
    """Parse ``90``, ``"90s"``, ``"10m"``, ``"2h"`` into seconds (> 0, at most one week)."""
    if isinstance(value, bool):
        raise ConfigError(key_path, f"expected a duration like 90, '90s', '10m', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_S[m.group(2) or "s"]
    else:
        raise ConfigError(key_path, f"expected a duration like 90, '90s', '10m', got {value!r}")
    if not 0 < seconds <= MAX_DURATION_S:
        raise ConfigError(key_path, f"duration must be > 0 and at most 7 days, got {value!r}")
    return seconds


def _range(lo: float | None = None, hi: float | None = None) -> dict[str, float | None]:
    return {"min": lo, "max": hi}


@dataclass(frozen=True, kw_only=True)
class RunSection:
    duration_s: float = field(default=300.0, metadata=_range(0.001, MAX_DURATION_S))
    device: Literal["auto", "cpu", "cuda"] = "auto"
    gpus: tuple[int, ...] = ()  # empty = every visible GPU
    kernels: tuple[str, ...] = field(default=("matmul",), metadata={"min_items": 1})
    out_dir: str = "runs"
    strict: bool = False
    seed: int = field(default=1234, metadata=_range(0, 2**63 - 1))
    # GPUs this node must show (--expect-gpus); fewer is a gpu-count FAIL. 0 = no expectation.
    expect_gpus: int = field(default=0, metadata=_range(0, 4096))


@dataclass(frozen=True, kw_only=True)
class CpuSection:
    devices: int = field(default=1, metadata=_range(1, 64))
    threads_per_device: int = field(default=0, metadata=_range(0, 1024))  # 0 = cores / devices


@dataclass(frozen=True, kw_only=True)
class TelemetrySection:
    interval_s: float = field(default=1.0, metadata=_range(0.01, 3600))
    # A GPU whose temperature, power, ECC and XIDs were not watched (NVML unavailable) is an
    # ERROR (not certified); false records it as a WARN instead.
    required: bool = True


@dataclass(frozen=True, kw_only=True)
class WatchdogSection:
    # A healthy step never takes this long; a GPU that stops answering is declared hung.
    timeout_s: float = field(default=60.0, metadata=_range(0.1, 86400))
    # How long stopped workers (Ctrl-C, SIGTERM) get to write their last records before they
    # are killed; Slurm's default KillWait and Kubernetes' default grace period are both 30 s.
    grace_s: float = field(default=5.0, metadata=_range(0, 600))


@dataclass(frozen=True, kw_only=True)
class RampSection:
    # Devices start one by one, a new one every step_s / max_concurrent seconds; a device is
    # "ramping" for step_s after its start, and never more than max_concurrent ramp at once
    # (0 = 1 when step_s > 0). step_s = 0 starts every device at once. See burnin/plan.py.
    step_s: float = field(default=0.0, metadata=_range(0, 3600))
    max_concurrent: int = field(default=0, metadata=_range(0, 4096))
    # This node's rank in a multi-node run; -1 = from the launcher (burnin.plan.RANK_VARIABLES),
    # else 0.
    node_rank: int = field(default=-1, metadata=_range(-1, 1_000_000))
    # Nodes in the run; 0 = from the launcher (burnin.plan.NODE_COUNT_VARIABLES, then
    # WORLD_SIZE / LOCAL_WORLD_SIZE), else 1.
    nodes: int = field(default=0, metadata=_range(0, 1_000_000))
    # Delay between consecutive nodes' first starts; unset = one whole node's ramp, so a hall
    # never has more than max_concurrent devices ramping at once.
    node_offset_s: float | None = field(default=None, metadata=_range(0, 86400))


@dataclass(frozen=True, kw_only=True)
class StoreSection:
    # Records are written (visible to readers, surviving a kill of any process) as they are
    # made; fsync additionally survives a power loss or a kernel panic (a GPU falling off the
    # bus can take the node down). 0 = never fsync, else at most once per interval per file.
    fsync_interval_s: float = field(default=1.0, metadata=_range(0, 3600))


@dataclass(frozen=True, kw_only=True)
class ThermalGuardSection:
    enabled: bool = True
    # Stop a device's stress at once when it reaches this temperature (C); 0 = the card's own
    # NVML slowdown threshold (else its shutdown threshold), the point where the hardware
    # starts protecting itself (docs/nvml.md §2.4, nvmlDeviceGetTemperatureThreshold).
    max_temp_c: float = field(default=0.0, metadata=_range(0, 150))


PreflightCheck = Literal[
    "thermal", "throttle", "power", "fan", "ecc", "pcie-link", "pcie-replay", "xid"
]


@dataclass(frozen=True, kw_only=True)
class PreflightSection:
    # Refuse to start on a GPU that other processes already use (NVML compute processes).
    check_processes: bool = True
    # Start anyway (--force): what was running is recorded and the device gets a WARN.
    force: bool = False
    # Checks that must be able to run (their sensors readable) on every device, else refuse.
    required_checks: tuple[PreflightCheck, ...] = ()


def thresholds_section() -> type:
    """The ``[thresholds]`` dataclass: every check's thresholds, each declared (default, unit,
    source, range) by the check that owns it (burnin/verdicts/, ``burnin checks`` lists them)."""
    from burnin.verdicts.registry import threshold_section

    return threshold_section()


def _default_thresholds() -> Any:
    return thresholds_section()()


@dataclass(frozen=True, kw_only=True)
class InspectSection:
    # The SKU the seller or the purchase order claims (a key of burnin/data/skus.toml, e.g.
    # "H100-SXM5-80GB"); "" = judge each card against the SKU its PCI device id names.
    claimed_sku: str = ""


# An ISO 4217 currency code: three capital letters (EUR, USD, JPY).
_CURRENCY = {"pattern": "[A-Z]{3}", "expected": "a 3-letter ISO 4217 code like EUR or USD"}


@dataclass(frozen=True, kw_only=True)
class EnergySection:
    # What the site pays per kWh, for the cost of the burn-in in the reports and `burnin plan`
    # (energy from NVML's energy counter, reports/figures.py); unset = no cost shown.
    price_per_kwh: float | None = field(default=None, metadata=_range(0, 1e6))
    currency: str = field(default="", metadata=_CURRENCY)  # of price_per_kwh; needed with it

    def __post_init__(self) -> None:
        if self.price_per_kwh is not None and not self.currency:
            raise ConfigError(
                "energy.currency", 'needed with energy.price_per_kwh (e.g. currency = "EUR")'
            )


@dataclass(frozen=True, kw_only=True)
class ReportSection:
    # Where the cards stand, printed on the report's first line so a handed-over page names
    # its hall and rack; free text, never used to judge anything.
    site: str = ""
    rack: str = ""


@dataclass(frozen=True, kw_only=True)
class ProgressSection:
    # Seconds between the plain progress lines written when stderr is not a terminal (logs);
    # a terminal gets the live view, redrawn about once a second, instead.
    interval_s: float = field(default=30.0, metadata=_range(0.1, 86400))


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    profile: str = "default"
    run: RunSection = field(default_factory=RunSection)
    cpu: CpuSection = field(default_factory=CpuSection)
    telemetry: TelemetrySection = field(default_factory=TelemetrySection)
    watchdog: WatchdogSection = field(default_factory=WatchdogSection)
    ramp: RampSection = field(default_factory=RampSection)
    thresholds: Any = field(default_factory=_default_thresholds)  # thresholds_section()
    store: StoreSection = field(default_factory=StoreSection)
    thermal_guard: ThermalGuardSection = field(default_factory=ThermalGuardSection)
    preflight: PreflightSection = field(default_factory=PreflightSection)
    inspect: InspectSection = field(default_factory=InspectSection)
    energy: EnergySection = field(default_factory=EnergySection)
    report: ReportSection = field(default_factory=ReportSection)
    progress: ProgressSection = field(default_factory=ProgressSection)
    kernels: dict[str, Any] = field(default_factory=dict)  # name -> that kernel's Config

    def kernel_config(self, name: str) -> Any:
        return self.kernels[name]

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        out["kernels"] = {name: _plain(cfg) for name, cfg in self.kernels.items()}
        return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def build_section(cls: type, data: dict[str, Any], path: str, source: str | None = None) -> Any:
    """Build dataclass ``cls`` from a TOML table, rejecting unknown keys and bad values."""
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a table, got {type(data).__name__}", source)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, raw in data.items():
        key_path = f"{path}.{key}" if path else key
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(key_path, f"unknown key (known keys here: {known})", source)
        value = _coerce(hints[key], raw, key_path, source)
        meta = fields[key].metadata
        if isinstance(value, int | float) and not isinstance(value, bool):
            # A field without a declared range still gets a sane one: no negative sizes,
            # counts or durations, nothing a JSON consumer cannot represent exactly.
            lo, hi = meta.get("min", 0), meta.get("max", _MAX_PLAIN_NUMBER)
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise ConfigError(key_path, f"{value!r} is out of range [{lo}, {hi}]", source)
        if (
            isinstance(value, str)
            and "pattern" in meta
            and not re.fullmatch(meta["pattern"], value)
        ):
            raise ConfigError(key_path, f"expected {meta['expected']}, got {value!r}", source)
        if isinstance(value, tuple) and len(value) < meta.get("min_items", 0):
            raise ConfigError(key_path, f"needs at least {meta['min_items']} item(s)", source)
        kwargs[key] = value
    return cls(**kwargs)


def _coerce(hint: Any, raw: Any, key_path: str, source: str | None) -> Any:
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build_section(hint, raw, key_path, source)
    if origin is Literal:
        choices = typing.get_args(hint)
        if raw not in choices:
            raise ConfigError(key_path, f"must be one of {', '.join(map(str, choices))}", source)
        return raw
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if raw is None else _coerce(args[0], raw, key_path, source)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if isinstance(raw, str):
            raw = [p for p in raw.split(",") if p.strip()] if item is not str else raw.split(",")
        if not isinstance(raw, list | tuple):
            raise ConfigError(key_path, f"expected a list, got {raw!r}", source)
        return tuple(_coerce(item, r, f"{key_path}[{i}]", source) for i, r in enumerate(raw))
    if hint is bool:
        if not isinstance(raw, bool):
            raise ConfigError(key_path, f"expected true or false, got {raw!r}", source)
        return raw
    if hint is float:
        if key_path.endswith("_s") and isinstance(raw, str):
            return parse_duration(raw, key_path)
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ConfigError(key_path, f"expected a number, got {raw!r}", source)
        try:
            number = float(raw)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(key_path, f"expected a finite number, got {raw!r}", source)
        return number
    if hint is int:
        if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
            try:
                raw = int(raw)
            except ValueError:  # digits int() does not take, e.g. superscripts
                raise ConfigError(key_path, f"expected an integer, got {raw!r}", source) from None
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(key_path, f"expected an integer, got {raw!r}", source)
        return raw
    if hint is str:
        if not isinstance(raw, str):
            raise ConfigError(key_path, f"expected a string, got {raw!r}", source)
        if "\x00" in raw:
            raise ConfigError(key_path, "contains a NUL character", source)
        return raw
    return raw


def profile_names() -> list[str]:
    """Names of the profiles shipped in ``configs/``."""
    root = resources.files("burnin.configs")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def read_profile(profile: str) -> tuple[str, dict[str, Any], str]:
    """Return (name, raw table, source) for a shipped profile name or a TOML file path."""
    path = Path(profile)
    if profile.endswith(".toml") or path.exists():
        if not path.is_file():
            raise ConfigError("--config", f"no such file: {profile}")
        text, source, name = _read_text(path), str(path), path.stem
    else:
        res = resources.files("burnin.configs") / f"{profile}.toml"
        if not res.is_file():
            known = ", ".join(profile_names())
            raise ConfigError("--profile", f"unknown profile {profile!r} (known: {known})")
        text, source, name = res.read_text(encoding="utf-8"), f"configs/{profile}.toml", profile
    try:
        return name, tomllib.loads(text), source
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("(file)", f"not valid TOML: {exc}", source) from None
    except RecursionError:
        raise ConfigError("(file)", "not valid TOML: nested too deeply", source) from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("(file)", f"cannot read: {exc}", str(path)) from None


def parse_set(item: str) -> tuple[list[str], Any]:
    """Parse one ``--set section.key=value``; the value is read as TOML, else as a string."""
    key, sep, value = item.partition("=")
    keys = [k.strip() for k in key.split(".")]
    if not sep or not all(keys):
        raise ConfigError(item, "--set expects section.key=value")
    try:
        parsed: Any = tomllib.loads(f"v = {value}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        parsed = value
    return keys, parsed


def load_config(
    profile: str | None = None,
    overrides: typing.Sequence[str] = (),
    flags: dict[str, Any] | None = None,
) -> RunConfig:
    """Load the effective config: defaults < profile < ``--set`` overrides < flags.

    Args:
        profile: a shipped profile name (``quick``) or a path to a TOML file; None = defaults.
        overrides: ``section.key=value`` strings applied in order.
        flags: dedicated CLI flags as ``{"run.duration_s": 60.0, ...}``, applied last.

    Returns:
        The validated, frozen RunConfig.
    """
    raw: dict[str, Any] = {}
    name, source = "default", None
    if profile:
        name, raw, source = read_profile(profile)
    given: dict[str, str] = {}  # key path -> where a later layer set it
    for item in overrides:
        keys, value = parse_set(item)
        _assign(raw, keys, value, item)
        given[".".join(keys)] = f"--set {item}"
    for dotted, value in (flags or {}).items():
        if value is not None:
            _assign(raw, dotted.split("."), value, dotted)
            given[dotted] = "a command-line option"
    kernel_tables = raw.pop("kernels", {})
    threshold_table = raw.pop("thresholds", {})
    raw.setdefault("profile", name)
    try:
        config = build_section(RunConfig, raw, "", source)
        limits = build_section(thresholds_section(), threshold_table, "thresholds", source)
        config = dataclasses.replace(config, thresholds=limits)
        check_claimed_sku(config.inspect.claimed_sku, source)
        return dataclasses.replace(config, kernels=_build_kernels(config, kernel_tables, source))
    except ConfigError as exc:
        # Name where the bad value came from: the profile file, or the override that set it.
        origin = given.get(exc.key_path) or next(
            (o for k, o in given.items() if k.startswith(f"{exc.key_path}.")), None
        )
        if origin is None or origin == exc.source:
            raise
        raise ConfigError(exc.key_path, exc.problem, origin) from None


def check_claimed_sku(key: str | None, source: str | None = None) -> str | None:
    """``[inspect] claimed_sku``, or None when unset; an unknown key is a ConfigError (exit 2).

    ``load_config`` calls it, so a run refuses an unknown claim before any stress runs;
    ``burnin.inspect`` calls it for a claim passed in directly.
    """
    from burnin.skus import load_skus

    if not key:
        return None
    if key not in (skus := load_skus()):
        raise ConfigError(
            "inspect.claimed_sku", f"unknown SKU {key!r} (known: {', '.join(skus)})", source
        )
    return key


def _assign(raw: dict[str, Any], keys: list[str], value: Any, origin: str) -> None:
    node = raw
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(origin, f"'{key}' is a value, not a section")
        node = child
    node[keys[-1]] = value


def _build_kernels(config: RunConfig, tables: Any, source: str | None) -> dict[str, Any]:
    from burnin.kernels import registry

    if not isinstance(tables, dict):
        raise ConfigError("kernels", "expected a table of [kernels.<name>] sections", source)
    known = registry.names()
    for name in (*config.run.kernels, *tables):
        if name not in known:
            where = "run.kernels" if name in config.run.kernels else f"kernels.{name}"
            raise ConfigError(where, f"unknown kernel {name!r} (known: {', '.join(known)})", source)
    return {
        name: build_section(
            registry.get(name).Config, tables.get(name, {}), f"kernels.{name}", source
        )
        for name in known
    }
