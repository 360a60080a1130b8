"""The run store: one directory per run, append-only JSON lines, never overwritten.

Layout (docs/contracts.md): ``<out>/<run_id>/manifest.json`` and
``nodes/<host>/{inventory,samples,results,events}.jsonl``. Every record is one ``os.write`` of
one line to a file opened with ``O_APPEND``, so several worker processes can append to the same
file and whatever was written survives a crash or ``kill -9`` of any process. Reading tolerates
a torn last line (a write cut off by a kill) and reports it; any other unreadable line, a missing
or malformed manifest, or an unknown schema is a :class:`StoreError` naming the file.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from burnin.errors import StoreError

_fast_loads: Callable[[bytes | bytearray | memoryview | str], Any] | None
try:
    from orjson import loads as _fast_loads
except ImportError:  # an install without it reads every line with json.loads
    _fast_loads = None

T = TypeVar("T")
MANIFEST_SCHEMA = "burnin.run/1"
STREAMS = ("inventory", "samples", "results", "events")
RACK_FILE = "rack.jsonl"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str) -> str:
    """A host or id usable as one path component (no separators, no '..')."""
    cleaned = _SAFE.sub("_", name).strip("._") or "node"
    return cleaned[:64]


def new_run_id(host: str, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"{stamp}-{safe_name(host)}-{secrets.token_hex(2)}"


def finite(value: Any) -> Any:
    """``value`` with NaN and infinity as None: JSON has no such numbers, and one bad figure (a
    zero-time batch, an empty series) must cost neither a worker's record nor the report."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


