"""Screening checks over hand-built GpuData: identity, firmware, wear, ECC, retired pages, row
remapping, PCIe link and replays, XIDs; each scenario names the verdict it must produce."""

from __future__ import annotations

from typing import Any

import pytest

from burnin.verdicts import CheckContext, GpuData, Status, registered

# A healthy H100 SXM5 as NVML reports it (the store's inventory record).
H100: dict[str, Any] = {
    "device": 0,
    "kind": "cuda",
    "name": "NVIDIA H100 80GB HBM3",
    "uuid": "GPU-8a1b2c3d-0000-4f00-9e00-5a6b7c8d9e0f",
    "serial": "1654822019876",
    "pci_device_id": "2330",
    "pci_subsystem_id": "16c110de",
    "vbios_version": "96.00.74.00.01",
    "inforom_valid": True,
    "memory_total_mib": 81559,
    "sm_count": 132,
    "power_limit_default_w": 700.0,
    "power_limit_enforced_w": 700.0,
    "pcie_max_gen": 5,
    "pcie_max_width": 16,
    "pcie_system_max_gen": 5,
    "pcie_system_max_width": 16,
    "ecc_enabled": True,
    "ecc_aggregate_sbe": 0,
    "ecc_aggregate_dbe": 0,
    "ecc_volatile_sbe": 0,
    "ecc_volatile_dbe": 0,
    "remapped_rows_correctable": 0,
    "remapped_rows_uncorrectable": 0,
    "remapped_rows_pending": False,
    "remapped_rows_failure": False,
    "remap_banks_none": 0,
    "xid_events_supported": True,
    "unsupported": ["retired_pages_sbe", "retired_pages_dbe", "retired_pages_pending"],
}
V100 = {
    **H100,
    "name": "Tesla V100-SXM2-32GB",
    "pci_device_id": "1db5",
    "memory_total_mib": 32480,
    "sm_count": 80,
    "retired_pages_sbe": 0,
    "retired_pages_dbe": 0,
    "retired_pages_pending": False,
    "remapped_rows_correctable": None,
    "remapped_rows_uncorrectable": None,
    "remapped_rows_pending": None,
    "remapped_rows_failure": None,
}
RUN = [
    {"type": "kernel-start", "kernel": "matmul", "elapsed_s": 1.0},
    {"type": "result", "kernel": "matmul", "elapsed_s": 61.0, "metrics": {}},
]


def samples(n: int = 7, **fields: Any) -> list[dict[str, Any]]:
    """n samples 10 s apart (0..60 s) under load; callables get the sample's index."""
    out = []
    for i in range(n):
        s = {"elapsed_s": 10.0 * i, "pcie_gen": 5, "pcie_width": 16, "pcie_replay_count": 0}
        s.update({k: (v(i) if callable(v) else v) for k, v in fields.items()})
        out.append(s)
    return out


def gpu(
    inv: dict[str, Any] | None = None,
    *,
    run: bool = True,
    index: int = 0,
    node: str = "node-00",
    sampled: list[dict[str, Any]] | None = None,
    events: list[dict[str, Any]] | None = None,
    **changes: Any,
) -> GpuData:
    record = {**(inv or H100), **changes, "device": index}
    return GpuData(
        node=node,
        index=index,
        inventory=record,
        samples=(samples() if sampled is None else sampled) if run else [],
        records=list(RUN) if run else [],
        events=list(events or []),
        planned_kernels=["matmul"] if run else [],
    )


def judge(
    target: GpuData, check: str, fleet: list[GpuData] | None = None, **manifest: Any
) -> list[Any]:
    ctx = CheckContext(thresholds={}, fleet=fleet or [target], manifest=manifest)
    return list(registered()[check](target, ctx))


def one(target: GpuData, check: str, **kwargs: Any) -> Any:
    found = judge(target, check, **kwargs)
    assert len(found) == 1, found
    return found[0]


