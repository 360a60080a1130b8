"""burnin.verdicts.procurement: a buyer's findings on a dump's card, pure functions on tables."""

from __future__ import annotations

from typing import Any

import pytest

from burnin.verdicts import CheckContext, GpuData, Status, Verdict
from burnin.verdicts import procurement as P


def card(
    node: str = "lot.xml", index: int = 0, dump: dict[str, Any] | None = None, **inv: Any
) -> GpuData:
    record = {
        "device": index,
        "kind": "cuda",
        "pci_device_id": "20b2",
        "name": "NVIDIA A100-SXM4-80GB",
    }
    record.update(inv, dump=dump or {})
    return GpuData(node, index, record, [], [], [], [])


def judge(fn: Any, gpu: GpuData, *others: GpuData) -> list[Verdict]:
    return list(fn(gpu, CheckContext(thresholds={}, fleet=[gpu, *others])))


def status(verdicts: list[Verdict]) -> str | None:
    return verdicts[0].status.name if verdicts else None


@pytest.mark.parametrize(
    ("dump", "expected", "words"),
    [
        ({"clock_reasons_active": ["HW slowdown"], "gpu_util_pct": 0.0}, "WARN", "at 0 % load"),
        (
            {"clock_reasons_active": ["SW thermal slowdown"], "gpu_util_pct": 90.0},
            "WARN",
            "under 90 %",
        ),
        ({"clock_reasons_active": ["HW power brake"]}, "WARN", "when the dump was taken"),
        ({"clock_reasons_active": [], "clock_reasons_reported": True}, "PASS", "no HW slowdown"),
        ({}, None, ""),  # an R331 dump lists no reasons: nothing to say
    ],
)
def test_clock_events(dump: dict[str, Any], expected: str | None, words: str) -> None:
    found = judge(P.clock_events, card(dump=dump))
    assert status(found) == expected
    assert not found or words in found[0].message


def test_a_power_brake_on_every_card_of_a_node_is_said_once_for_the_node() -> None:
    brake = {"clock_reasons_active": ["HW slowdown", "HW power brake"]}
    node = [card("a.txt", i, dump=brake) for i in range(3)]
    other = card("b.txt", 0, dump=brake)  # alone on its node: the card's own finding
    ctx = CheckContext(thresholds={}, fleet=[*node, other])
    (note,) = P.node_notes(ctx.fleet, ctx)
    assert note["node"] == "a.txt" and "all 3 cards" in note["message"]
    assert "see the node note" in P.clock_events(node[1], ctx)[0].message
    assert "see the node note" not in P.clock_events(other, ctx)[0].message


@pytest.mark.parametrize(
    ("link", "peer_width", "expected", "words"),
    [
        ({"pcie_current_width": 8, "pcie_max_width": 16}, None, "WARN", "reduced at idle"),
        ({"pcie_current_width": 8, "pcie_max_width": 16}, 16, "WARN", "stronger evidence"),
        (
            {"pcie_current_gen": 1, "pcie_max_gen": 4, "pcie_system_max_gen": 4},
            None,
            "WARN",
            "Gen4",
        ),
        ({"pcie_current_width": 4, "pcie_max_width": 4}, None, "PASS", "x4, the most"),  # native x4
        (
            {"pcie_current_gen": 4, "pcie_max_gen": 5, "pcie_system_max_gen": 4},
            None,
            "PASS",
            "slot",
        ),
        ({}, None, None, ""),
    ],
)
def test_link_at_dump(
    link: dict[str, int], peer_width: int | None, expected: str | None, words: str
) -> None:
    peers = [card(index=1, pcie_current_width=peer_width)] if peer_width else []
    found = judge(P.link_at_dump, card(**link), *peers)
    assert status(found) == expected
    assert not found or words in found[0].message


@pytest.mark.parametrize(
    ("dump", "expected"),
    [
        ({"fan_pct": 100.0, "temp_c": 27.0, "gpu_util_pct": 0.0}, "WARN"),
        ({"fan_pct": 100.0, "temp_c": 27.0}, "WARN"),  # load unknown: counted idle
        ({"fan_pct": 100.0, "temp_c": 80.0, "gpu_util_pct": 0.0}, "PASS"),  # hot: fan earns it
        ({"fan_pct": 100.0, "temp_c": 30.0, "gpu_util_pct": 95.0}, "PASS"),  # busy
        ({"fan_pct": 35.0, "temp_c": 30.0, "gpu_util_pct": 0.0}, "PASS"),
        ({"temp_c": 30.0}, None),  # a passive card: no fan figure
    ],
)
def test_idle_fan(dump: dict[str, Any], expected: str | None) -> None:
    assert status(judge(P.idle_fan, card(dump=dump))) == expected


