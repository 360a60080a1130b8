"""The ``allreduce`` and ``slow-link`` checks, table-driven over synthetic all-reduce records,
and the report's per-node all-reduce figures (report.json and the HTML section)."""

from __future__ import annotations

import itertools
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fakes import result_record, write_run

from burnin.cli import cli
from burnin.runtime import Runtime
from burnin.verdicts import CheckContext, GpuData, Status
from burnin.verdicts.network import allreduce, isolate, slow_link

H100 = {"kind": "cuda", "sku": "H100-SXM5-80GB", "name": "NVIDIA H100 80GB HBM3"}


def pair_busbw(
    n: int,
    slow: dict[int, float] | None = None,
    links: dict[Any, float] | None = None,
    base: float = 400.0,
    jitter: float = 0.0,
) -> dict[tuple[int, int], float]:
    """Pairwise busbw of ``n`` devices: a slow GPU scales all its pairs, a slow link one pair."""
    table = {}
    for k, (a, b) in enumerate(itertools.combinations(range(n), 2)):
        value = base * (1 + jitter * ((-1) ** k))
        value *= min((slow or {}).get(a, 1.0), (slow or {}).get(b, 1.0))
        table[(a, b)] = value * (links or {}).get((a, b), 1.0)
    return table


def ar_result(
    device: int,
    busbw: dict[tuple[int, int], float] | None = None,
    *,
    n: int = 4,
    node_busbw: float = 450.0,
    wrong: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    """An all-reduce result record as the kernel writes it."""
    pairs = [
        {
            "devices": [a, b],
            "size_bytes": 1 << 28,
            "busbw_gbps": v,
            "algbw_gbps": v,
            "wrong": 0,
            "measurements": 1,
        }
        for (a, b), v in (busbw or {}).items()
    ]
    sizes = [
        {
            "size_bytes": s,
            "count": s // 4,
            "time_us": 1.0,
            "algbw_gbps": node_busbw / 1.75,
            "busbw_gbps": node_busbw * f,
            "wrong": 0,
        }
        for s, f in ((1 << 20, 0.5), (1 << 30, 1.0))
    ]
    if wrong:
        sizes[0]["wrong"] = wrong
        sizes[0]["locations"] = [{"index": 5, "got": 3.0, "expected": 2.0}]
    return {
        "device": device,
        "type": "result",
        "kernel": "allreduce",
        "backend": "nccl",
        "world_size": n,
        "members": list(range(n)),
        "missing": [],
        "sizes": sizes,
        "pairs": pairs,
        "wrong": wrong,
        "verifications": 2 + len(pairs),
        "failed_verifications": 1 if wrong else 0,
        "metrics": {
            "allreduce_busbw_gbps": node_busbw,
            "allreduce_avg_busbw_gbps": node_busbw * 0.75,
        },
        **extra,
    }


def node(results: list[dict[str, Any]], inventory: dict[str, Any] | None = None) -> list[GpuData]:
    return [
        GpuData(
            node="node-a",
            index=r["device"],
            inventory=dict(inventory or H100),
            samples=[],
            records=[r],
            events=[],
            planned_kernels=["allreduce"],
        )
        for r in results
    ]


def judge(check: Any, gpus: list[GpuData], **thresholds: Any) -> dict[int, Any]:
    ctx = CheckContext(thresholds=thresholds, fleet=gpus)
    out = {}
    for gpu in gpus:
        verdicts = list(check(gpu, ctx))
        assert len(verdicts) <= 1
        out[gpu.index] = verdicts[0] if verdicts else None
    return out


# -- isolate(): the pure analysis ------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "culprits", "slow_pairs"),
    [
        pytest.param(pair_busbw(4, slow={2: 0.5}), {2}, set(), id="4 GPUs, gpu2 at half"),
        pytest.param(pair_busbw(3, slow={0: 0.5}), {0}, set(), id="3 GPUs: median pair slow"),
        pytest.param(pair_busbw(8, slow={5: 0.85}), {5}, set(), id="8 GPUs, gpu5 at 85%"),
        pytest.param(pair_busbw(8, slow={3: 0.5, 6: 0.6}), {3, 6}, set(), id="two slow GPUs"),
        pytest.param(pair_busbw(4, links={(1, 3): 0.5}), set(), {(1, 3)}, id="one slow link"),
        pytest.param(pair_busbw(8, jitter=0.03), set(), set(), id="healthy, 3% noise"),
        pytest.param(
            pair_busbw(4, slow=dict.fromkeys(range(4), 0.5)),
            set(),
            set(),
            id="all equally slow: nothing to isolate",
        ),
        pytest.param(pair_busbw(2, slow={1: 0.5}), set(), set(), id="2 GPUs: one pair"),
    ],
)
def test_isolate_names_the_slow_gpu_or_link(
    table: dict[tuple[int, int], float], culprits: set[int], slow_pairs: set[tuple[int, int]]
) -> None:
    found = isolate(table, warn_ratio=0.9)
    assert set(found.culprits) == culprits
    assert set(found.slow_pairs) == slow_pairs