SCENARIOS = [
    # (id, gpu, check, manifest, expected status, expected action, words in the message)
    ("healthy identity", gpu(), "identity", {}, Status.PASS, "none", "H100-SXM5-80GB"),
    (
        "name vs PCI id (relabelled)",
        gpu(name="NVIDIA H100 80GB HBM3", pci_device_id="20b2"),
        "identity",
        {},
        Status.FAIL,
        "return-to-seller",
        "relabelled",
    ),
    (
        "memory too small",
        gpu(memory_total_mib=40960),
        "identity",
        {},
        Status.FAIL,
        "return-to-seller",
        "40960 MiB",
    ),
    ("memory within 2 %", gpu(memory_total_mib=81000), "identity", {}, Status.PASS, "none", ""),
    ("SM count cut", gpu(sm_count=114), "identity", {}, Status.FAIL, "return-to-seller", "114"),
    (
        "claimed SKU differs",
        gpu(),
        "identity",
        {"claimed_sku": "H200-SXM-141GB"},
        Status.FAIL,
        "return-to-seller",
        "claimed to be H200-SXM-141GB",
    ),
    (
        "claimed SKU by node",
        gpu(),
        "identity",
        {"claimed_sku": {"node-00": "H100-SXM5-80GB"}},
        Status.PASS,
        "none",
        "matches the claimed",
    ),
    (
        "claimed via config",
        gpu(),
        "identity",
        {"config": {"inspect": {"claimed_sku": "A100-SXM4-80GB"}}},
        Status.FAIL,
        "return-to-seller",
        "A100-SXM4-80GB",
    ),
    (
        "unknown card",
        gpu(name="GeForce GTX 1070", pci_device_id="1b81"),
        "identity",
        {},
        Status.SKIP,
        "none",
        "not in the SKU table",
    ),
    (
        "blanked serial",
        gpu(serial="0000000000000"),
        "identity",
        {},
        Status.WARN,
        "none",
        "blanked",
    ),
    (
        "InfoROM corrupt",
        gpu(inforom_valid=False),
        "firmware",
        {},
        Status.FAIL,
        "update-firmware",
        "InfoROM",
    ),
    (
        "zero VBIOS",
        gpu(vbios_version="00.00.00.00.00"),
        "firmware",
        {},
        Status.WARN,
        "update-firmware",
        "not a version",
    ),
    (
        "firmware unknown",
        gpu(inforom_valid=None),
        "firmware",
        {},
        Status.SKIP,
        "none",
        "InfoROM validity",
    ),
    (
        "lifetime DBE",
        gpu(ecc_aggregate_dbe=3),
        "wear",
        {},
        Status.WARN,
        "retest",
        "3 uncorrectable",
    ),
    ("lifetime SBE heavy", gpu(ecc_aggregate_sbe=5000), "wear", {}, Status.WARN, "retest", "5000"),
    (
        "lifetime SBE Azure",
        gpu(ecc_aggregate_sbe=20_000_001),
        "wear",
        {},
        Status.FAIL,
        "rma",
        "Azure",
    ),
    (
        "wear remapped rows",
        gpu(remapped_rows_correctable=2),
        "wear",
        {},
        Status.WARN,
        "retest",
        "2 memory rows",
    ),
    ("wear clean", gpu(), "wear", {}, Status.PASS, "none", "0 corrected"),
    (
        "wear: a miner in the seller's dump",
        gpu(processes=("/usr/lib/xorg/Xorg", "./ethminer")),
        "wear",
        {},
        Status.WARN,
        "retest",
        "mining software in the card's process list (ethminer)",
    ),
    (
        "wear: many miners, three named",
        gpu(processes=("C:\\m\\t-rex.exe", "PhoenixMiner.exe", "xmrig", "nbminer", "python3")),
        "wear",
        {},
        Status.WARN,
        "retest",
        "(PhoenixMiner.exe, nbminer, t-rex.exe, ...)",
    ),
    (
        "wear: ordinary processes",
        gpu(processes=("/usr/bin/python3", "Xorg", "gnome-shell")),
        "wear",
        {},
        Status.PASS,
        "none",
        "0 corrected",
    ),
    (
        "wear unknown (GeForce)",
        gpu(
            ecc_aggregate_sbe=None,
            ecc_aggregate_dbe=None,
            remapped_rows_correctable=None,
            remapped_rows_uncorrectable=None,
        ),
        "wear",
        {},
        Status.SKIP,
        "none",
        "not reported",
    ),
    ("volatile DBE", gpu(ecc_volatile_dbe=1), "ecc", {}, Status.FAIL, "rma", "uncorrectable"),
    (
        "SBE growth under stress",
        gpu(sampled=samples(ecc_volatile_sbe=lambda i: 100 * i)),
        "ecc",
        {},
        Status.WARN,
        "retest",
        "per minute",
    ),
    (
        "ECC off on a datacenter card",
        gpu(ecc_enabled=False),
        "ecc",
        {},
        Status.WARN,
        "retest",
        "ECC is switched off",
    ),
    ("ECC clean", gpu(), "ecc", {}, Status.PASS, "none", "0 uncorrectable"),
    ("retired pages n/a on Hopper", gpu(), "retired-pages", {}, Status.SKIP, "none", "remap"),
    (
        "retired pages table full",
        gpu(V100, retired_pages_sbe=40, retired_pages_dbe=23),
        "retired-pages",
        {},
        Status.FAIL,
        "rma",
        "63",
    ),
    (
        "retirement pending",
        gpu(V100, retired_pages_dbe=2, retired_pages_pending=True),
        "retired-pages",
        {},
        Status.WARN,
        "retest",
        "pending",
    ),
    (
        "many DBE pages",
        gpu(V100, retired_pages_dbe=16),
        "retired-pages",
        {},
        Status.WARN,
        "retest",
        "soft limit",
    ),
    ("retired pages clean", gpu(V100), "retired-pages", {}, Status.PASS, "none", "0 retired"),
    (
        "remap failure",
        gpu(remapped_rows_failure=True),
        "row-remap",
        {},
        Status.FAIL,
        "rma",
        "failed",
    ),
    (
        "remap uncorrectable limit",
        gpu(remapped_rows_uncorrectable=512),
        "row-remap",
        {},
        Status.FAIL,
        "rma",
        "512",
    ),
    (
        "remap pending",
        gpu(remapped_rows_pending=True),
        "row-remap",
        {},
        Status.WARN,
        "retest",
        "pending",
    ),
    (
        "banks exhausted",
        gpu(remap_banks_none=2),
        "row-remap",
        {},
        Status.WARN,
        "retest",
        "no spare rows",
    ),
    ("remap n/a on Volta", gpu(V100), "row-remap", {}, Status.SKIP, "none", "pre-Ampere"),
    (
        "link width degraded under load",
        gpu(sampled=samples(pcie_gen=5, pcie_width=8)),
        "pcie-link",
        {},
        Status.FAIL,
        "reseat",
        "x8",
    ),
    (
        "link gen degraded under load",
        gpu(sampled=samples(pcie_gen=3)),
        "pcie-link",
        {},
        Status.FAIL,
        "reseat",
        "Gen3",
    ),
    (
        "slot limits the link",
        gpu(pcie_system_max_gen=4, sampled=samples(pcie_gen=4)),
        "pcie-link",
        {},
        Status.WARN,
        "reseat",
        "slot allows only Gen4",
    ),
    (
        # Idle samples after the kernel ended downtrain legitimately; only load counts.
        "idle downtraining is not degradation",
        gpu(sampled=[*samples(), {"elapsed_s": 70.0, "pcie_gen": 1, "pcie_width": 16}]),
        "pcie-link",
        {},
        Status.PASS,
        "none",
        "Gen5",
    ),
    (
        "no link data",
        gpu(sampled=samples(pcie_gen=None)),
        "pcie-link",
        {},
        Status.SKIP,
        "none",
        "not reported",
    ),
    (
        "replays above DCGM Gen5 x16 limit",
        gpu(sampled=samples(pcie_replay_count=lambda i: 10 * i * 100)),
        "pcie-replay",
        {},
        Status.WARN,
        "reseat",
        "31/min",
    ),
    (
        "replays below the limit",
        gpu(sampled=samples(pcie_replay_count=lambda i: i)),
        "pcie-replay",
        {},
        Status.PASS,
        "none",
        "replays per minute",
    ),
    (
        "Gen3 limit is 8/min",
        gpu(sampled=samples(pcie_gen=3, pcie_replay_count=lambda i: 10 * i / 6)),
        "pcie-replay",
        {},
        Status.WARN,
        "reseat",
        "8/min",
    ),
    (
        "XID 79",
        gpu(events=[{"kind": "xid", "code": 79, "elapsed_s": 5.0}]),
        "xid",
        {},
        Status.FAIL,
        "reseat",
        "fallen off the bus",
    ),
    (
        "XID 48",
        gpu(events=[{"kind": "xid", "code": 48, "elapsed_s": 5.0}]),
        "xid",
        {},
        Status.FAIL,
        "rma",
        "double-bit",
    ),
    (
        "XID 13 is often software",
        gpu(events=[{"kind": "xid", "code": 13, "elapsed_s": 5.0}]),
        "xid",
        {},
        Status.WARN,
        "retest",
        "software",
    ),
    (
        "unknown XID",
        gpu(events=[{"kind": "xid", "code": 999, "elapsed_s": 5.0}]),
        "xid",
        {},
        Status.FAIL,
        "retest",
        "XID 999",
    ),
    ("no XID", gpu(), "xid", {}, Status.PASS, "none", "no XID"),
    (
        "no XID source",
        gpu(xid_events_supported=None),
        "xid",
        {},
        Status.SKIP,
        "none",
        "not available",
    ),
]


