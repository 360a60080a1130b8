"""Health checks over hand-built GpuData: thermal, throttle, power and fan, as scenario tables."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from burnin.verdicts import CheckContext, GpuData, Status, registered

H100: dict[str, Any] = {
    "device": 0,
    "kind": "cuda",
    "name": "NVIDIA H100 80GB HBM3",
    "pci_device_id": "2330",
    "slowdown_temp_c": 89.0,
    "shutdown_temp_c": 92.0,
    "mem_max_temp_c": 95.0,
    "power_limit_default_w": 700.0,
    "power_limit_enforced_w": 700.0,
    "fan_count": None,
    "unsupported": ["fan_count"],
}
RTX4090 = {
    **H100,
    "name": "NVIDIA GeForce RTX 4090",
    "pci_device_id": "2684",
    "power_limit_default_w": 450.0,
    "power_limit_enforced_w": 450.0,
    "fan_count": 2,
    "unsupported": [],
}
RUN = [
    {"type": "kernel-start", "kernel": "matmul", "elapsed_s": 0.0},
    {"type": "result", "kernel": "matmul", "elapsed_s": 70.0, "metrics": {}},
]


def samples(n: int = 7, **fields: Any) -> list[dict[str, Any]]:
    """n samples 10 s apart under load (from 1 s); a callable value gets the sample's index."""
    return [
        {
            "elapsed_s": 1.0 + 10.0 * i,
            **{k: (v(i) if callable(v) else v) for k, v in fields.items()},
        }
        for i in range(n)
    ]


def gpu(inv: dict[str, Any] | None = None, sampled: Any = None, run: bool = True, **changes: Any):
    return GpuData(
        node="node-00",
        index=0,
        inventory={**(inv or H100), **changes},
        samples=(sampled if sampled is not None else samples(temp_c=70.0, power_w=650.0))
        if run
        else [],
        records=list(RUN) if run else [],
        events=[],
        planned_kernels=["matmul"] if run else [],
    )


def judge(target: GpuData, check: str, **thresholds: Any) -> list[Any]:
    ctx = CheckContext(thresholds=thresholds, fleet=[target])
    return list(registered()[check](target, ctx))


SCENARIOS = [
    ("cool card", gpu(), "thermal", Status.PASS, "none", "peak 70 C"),
    (
        "warm card",
        gpu(sampled=samples(temp_c=86.0)),
        "thermal",
        Status.WARN,
        "inspect-cooling",
        "86 C",
    ),
    (
        "hit slowdown",
        gpu(sampled=samples(temp_c=lambda i: 80 + 2 * i)),
        "thermal",
        Status.FAIL,
        "inspect-cooling",
        "slowdown limit of 89 C",
    ),
    (
        "memory at its max",
        gpu(sampled=samples(temp_c=70.0, mem_temp_c=96.0)),
        "thermal",
        Status.FAIL,
        "inspect-cooling",
        "memory reached 96 C",
    ),
    (
        "no thermal margin",
        gpu(sampled=samples(temp_c=70.0, temp_margin_c=lambda i: 5 - i)),
        "thermal",
        Status.FAIL,
        "inspect-cooling",
        "margin",
    ),
    (
        "no sensor",
        gpu(sampled=samples(temp_c=None)),
        "thermal",
        Status.SKIP,
        "none",
        "no temperature",
    ),
    (
        "clean clocks",
        gpu(sampled=samples(throttle_reasons=[])),
        "throttle",
        Status.PASS,
        "none",
        "no HW slowdown",
    ),
    (
        "power cap is normal",
        gpu(sampled=samples(throttle_reasons=["sw_power_cap"])),
        "throttle",
        Status.PASS,
        "none",
        "power cap held clocks in 7",
    ),
    (
        "HW thermal slowdown",
        gpu(sampled=samples(throttle_reasons=["hw_thermal_slowdown"])),
        "throttle",
        Status.FAIL,
        "inspect-cooling",
        "hw_thermal_slowdown active in 7 of 7",
    ),
    (
        "power brake",
        gpu(sampled=samples(throttle_reasons=["hw_power_brake_slowdown"])),
        "throttle",
        Status.FAIL,
        "reseat",
        "PSU",
    ),
    (
        "one HW blip warns",
        gpu(sampled=samples(throttle_reasons=lambda i: ["hw_slowdown"] if i == 3 else [])),
        "throttle",
        Status.WARN,
        "inspect-cooling",
        "1 of 7",
    ),
    (
        "SW thermal",
        gpu(sampled=samples(throttle_reasons=["sw_thermal_slowdown"])),
        "throttle",
        Status.WARN,
        "inspect-cooling",
        "sw_thermal_slowdown",
    ),
    (
        "application clocks",
        gpu(sampled=samples(throttle_reasons=["applications_clocks_setting"])),
        "throttle",
        Status.WARN,
        "retest",
        "applications_clocks_setting",
    ),
    (
        "reasons not supported",
        gpu(sampled=samples(unsupported=["throttle_reasons"])),
        "throttle",
        Status.SKIP,
        "none",
        "no clock-event reasons",
    ),
    ("default limit", gpu(), "power", Status.PASS, "none", "700 W = default"),
    (
        "capped a little",
        gpu(power_limit_enforced_w=650.0),
        "power",
        Status.WARN,
        "retest",
        "lowered to 650 W",
    ),
    (
        "capped hard",
        gpu(power_limit_enforced_w=300.0),
        "power",
        Status.FAIL,
        "retest",
        "nvidia-smi -pl 700",
    ),
    (
        "capped during the run",
        gpu(sampled=samples(temp_c=70.0, power_limit_w=lambda i: 700.0 if i < 3 else 300.0)),
        "power",
        Status.FAIL,
        "retest",
        "300 W",
    ),
    (
        "down-rated board",
        gpu(power_limit_default_w=400.0, power_limit_enforced_w=400.0),
        "power",
        Status.WARN,
        "return-to-seller",
        "ships at 700 W",
    ),
    (
        "no limits",
        gpu(power_limit_default_w=None),
        "power",
        Status.SKIP,
        "none",
        "default power limit",
    ),
    ("passive card", gpu(), "fan", Status.SKIP, "none", "passively cooled"),
    (
        "fans spinning while hot",
        gpu(RTX4090, sampled=samples(temp_c=75.0, fan_pct=55.0, fan_rpm=1800)),
        "fan",
        Status.PASS,
        "none",
        "55-55 %",
    ),
    (
        "fans stopped while hot",
        gpu(RTX4090, sampled=samples(temp_c=80.0, fan_pct=0.0)),
        "fan",
        Status.FAIL,
        "inspect-cooling",
        "fans at 0 % while the card was at 80 C",
    ),
    (
        "fan commanded but dead",
        gpu(RTX4090, sampled=samples(temp_c=80.0, fan_pct=60.0, fan_target_pct=60.0, fan_rpm=0)),
        "fan",
        Status.FAIL,
        "inspect-cooling",
        "0 RPM",
    ),
    (
        "zero-RPM mode on a cool card proves nothing",
        gpu(RTX4090, sampled=samples(temp_c=45.0, fan_pct=0.0)),
        "fan",
        Status.SKIP,
        "none",
        "never reached 60 C",
    ),
]