def test_isolate_typical_pair_ignores_the_slow_gpu() -> None:
    found = isolate(pair_busbw(3, slow={1: 0.5}), warn_ratio=0.9)
    assert found.typical_gbps == pytest.approx(400.0)
    assert found.culprits[1] == pytest.approx(0.5)


# -- slow-link ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "slow", "links", "expected"),
    [
        (4, {2: 0.5}, None, {0: "PASS", 1: "PASS", 2: "FAIL", 3: "PASS"}),
        (4, {2: 0.85}, None, {0: "PASS", 1: "PASS", 2: "WARN", 3: "PASS"}),
        (3, {0: 0.5}, None, {0: "FAIL", 1: "PASS", 2: "PASS"}),
        (4, None, {(1, 3): 0.8}, {0: "PASS", 1: "WARN", 2: "PASS", 3: "WARN"}),
        (4, None, {(0, 1): 0.5}, {0: "FAIL", 1: "FAIL", 2: "PASS", 3: "PASS"}),
        (8, None, None, dict.fromkeys(range(8), "PASS")),
    ],
)
def test_slow_link_verdicts(
    n: int, slow: dict[int, float] | None, links: dict[Any, float] | None, expected: dict[int, str]
) -> None:
    table = pair_busbw(n, slow=slow, links=links)
    verdicts = judge(slow_link, node([ar_result(d, table, n=n) for d in range(n)]))
    assert {d: v.status.name for d, v in verdicts.items()} == expected
    for d, v in verdicts.items():
        if v.status != Status.PASS:
            assert f"gpu{d}" in v.message and v.action == "reseat" and v.unit == "GB/s"
        if slow and d in slow:
            assert "every pair with" in v.message or v.status == Status.PASS


def test_slow_link_healthy_peer_says_who_slowed_it() -> None:
    table = pair_busbw(4, slow={3: 0.5})
    verdicts = judge(slow_link, node([ar_result(d, table) for d in range(4)]))
    assert "slow only with gpu3" in verdicts[0].message
    assert verdicts[3].observed == pytest.approx(200.0)


def test_slow_link_judges_from_any_record_of_the_node() -> None:
    # Only device 0's record carries the table (others lost theirs): every device is judged.
    table = pair_busbw(4, slow={1: 0.5})
    results = [ar_result(0, table)] + [ar_result(d) for d in (1, 2, 3)]
    verdicts = judge(slow_link, node(results))
    assert verdicts[1].status == Status.FAIL and verdicts[2].status == Status.PASS


def test_slow_link_thresholds_come_from_the_config() -> None:
    table = pair_busbw(4, slow={2: 0.85})
    gpus = node([ar_result(d, table) for d in range(4)])
    assert judge(slow_link, gpus, slow_link_warn_ratio=0.8)[2].status == Status.PASS
    assert judge(slow_link, gpus, slow_link_fail_ratio=0.9)[2].status == Status.FAIL


@pytest.mark.parametrize(
    ("result", "inventory", "reason"),
    [
        (ar_result(0, None, skipped="needs at least 2 devices"), H100, "needs at least 2"),
        (ar_result(0, None, error="rendezvous: timeout"), H100, "rendezvous: timeout"),
        (ar_result(0, None), H100, "pairwise all-reduce was off"),
        (ar_result(0, pair_busbw(2), n=2), H100, "needs 3 devices"),
        (ar_result(0, None, n=2), H100, "needs 3 devices or more, the group had 2"),
        (ar_result(0, pair_busbw(3, slow={0: 0.5}), n=3), {"kind": "cpu"}, "CPU fallback"),
    ],
)
def test_slow_link_skips_with_the_reason(
    result: dict[str, Any], inventory: dict[str, Any], reason: str
) -> None:
    verdict = judge(slow_link, node([result], inventory))[0]
    assert verdict.status == Status.SKIP and reason in verdict.message