@pytest.mark.parametrize(
    ("target", "check", "manifest", "status", "action", "words"),
    [pytest.param(*s[1:], id=s[0]) for s in SCENARIOS],
)
def test_scenario(
    target: GpuData, check: str, manifest: dict[str, Any], status: Status, action: str, words: str
) -> None:
    verdict = one(target, check, **manifest)
    assert verdict.check == check
    assert verdict.status == status, verdict
    assert verdict.action == action, verdict
    assert words in verdict.message, verdict.message


def test_duplicate_serial_flags_both_cards() -> None:
    a, b, c = gpu(index=0), gpu(index=1, uuid="GPU-b"), gpu(index=2, uuid="GPU-c", serial="X9")
    fleet = [a, b, c]
    for card in (a, b):
        verdict = one(card, "identity", fleet=fleet)
        assert verdict.status == Status.FAIL and verdict.action == "return-to-seller"
        assert "also reported by node-00 gpu" in verdict.message
    assert one(c, "identity", fleet=fleet).status == Status.PASS


def test_duplicate_uuid_across_nodes() -> None:
    a, b = gpu(node="node-00"), gpu(node="node-01", serial="OTHER1234567")
    verdict = one(b, "identity", fleet=[a, b])
    assert (
        verdict.status == Status.FAIL and "UUID" in verdict.message and "node-00" in verdict.message
    )


