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
from collections.abc import Sequence
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from burnin.store import RunData, collector_paused
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
        if pa.types.is_float64(kind) and set(map(type, values)) == {float}:
            # The same doubles, through numpy: pyarrow reads a list of floats five times slower.
            return pa.array(np.array(values, dtype=np.float64))
        try:
            # pyarrow turns an int into a float64 only where it is exact (|n| <= 2**53), as
            # float(n) does; a larger one raises and takes float(n) below.
            return pa.array(values, type=kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
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
    # Nothing here makes a reference cycle, and the columns piling up hold a fleet's lists of
    # clock reasons, which each pass of the cycle collector would walk item by item again.
    with collector_paused():
        return _table(run)


def _table(run: RunData) -> pa.Table:
    nodes = [
        (host, len(n.samples), _fields(host, n.samples)) for host, n in sorted(run.nodes.items())
    ]
    fields = {"node"}.union(*(found for _host, _n, found in nodes))
    schema = sample_schema()
    extra = sorted(fields - set(schema.names))
    columns, names = [], [*schema.names, *extra]
    for name in names:
        kind = schema.field(name).type if name in schema.names else None
        values: list[Any] = []
        for host, count, found in nodes:
            # A field none of a node's samples has is null there (the node's own name for
            # "node"); popped, so each node's values are freed once copied.
            values += found.pop(name, ()) or repeat(host if name == "node" else None, count)
        columns.append(_column(values, kind))
    return pa.table(columns, names=names)


def _fields(host: str, samples: list[dict[str, Any]]) -> dict[str, Sequence[Any]]:
    """One node's samples as {field: its value in each sample}, None where one lacks it.

    Where every sample has the same fields (a sampler writes the same ones each tick) they are
    read sample by sample, each dict once: a pass per field over a fleet's millions of dicts
    waits on memory for every one of them again.
    """
    if samples and len(samples[0]) > 1 and len(set(map(len, samples))) == 1:
        keys = tuple(samples[0])
        try:
            rows = list(map(itemgetter(*keys), samples))
        except KeyError:  # same size, other fields
            pass
        else:  # each sample has every field of the first and no other
            return dict(zip(keys, zip(*rows, strict=True), strict=True))
    found: dict[str, Sequence[Any]] = {
        key: list(map(dict.get, samples, repeat(key))) for key in set().union(*samples)
    }
    if "node" in found:  # a sample's own "node" field, where it has one, wins
        found["node"] = [s.get("node", host) for s in samples]
    return found


def write_parquet(run: RunData, path: Path) -> int:
    """Write ``path`` atomically; returns the number of rows (samples)."""
    table = telemetry_table(run)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return table.num_rows
