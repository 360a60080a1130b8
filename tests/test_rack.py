"""Rack pieces without torchrun: merging node directories, `burnin report DIR1 DIR2`, the rack
checks over rack.jsonl, peers across a merged rack, and torchrun's environment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from burnin.cli import cli
from burnin.errors import InputError, StoreError
from burnin.rack import rack_env
from burnin.store import RACK_FILE, RunStore, merge_runs
from burnin.verdicts import Status, evaluate
from burnin.verdicts.rack import slow_pairs
from tests.fakes import write_run
from tests.test_verdicts_compute import H100, matmul


def _node_run(
    tmp_path: Path, host: str, run_id: str, card: dict[str, Any] | None = None, **kw: Any
) -> Path:
    """A one-node run directory of run ``run_id`` (as a node without a shared disk leaves it)."""
    # Each card its own serial and UUID: the identity check compares them across the rack.
    cards = {
        d: {**(card or {}), "uuid": f"GPU-{host}-{d}", "serial": f"SN-{host}-{d}"} for d in range(2)
    }
    path = write_run(tmp_path / host, host=host, inventory=cards, **kw)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["run_id"] = run_id
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def _copied_node(tmp_path: Path, host: str, run_id: str) -> Path:
    """``nodes/<host>`` copied off its node with its node manifest, as a multi-node run has it."""
    run = _node_run(tmp_path, host, run_id)
    node = run / "nodes" / host
    shutil.copy(run / "manifest.json", node / "manifest.json")
    dest = tmp_path / "copies" / host
    shutil.copytree(node, dest)
    return dest


@pytest.mark.parametrize("kind", ["run-dirs", "node-dirs"])
def test_merge_runs_joins_nodes(tmp_path: Path, kind: str) -> None:
    make = _node_run if kind == "run-dirs" else _copied_node
    dirs = [make(tmp_path, host, "rack-1") for host in ("a", "b")]
    run = merge_runs(dirs)
    assert sorted(run.nodes) == ["a", "b"]
    assert sorted((p["node"], p["device"]) for p in run.manifest["plan"]) == [
        ("a", 0),
        ("a", 1),
        ("b", 0),
        ("b", 1),
    ]
    assert run.path == dirs[0]


@pytest.mark.parametrize(
    ("ids", "names", "message"),
    [
        (("r1", "r2"), ("a", "b"), "different runs"),
        (("r1", "r1"), ("a", "a"), "is in both"),
    ],
)
def test_merge_runs_refuses(
    tmp_path: Path, ids: tuple[str, str], names: tuple[str, str], message: str
) -> None:
    dirs = [
        _node_run(tmp_path / str(k), n, i) for k, (n, i) in enumerate(zip(names, ids, strict=True))
    ]
    with pytest.raises(StoreError, match=message):
        merge_runs(dirs)


@pytest.mark.parametrize(
    ("ids", "names", "code", "text"),
    [
        (("r1", "r1"), ("a", "b"), 0, "# report:"),
        (("r1", "r2"), ("a", "b"), 2, "different runs"),
        (("r1", "r1"), ("a", "a"), 2, "is in both"),
    ],
)
def test_report_merges_directories(
    tmp_path: Path, ids: tuple[str, str], names: tuple[str, str], code: int, text: str
) -> None:
    dirs = [
        _copied_node(tmp_path / str(k), n, i)
        for k, (n, i) in enumerate(zip(names, ids, strict=True))
    ]
    out = tmp_path / "merged"
    result = CliRunner().invoke(cli, ["report", *map(str, dirs), "--out", str(out)])
    assert result.exit_code == code, result.output
    assert text in result.output
    if code == 0:
        report = json.loads((out / "report.json").read_text())
        assert len(report["gpus"]) == 4


def test_peers_across_a_merged_rack(tmp_path: Path) -> None:
    """Node b's gpu1 is an outlier only against the rack: alone, b has too few peers."""

    def mm(d: int, tflops: float) -> list[dict[str, Any]]:
        return [{**matmul(tflops), "device": d}]

    fast = {d: mm(d, 800.0) for d in range(2)}
    slow = {0: mm(0, 800.0), 1: mm(1, 700.0)}  # above the datasheet floor, below its peers
    a = _node_run(tmp_path, "a", "rack-1", H100, results=fast)
    b = _node_run(tmp_path, "b", "rack-1", H100, results=slow)

    def throughput(verdicts: dict[Any, Any], key: tuple[str, int]) -> list[Status]:
        return [v.status for v in verdicts[key] if v.check == "throughput"]

    alone = evaluate(RunStore(b).load())
    merged = evaluate(merge_runs([a, b], out=tmp_path))
    assert max(throughput(alone, ("b", 1)), default=Status.SKIP) <= Status.PASS
    assert max(throughput(merged, ("b", 1))) >= Status.WARN
    assert max(throughput(merged, ("a", 0))) == Status.PASS