def test_slow_link_says_nothing_without_an_allreduce_result() -> None:
    gpu = GpuData("node-a", 0, H100, [], [], [], ["matmul"])
    assert list(slow_link(gpu, CheckContext(thresholds={}, fleet=[gpu]))) == []
    assert list(allreduce(gpu, CheckContext(thresholds={}, fleet=[gpu]))) == []


# -- allreduce ---------------------------------------------------------------------------------


def test_allreduce_passes_exact_results_and_reports_busbw() -> None:
    verdicts = judge(allreduce, node([ar_result(d) for d in range(4)]))
    for v in verdicts.values():
        assert v.status == Status.PASS and v.observed == 450.0 and v.unit == "GB/s"
        assert "every element exact" in v.message and "no busbw floor" in v.message


def test_wrong_elements_on_one_gpu_fail_it_for_rma() -> None:
    results = [ar_result(d, wrong=7 if d == 2 else 0) for d in range(4)]
    verdicts = judge(allreduce, node(results))
    assert verdicts[2].status == Status.FAIL and verdicts[2].action == "rma"
    assert verdicts[2].observed == 7 and verdicts[2].limit == 0
    assert "element 5: got 3, expected 2" in verdicts[2].message
    assert {verdicts[d].status for d in (0, 1, 3)} == {Status.PASS}


def test_wrong_elements_on_two_gpus_fail_both_for_rma() -> None:
    results = [ar_result(d, wrong=1 if d in (1, 2) else 0) for d in range(4)]
    verdicts = judge(allreduce, node(results))
    assert [verdicts[d].status.name for d in range(4)] == ["PASS", "FAIL", "FAIL", "PASS"]
    assert verdicts[1].action == verdicts[2].action == "rma"


def test_wrong_elements_everywhere_ask_for_a_retest() -> None:
    verdicts = judge(allreduce, node([ar_result(d, wrong=3) for d in range(3)]))
    assert {v.status for v in verdicts.values()} == {Status.FAIL}
    assert {v.action for v in verdicts.values()} == {"retest"}


@pytest.mark.parametrize(
    ("extra", "status", "text"),
    [
        (
            {"skipped": "needs at least 2 devices on a node; node-a runs it on 1"},
            "SKIP",
            "needs at least 2 devices",
        ),
        (
            {"error": "init: DistStoreError: timed out", "missing": [3]},
            "ERROR",
            "did not complete: init",
        ),
    ],
)
def test_allreduce_skip_and_error(extra: dict[str, Any], status: str, text: str) -> None:
    verdict = judge(allreduce, node([ar_result(0, **extra)]))[0]
    assert verdict.status.name == status and text in verdict.message
    if status == "ERROR":
        assert "gpu 3 did not join" in verdict.message and verdict.action == "retest"


AR_START = {"type": "kernel-start", "kernel": "allreduce"}


def _hang(last_progress_s: float, at_s: float) -> dict[str, Any]:
    return {"kind": "hang", "elapsed_s": at_s, "last_progress_s": last_progress_s}