@pytest.mark.parametrize(
    ("target", "check", "status", "action", "words"),
    [pytest.param(*s[1:], id=s[0]) for s in SCENARIOS],
)
def test_scenario(target: GpuData, check: str, status: Status, action: str, words: str) -> None:
    verdicts = judge(target, check)
    assert len(verdicts) == 1, verdicts
    verdict = verdicts[0]
    assert (verdict.check, verdict.status, verdict.action) == (check, status, action), verdict
    assert words in verdict.message, verdict.message


def test_fail_temp_from_config_overrides_the_card_threshold() -> None:
    target = gpu(sampled=samples(temp_c=80.0))
    assert judge(target, "thermal")[0].status == Status.PASS
    failed = judge(target, "thermal", fail_temp_c=78.0)[0]
    assert (failed.status, failed.limit) == (Status.FAIL, 78.0)


def test_throttle_counts_only_samples_under_load() -> None:
    """A thermal-slowdown bit after the kernel ended is not a burn-in finding."""
    idle = samples(throttle_reasons=[])
    idle.append({"elapsed_s": 90.0, "throttle_reasons": ["hw_thermal_slowdown"]})
    idle.append({"elapsed_s": 0.0, "throttle_reasons": ["hw_thermal_slowdown"]})  # at its start
    assert judge(gpu(sampled=idle), "throttle")[0].status == Status.PASS


# The guard's event carries the elapsed_s of the sample that tripped it (index 3: 31 s).
GUARD_AT_31 = {"kind": "thermal-guard", "device": 0, "elapsed_s": 31.0, "temp_c": 89.0}


@pytest.mark.parametrize(
    ("hot_from", "events", "status", "hw_samples"),
    [
        (3, [], Status.FAIL, 4),  # HW slowdown for 4 samples under load: a throttling card
        (3, [GUARD_AT_31], Status.WARN, 1),  # the guard stopped it at the first: load ended
        (4, [GUARD_AT_31], Status.PASS, 0),  # hot only after the guard: the card's wind-down
    ],
    ids=["no guard", "guard at first hot sample", "hot after the guard"],
)
def test_throttle_counts_samples_up_to_the_thermal_guard(
    hot_from: int, events: list[dict[str, Any]], status: Status, hw_samples: int
) -> None:
    """After the guard stops the stress, how many hot samples the sampler catches before the
    worker finishes its step is the host's scheduling: they are not under load."""
    hot = samples(throttle_reasons=lambda i: ["hw_slowdown"] if i >= hot_from else [])
    verdict = judge(dataclasses.replace(gpu(sampled=hot), events=events), "throttle")[0]
    assert verdict.status == status
    assert (f"hw_slowdown active in {hw_samples} of" in verdict.message) == bool(hw_samples)


