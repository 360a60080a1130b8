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
    # starts protecting itself (reference/nvml.md §2.4, nvmlDeviceGetTemperatureThreshold).
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


@dataclass(frozen=True, kw_only=True)
class ThresholdsSection:
    # GCM's gpu_temperature check uses 85 C as its example limit (reference/nvml.md §3.6).
    warn_temp_c: float = field(default=85.0, metadata=_range(0, 150))
    # 0 = use the card's own HW-slowdown threshold from NVML (nvmlDeviceGetTemperatureThreshold).
    fail_temp_c: float = field(default=0.0, metadata=_range(0, 150))
    # Absolute floor for matmul TFLOP/s; 0 disables it (SKU-relative checks need no floor).
    min_matmul_tflops: float = field(default=0.0, metadata=_range(0, 1e6))
    # -- screening and health checks (issue 5); sources in reference/nvml.md §3 --
    # Memory total within ±2 % of the SKU's: totals vary with driver, ECC state and vGPU
    # (nvml.md §3.5, §4 notes). Fraction.
    identity_memory_tolerance: float = field(default=0.02, metadata=_range(0, 1))
    # Volatile uncorrectable ECC errors above this fail: DCGM health fails on any volatile DBE
    # (DcgmHealthWatch.cpp, nvml.md §3.1). Errors.
    ecc_dbe_max: int = field(default=0, metadata=_range(0, 1e12))
    # Corrected DRAM errors (volatile or lifetime) above this fail: Azure NHC check_gpu_ecc
    # 20000000 (nd96asr_v4.conf, nd96isr_h100_v5.conf; nvml.md §3.1). Errors.
    ecc_sbe_fail: int = field(default=20_000_000, metadata=_range(0, 1e15))
    # Corrected-error growth during stress that warns: NVIDIA publishes no rate (XID 92 "high
    # single-bit ECC rate" has no number, nvml.md §2.12); burnin warns at 1 per minute. Errors/min.
    ecc_sbe_warn_per_min: float = field(default=1.0, metadata=_range(0, 1e12))
    # Lifetime corrected errors that mark a card as worn: no NVIDIA number exists (nvml.md
    # §3.1); burnin warns 4 orders of magnitude below Azure's 20,000,000 failure line. Errors.
    wear_aggregate_sbe_warn: int = field(default=1000, metadata=_range(0, 1e15))
    # SBE + DBE retired pages at or above this fail: DCGM_LIMIT_MAX_RETIRED_PAGES 63
    # (DcgmGPUHardwareLimits.h; Azure: 62 with pending = table full). Pages.
    retired_pages_fail: int = field(default=63, metadata=_range(0, 1e6))
    # DBE-retired pages above this warn: DCGM's soft limit 15 (it fails when the last week also
    # grew; a snapshot has no dates, so burnin warns). Pages.
    retired_pages_dbe_warn: int = field(default=15, metadata=_range(0, 1e6))
    # Retired pages above this warn: Meta GCM's gpu_retired_pages default alert (> 10). Pages.
    retired_pages_warn: int = field(default=10, metadata=_range(0, 1e6))
    # Uncorrectable row remaps at or above this fail: DCGM_LIMIT_MAX_ROW_REMAP_UNCORRECTABLE and
    # Azure NHC, 512 = the remapper's capacity (nvml.md §3.1). Rows.
    remap_uncorrectable_fail: int = field(default=512, metadata=_range(0, 1e6))
    # PCIe replays per minute limit = ceil(BER × lane rate × 60 s × lanes), BER 1e-12: DCGM
    # GetExpectedPcieReplayRate (x16: 8 Gen3, 16 Gen4, 31 Gen5; nvml.md §3.2). Errors per bit.
    pcie_replay_ber: float = field(default=1e-12, metadata=_range(0, 1))
    # HW slowdown reasons (clocks ÷2 or more, nvml.h) in this many samples under load fail; one
    # alone may be a P-state change, which nvml.h says can show the bit. Samples.
    throttle_hw_fail_samples: int = field(default=2, metadata=_range(1, 1e9))
    # Enforced power limit below the default by more than this warns (limits are set in whole
    # watts; 2 % absorbs rounding on a 72 W L4). Fraction.
    power_limit_tolerance: float = field(default=0.02, metadata=_range(0, 1))
    # Enforced limit below this × default, or default below this × SKU TDP, fails: just under
    # the lowest stock setting in nvml.md §4 (H100 PCIe 300 of 350 W = 0.857). Fraction.
    power_limit_fail_ratio: float = field(default=0.85, metadata=_range(0, 1))
    # A card this hot must have its fans turning: zero-RPM fan modes only stop fans on a cool
    # card; NVIDIA publishes no fan threshold (nvml.md §3.4), so this is burnin's line. C.
    fan_hot_temp_c: float = field(default=60.0, metadata=_range(0, 150))
    # Fan speed below this while hot counts as stopped (NVML's % is the intended speed, RPM the
    # measured one; nvml.md §2.5). Percent.
    fan_min_pct: float = field(default=10.0, metadata=_range(0, 100))
    # A card this much hotter under load than the median of its same-SKU peers drawing the same
    # power (thermal_peer_power_band), and a robust-z outlier among them (peer_z), warns: NVIDIA
    # publishes no thermal-resistance limit (nvml.md §3.4, UNVERIFIED), which suggests exactly
    # this peer comparison; 10 C is burnin's line, above the few degrees chassis slots differ. C.
    thermal_peer_warn_c: float = field(default=10.0, metadata=_range(0, 150))
    # "The same power": median power under load within this share of the card's. Fraction.
    thermal_peer_power_band: float = field(default=0.10, metadata=_range(0, 1))
    # Median power under load below this × the peers' median (same SKU, same kernels), and a
    # robust-z outlier, warns: DCGM's targeted_power fails a card whose power "did not reach
    # desired power minimum" (dcgm_errors.h, nvml.md §3.4); burnin's desired power is its
    # peers'. 0.8 leaves room for the ±5 % DCGM tolerates around its target. Fraction.
    power_reach_warn_ratio: float = field(default=0.80, metadata=_range(0, 1))
    # Peers (same SKU, same kernel shape): robust z = 0.6745·(x − median)/MAD (DESIGN.md); 3.5
    # is Iglewicz & Hoaglin's (1993) outlier cutoff for this modified z-score. Unitless.
    peer_z: float = field(default=3.5, metadata=_range(0, 1e6))
    # An outlier must also sit this share below the peer median to WARN: DCGM targeted_power
    # holds its moving average within ±5 % (reference/anchors.md, DCGM diag). Fraction.
    peer_warn_drop: float = field(default=0.05, metadata=_range(0, 1))
    # FAIL below this × the peer median: DCGM diag's "0.75 × measured" minimum convention
    # (nvml.md §4, diag-skus.yaml.in), with the peers' median as the measured value. Fraction.
    peer_fail_ratio: float = field(default=0.75, metadata=_range(0, 1))
    # MAD floor as a share of the median: identical cards have MAD ≈ 0, so a z-score alone
    # would flag noise; the floor asks for a real gap. Fraction.
    peer_mad_floor: float = field(default=0.01, metadata=_range(0, 1))
    # Matmul TFLOP/s / the SKU's dense datasheet peak of the same dtype (nvml.md §4). WARN below
    # 0.5: DCGM's 0.75 × measured on the ≈0.8 an H100 SXM reaches on bf16 8192³ (issue 4:
    # 790-800 of 989) gives 0.6, lowered to 0.5 for power-capped PCIe cards (A10, L4) whose
    # achievable share the reference does not give. Fraction.
    throughput_warn_peak_fraction: float = field(default=0.5, metadata=_range(0, 1))
    # FAIL below 0.75 × the WARN line (DCGM's 0.75 × measured rule again). Fraction.
    throughput_fail_peak_fraction: float = field(default=0.375, metadata=_range(0, 1))
    # Smaller GEMMs cannot fill a datacenter GPU, so below this m=n=k the datasheet comparison
    # SKIPs (DCGM and gpu-burn both use 8192). Elements.
    throughput_min_size_for_peak: int = field(default=4096, metadata=_range(1, 1 << 20))
    # Per-batch matmul TFLOP/s coefficient of variation: WARN above DCGM targeted_power's ±5 %
    # moving-average band (anchors.md). Fraction.
    stability_max_cv: float = field(default=0.05, metadata=_range(0, 10))
    # A dip: a ~1 s window below (1 − this) × the run's median window; WARN on any (twice the
    # ±5 % band, so one noisy window is not a dip). Fraction.
    stability_max_dip: float = field(default=0.10, metadata=_range(0, 1))
    # Device memory GB/s / the SKU's datasheet peak. FAIL below 0.57: DCGM diag's H100 SXM
    # minimum (1,905,000 MB/s = 0.75 × measured) / its 3,350 GB/s peak; the same 0.75 rule on
    # the lowest typical achieved share in nvml.md §4 (0.76, H100 SXM) also gives 0.57. Fraction.
    membw_fail_peak_fraction: float = field(default=0.57, metadata=_range(0, 1))
    # WARN below 0.65 ≈ 0.85 × that lowest typical share 0.76 (nvml.md §4 notes). Fraction.
    membw_warn_peak_fraction: float = field(default=0.65, metadata=_range(0, 1))
    # min(H2D, D2H) pinned GB/s / the link's theoretical rate (generation × width). WARN below
    # 0.75: Azure NHC fails under 24 GB/s on Gen4 x16 (31.5) and 48 GB/s on Gen5 x16 (63), both
    # ≈ 0.76 (nvml.md §3.2, anchors.md check_gpu_bw). Fraction.
    pcie_warn_link_fraction: float = field(default=0.75, metadata=_range(0, 1))
    # FAIL below 0.5: what a link trained one generation down or at half width delivers. Fraction.
    pcie_fail_link_fraction: float = field(default=0.5, metadata=_range(0, 1))
    # -- all-reduce (kernels/allreduce.py, burnin/verdicts/network.py) --
    # Node all-reduce busbw at the largest size, judged on cards of a known SKU only; 0 = off.
    # WARN below it, FAIL below 0.9 × it (nccl-tests FAILs "Avg bus bandwidth" below 0.9 ×
    # NCCL_TESTS_MIN_BW). Azure NHC check_nccl_allreduce: 460 for 8× H100 SXM at 16 GiB
    # (nd96isr_h100_v5.conf), 431 for H200 (nd96isr_h200_v5.conf); anchors.md. GB/s.
    min_allreduce_busbw_gbps: float = field(default=0.0, metadata=_range(0, 1e6))
    # slow-link: a GPU whose best pair, or a pair, is below this × the typical pair WARNs
    # (nccl-tests' 0.9 × floor tolerance again; anchors.md). Fraction.
    slow_link_warn_ratio: float = field(default=0.9, metadata=_range(0, 1))
    # ... and FAILs below this: DCGM diag's "0.75 × measured" minimum convention, with the
    # typical pair as the measured value (diag-skus.yaml.in; anchors.md). Fraction.
    slow_link_fail_ratio: float = field(default=0.75, metadata=_range(0, 1))