@pytest.mark.parametrize(
    ("peers", "stalled", "status", "named"),
    [
        # gpu1 hung at 5 s (seen at 11 s); gpu2, torn down with the group at 9 s, is not blamed.
        ({1: ([_hang(5.0, 11.0)], [AR_START]),
          2: ([{"kind": "crash", "elapsed_s": 9.0}], [AR_START])}, [], "SKIP", "gpu1"),
        ({1: ([{"kind": "hang", "device": 1}], [])}, [], "SKIP", "gpu1"),  # no times: any failure
        ({1: ([], [{"type": "error", "error": "RuntimeError: CUDA error"}])}, [], "SKIP", "gpu1"),
        # No record explains it, but this rank saw gpu2 make no progress while it waited.
        ({1: ([], [AR_START]), 2: ([], [AR_START])}, [2], "SKIP", "gpu2"),
        ({1: ([{"kind": "device-start", "device": 1}], [])}, [], "ERROR", None),  # nobody to blame
    ],
)  # fmt: skip
def test_a_broken_collective_is_blamed_on_the_peer_that_stopped_answering_first(
    peers: dict[int, tuple[list[dict[str, Any]], list[dict[str, Any]]]],
    stalled: list[int],
    status: str,
    named: str | None,
) -> None:
    members = [0, *peers]
    mine = ar_result(0, error="sweep: RuntimeError: Connection closed by peer", n=len(members))
    mine.update(members=members, stalled=stalled)
    gpus = [GpuData("node-a", 0, dict(H100), [], [AR_START, mine], [], ["allreduce"])]
    for dev, (events, records) in peers.items():
        gpus.append(GpuData("node-a", dev, dict(H100), [], records, events, ["allreduce"]))
    verdict = judge(allreduce, gpus)[0]
    assert verdict.status.name == status
    assert verdict.action == "retest"  # a peer of a broken group is never sent for RMA
    if named:
        assert f"peer {named} stopped answering" in verdict.message
        assert "Connection closed by peer" in verdict.message
        others = {f"gpu{d}" for d in peers} - {named}
        assert not any(f"{o} " in verdict.message for o in others)


@pytest.mark.parametrize(
    ("busbw", "inventory", "status"),
    [
        (470.0, H100, "PASS"),
        (450.0, H100, "WARN"),  # below the 460 floor
        (400.0, H100, "FAIL"),  # below 0.9 × 460 = 414
        (100.0, {"kind": "cpu"}, "PASS"),  # the CPU fallback has no SKU: floor not applied
    ],
)
def test_busbw_floor_applies_to_known_skus(
    busbw: float, inventory: dict[str, Any], status: str
) -> None:
    gpus = node([ar_result(0, node_busbw=busbw)], inventory)
    verdict = judge(allreduce, gpus, min_allreduce_busbw_gbps=460.0)[0]
    assert verdict.status.name == status
    if status != "PASS":
        assert verdict.limit == 460.0 and verdict.action == "retest"
    if inventory["kind"] == "cpu":
        assert "SKU unknown" in verdict.message


# -- report --------------------------------------------------------------------------------------


class _Cells(HTMLParser):
    """Collects the all-reduce section's data attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[dict[str, str | None]] = []
        self.cells: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "section" and "allreduce" in (found.get("class") or ""):
            self.sections.append(found)
        if tag == "td" and "data-peer" in found:
            self.cells.append(found)


def test_report_shows_node_busbw_and_pair_matrix(tmp_path: Path) -> None:
    table = pair_busbw(4, slow={2: 0.5})
    run_dir = write_run(
        tmp_path,
        devices=4,
        host="node-a",
        results={d: [result_record(d), ar_result(d, table)] for d in range(4)},
        inventory=dict.fromkeys(range(4), H100),
    )
    result = CliRunner().invoke(cli, ["report", str(run_dir), "--quiet"], obj=Runtime(hostname="x"))
    assert result.exit_code == 3, result.output  # gpu2's slow-link FAIL
    report = json.loads((run_dir / "report.json").read_text())
    (node_entry,) = report["nodes"]
    assert node_entry["allreduce_busbw_gbps"] == 450.0
    assert node_entry["allreduce"]["typical_pair_gbps"] == 400.0
    assert len(node_entry["allreduce"]["pairs"]) == 6
    gpu2 = next(g for g in report["gpus"] if g["index"] == 2)
    assert gpu2["status"] == "FAIL" and gpu2["metrics"]["allreduce_busbw_gbps"] == 450.0
    parser = _Cells()
    parser.feed((run_dir / "report.html").read_text())
    assert [s["data-busbw-gbps"] for s in parser.sections] == ["450.0"]
    assert len(parser.cells) == 12  # 4 × 4 minus the diagonal
    assert {c["data-busbw-gbps"] for c in parser.cells if c["data-peer"] == "2"} == {"200.0"}


def test_report_without_allreduce_has_no_section(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, devices=2)
    result = CliRunner().invoke(cli, ["report", str(run_dir), "--quiet"], obj=Runtime())
    assert result.exit_code == 0, result.output
    report = json.loads((run_dir / "report.json").read_text())
    assert [n["allreduce_busbw_gbps"] for n in report["nodes"]] == [None]
    assert 'class="allreduce"' not in (run_dir / "report.html").read_text()