@pytest.mark.parametrize(
    ("enforced", "requested", "expected"),
    [(250.0, 310.0, "WARN"), (310.0, 310.0, "PASS"), (305.0, 310.0, "PASS"), (None, 310.0, None)],
)
def test_power_requested(enforced: float | None, requested: float, expected: str | None) -> None:
    gpu = card(power_limit_enforced_w=enforced, dump={"power_limit_requested_w": requested})
    assert status(judge(P.power_requested, gpu)) == expected


def test_lifetime_corrected_errors_against_peers() -> None:
    peers = [card(index=i, ecc_aggregate_sbe=n) for i, n in ((1, 2), (2, 4), (3, 3))]
    assert status(judge(P.lifetime_vs_peers, card(ecc_aggregate_sbe=900), *peers)) == "WARN"
    assert status(judge(P.lifetime_vs_peers, card(ecc_aggregate_sbe=9), *peers)) == "PASS"
    assert judge(P.lifetime_vs_peers, card(ecc_aggregate_sbe=900), peers[0]) == []  # 1 peer


@pytest.mark.parametrize(
    ("hidden", "guest", "expected"),
    [
        ({"serial": "[REDACTED]"}, False, "WARN"),
        ({"serial": "N/A"}, False, "WARN"),
        ({"serial": "N/A", "uuid": "GPU-00000000-0000-0000-0000-000000000000"}, True, None),
        ({"pci_device_id": "[REDACTED]", "serial": "N/A"}, True, "WARN"),
        ({}, False, None),
    ],
)
def test_hidden_fields(hidden: dict[str, str], guest: bool, expected: str | None) -> None:
    found = judge(P.hidden_fields, card(dump={"hidden": hidden, "guest": guest}))
    assert status(found) == expected
    if found:
        assert found[0].action == "ask-unedited-dump" and "hidden by the seller" in found[0].message


def test_unknown_error_fields() -> None:
    found = judge(P.unknown_errors, card(dump={"unknown_error": ["addressing mode"]}))
    assert status(found) == "WARN" and "addressing mode" in found[0].message
    assert judge(P.unknown_errors, card()) == []


def test_guests_skip_identity_and_firmware() -> None:
    guest = card(dump={"guest": True, "virtualization_mode": "VGPU"})
    assert [(v.check, v.status) for v in P.guest_skips(guest)] == [
        ("identity", Status.SKIP),
        ("firmware", Status.SKIP),
    ]
    assert P.guest_skips(card()) == []
    assert P.guest_unjudged(guest, P.guest_skips(guest)) is not None
    assert P.guest_unjudged(card(), []) is None


def verdict(check: str, status: Status, action: str = "none", message: str = "m") -> Verdict:
    return Verdict(check=check, status=status, message=message, action=action)


@pytest.mark.parametrize(
    ("given", "status", "action"),
    [
        (verdict("power", Status.FAIL, "retest"), Status.WARN, "retest-on-arrival"),  # a setting
        (verdict("ecc", Status.FAIL, "rma"), Status.FAIL, "return-to-seller"),
        (verdict("wear", Status.WARN, "retest"), Status.WARN, "renegotiate"),
        (verdict("row-remap", Status.WARN, "retest"), Status.WARN, "renegotiate"),
        (verdict("firmware", Status.WARN, "update-firmware"), Status.WARN, "retest-on-arrival"),
        (verdict("identity", Status.FAIL, "return-to-seller"), Status.FAIL, "return-to-seller"),
        (verdict("identity", Status.WARN), Status.WARN, "ask-unedited-dump"),  # blanked serial
        (verdict("throttle", Status.WARN), Status.WARN, "retest-on-arrival"),
        (verdict("ecc", Status.PASS, "rma"), Status.PASS, "none"),
    ],
)
def test_for_buyer(given: Verdict, status: Status, action: str) -> None:
    out = P.for_buyer(given)
    assert (out.status, out.action) == (status, action) and out.action in P.ACTIONS


def test_merge_keeps_one_verdict_per_check() -> None:
    merged = P.merge(
        [
            verdict("identity", Status.SKIP, message="not in the SKU table"),
            verdict("identity", Status.WARN, "ask-unedited-dump", "hidden"),
            verdict("identity", Status.PASS, message="id ok"),
            verdict("firmware", Status.SKIP, message="no peers"),
        ]
    )
    assert [(v.check, v.status, v.message, v.action) for v in merged] == [
        ("identity", Status.WARN, "hidden", "ask-unedited-dump"),
        ("firmware", Status.SKIP, "no peers", "none"),
    ]


def test_severity_puts_settings_last() -> None:
    order = sorted(["power", "pcie-link", "wear", "identity", "ecc"], key=P.severity)
    assert order == ["identity", "ecc", "wear", "pcie-link", "power"]