def test_blanked_twins_warn_instead_of_fail() -> None:
    uuid = "GPU-12345678-aaaa-bbbb-cccc-0123456789ab"
    a, b = gpu(index=0, uuid=uuid, serial=None), gpu(index=1, uuid=uuid, serial=None)
    verdict = one(a, "identity", fleet=[a, b])
    assert (
        verdict.status == Status.WARN and "blanked" in verdict.message and "gpu1" in verdict.message
    )


@pytest.mark.parametrize(
    ("versions", "flagged"),
    [
        (["96.00.74.00.01"] * 4, []),
        (["96.00.74.00.01"] * 3 + ["96.00.30.00.07"], [3]),
        (["96.00.74.00.01", "96.00.30.00.07"], [0, 1]),  # no majority: both named
        (["96.00.74.00.01"], []),  # a lone card has no peer
    ],
)
def test_vbios_outliers_among_same_model_peers(versions: list[str], flagged: list[int]) -> None:
    fleet = [
        gpu(index=i, vbios_version=v, serial=f"SN{i:011d}", uuid=f"GPU-{i}")
        for i, v in enumerate(versions)
    ]
    fleet.append(gpu(V100, index=9, vbios_version="88.00.80.00.01", serial="V", uuid="GPU-v"))
    statuses = {g.index: one(g, "firmware", fleet=fleet).status for g in fleet}
    assert [i for i, s in statuses.items() if s == Status.WARN] == flagged
    assert statuses[9] == Status.PASS  # another model is not a peer


def test_verdicts_carry_observed_limit_unit() -> None:
    verdict = one(gpu(sampled=samples(pcie_gen=5, pcie_width=4)), "pcie-link")
    assert (verdict.observed, verdict.limit, verdict.unit) == (4, 16, "x")
    verdict = one(gpu(memory_total_mib=40960), "identity")
    assert (verdict.observed, verdict.limit, verdict.unit) == (40960, 81559, "MiB")


