"""telemetry.parquet: every telemetry sample of the run, one row each, columns typed.

For analysis in pandas, polars or DuckDB without parsing JSON lines. A column per field of
:class:`burnin.telemetry.base.Sample` (its type: integers as int64, readings as float64, lists
of names as list<string>; null where the card did not report it), plus ``node`` and ``device``;
a field some backend adds beyond those keeps the type pyarrow infers, or becomes JSON text where
its values disagree. The file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from itertools import repeat
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from burnin.store import RunData
from burnin.telemetry.base import Sample

_TYPES = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}


def _arrow_type(hint: Any) -> pa.DataType:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return pa.list_(_arrow_type(args[0]))
    if args:  # X | None
        return _arrow_type(args[0])
    return _TYPES.get(hint, pa.string())


def sample_schema() -> pa.Schema:
    """The columns every telemetry.parquet has, in this order."""
    hints = typing.get_type_hints(Sample)
    fields = [pa.field("node", pa.string(), nullable=False), pa.field("device", pa.int64())]
    for f in dataclasses.fields(Sample):
        if f.name != "index":  # the store names it "device"
            fields.append(pa.field(f.name, _arrow_type(hints[f.name])))
    return pa.schema(fields)


def _column(values: list[Any], kind: pa.DataType | None) -> pa.Array:
    if kind is not None:
        if pa.types.is_floating(kind):  # JSON writes a whole reading (250.0) as 250
            values = [float(v) if type(v) is int else v for v in values]
        try:
            return pa.array(values, type=kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass  # a backend that disagrees with Sample's type: keep what it wrote
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else json.dumps(v, default=str) for v in values])


def telemetry_table(run: RunData) -> pa.Table:
    """Every sample of every node of ``run`` (nodes by name, samples in store order).

    Built column by column from the samples themselves: a row dict per sample would copy a
    fleet's whole telemetry once more.
    """
    nodes = sorted(run.nodes.items())
    fields = {"node"}.union(*(sample for _host, node in nodes for sample in node.samples))
    schema = sample_schema()
    extra = sorted(fields - set(schema.names))
    columns, names = [], [*schema.names, *extra]
    for name in names:
        kind = schema.field(name).type if name in schema.names else None
        values: list[Any] = []
        for host, node in nodes:
            if name == "node":  # a sample's own "node" field, where it has one, wins
                values += [s.get("node", host) for s in node.samples]
            else:
                values += map(dict.get, node.samples, repeat(name))
        columns.append(_column(values, kind))
    return pa.table(columns, names=names)


def write_parquet(run: RunData, path: Path) -> int:
    """Write ``path`` atomically; returns the number of rows (samples)."""
    table = telemetry_table(run)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return table.num_rows
