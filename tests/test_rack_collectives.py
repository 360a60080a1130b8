"""The cross-node stage's pure parts and its device processes, without torchrun: global ranks
per node, the exact expected sums, merging ranks' rows into rack.jsonl records, and a device
process that cannot reach its store ending in an error record, never a hang."""

from __future__ import annotations

import itertools
import socket
import time
from typing import Any

import pytest

from burnin.rack_collectives import (
    DeviceRank,
    _expected,
    _pattern,
    full_stage_limit_s,
    merge_ranks,
    rack_records,
    rank_offsets,
    run_full,
)


@pytest.mark.parametrize(
    ("devices", "offsets"),
    [
        ([2, 2], [0, 2]),
        ([8, 8, 8], [0, 8, 16]),
        ([8, 4, 8], [0, 8, 12]),  # a node with fewer devices shifts the later ones
        ([1], [0]),
        ([], []),
    ],
)
def test_rank_offsets_are_a_prefix_sum(devices: list[int], offsets: list[int]) -> None:
    assert rank_offsets(devices) == offsets


@pytest.mark.parametrize("ranks", [[0, 1], [0, 1, 2, 3], [2, 5], list(range(40))])
def test_expected_is_the_sum_of_every_pattern(ranks: list[int]) -> None:
    torch = pytest.importorskip("torch")
    numel = 100
    brute = sum(_pattern(torch, numel, r, "cpu") for r in ranks)
    assert torch.equal(_expected(torch, numel, ranks, "cpu"), brute)


def _row(size: int, time_s: float, wrong: int = 0) -> dict[str, Any]:
    return {"size_bytes": size, "time_s": time_s, "wrong": wrong}


@pytest.mark.parametrize(
    ("rows", "merged"),
    [
        # the slowest rank's time, the wrong elements added up, size by size
        (
            [[_row(4, 1.0), _row(8, 2.0, 1)], [_row(4, 3.0, 2), _row(8, 1.0)]],
            [_row(4, 3.0, 2), _row(8, 2.0, 1)],
        ),
        ([[_row(4, 1.0), _row(8, 2.0)], [_row(4, 3.0)]], [_row(4, 3.0)]),  # one stopped early
        ([[_row(4, 1.0)], []], []),  # a rank with no result: no size has every rank
        ([], []),
    ],
)
def test_merge_ranks(rows: list[list[dict[str, Any]]], merged: list[dict[str, Any]]) -> None:
    assert merge_ranks(rows) == merged


def test_rack_records_count_every_device_as_a_rank() -> None:
    size = 1 << 20
    results = {
        0: {"allreduce": [_row(size, 0.002)], "ranks": 4, "pairs": [
            {"peer": 1, "size_bytes": size, "time_s": 0.001, "busbw_gbps": 1.0, "wrong": 0}]},
        1: {"allreduce": [_row(size, 0.004, 3)], "ranks": 4, "pairs": [
            {"peer": 0, "size_bytes": size, "time_s": 0.002, "busbw_gbps": 0.5, "wrong": 1}]},
    }  # fmt: skip
    full, pair = rack_records(results, ["a", "b"], "gloo")
    algbw = size / 0.004 / 1e9  # the slower node's time
    assert full == {
        "type": "rack-allreduce", "ranks": 4, "nodes": 2, "backend": "gloo", "size_bytes": size,
        "time_s": 0.004, "algbw_gbps": algbw, "busbw_gbps": algbw * 2 * 3 / 4, "wrong": 3,
    }  # fmt: skip
    assert pair == {"type": "node-pair", "nodes": ["a", "b"], "size_bytes": size,
                    "busbw_gbps": 0.5, "wrong": 1}  # fmt: skip


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again on return: nothing listens there


@pytest.mark.parametrize("past_deadline", [False, True])
def test_a_device_process_without_its_store_ends_in_an_error(past_deadline: bool) -> None:
    """No store to join: the process reports the failure at its timeout; a clock past the
    parent's limit has the parent kill it instead. Either way an error record, no hang."""
    pytest.importorskip("torch")
    from burnin.supervisor import mp_context

    spec = DeviceRank(
        addr="127.0.0.1", port=_closed_port(), prefix="burnin/", rank=2, world=4, device="cpu",
        timeout_s=1.0, sizes=(64,), iters=1,
    )  # fmt: skip
    ticks = itertools.count(0.0, full_stage_limit_s(1.0) + 1) if past_deadline else None
    clock = (lambda: next(ticks)) if ticks else time.monotonic
    got = run_full([spec], mp_context(), clock)
    assert got["allreduce"] == []
    (error,) = got["errors"]
    assert error.startswith("cpu (rank 2 of 4): ")
    assert ("killed" in error) == past_deadline, error