@pytest.mark.parametrize(
    "check",
    [
        "identity",
        "firmware",
        "wear",
        "ecc",
        "retired-pages",
        "row-remap",
        "pcie-link",
        "pcie-replay",
        "xid",
    ],
)
def test_cpu_fallback_is_not_screened(check: str) -> None:
    cpu = gpu({"kind": "cpu", "name": "CPU fallback (x86_64)", "unsupported": ["uuid"]})
    assert judge(cpu, check) == []


@pytest.mark.parametrize(
    ("check", "emits"),
    [
        ("identity", True),
        ("firmware", True),
        ("wear", True),
        ("ecc", True),
        ("retired-pages", True),
        ("row-remap", True),
        ("pcie-link", False),
        ("pcie-replay", False),
        ("xid", False),
    ],
)
def test_inspect_snapshot_runs_only_inventory_checks(check: str, emits: bool) -> None:
    """No samples, records or plan: run-only checks stay silent instead of guessing."""
    assert bool(judge(gpu(run=False), check)) == emits


def test_run_without_samples_skips_instead_of_passing() -> None:
    for check in ("pcie-link", "pcie-replay"):
        verdict = one(gpu(sampled=[]), check)
        assert verdict.status == Status.SKIP, verdict


def test_thresholds_come_from_the_run_config() -> None:
    target = gpu(V100, retired_pages_sbe=12)
    ctx = CheckContext(thresholds={"retired_pages_warn": 20}, fleet=[target])
    assert next(iter(registered()["retired-pages"](target, ctx))).status == Status.PASS
    ctx = CheckContext(thresholds={}, fleet=[target])
    assert next(iter(registered()["retired-pages"](target, ctx))).status == Status.WARN


# -- wear: perf/W against same-SKU peers (docs/contracts.md "degraded perf/W") ----------------


def worker(index: int, tflops: float, power_w: float, **changes: Any) -> GpuData:
    """A card that ran bf16 8192³ matmul at ``tflops`` drawing ``power_w`` throughout."""
    card = gpu(index=index, sampled=samples(power_w=power_w), **changes)
    card.records[-1] = {
        **card.records[-1],
        "dtype": "bf16",
        "size": 8192,
        "metrics": {"matmul_tflops": tflops, "matmul_bf16_tflops": tflops},
    }
    return card


PERF_PER_WATT = [
    # (id, subject (tflops, power_w), status, words); four peers run 790 TFLOP/s at 650 W
    ("as efficient as its peers", (790.0, 650.0), Status.PASS, "1.00 x the median"),
    ("needs 20 % more power", (790.0, 780.0), Status.WARN, "perf/W 1.013 TFLOP/s/W = 0.83 x"),
    ("slower at lower power", (700.0, 576.0), Status.PASS, "1.00 x the median"),  # same perf/W
    # 40 % worse is a throughput-sized loss, yet wear stays a WARN: evidence, not a verdict.
    ("far worse", (790.0, 1100.0), Status.WARN, "below 0.75 x"),
]


@pytest.mark.parametrize(
    ("name", "subject", "status", "words"), PERF_PER_WATT, ids=[p[0] for p in PERF_PER_WATT]
)
def test_wear_compares_perf_per_watt_with_peers(
    name: str, subject: tuple[float, float], status: Status, words: str
) -> None:
    fleet = [worker(0, *subject)] + [worker(i, 790.0, 650.0) for i in range(1, 5)]
    (verdict,) = judge(fleet[0], "wear", fleet)
    assert verdict.status == status, verdict.message
    assert words in verdict.message
    if status == Status.WARN:
        assert verdict.action == "retest" and "price it as worn" in verdict.message


def test_perf_per_watt_leaves_out_snapshots_cut_short_runs_and_other_shapes() -> None:
    peers = [worker(i, 790.0, 650.0) for i in range(1, 5)]
    crashed = worker(0, 790.0, 70.0, events=[{"kind": "crash"}])  # idle after its crash
    assert "perf/W" not in judge(crashed, "wear", [crashed, *peers])[0].message
    snapshot = gpu(run=False)
    assert "perf/W" not in judge(snapshot, "wear", [snapshot, *peers])[0].message
    other = worker(0, 790.0, 780.0)
    other.records[-1]["size"] = 4096  # another shape: no peer to compare with
    assert judge(other, "wear", [other, *peers])[0].status == Status.PASS