def test_throttle_fail_sample_count_is_configurable() -> None:
    blip = gpu(sampled=samples(throttle_reasons=lambda i: ["hw_slowdown"] if i < 2 else []))
    assert judge(blip, "throttle")[0].status == Status.FAIL
    assert judge(blip, "throttle", throttle_hw_fail_samples=3)[0].status == Status.WARN


@pytest.mark.parametrize(
    ("check", "emits"), [("thermal", False), ("throttle", False), ("fan", False), ("power", True)]
)
def test_inspect_snapshot_has_no_run(check: str, emits: bool) -> None:
    assert bool(judge(gpu(run=False), check)) == emits


def test_cpu_fallback() -> None:
    cpu = gpu({"kind": "cpu", "name": "CPU fallback"}, sampled=samples())
    assert [v.status for v in judge(cpu, "thermal")] == [Status.SKIP]
    assert judge(cpu, "throttle") == judge(cpu, "power") == judge(cpu, "fan") == []


# -- against peers under the same load ------------------------------------------------------


def fleet_of(*cards: tuple[float, float], events: dict[int, list] | None = None) -> list[GpuData]:
    """Same-SKU cards under the same load, each (power_w, temp_c) in all its samples."""
    return [
        dataclasses.replace(
            gpu(sampled=samples(power_w=p, temp_c=t)),
            index=i,
            events=list((events or {}).get(i, [])),
        )
        for i, (p, t) in enumerate(cards)
    ]


def judge_fleet(fleet: list[GpuData], check: str, index: int = 0) -> Any:
    ctx = CheckContext(thresholds={}, fleet=fleet)
    (verdict,) = registered()[check](fleet[index], ctx)
    return verdict


PEER_SCENARIOS = [
    # (name, fleet, check, status, words)
    (
        "hotter than peers at the same power",
        fleet_of((650, 80), (650, 66), (655, 67), (645, 65), (650, 66)),
        "thermal",
        Status.WARN,
        "+14 C against the median of 4 peers at the same power",
    ),
    (
        "as hot as peers",
        fleet_of((650, 67), (650, 66), (655, 67), (645, 65), (650, 66)),
        "thermal",
        Status.PASS,
        "+1 C against the median of 4 peers",
    ),
    (
        # Chassis slots differ: +10 C over the median, but no outlier in a spread fleet.
        "spread fleet",
        fleet_of((650, 80), (650, 60), (655, 65), (645, 70), (650, 75)),
        "thermal",
        Status.PASS,
        "+12 C against the median of 4 peers",
    ),
    (
        # Hot, but at a far lower power than any peer: not the same load, not compared.
        "no peer at its power",
        fleet_of((400, 80), (650, 66), (655, 67), (645, 65)),
        "thermal",
        Status.PASS,
        "peak 80 C",
    ),
    (
        "below its peers' power",
        fleet_of((450, 60), (650, 66), (655, 67), (645, 65), (650, 66)),
        "power",
        Status.WARN,
        "drew 450 W under load = 0.69 x the median of 4 peers",
    ),
    (
        "at its peers' power",
        fleet_of((640, 66), (650, 66), (655, 67), (645, 65), (650, 66)),
        "power",
        Status.PASS,
        "= 0.98 x the median of 4 peers",
    ),
    (
        # A crashed card idles after the crash: its low power is the crash's story.
        "crashed card is not compared",
        fleet_of((70, 40), (650, 66), (655, 67), (645, 65), events={0: [{"kind": "crash"}]}),
        "power",
        Status.PASS,
        "power limit 700 W = default",
    ),
    (
        "a crashed peer is no yardstick",
        fleet_of((650, 66), (70, 40), (655, 67), (645, 65), events={1: [{"kind": "crash"}]}),
        "power",
        Status.PASS,
        "median of 2 peers",
    ),
]


@pytest.mark.parametrize(
    ("name", "fleet", "check", "status", "words"),
    PEER_SCENARIOS,
    ids=[s[0] for s in PEER_SCENARIOS],
)
def test_against_peers_under_the_same_load(
    name: str, fleet: list[GpuData], check: str, status: Status, words: str
) -> None:
    verdict = judge_fleet(fleet, check)
    assert verdict.status == status, verdict.message
    assert words in verdict.message
    if status == Status.WARN:
        assert verdict.action == ("inspect-cooling" if check == "thermal" else "retest")