@dataclass(frozen=True, kw_only=True)
class InspectSection:
    # The SKU the seller or the purchase order claims (a key of burnin/data/skus.toml, e.g.
    # "H100-SXM5-80GB"); "" = judge each card against the SKU its PCI device id names.
    claimed_sku: str = ""


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    profile: str = "default"
    run: RunSection = field(default_factory=RunSection)
    cpu: CpuSection = field(default_factory=CpuSection)
    telemetry: TelemetrySection = field(default_factory=TelemetrySection)
    watchdog: WatchdogSection = field(default_factory=WatchdogSection)
    ramp: RampSection = field(default_factory=RampSection)
    thresholds: ThresholdsSection = field(default_factory=ThresholdsSection)
    store: StoreSection = field(default_factory=StoreSection)
    thermal_guard: ThermalGuardSection = field(default_factory=ThermalGuardSection)
    preflight: PreflightSection = field(default_factory=PreflightSection)
    inspect: InspectSection = field(default_factory=InspectSection)
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
        if isinstance(value, tuple) and len(value) < meta.get("min_items", 0):
            raise ConfigError(key_path, f"needs at least {meta['min_items']} item(s)", source)
        kwargs[key] = value
    return cls(**kwargs)


def _coerce(hint: Any, raw: Any, key_path: str, source: str | None) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
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
    raw.setdefault("profile", name)
    try:
        config = build_section(RunConfig, raw, "", source)
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