class JsonlWriter:
    """Appends one JSON record per line; each record is a single write, visible at once."""

    def __init__(self, path: Path, fsync_every: int = 0, fsync_interval_s: float = 0.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._fsync_every = fsync_every
        # Time-based cadence: at most one fsync per interval (on the write that crosses it),
        # so a fast writer does not pay one disk flush per record.
        self._fsync_interval_s = fsync_interval_s
        self._last_fsync = time.monotonic()
        self._count = 0

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(finite(record), separators=(",", ":"), default=str, allow_nan=False)
        line += "\n"
        os.write(self._fd, line.encode("utf-8"))
        self._count += 1
        if self._fsync_every and self._count % self._fsync_every == 0:
            os.fsync(self._fd)
        elif self._fsync_interval_s:
            now = time.monotonic()
            if now - self._last_fsync >= self._fsync_interval_s:
                self._last_fsync = now
                os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            if self._fsync_every or self._fsync_interval_s:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1


class TappedWriter:
    """A :class:`JsonlWriter` stand-in: stores each record, then shows it to ``seen`` (the
    run's watch or progress, which follow what is written as it is written)."""

    def __init__(self, target: Any, seen: Callable[[dict[str, Any]], None]) -> None:
        self._target, self._seen = target, seen

    def write(self, record: dict[str, Any]) -> None:
        self._target.write(record)
        self._seen(record)

    def close(self) -> None:
        self._target.close()


@dataclass
class NodeData:
    host: str
    inventory: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    torn_lines: list[str] = field(default_factory=list)


@dataclass
class RunData:
    path: Path
    manifest: dict[str, Any]
    nodes: dict[str, NodeData]
    # rack.jsonl of a multi-node run (burnin/rack.py): cross-node all-reduce, node pairs,
    # errors and lost nodes; empty for a single node.
    rack: list[dict[str, Any]] = field(default_factory=list)


class RunStore:
    def __init__(self, path: Path, manifest_dir: Path | None = None) -> None:
        self.path = path
        # Where write_manifest writes: the run directory, or in a multi-node run each node's
        # own directory (the rank-0 node writes the merged manifest.json at the root).
        self.manifest_dir = manifest_dir or path

    @classmethod
    def join(cls, out_dir: Path, run_id: str, host: str) -> RunStore:
        """The run directory of a multi-node run, shared by its nodes: created by whichever
        node comes first; this node's manifest goes to its own directory."""
        path = out_dir / safe_name(run_id)
        try:
            (path / "nodes" / safe_name(host)).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{path}: cannot create the run directory ({exc})") from None
        store = cls(path)
        store.manifest_dir = store.node_dir(host)
        return store

    @classmethod
    def create(cls, out_dir: Path, host: str, run_id: str | None = None) -> RunStore:
        """Make a fresh run directory; an existing one is never reused."""
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except (OSError, ValueError) as exc:
            raise StoreError(f"{out_dir}: cannot create the output directory ({exc})") from None
        for _ in range(20):
            rid = run_id or new_run_id(host)
            path = out_dir / safe_name(rid)
            try:
                path.mkdir()
            except FileExistsError:
                if run_id:
                    raise StoreError(f"{path}: run directory already exists") from None
                continue
            except OSError as exc:
                raise StoreError(f"{path}: cannot create the run directory ({exc})") from None
            return cls(path)
        raise StoreError(f"{out_dir}: could not create a new run directory")

    def node_dir(self, host: str) -> Path:
        return self.path / "nodes" / safe_name(host)

    def stream_path(self, host: str, stream: str) -> Path:
        if stream not in STREAMS:
            raise ValueError(f"unknown stream {stream!r}")
        return self.node_dir(host) / f"{stream}.jsonl"

    def writer(
        self, host: str, stream: str, fsync_every: int = 0, fsync_interval_s: float = 0.0
    ) -> JsonlWriter:
        return JsonlWriter(self.stream_path(host, stream), fsync_every, fsync_interval_s)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Replace manifest.json atomically (write a temp file, then rename)."""
        data = {"schema": MANIFEST_SCHEMA, **manifest}
        tmp = self.manifest_dir / ".manifest.json.tmp"
        tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, self.manifest_dir / "manifest.json")

    def read_manifest(self) -> dict[str, Any]:
        path = self.path / "manifest.json"
        if not self.path.is_dir():
            raise StoreError(f"{self.path}: no such run directory")
        return read_manifest_file(path)

    def load(self) -> RunData:
        """Read the whole run (every node) into plain dicts.

        A multi-node run whose rank-0 node never wrote the merged manifest.json is read from
        its nodes' own manifests (:func:`merge_runs`).
        """
        with collector_paused():
            if not (self.path / "manifest.json").exists() and _node_manifests(self.path):
                return merge_runs([self.path], out=self.path)
            manifest = self.read_manifest()
            run = RunData(path=self.path, manifest=manifest, nodes=_read_nodes(self.path))
            run.rack = _read_rack(self.path)
        return run


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector off while a store is read: records parsed from JSON hold no
    reference cycles for it to find, and each of its full passes walks every record read so
    far, which over a fleet's millions of samples added a third to the time of reading them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextlib.contextmanager
def frozen(load: Callable[[], T]) -> Iterator[T]:
    """What ``load()`` returns (a loaded store), with it and every object alive left out of
    the cycle collector's passes until the block ends.

    A store's records hold no reference cycles, so refcounting frees them as ever; without
    this, each full pass while a fleet's run is judged and rendered walks its millions of
    samples again (several seconds in all). They are frozen before the collector runs once
    over them. The collector still finds the cycles made inside the block (plots are full of
    them).
    """
    with collector_paused():
        value = load()
        gc.freeze()
    try:
        yield value
    finally:
        gc.unfreeze()


def read_manifest_file(path: Path) -> dict[str, Any]:
    """A manifest.json (a run's, or a node's in a multi-node run), checked."""
    if not path.is_file():
        raise StoreError(f"{path.parent}: not a burnin run directory (manifest.json is missing)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise StoreError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise StoreError(f"{path}: manifest is not a JSON object")
    if manifest.get("schema") != MANIFEST_SCHEMA:
        raise StoreError(
            f"{path}: unknown schema {manifest.get('schema')!r}, expected {MANIFEST_SCHEMA!r}"
        )
    from burnin.schema import check_manifest

    check_manifest(manifest, path)
    return manifest


def _read_node(node_dir: Path) -> NodeData:
    from burnin.schema import check_records

    node = NodeData(host=node_dir.name)
    for stream in STREAMS:
        records, torn = read_jsonl(node_dir / f"{stream}.jsonl")
        check_records(stream, records, node_dir / f"{stream}.jsonl")
        setattr(node, stream, records)
        if torn:
            node.torn_lines.append(f"{stream}.jsonl")
    return node


def _read_nodes(run_dir: Path) -> dict[str, NodeData]:
    nodes_dir = run_dir / "nodes"
    found = sorted(nodes_dir.iterdir()) if nodes_dir.is_dir() else []
    return {d.name: _read_node(d) for d in found if d.is_dir()}


def _read_rack(run_dir: Path) -> list[dict[str, Any]]:
    records, _torn = read_jsonl(run_dir / RACK_FILE)
    return records


def _node_manifests(run_dir: Path) -> list[Path]:
    nodes_dir = run_dir / "nodes"
    if not nodes_dir.is_dir():
        return []
    return sorted(p for p in nodes_dir.glob("*/manifest.json") if p.is_file())


def _is_node_dir(path: Path) -> bool:
    return (
        (path / "manifest.json").is_file()
        and any((path / f"{s}.jsonl").exists() for s in STREAMS)
        and not (path / "nodes").is_dir()
    )


def merge_runs(paths: list[Path], out: Path | None = None) -> RunData:
    """One run out of several directories of the same run: run directories each holding
    ``nodes/<node>`` (one per node without a shared file system, or a multi-node run's shared
    directory) and node directories copied off their nodes (``<node>/manifest.json`` plus the
    streams). The merged manifest lists every node and every node's plan; ``rack.jsonl`` comes
    from whichever directory has one (the rank-0 node's). ``out`` (default: the first path) is
    where the verdicts and reports of the merged run go.

    Raises:
        StoreError: a directory is not a run or node directory, the run ids differ, or two
            directories hold a node of the same name.
    """
    if not paths:
        raise StoreError("no run or node directory to merge")
    with collector_paused():
        return _merge_runs(paths, out)


def _merge_runs(paths: list[Path], out: Path | None) -> RunData:
    manifests: list[tuple[Path, dict[str, Any]]] = []
    nodes: dict[str, NodeData] = {}
    where: dict[str, Path] = {}
    rack: list[dict[str, Any]] = []
    for path in paths:
        if not path.is_dir():
            raise StoreError(f"{path}: no such run or node directory")
        found: dict[str, tuple[Path, Path | None]]  # node name -> (directory, its manifest)
        if _is_node_dir(path):
            found = {safe_name(path.name): (path, path / "manifest.json")}
        else:
            found = {p.parent.name: (p.parent, p) for p in _node_manifests(path)}
            if (path / "manifest.json").is_file():
                root = read_manifest_file(path / "manifest.json")
                manifests.append((path, root))
                for name in _read_nodes(path):
                    found.setdefault(name, (path / "nodes" / name, None))
            elif not found:
                raise StoreError(
                    f"{path}: neither a run directory (manifest.json, nodes/) nor a node "
                    "directory (manifest.json and the .jsonl streams)"
                )
            rack.extend(_read_rack(path))
        for name, (node_dir, manifest_path) in found.items():
            if name in nodes:
                raise StoreError(
                    f"node {name!r} is in both {where[name]} and {node_dir}: copy each node's "
                    "directory once, or rename one with `burnin run --node-name`"
                )
            if manifest_path is not None:
                manifests.append((manifest_path, read_manifest_file(manifest_path)))
            node = _read_node(node_dir)
            node.host = name
            nodes[name] = node
            where[name] = node_dir
    run_ids = {str(m.get("run_id")) for _p, m in manifests}
    if len(run_ids) > 1:
        listing = ", ".join(f"{p}: {m.get('run_id')}" for p, m in manifests)
        raise StoreError(f"these directories belong to different runs ({listing})")
    merged = _merge_manifests([m for _p, m in manifests])
    return RunData(path=out or paths[0], manifest=merged, nodes=nodes, rack=rack)


def _merge_manifests(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's manifest from its nodes' (the root manifest, if any, first)."""
    merged = dict(manifests[0])
    plan: dict[tuple[Any, Any], dict[str, Any]] = {}
    names: list[str] = []
    for manifest in manifests:
        for entry in manifest.get("plan", []):
            plan.setdefault((entry.get("node"), entry.get("device")), entry)
        names += [n for n in manifest.get("nodes", []) if n not in names]
    merged["plan"] = list(plan.values())
    merged["nodes"] = names
    finished = [m.get("finished_at") for m in manifests]
    merged["finished_at"] = None if None in finished else max(map(str, finished))
    started = [str(m["started_at"]) for m in manifests if m.get("started_at")]
    if started:
        merged["started_at"] = min(started)
    merged["interrupted"] = any(m.get("interrupted") for m in manifests)
    return merged


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """Records of one JSONL file and whether its last line was torn (cut off mid-write).

    Each line is what ``json.loads`` reads from its bytes. orjson reads the lines it accepts
    (strict JSON, the whole of what burnin writes) about three times as fast and with one
    string per field name instead of one per record, which halves a fleet's telemetry in
    memory; any other line goes to ``json.loads``, so NaN, huge integers and damage read as
    they always did.
    """
    if not path.exists():
        return [], False
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise StoreError(f"{path}: cannot read ({exc})") from None
    lines = raw.split(b"\n")
    records: list[dict[str, Any]] = []
    torn = False
    last = len(lines) - 1
    # orjson reads an integer beyond 64 bits as a float: a file with 19 digits in a row (none
    # that burnin writes) is read by json.loads alone. Every digit made "0", then one search:
    # a regular expression tries each digit of a fleet's telemetry as a start, ten times slower.
    long_digits = _LONG_RUN in raw.translate(_DIGITS_AS_ZERO)
    fast = _fast_loads if _fast_loads is not None and not long_digits else None
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        record = None
        if fast is not None:
            try:  # noqa: SIM105 - cheaper than contextlib.suppress, once per line of a fleet
                record = fast(line)
            except ValueError:  # orjson.JSONDecodeError: json.loads below decides
                pass
        if type(record) is not dict:
            record = _parse(path, line, number, number == last)
            if record is None:
                torn = True
                continue
        records.append(record)
    return records, torn


_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_RUN = b"0" * 19


def _parse(path: Path, line: bytes, number: int, is_last: bool) -> dict[str, Any] | None:
    """One line as json.loads reads it; None for a torn last line, StoreError for damage."""
    try:
        record = json.loads(line)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # Only the final line can be cut off by a kill; damage elsewhere is corruption.
        if is_last:
            return None
        raise StoreError(f"{path} line {number + 1}: corrupt record ({exc})") from None
    return record