def _rack_run(tmp_path: Path, records: list[dict[str, Any]], hosts: tuple[str, ...]) -> Path:
    dirs = [_node_run(tmp_path / h, h, "rack-1") for h in hosts]
    root = tmp_path / "rack"
    root.mkdir()
    for d in dirs:
        shutil.copytree(d / "nodes", root / "nodes", dirs_exist_ok=True)
        host = next((d / "nodes").iterdir()).name
        shutil.copy(d / "manifest.json", root / "nodes" / host / "manifest.json")
    (root / RACK_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def pair_record(a: str, b: str, busbw: float, wrong: int = 0) -> dict[str, Any]:
    return {"type": "node-pair", "nodes": [a, b], "size_bytes": 1 << 20, "busbw_gbps": busbw,
            "wrong": wrong}  # fmt: skip


_ALLREDUCE = {"type": "rack-allreduce", "ranks": 3, "backend": "gloo", "size_bytes": 1 << 20,
              "time_s": 0.01, "algbw_gbps": 0.1, "busbw_gbps": 0.13, "wrong": 0}  # fmt: skip


@pytest.mark.parametrize(
    ("records", "node", "check", "status", "text"),
    [
        ([_ALLREDUCE], "a", "allreduce", Status.PASS, "every sum exact"),
        # every device of every node a rank: 3 nodes of 2 devices
        (
            [{**_ALLREDUCE, "ranks": 6, "nodes": 3}],
            "a",
            "allreduce",
            Status.PASS,
            "over 6 ranks on 3 nodes (gloo): every sum exact",
        ),
        ([{**_ALLREDUCE, "wrong": 3}], "b", "allreduce", Status.FAIL, "3 wrong"),
        # node c is in both slow pairs: named as the suspect, the others pass
        (
            [
                _ALLREDUCE,
                pair_record("a", "b", 10.0),
                pair_record("a", "c", 1.0),
                pair_record("b", "c", 1.0),
            ],
            "c",
            "slow-link",
            Status.FAIL,
            "node c is in every slow pair",
        ),
        (
            [
                _ALLREDUCE,
                pair_record("a", "b", 10.0),
                pair_record("a", "c", 1.0),
                pair_record("b", "c", 1.0),
            ],
            "a",
            "slow-link",
            Status.WARN,
            "that node is the suspect",
        ),
        (
            [
                _ALLREDUCE,
                pair_record("a", "b", 10.0),
                pair_record("a", "c", 10.0),
                pair_record("b", "c", 10.0),
            ],
            "b",
            "slow-link",
            Status.PASS,
            "no slow pair",
        ),
        (
            [{"type": "rack-error", "node": "c", "message": "rank 2: no heartbeat", "lost": True}],
            "c",
            "lost",
            Status.ERROR,
            "node lost",
        ),
    ],
)
def test_rack_verdicts(
    tmp_path: Path,
    records: list[dict[str, Any]],
    node: str,
    check: str,
    status: Status,
    text: str,
) -> None:
    root = _rack_run(tmp_path, records, ("a", "b", "c"))
    verdicts = evaluate(RunStore(root).load())
    # The node's own all-reduce check speaks of its devices; the rack's says "cross-node".
    mine = [v for v in verdicts[(node, 0)] if v.check == check]
    found = [v for v in mine if check != "allreduce" or "cross-node" in v.message]
    assert [v.status for v in found] == [status], found
    assert text in found[0].message


def test_lost_node_marks_every_card(tmp_path: Path) -> None:
    error = {"type": "rack-error", "node": "c", "message": "gone", "lost": True}
    root = _rack_run(tmp_path, [error], ("a", "b", "c"))
    verdicts = evaluate(RunStore(root).load())
    for index in (0, 1):
        assert any(v.check == "lost" and v.status == Status.ERROR for v in verdicts[("c", index)])
    assert not any(v.check == "lost" for v in verdicts[("a", 0)])


def test_slow_pairs_needs_three_nodes() -> None:
    assert slow_pairs({("a", "b"): 0.001}, 0.9) == ([], [])
    slow, suspects = slow_pairs({("a", "b"): 9.0, ("a", "c"): 1.0, ("b", "c"): 1.1}, 0.9)
    assert suspects == ["c"] and slow == [("a", "c"), ("b", "c")]


_TORCHRUN = {"TORCHELASTIC_RUN_ID": "x", "MASTER_ADDR": "h", "MASTER_PORT": "29500"}


@pytest.mark.parametrize(
    ("env", "expect"),
    [
        ({}, None),
        ({**_TORCHRUN, "RANK": "0", "WORLD_SIZE": "1"}, None),
        (
            {**_TORCHRUN, "RANK": "1", "WORLD_SIZE": "3", "TORCHELASTIC_USE_AGENT_STORE": "True"},
            (1, 3, True),
        ),
        ({**_TORCHRUN, "RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"}, "nproc-per-node"),
        ({**_TORCHRUN, "RANK": "x", "WORLD_SIZE": "2"}, "malformed"),
    ],
)
def test_rack_env(env: dict[str, str], expect: Any) -> None:
    if isinstance(expect, str):
        with pytest.raises(InputError, match=expect):
            rack_env(env)
        return
    found = rack_env(env)
    assert (found and (found.rank, found.world, found.agent_store)) == expect


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--device", "cpu", "--node-name", "  "], 2),
        (["--device", "cpu", "--node-name", ""], 2),
        # a simulated fleet names its own nodes
        (["--simulate", "healthy-rack", "--node-name", "a"], 2),
    ],
)
def test_run_refuses_a_node_name_it_cannot_use(args: list[str], code: int) -> None:
    result = CliRunner().invoke(cli, ["run", *args])
    assert result.exit_code == code
    assert "--node-name" in result.output
