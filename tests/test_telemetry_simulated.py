"""burnin.sim.telemetry (+ burnin.sim.model): a simulated node reads like NVML, faults included."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from burnin.errors import TelemetryError
from burnin.sim.faults import make_fault
from burnin.sim.model import DeviceActivity, SimulatedGpu, board_for, build_gpu
from burnin.sim.telemetry import FaultTelemetry, SimulatedTelemetry, simulated_inventory
from burnin.skus import load_skus, resolve
from burnin.telemetry.base import Sample, TelemetryClient

H100 = "H100-SXM5-80GB"
WINDOW = (10.0, 310.0)  # the card's stress, in the run's elapsed seconds


def card(sku: str = H100, *faults: Any, noise: float = 0.0, index: int = 0) -> SimulatedGpu:
    made = [make_fault(kind, params) for kind, params in faults]
    return build_gpu(board_for(sku), seed=5, node=0, index=index, noise=noise, faults=made)


def telemetry(*gpus: SimulatedGpu) -> SimulatedTelemetry:
    return SimulatedTelemetry(gpus, load=dict.fromkeys(range(len(gpus)), WINDOW))


def run(gpu: SimulatedGpu, until_s: float = 300.0, step_s: float = 1.0) -> list[Sample]:
    tel, out, t = telemetry(gpu), [], 0.0
    while t <= until_s:
        out.append(tel.sample(0, t))
        t += step_s
    return out


def test_is_a_telemetry_client() -> None:
    tel = telemetry(card(), card(index=1))
    assert isinstance(tel, TelemetryClient)
    assert tel.device_count() == 2
    assert tel.driver_info().backend == "simulated"
    assert tel.processes(1) == []
    with pytest.raises(TelemetryError, match="no GPU 2"):
        tel.sample(2, 0.0)


@pytest.mark.parametrize("key", list(load_skus()))
def test_inventory_is_the_genuine_card_of_each_sku(key: str) -> None:
    sku = load_skus()[key]
    inv = simulated_inventory(card(key))
    assert inv.simulated
    assert inv.name == sku.nvml_names[0]
    assert inv.pci_device_id == sku.pci_device_ids[0]
    assert inv.memory_total_mib == sku.expected_memory_total_mib()
    assert resolve(inv) is sku  # the SKU table recognises it as itself
    assert inv.sm_count == sku.sm_count and inv.compute_capability == sku.compute_capability
    assert inv.power_limit_min_w < inv.power_limit_default_w == sku.tdp_w
    assert inv.power_limit_enforced_w == sku.tdp_w <= inv.power_limit_max_w
    assert inv.slowdown_temp_c < inv.shutdown_temp_c
    assert (inv.pcie_max_gen, inv.pcie_max_width) == (sku.pcie_gen, sku.pcie_width)
    assert re.fullmatch(r"[0-9a-f]{8}", inv.pci_subsystem_id or "")
    geforce = "GeForce" in sku.nvml_names[0]
    assert (inv.serial is None) == geforce == ("serial" in inv.unsupported)
    assert (inv.fan_count is None) == (not sku.fans) == ("fan_count" in inv.unsupported)
    assert inv.inforom_valid is (None if geforce else True)


def test_identity_is_deterministic_unique_and_shaped_like_nvml() -> None:
    board = board_for(H100)
    fleet = [
        build_gpu(board, seed=7, node=n, index=i, noise=0.01) for n in range(4) for i in range(8)
    ]
    again = [
        build_gpu(board, seed=7, node=n, index=i, noise=0.01) for n in range(4) for i in range(8)
    ]
    other = build_gpu(board, seed=8, node=0, index=0, noise=0.01)
    assert fleet == again
    assert len({g.serial for g in fleet}) == len({g.uuid for g in fleet}) == 32
    assert other.serial != fleet[0].serial
    uuid = r"GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    for g in fleet:
        assert re.fullmatch(r"1\d{12}", g.serial or "") and re.fullmatch(uuid, g.uuid)
        assert re.fullmatch(r"00000000:[0-9A-F]{2}:00\.0", g.pci_bus_id)
    twin = build_gpu(board, seed=7, node=1, index=2, noise=0.01, twin_serial=fleet[0].serial)
    assert twin.serial == fleet[0].serial and twin.uuid != fleet[0].uuid


def test_healthy_card_idles_then_loads_then_cools() -> None:
    samples = run(card(), until_s=400.0)
    idle, loaded, after = samples[5], samples[200], samples[400]
    assert idle.util_pct == 0 and idle.throttle_reasons == ("gpu_idle",) and idle.pcie_gen == 1
    assert loaded.util_pct == 100 and loaded.throttle_reasons == ()
    assert (loaded.pcie_gen, loaded.pcie_width) == (5, 16)
    assert idle.temp_c < loaded.temp_c < 85 and loaded.power_w > 5 * idle.power_w
    assert loaded.power_w <= loaded.power_limit_w == 700
    assert loaded.sm_clock_mhz > 1800 and idle.sm_clock_mhz < 400
    assert loaded.ecc_volatile_sbe == loaded.ecc_volatile_dbe == loaded.pcie_replay_count == 0
    assert after.util_pct == 0 and after.temp_c < loaded.temp_c
    assert "fan_pct" in loaded.unsupported and loaded.fan_pct is None  # passively cooled
    energy = [s.energy_j for s in samples]
    assert all(b >= a for a, b in itertools.pairwise(energy))
    joules = sum((a.power_w + b.power_w) / 2 for a, b in itertools.pairwise(samples))
    assert energy[-1] - energy[0] == pytest.approx(joules, rel=1e-6)


@pytest.mark.parametrize(
    ("sku", "faults", "noise"),
    [
        (H100, (), 0.05),
        ("RTX-4090-24GB", (), 0.1),
        (H100, (("power-cap", {"limit_w": 300.0}),), 0.05),
        (H100, (("thermal", {"max_temp_c": 95.0}),), 0.05),
    ],
)
def test_energy_never_exceeds_the_power_limit_times_the_time(
    sku: str, faults: tuple[Any, ...], noise: float
) -> None:
    samples = run(card(sku, *faults, noise=noise), until_s=600.0, step_s=2.5)
    limit_w = samples[0].power_limit_w
    assert max(s.power_w for s in samples) <= limit_w
    assert samples[-1].energy_j - samples[0].energy_j <= limit_w * 600.0


# fault kind, parameters, SKU, what the samples under load must show
LOADED_FAULTS = [
    ("thermal", {"max_temp_c": 95.0}, H100, "hot"),
    ("power-cap", {"limit_w": 300.0}, H100, "capped"),
    ("pcie-degraded", {"gen": 3, "width": 8}, H100, "link"),
    ("pcie-replay", {"per_min": 100.0}, H100, "replays"),
    ("ecc", {}, H100, "ecc"),
    ("fan", {"speed_pct": 0.0}, "RTX-4090-24GB", "fan"),
    ("hbm-slow", {"factor": 0.8}, H100, "memclock"),
]


@pytest.mark.parametrize(("kind", "params", "sku", "shows"), LOADED_FAULTS)
def test_faults_show_in_telemetry_under_load(kind: str, params: dict, sku: str, shows: str) -> None:
    healthy = run(card(sku))
    samples = run(card(sku, (kind, params)))
    loaded = [s for s in samples if s.util_pct == 100]
    at_60s, at_120s = samples[70], samples[130]  # 60 s and 120 s into the stress
    reasons = {r for s in loaded for r in s.throttle_reasons}
    if shows == "hot":
        assert max(s.temp_c for s in loaded) >= 95 - 1
        assert {"sw_thermal_slowdown", "hw_slowdown", "hw_thermal_slowdown"} <= reasons
        assert min(s.sm_clock_mhz for s in loaded) < 0.6 * healthy[200].sm_clock_mhz
    elif shows == "capped":
        assert reasons == {"sw_power_cap"} and max(s.power_w for s in loaded) <= 300
        assert at_120s.sm_clock_mhz < healthy[130].sm_clock_mhz
    elif shows == "link":
        assert {(s.pcie_gen, s.pcie_width) for s in loaded} == {(3, 8)}
    elif shows == "replays":
        assert at_120s.pcie_replay_count - at_60s.pcie_replay_count == 100
    elif shows == "ecc":
        assert at_120s.ecc_volatile_sbe - at_60s.ecc_volatile_sbe == 100
        assert at_120s.ecc_volatile_dbe == 1
    elif shows == "fan":
        hot = [s for s in loaded if s.temp_c >= 60]
        assert hot and all(s.fan_pct == 0 and s.fan_rpm == 0 for s in hot)
        assert all(s.fan_target_pct > 30 for s in hot)  # the controller asks; nothing turns
        assert max(s.temp_c for s in loaded) > max(s.temp_c for s in healthy)
    elif shows == "memclock":
        assert at_120s.mem_clock_mhz == int(0.8 * healthy[130].mem_clock_mhz)


@pytest.mark.parametrize(
    ("kind", "params", "sku", "code"),
    [
        ("xid", {"code": 79}, H100, 79),
        ("xid", {"code": 13}, H100, 13),
        ("ecc", {}, H100, 94),  # contained ECC error on Ampere and later
        ("ecc", {}, "V100-SXM2-32GB", 48),  # double-bit ECC error before
    ],
)
def test_fault_xids_arrive_once_after_the_stress_starts(
    kind: str, params: dict, sku: str, code: int
) -> None:
    tel = telemetry(card(sku, (kind, params)))
    assert tel.events(WINDOW[0] - 1) == []
    events = tel.events(WINDOW[0] + 60)
    assert [(e.kind, e.code, e.index) for e in events] == [("xid", code, 0)]
    assert WINDOW[0] <= events[0].elapsed_s <= WINDOW[0] + 60 and str(code) in events[0].message
    assert tel.events(WINDOW[0] + 120) == []


def test_lost_card_raises_gpu_is_lost_and_reports_xid_79() -> None:
    tel = telemetry(card(H100, ("lost", {"after_s": 30.0})))
    assert tel.sample(0, WINDOW[0] + 29).util_pct == 100
    with pytest.raises(TelemetryError, match="GPU is lost"):
        tel.sample(0, WINDOW[0] + 31)
    assert [(e.code, e.elapsed_s) for e in tel.events(WINDOW[0] + 31)] == [(79, WINDOW[0] + 30)]


def test_crashed_card_goes_idle_and_cools() -> None:
    samples = run(card(H100, ("crash", {"after_s": 60.0})))
    assert samples[60].util_pct == 100 and samples[80].util_pct == 0
    assert samples[200].temp_c < samples[60].temp_c


@pytest.mark.parametrize(
    ("kind", "params", "sku", "expected"),
    [
        ("identity", {"memory_mib": 40960}, H100, {"memory_total_mib": 40960}),
        ("identity", {}, H100, {"memory_total_mib": 81559 // 2}),  # documented default
        ("identity", {"pci_device_id": "2331"}, H100, {"pci_device_id": "2331"}),
        ("identity", {"name": "NVIDIA H200"}, H100, {"name": "NVIDIA H200"}),
        ("identity", {"sm_count": 114}, H100, {"sm_count": 114}),
        ("vbios", {"version": "96.00.30.00.01"}, H100, {"vbios_version": "96.00.30.00.01"}),
        ("inforom-invalid", {}, H100, {"inforom_valid": False}),
        ("power-cap", {"limit_w": 300.0}, H100, {"power_limit_enforced_w": 300.0}),
        (
            "worn",
            {},
            H100,
            {"ecc_aggregate_sbe": 5000, "ecc_aggregate_dbe": 3, "remapped_rows_correctable": 12},
        ),
        (
            "worn",
            {"retired_pages": 7},
            "V100-SXM2-32GB",
            {"ecc_aggregate_sbe": 5000, "retired_pages_dbe": 7},
        ),
        (
            "row-remap",
            {"failure": True},
            "A100-SXM4-80GB",
            {
                "remapped_rows_correctable": 10,
                "remapped_rows_uncorrectable": 4,
                "remapped_rows_pending": True,
                "remapped_rows_failure": True,
            },
        ),
        (
            "retired-pages",
            {},
            "V100-SXM2-16GB",
            {"retired_pages_sbe": 10, "retired_pages_dbe": 20, "retired_pages_pending": True},
        ),
    ],
)
def test_inventory_faults(kind: str, params: dict, sku: str, expected: dict) -> None:
    healthy = simulated_inventory(card(sku)).to_dict()
    got = simulated_inventory(card(sku, (kind, params))).to_dict()
    assert {k: got[k] for k in expected} == expected
    assert {k: healthy[k] for k in expected} != expected


@pytest.mark.parametrize(
    ("sku", "absent"),
    [
        (H100, {"retired_pages_sbe", "fan_count", "fan_pct"}),
        ("V100-SXM2-16GB", {"remapped_rows_pending"}),
        (
            "RTX-3090-24GB",
            {"serial", "ecc_aggregate_sbe", "remapped_rows_failure", "nvlink_links_up"},
        ),
        ("L4-24GB", {"fan_count", "retired_pages_pending", "mem_max_temp_c", "mem_temp_c"}),
    ],
)
def test_what_nvml_cannot_report_is_none_and_listed(sku: str, absent: set[str]) -> None:
    inv = simulated_inventory(card(sku)).to_dict()
    sample = telemetry(card(sku)).sample(0, 100.0).to_dict()
    for name in absent:
        record = inv if name in inv else sample
        assert record[name] is None and name in record["unsupported"], name


def test_noise_spreads_cards_but_the_same_seed_reads_the_same() -> None:
    quiet = [run(card(index=i), until_s=200)[150] for i in range(4)]
    assert len({(s.temp_c, s.power_w, s.sm_clock_mhz) for s in quiet}) == 1
    noisy = [run(card(noise=0.02, index=i), until_s=200)[150] for i in range(4)]
    assert len({(s.temp_c, s.power_w) for s in noisy}) > 1
    assert run(card(noise=0.02, index=1), until_s=200)[150] == noisy[1]


def test_actual_worker_activity_drives_the_load() -> None:
    activity = DeviceActivity(2)
    gpus = [card(index=0), card(H100, ("hang", {"after_s": 1.0}), index=1)]
    tel = SimulatedTelemetry(gpus, activity=activity, idle_after_s=20.0)

    def at(t: float) -> tuple[Sample, Sample]:
        return tel.sample(0, t), tel.sample(1, t)

    assert {s.util_pct for s in at(5.0)} == {0.0}  # no worker yet
    activity.started(0, 10.0)
    activity.started(1, 10.0)
    assert {s.util_pct for s in at(5.0)} == {0.0}  # before their start, on the node's clock
    activity.busy(0, 100.0)
    activity.hung(1)
    first, stuck = at(100.0)
    assert first.util_pct == stuck.util_pct == 100 and first.temp_c > 50
    first, stuck = at(150.0)  # card 0's worker went quiet 50 s ago; card 1 hangs busy
    assert first.util_pct == 0 and first.temp_c < 50 and stuck.util_pct == 100


@pytest.mark.parametrize(
    ("started_s", "elapsed_s", "lost"),
    [(None, 4.9, False), (None, 5.0, True), (10.0, 14.9, False), (10.0, 15.0, True)],
)
def test_an_injected_lost_fault_looks_like_nvml_after_its_time(
    started_s: float | None, elapsed_s: float, lost: bool
) -> None:
    from fakes import FakeTelemetry

    faults = {0: (make_fault("lost", {"after_s": 5.0}),), 1: (make_fault("slow"),)}
    client = FakeTelemetry(2)
    assert FaultTelemetry.wrap(client, {1: faults[1]}) is client  # nothing to look lost
    starts = None if started_s is None else {0: started_s}
    wrapped = FaultTelemetry.wrap(client, faults, starts)
    assert isinstance(wrapped, FaultTelemetry)
    if lost:
        with pytest.raises(TelemetryError, match="GPU is lost"):
            wrapped.sample(0, elapsed_s)
    else:
        assert wrapped.sample(0, elapsed_s) is not None
    assert wrapped.sample(1, elapsed_s) is not None  # the other card reads on
    assert wrapped.inventory(1).serial == client.inventory(1).serial
