"""The report's fast paths give what the plain computations give, on ordinary and awkward input.

Parquet columns read sample by sample, node power summed without a pivot table, numeric
columns straight from numpy, the load power's median, and timeline figures lent from one card's
plot to the next are each compared here with the computation they stand in for (the style of
tests/test_perf_equivalence.py, which covers the store and the verdicts).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from burnin.reports import context as report_context
from burnin.reports import parquet, power
from burnin.reports.plots import timeline_svg
from burnin.store import NodeData, RunData

# -- parquet ---------------------------------------------------------------------------------------


def plain_column(values: list[Any], kind: pa.DataType | None) -> pa.Array:
    """A column as Sample's type where every value fits it, else as pyarrow infers it."""
    if kind is not None:
        if pa.types.is_floating(kind):
            values = [float(v) if type(v) is int else v for v in values]
        try:
            return pa.array(values, type=kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else json.dumps(v, default=str) for v in values])


def plain_table(run: RunData) -> pa.Table:
    """A row per sample, then a column per field."""
    rows = [
        {**sample, "node": sample.get("node", host)}
        for host, node in sorted(run.nodes.items())
        for sample in node.samples
    ]
    schema = parquet.sample_schema()
    names = [*schema.names, *sorted({k for r in rows for k in r} - set(schema.names))]
    kinds = [schema.field(n).type if n in schema.names else None for n in names]
    columns = [plain_column([r.get(n) for r in rows], k) for n, k in zip(names, kinds, strict=True)]
    return pa.table(columns, names=names)


def tick(t: float, **fields: Any) -> dict[str, Any]:
    return {"device": 0, "elapsed_s": t, **fields}


NODES = [
    ("same fields", [[tick(0.0, power_w=100.5, temp_c=40), tick(1.0, power_w=200.0, temp_c=41)]]),
    ("a field missing", [[tick(0.0, power_w=100.5), tick(1.0)]]),
    ("same size, other fields", [[tick(0.0, power_w=1.0), tick(1.0, temp_c=40)]]),
    ("one field each", [[{"elapsed_s": 0.0}, {"elapsed_s": 1.0}]]),
    ("no samples on a node", [[tick(0.0, power_w=1.0)], []]),
    ("own node field", [[tick(0.0, node="x"), tick(1.0), tick(2.0, node=None)]]),
    ("own node field everywhere", [[tick(0.0, node="x"), tick(1.0, node=None)]]),
    ("odd floats", [[tick(0.0, power_w=-0.0), tick(1.0, power_w=math.inf, temp_c=1e308)]]),
    ("whole numbers as floats", [[tick(0.0, power_w=250), tick(1.0, power_w=2**53 + 1)]]),
    ("a bool and a string", [[tick(0.0, power_w=True), tick(1.0, temp_c="hot")]]),
    ("a list where a number goes", [[tick(0.0, pcie_gen=[5]), tick(1.0, pcie_gen=4)]]),
    ("extra fields", [[tick(0.0, odd_x=1, new_w=2.5), tick(1.0, odd_x="a", new_w=3)]]),
    ("nodes differ", [[tick(0.0, power_w=1.0)], [tick(0.0, temp_c=30, throttle_reasons=["a"])]]),
]


@pytest.mark.parametrize("nodes", [n[1] for n in NODES], ids=[n[0] for n in NODES])
def test_parquet_matches_a_row_per_sample(nodes: list[list[dict[str, Any]]]) -> None:
    run = RunData(
        path=Path("run"),
        manifest={},
        nodes={f"n{i}": NodeData(host=f"n{i}", samples=s) for i, s in enumerate(nodes)},
    )
    found, plain = parquet.telemetry_table(run), plain_table(run)
    assert found.schema == plain.schema and found.equals(plain)


# -- node power ------------------------------------------------------------------------------------


