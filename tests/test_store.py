"""Run store: fresh directories, append-only records, torn and corrupt files."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from burnin.errors import StoreError
from burnin.store import RunStore, collector_paused, frozen, new_run_id, read_jsonl, safe_name


def test_new_run_never_reuses_a_directory(tmp_path: Path) -> None:
    paths = {RunStore.create(tmp_path, "h").path for _ in range(5)}
    assert len(paths) == 5
    with pytest.raises(StoreError, match="already exists"):
        RunStore.create(tmp_path, "h", run_id=next(iter(paths)).name)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("node-01", "node-01"),
        ("../../etc", "etc"),
        ("a/b", "a_b"),
        ("", "node"),
        ("..", "node"),
        ("x" * 100, "x" * 64),
        ("gpu node<1>", "gpu_node_1"),
    ],
)
def test_safe_name(host: str, expected: str) -> None:
    assert safe_name(host) == expected


def test_run_id_has_time_and_host() -> None:
    assert new_run_id("my host", now=0).startswith("19700101-000000-my_host-")


def test_records_round_trip_and_append(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, "h")
    store.write_manifest({"run_id": "x"})
    for batch in range(2):  # two writers, as two processes would be
        writer = store.writer("h", "results")
        writer.write({"device": batch, "type": "result"})
        writer.close()
    data = store.load()
    assert [r["device"] for r in data.nodes["h"].results] == [0, 1]
    assert data.manifest["schema"] == "burnin.run/1"


def test_torn_last_line_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": 3, "b": [1, 2')
    records, torn = read_jsonl(path)
    assert records == [{"a": 1}, {"a": 2}] and torn


@pytest.mark.parametrize(
    "content",
    [b'{"a": 1}\nnot json\n{"a": 3}\n', b'{"a": 1}\n[1, 2]\n{"a": 3}\n', b"\xff\xfe\n{}\n"],
)
def test_corrupt_middle_line_names_file_and_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(content)
    with pytest.raises(StoreError, match=r"x\.jsonl line \d"):
        read_jsonl(path)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no such run directory"),
        (lambda p: p.mkdir(), "manifest.json is missing"),
        (lambda p: (p.mkdir(), (p / "manifest.json").write_text("{oops")), "unreadable"),
        (lambda p: (p.mkdir(), (p / "manifest.json").write_text("[]")), "not a JSON object"),
        (
            lambda p: (p.mkdir(), (p / "manifest.json").write_text(json.dumps({"schema": "x/9"}))),
            "unknown schema",
        ),
    ],
)
def test_bad_run_directories(tmp_path: Path, setup, message: str) -> None:
    run_dir = tmp_path / "run"
    setup(run_dir)
    with pytest.raises(StoreError, match=message) as info:
        RunStore(run_dir).load()
    assert info.value.exit_code == 2


@pytest.mark.parametrize("enabled", [True, False])
def test_collector_paused_while_reading_and_left_as_found(tmp_path: Path, enabled: bool) -> None:
    store = RunStore.create(tmp_path, "h")
    store.write_manifest({"run_id": "x"})
    seen: list[bool] = []
    (gc.enable if enabled else gc.disable)()
    try:
        with collector_paused():
            seen.append(gc.isenabled())
            with collector_paused():  # nested: the outer pause stands
                pass
            seen.append(gc.isenabled())
        seen.append(gc.isenabled())
    finally:
        gc.enable()
    assert seen == [False, False, enabled]


def test_frozen_store_is_out_of_the_collectors_passes_until_the_block_ends(
    tmp_path: Path,
) -> None:
    store = RunStore.create(tmp_path, "h")
    store.write_manifest({"run_id": "x"})
    writer = store.writer("h", "samples")
    writer.write({"device": 0, "elapsed_s": 1.0, "throttle_reasons": ["gpu_idle"]})
    writer.close()
    with frozen(store.load) as run:
        sample = run.nodes["h"].samples[0]
        assert gc.isenabled() and gc.get_freeze_count() > 0 and gc.is_tracked(sample)
        assert not any(o is sample for o in gc.get_objects())  # frozen: no pass walks it
    assert gc.get_freeze_count() == 0
    with pytest.raises(StoreError), frozen(RunStore(tmp_path / "none").load):
        pass
    assert gc.get_freeze_count() == 0 and gc.isenabled()
