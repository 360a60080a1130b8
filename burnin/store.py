"""The run store: one directory per run, append-only JSON lines, never overwritten.

Layout (DESIGN.md): ``<out>/<run_id>/manifest.json`` and
``nodes/<host>/{inventory,samples,results,events}.jsonl``. Every record is one ``os.write`` of
one line to a file opened with ``O_APPEND``, so several worker processes can append to the same
file and whatever was written survives a crash or ``kill -9`` of any process. Reading tolerates
a torn last line (a write cut off by a kill) and reports it; any other unreadable line, a missing
or malformed manifest, or an unknown schema is a :class:`StoreError` naming the file.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from burnin.errors import StoreError

try:
    from orjson import loads as _fast_loads
except ImportError:  # an install without it reads every line with json.loads
    _fast_loads = None

MANIFEST_SCHEMA = "burnin.run/1"
STREAMS = ("inventory", "samples", "results", "events")
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


class RunStore:
    def __init__(self, path: Path) -> None:
        self.path = path

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
        tmp = self.path / ".manifest.json.tmp"
        tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, self.path / "manifest.json")

    def read_manifest(self) -> dict[str, Any]:
        path = self.path / "manifest.json"
        if not self.path.is_dir():
            raise StoreError(f"{self.path}: no such run directory")
        if not path.is_file():
            raise StoreError(f"{self.path}: not a burnin run directory (manifest.json is missing)")
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

    def load(self) -> RunData:
        """Read the whole run (every node) into plain dicts."""
        from burnin.schema import check_records

        manifest = self.read_manifest()
        nodes: dict[str, NodeData] = {}
        nodes_dir = self.path / "nodes"
        for node_dir in sorted(nodes_dir.iterdir()) if nodes_dir.is_dir() else []:
            if not node_dir.is_dir():
                continue
            node = NodeData(host=node_dir.name)
            for stream in STREAMS:
                records, torn = read_jsonl(node_dir / f"{stream}.jsonl")
                check_records(stream, records, node_dir / f"{stream}.jsonl")
                setattr(node, stream, records)
                if torn:
                    node.torn_lines.append(f"{stream}.jsonl")
            nodes[node.host] = node
        return RunData(path=self.path, manifest=manifest, nodes=nodes)


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
    # that burnin writes) is read by json.loads alone.
    fast = _fast_loads if _fast_loads is not None and not _LONG_DIGITS.search(raw) else None
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


_LONG_DIGITS = re.compile(rb"[0-9]{19}")


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