def general_power(samples: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> pd.Series:
    with monkeypatch.context() as m:
        m.setattr(power, "_clean_columns", lambda samples: None)
        return power._total_power(samples)


def fleet_node(seed: int) -> list[dict[str, Any]]:
    """Readings of a few devices at 1 Hz, some missed, some at their own instants, one twice."""
    rng = random.Random(seed)
    devices = rng.randint(1, 12)
    samples = [
        {"device": d, "elapsed_s": t + (0.5 if seed % 2 and d % 3 == 0 and t % 5 == 0 else 0.0),
         "power_w": rng.uniform(50.0, 700.0)}
        for t in range(rng.randint(1, 300))
        for d in range(devices)
        if rng.random() >= 0.1 * (seed % 3)
    ]  # fmt: skip
    samples.append({"device": 0, "elapsed_s": 0.0, "power_w": 123.456})  # a second reading
    if seed % 4 == 0:
        rng.shuffle(samples)
    return samples


POWER = [
    ("one reading", [{"device": 0, "elapsed_s": 0.0, "power_w": 5.5}]),
    (
        "integer times",
        [{"device": d, "elapsed_s": t, "power_w": 1.5 * t} for t in range(3) for d in range(2)],
    ),
    ("integer watts", [{"device": 0, "elapsed_s": float(t), "power_w": 100} for t in range(3)]),
    (
        "a NaN reading",
        [
            {"device": 0, "elapsed_s": 0.0, "power_w": math.nan},
            {"device": 1, "elapsed_s": 0.0, "power_w": 9.5},
        ],
    ),
    ("no time", [{"device": 0, "power_w": 1.5}, {"device": 0, "elapsed_s": 1.0, "power_w": 2.5}]),
    ("a bool device", [{"device": True, "elapsed_s": 0.0, "power_w": 1.5}]),
    ("no readings", [{"device": 0, "elapsed_s": 0.0}]),
    ("nothing", []),
    *((f"fleet node {seed}", fleet_node(seed)) for seed in range(12)),
]


@pytest.mark.parametrize("samples", [p[1] for p in POWER], ids=[p[0] for p in POWER])
def test_node_power_matches_the_pivot_table(
    samples: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    found, plain = power._total_power(samples), general_power(samples, monkeypatch)
    pd.testing.assert_series_equal(found, plain, check_exact=True)
    if len(plain):  # the figures the report takes from it, bit for bit
        assert (float(found.max()), float(found.mean())) == (float(plain.max()), plain.mean())


# -- numeric columns and load power --------------------------------------------------------------


COLUMNS = [
    ("floats", [1.5, 2.0, -0.0]),
    ("floats and nulls", [1.5, None, math.nan]),
    ("integers", [1, 2, 3]),
    ("integers and floats", [1, 2.5]),
    ("integers and nulls", [None, 2]),
    ("beyond int64", [2**63, 1]),
    ("below int64", [-(2**63) - 1, 1]),
    ("int64 edge", [2**63 - 1, -(2**63)]),
    ("bools", [True, 1.0]),
    ("numeric strings", ["12", 1.0, "x"]),
    ("lists", [[1], 2.0]),
]


@pytest.mark.parametrize("values", [c[1] for c in COLUMNS], ids=[c[0] for c in COLUMNS])
def test_numeric_column_matches_to_numeric(values: list[Any]) -> None:
    found = pd.Series(report_context._numeric(values))
    plain = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    pd.testing.assert_series_equal(found, plain, check_exact=True)


def plain_load_power_w(samples: pd.DataFrame) -> float | None:
    if "power_w" not in samples or not samples["power_w"].notna().any():
        return None
    watts = samples["power_w"]
    if "util_pct" in samples and (samples["util_pct"] >= 50).any():
        watts = watts[samples["util_pct"] >= 50]
    return round(float(watts.median()), 3)


LOADS = [
    ("busy and idle", [{"power_w": w, "util_pct": u} for w, u in [(600.5, 100), (70.25, 0),
                                                                   (610.0, 99), (605.5, 100)]]),
    ("never busy", [{"power_w": w, "util_pct": 10.0} for w in (70.0, 71.5)]),
    ("no utilisation", [{"power_w": w} for w in (70.0, 71.5, 90.0)]),
    ("no power", [{"util_pct": 100.0}]),
    ("power only while idle", [{"power_w": 70.0, "util_pct": 0.0}, {"util_pct": 100.0}]),
    ("a NaN while busy", [{"power_w": math.nan, "util_pct": 100.0},
                          {"power_w": 300.0, "util_pct": 0.0}]),
    ("integer watts", [{"power_w": w, "util_pct": 100} for w in (600, 601, 603, 700)]),
    ("null utilisation", [{"power_w": 500.0, "util_pct": None}, {"power_w": 501.0}]),
]  # fmt: skip


@pytest.mark.parametrize("samples", [c[1] for c in LOADS], ids=[c[0] for c in LOADS])
def test_load_power_matches_the_pandas_median(samples: list[dict[str, Any]]) -> None:
    frame = report_context._frame(samples)
    found, plain = report_context._load_power_w(frame), plain_load_power_w(frame)
    assert found == plain or (found is not None and math.isnan(found) and math.isnan(plain))


# -- timeline figures lent from card to card -------------------------------------------------------


def timeline(temp_c: float, throttle: int, plots: int = 1) -> dict[str, Any]:
    keys = [("temp_c", "temperature", "°C"), ("power_w", "power", "W"), ("tflops", "tf", "T")]
    return {
        "duration_s": 10.0 + temp_c / 10,
        "phases": [{"kernel": "matmul", "start_s": 1.0, "end_s": 8.0}],
        "plots": [
            {
                "key": k,
                "label": label,
                "unit": unit,
                "min": 0,
                "max": temp_c,
                "points": [(float(t), temp_c - (t % 3) * (i + 1)) for t in range(11)],
            }
            for i, (k, label, unit) in enumerate(keys[:plots])
        ],
        "limits": {"temp_c": 89.0} if temp_c > 80 else {},
        "throttle": [
            {"reason": f"reason_{i}", "active_s": 2.0, "ranges": [(2.0 + i, 4.0 + i)]}
            for i in range(throttle)
        ],
    }


def test_a_lent_timeline_figure_draws_what_a_fresh_one_draws() -> None:
    cards = [timeline(95.0, 2, 2), timeline(50.0, 2, 2), timeline(70.0, 0, 3),
             timeline(95.0, 2, 2), timeline(60.0, 1, 1), timeline(91.0, 0, 3)]  # fmt: skip
    fresh = [timeline_svg(t, f"tl-{i}", "card") for i, t in enumerate(cards)]
    figures: dict[Any, Any] = {}
    lent = [timeline_svg(t, f"tl-{i}", "card", figures) for i, t in enumerate(cards)]
    assert len(figures) == 3  # one per layout
    assert lent == fresh


def test_a_samplers_readings_take_the_path_without_a_pivot_table() -> None:
    assert all(power._clean_columns(fleet_node(seed)) is not None for seed in range(12))
    assert power._clean_columns(POWER[1][1]) is None  # integer times: the general path
