"""The fast paths of a fleet's report give what the plain computations give, value for value.

Each fast path (peer groups built once per comparison, results indexed by kernel, records
grouped by device in one pass, JSON lines read by the scanner with shared field names, the
schema's type-only tests, parquet and energy built column by column) is compared here with the
straightforward computation it replaces, on tables of ordinary and awkward input, and a small
generated fleet (benchmarks/bench_report.py's store) is judged both ways to the same
verdicts.jsonl.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from burnin.errors import StoreError
from burnin.reports import context as report_context
from burnin.reports import parquet
from burnin.reports.figures import energy_kwh
from burnin.schema import _UNIT_SUFFIXES, _rules, _short, check_records
from burnin.store import RunData, RunStore, read_jsonl
from burnin.verdicts import peers, power, stage, thermal
from burnin.verdicts.finding import Finding
from burnin.verdicts.model import CheckContext, GpuData, Status, is_cpu

ROOT = Path(__file__).resolve().parents[1]
H100 = {"kind": "cuda", "name": "NVIDIA H100 80GB HBM3", "pci_device_id": "2330"}


# -- the plain computations ----------------------------------------------------------------------


def plain_peer_finding(
    gpu: GpuData,
    ctx: CheckContext,
    value_of: Callable[[GpuData], float | None],
    key_of: Callable[[GpuData], Hashable],
    what: str,
    unit: str,
    fail_action: str = "retest",
) -> Finding:
    """peer_finding as one scan of the fleet per card."""
    value = value_of(gpu)
    key = key_of(gpu)
    if value is None:
        return Finding(Status.SKIP, f"{what}: no value to compare with peers")
    others = [
        v for g in ctx.fleet if g is not gpu and key_of(g) == key and (v := value_of(g)) is not None
    ]
    t = ctx.limits(peers.PeerThresholds)
    stats = peers.peer_stats(value, others, floor_share=t.peer_mad_floor)
    if stats is None:
        return Finding(
            Status.SKIP, f"{what}: {len(others)} comparable peer(s), {peers.MIN_PEERS - 1} needed"
        )
    median, z = stats.median, stats.z
    ratio = value / median if median else 1.0
    where = (
        f"{what} {value:.4g} {unit} = {ratio:.2f} x the median of {stats.peers + 1} peers "
        f"({median:.4g}, robust z {z:+.1f})"
    )
    if is_cpu(gpu):
        return Finding(Status.SKIP, f"{where}: not judged (logical CPU devices share cores)")
    if z <= -t.peer_z and ratio < t.peer_fail_ratio:
        return Finding(
            Status.FAIL,
            f"{where}, below {t.peer_fail_ratio:g} x",
            t.peer_fail_ratio * median,
            fail_action,
        )
    if z <= -t.peer_z and ratio <= 1.0 - t.peer_warn_drop:
        return Finding(
            Status.WARN, f"{where}: an outlier", (1 - t.peer_warn_drop) * median, "retest"
        )
    return Finding(Status.PASS, where)


def plain_same_load_power_stats(
    gpu: GpuData, ctx: CheckContext, power_w: float, floor_share: float
) -> peers.PeerStats | None:
    """same_load_power_stats as the power of each same-load peer, sorted per card."""
    others = [peers.under_load(g, ctx)[0] for g in peers.same_load_peers(gpu, ctx)]
    known = [p for p in others if p is not None]
    return peers.peer_stats(power_w, known, floor_share=floor_share)


def plain_results(gpu: GpuData, kernel: str | None = None) -> list[dict[str, Any]]:
    return [
        r
        for r in gpu.records
        if r.get("type") == "result" and (kernel is None or r.get("kernel") == kernel)
    ]


def plain_read_jsonl(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """read_jsonl as json.loads of each line's bytes."""
    lines = path.read_bytes().split(b"\n")
    records, torn = [], False
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            if number == len(lines) - 1:
                torn = True
                continue
            raise StoreError(f"{path} line {number + 1}: corrupt record ({exc})") from None
        records.append(record)
    return records, torn


def plain_check_records(stream: str, records: list[dict[str, Any]], path: Path) -> None:
    """check_records calling every field's rule."""
    from burnin.schema import _REQUIRED, _number, _opt

    rules = _rules(stream)
    for number, record in enumerate(records, start=1):
        for key in _REQUIRED.get(stream, ()):
            if key not in record:
                raise StoreError(f"{path} record {number}: missing field {key!r}")
        for key, value in record.items():
            rule = rules.get(key)
            if rule is None and key.endswith(_UNIT_SUFFIXES):
                rule = (_opt(_number), "a finite number or null")
            if rule is not None and not rule[0](value):
                raise StoreError(
                    f"{path} record {number}: field {key!r} must be {rule[1]}, got {_short(value)}"
                )


def outcome(call: Callable[[], Any]) -> Any:
    try:
        return ("ok", call())
    except StoreError as exc:
        return ("error", str(exc))


# -- peer comparisons ----------------------------------------------------------------------------


def card(index: int, tflops: float | None, name: str = H100["name"], **inv: Any) -> GpuData:
    metrics = {} if tflops is None else {"matmul_tflops": tflops}
    records = [{"type": "result", "kernel": "matmul", "size": 8192, "metrics": metrics}]
    return GpuData("n", index, {**H100, "name": name, **inv}, [], records, [], ["matmul"])


FLEETS = [
    ("identical cards", [790.0] * 6),
    ("one slow card", [790.0, 791.0, 789.5, 474.0, 790.2, 788.0]),
    ("one mildly slow card", [790.0, 791.0, 789.5, 740.0, 790.2, 788.0, 790.1]),
    ("even count, duplicates", [700.0, 700.0, 720.0, 720.0, 650.0, 900.0, 700.0, 720.0]),
    ("two cards: too few peers", [790.0, 400.0]),
    ("missing values", [790.0, None, 791.0, None, 300.0, 789.0]),
    ("ints and floats", [790, 790.0, 791, 500, 789.5]),
    ("zero median", [0.0, 0.0, 0.0, 1.0]),
    ("a NaN value", [790.0, float("nan"), 791.0, 789.0, 400.0]),
]


@pytest.mark.parametrize("values", [f[1] for f in FLEETS], ids=[f[0] for f in FLEETS])
def test_peer_finding_matches_one_scan_per_card(values: list[float | None]) -> None:
    fleet = [card(i, v) for i, v in enumerate(values)]
    fleet += [card(100 + i, 300.0 + i, name="Other GPU") for i in range(3)]  # another group
    ctx = CheckContext(thresholds={}, fleet=fleet)
    plain_ctx = CheckContext(thresholds={}, fleet=fleet)
    for size in (8192, None):

        def key_of(g: GpuData, s: int | None = size) -> Any:
            return (peers.peer_group(g), s)

        for gpu in fleet:
            found = peers.peer_finding(
                gpu, ctx, lambda g: g.metric("matmul_tflops"), key_of, "bf16", "TFLOP/s", "rma"
            )
            plain = plain_peer_finding(
                gpu,
                plain_ctx,
                lambda g: g.metric("matmul_tflops"),
                key_of,
                "bf16",
                "TFLOP/s",
                "rma",
            )
            assert found == plain


def test_peer_finding_keeps_comparisons_apart() -> None:
    """Two comparisons with the same words but other captured figures do not share a table."""
    fleet = [card(i, 790.0 + i) for i in range(5)]
    ctx = CheckContext(thresholds={}, fleet=fleet)
    for scale in (1.0, 0.5):
        found = peers.peer_finding(
            fleet[0],
            ctx,
            lambda g, k=scale: None if g.index == 0 and k == 0.5 else g.metric("matmul_tflops"),
            peers.peer_group,
            "bf16",
            "TFLOP/s",
        )
        assert (found.status == Status.SKIP) is (scale == 0.5)


def test_same_load_figures_match_each_peer_asked() -> None:
    fleet = [card(i, 790.0) for i in range(4)] + [card(9, 790.0, name="Other GPU")]
    fleet[1].events.append({"kind": "crash"})  # cut short: nobody's peer
    for i, g in enumerate(fleet):
        g.samples.extend({"elapsed_s": float(t), "util_pct": 100.0, "power_w": 600.0 + i,
                          "temp_c": 60 + i} for t in range(10))  # fmt: skip
    ctx = CheckContext(thresholds={}, fleet=fleet)
    for gpu in fleet:
        expected = [peers.under_load(g, ctx) for g in peers.same_load_peers(gpu, ctx)]
        plain = [
            g
            for g in fleet
            if g is not gpu
            and peers.full_load(g)
            and peers.peer_group(g) == peers.peer_group(gpu)
            and sorted(g.planned_kernels) == sorted(gpu.planned_kernels)
        ]
        assert peers.same_load_peers(gpu, ctx) == plain
        assert peers.same_load_under_load(gpu, ctx) == expected


# -- a device's records --------------------------------------------------------------------------


RECORDS = [
    {"type": "kernel-start", "kernel": "matmul"},
    {"type": "result", "kernel": "matmul", "metrics": {"matmul_tflops": 1.0}},
    {"type": "result", "kernel": None},
    {"type": "result"},
    {"type": "result", "kernel": ["odd"]},
    {"type": "result", "kernel": "membw", "metrics": {"membw_gbps": 2.0}},
    {"type": "progress", "kernel": "matmul"},
    {"type": "result", "kernel": "matmul", "metrics": {"matmul_tflops": 3.0}},
]


@pytest.mark.parametrize("kernel", [None, "matmul", "membw", "allreduce"])
def test_results_index_matches_a_scan_and_follows_changed_records(kernel: str | None) -> None:
    gpu = GpuData("n", 0, {}, [], [dict(r) for r in RECORDS], [], [])
    assert gpu.results(kernel) == plain_results(gpu, kernel)
    gpu.records[-1] = {"type": "result", "kernel": "membw", "metrics": {}}  # replaced in place
    assert gpu.results(kernel) == plain_results(gpu, kernel)
    gpu.records.append({"type": "result", "kernel": kernel})
    assert gpu.results(kernel) == plain_results(gpu, kernel)
    gpu.records = []
    assert gpu.results(kernel) == []


def test_records_grouped_by_device_match_a_filter_per_device() -> None:
    samples = [{"device": d, "elapsed_s": float(t)} for t in range(3) for d in (0, 1, 1.0, None)]
    samples.append({"elapsed_s": 9.0})
    grouped = stage._by_device(samples)
    for dev in (0, 1, 2):
        assert grouped.get(dev, []) == [s for s in samples if s.get("device") == dev]


# -- reading the store ---------------------------------------------------------------------------


OK_LINE = b'{"device":0,"elapsed_s":1.0,"temp_c":60,"throttle_reasons":["gpu_idle"]}'
FILES = [
    ("plain lines", OK_LINE + b"\n" + OK_LINE + b"\n"),
    ("no final newline", OK_LINE + b"\n" + OK_LINE),
    ("torn last line", OK_LINE + b"\n" + OK_LINE[:20]),
    ("torn inside a character", OK_LINE + b'\n{"name":"caf\xc3'),
    ("corrupt middle line", OK_LINE + b"\n{oops}\n" + OK_LINE + b"\n"),
    ("not an object", OK_LINE + b"\n[1, 2]\n" + OK_LINE + b"\n"),
    ("two objects on one line", OK_LINE + OK_LINE + b"\n" + OK_LINE + b"\n"),
    ("blank and odd space", b"\n \x0b\x0c\n\t" + OK_LINE + b" \r\n\n"),
    ("byte order mark", b"\xef\xbb\xbf" + OK_LINE + b"\n" + OK_LINE + b"\n"),
    ("not UTF-8", OK_LINE + b'\n{"name":"\xff"}\n'),
    ("NaN and huge numbers", b'{"temp_c":NaN,"power_w":1e999,"energy_j":' + b"9" * 400 + b"}\n"),
    ("non-ASCII space around", "\u00a0".encode() + OK_LINE + b"\n"),
    ("infinite float", b'{"power_w":1e999}\n{"power_w":-1e999}\n'),
    ("big integers", b'{"energy_j":18446744073709551616}\n{"energy_j":-9223372036854775809}\n'),
    ("18 digits in a row", b'{"energy_j":123456789012345678,"power_w":0.123456789012345678}\n'),
    (
        "19 digits in a string",
        b'{"serial":"1234567890123456789","energy_j":99999999999999999999}\n',
    ),
    ("19 digits split by a dot", b'{"energy_j":1234567890.123456789}\n'),
    ("a long fraction", b'{"power_w":0.1234567890123456789012}\n'),
    (
        "edge floats",
        b'{"a":1.7976931348623157e308,"b":5e-324,"c":-0.0,"d":0.30000000000000004,'
        b'"e":2.2250738585072011e-308,"f":9007199254740993,"g":1E+2,"h":123456789012345678}\n',
    ),
    ("duplicate keys", b'{"a":1,"b":2,"a":3}\n'),
    ("escapes and surrogates", b'{"name":"\\u00e9\\ud83d\\ude00","odd":"\\ud800"}\n'),
    ("control character", b'{"name":"a\tb"}\n' + OK_LINE + b"\n"),
    ("deep nesting", b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}\n" + OK_LINE + b"\n"),
    ("empty file", b""),
]


@pytest.mark.parametrize("data", [f[1] for f in FILES], ids=[f[0] for f in FILES])
def test_read_jsonl_matches_json_loads_per_line(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "samples.jsonl"
    path.write_bytes(data)
    found, plain = outcome(lambda: read_jsonl(path)), outcome(lambda: plain_read_jsonl(path))
    assert json.dumps(found, default=str) == json.dumps(plain, default=str)


def test_read_jsonl_shares_field_names(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    path.write_bytes(OK_LINE + b"\n" + OK_LINE + b"\n")
    first, second = read_jsonl(path)[0]
    assert all(a is b for a, b in zip(first, second, strict=True))


RECORD_CASES = [
    ("samples", {"temp_c": 60, "power_w": 250.5, "throttle_reasons": ["gpu_idle"]}),
    ("samples", {"power_w": float("inf")}),
    ("samples", {"power_w": float("nan")}),
    ("samples", {"power_w": True}),
    ("samples", {"power_w": 10**400}),
    ("samples", {"power_w": None, "device": None}),
    ("samples", {"device": 1.0}),
    ("samples", {"device": 1.5}),
    ("samples", {"throttle_reasons": ["a", 1]}),
    ("samples", {"throttle_reasons": None}),
    ("samples", {"new_reading_w": float("nan")}),
    ("results", {"type": "result", "verifications": 10**400}),
    ("results", {"type": "result", "steps": 2.0}),
    ("results", {"kernel": "matmul"}),
    ("events", {"kind": "crash", "missing_sensors": ["fan_pct", 3]}),
]


@pytest.mark.parametrize(("stream", "record"), RECORD_CASES)
def test_check_records_matches_every_rule_called(stream: str, record: dict[str, Any]) -> None:
    path = Path(f"{stream}.jsonl")
    records = [record, record]
    found = outcome(lambda: check_records(stream, records, path))
    assert found == outcome(lambda: plain_check_records(stream, records, path))


# -- a generated fleet, judged and reported both ways -------------------------------------------


@pytest.fixture(scope="module")
def fleet_run(tmp_path_factory: pytest.TempPathFactory) -> RunData:
    spec = importlib.util.spec_from_file_location(
        "bench_report", ROOT / "benchmarks" / "bench_report.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # 4 nodes of 8: one slow, one hot and one miscomputing card among them.
    run = bench.write_store(tmp_path_factory.mktemp("fleet"), 4, 8, 900)
    return RunStore(run).load()


@pytest.mark.slow
def test_verdicts_match_the_plain_peer_comparisons(
    fleet_run: RunData, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = stage.verdict_lines(stage.evaluate(fleet_run))
    assert '"status":"FAIL"' in fast  # the faults are judged, not only the healthy cards
    monkeypatch.setattr(peers, "peer_finding", plain_peer_finding)
    monkeypatch.setattr(
        thermal,
        "same_load_under_load",
        lambda gpu, ctx: [peers.under_load(g, ctx) for g in peers.same_load_peers(gpu, ctx)],
    )
    monkeypatch.setattr(power, "same_load_power_stats", plain_same_load_power_stats)
    for name in ("membw", "throughput", "pcie_bw", "wear"):
        module = importlib.import_module(f"burnin.verdicts.{name}")
        monkeypatch.setattr(module, "peer_finding", plain_peer_finding)
    assert stage.verdict_lines(stage.evaluate(fleet_run)) == fast


@pytest.mark.slow
def test_parquet_matches_a_row_per_sample(fleet_run: RunData) -> None:
    rows = [
        {"node": host, **sample}
        for host, node in sorted(fleet_run.nodes.items())
        for sample in node.samples
    ]
    schema = parquet.sample_schema()
    names = [*schema.names, *sorted({k for r in rows for k in r} - set(schema.names))]
    plain = pa.table(
        [
            parquet._column(
                [r.get(n) for r in rows], schema.field(n).type if n in schema.names else None
            )
            for n in names
        ],
        names=names,
    )
    assert parquet.telemetry_table(fleet_run).equals(plain)


@pytest.mark.slow
def test_energy_matches_a_record_per_row(fleet_run: RunData) -> None:
    for gpu in stage.gpu_data(fleet_run)[:4]:
        frame = report_context._frame(gpu.samples)
        assert report_context._energy_kwh(frame) == energy_kwh(frame.to_dict("records"))


def tick(t: Any, energy_j: Any = None, power_w: Any = None) -> dict[str, Any]:
    return {"elapsed_s": t, "energy_j": energy_j, "power_w": power_w}


ENERGY = [
    ("counter only", [tick(0.0, 100.0), tick(1.0, 350.5), tick(2.5, 700.25)]),
    ("power only", [tick(0.0, None, 250.0), tick(1.0, None, 260.5), tick(3.0, None, 99.9)]),
    ("counter reset", [tick(0.0, 1e7, 300), tick(1.0, 10.0, 310), tick(2.0, 400.0, 305)]),
    ("gaps in both", [tick(0.0, 5.0), tick(1.0, None, 200.0), tick(2.0, 9.0, 210.0)]),
    ("nothing known", [tick(0.0), tick(1.0), tick(2.0)]),
    ("one sample", [tick(0.0, 5.0, 100.0)]),
    ("integers", [tick(0, 100, 250), tick(1, 390, 251), tick(2, 700, 252)]),
    ("same instant twice", [tick(0.0, 1.0), tick(1.0, 5.0), tick(1.0, None, 300.0)]),
    ("out of order", [tick(2.0, 9.0), tick(0.0, 1.0), tick(1.0, 4.0)]),
    ("missing times", [tick(None, 1.0), tick(1.0, 4.0), tick(2.0, 6.0)]),
    ("no counter column", [{"elapsed_s": 0.0, "power_w": 5.0}, {"elapsed_s": 2.0, "power_w": 7.0}]),
    ("no time column", [{"power_w": 5.0}, {"power_w": 7.0}]),
]


@pytest.mark.parametrize("samples", [e[1] for e in ENERGY], ids=[e[0] for e in ENERGY])
def test_energy_of_columns_matches_a_record_per_row(samples: list[dict[str, Any]]) -> None:
    frame = report_context._frame(samples)
    found = report_context._energy_kwh(frame)
    assert found == energy_kwh(frame.to_dict("records"))
    assert found == energy_kwh(samples)


# -- samples under load ----------------------------------------------------------------------------


def start(t: float, kernel: str) -> dict[str, Any]:
    return {"type": "kernel-start", "kernel": kernel, "elapsed_s": t}


def result(t: float, kernel: str) -> dict[str, Any]:
    return {"type": "result", "kernel": kernel, "elapsed_s": t}


GUARD = {"kind": "thermal-guard", "elapsed_s": 4.5}
LOADS = [
    ("one kernel", [start(1, "matmul"), result(5, "matmul")], []),
    ("back to back", [start(1, "matmul"), start(5, "membw"), result(8, "membw")], []),
    (
        "repeated kernel",
        [start(0, "matmul"), result(3, "matmul"), start(3, "matmul"), result(6.5, "matmul")],
        [],
    ),
    ("died mid-kernel", [start(2, "matmul")], []),
    ("guard stop", [start(1, "matmul"), result(9, "matmul")], [GUARD]),
    (
        "guard before a kernel",
        [start(1, "matmul"), result(3, "matmul"), start(6, "membw"), result(9, "membw")],
        [GUARD],
    ),
    ("empty window", [start(4, "matmul"), result(4, "matmul")], []),
    ("no kernel records", [], []),
]


@pytest.mark.parametrize(
    ("records", "events"), [(r[1], r[2]) for r in LOADS], ids=[r[0] for r in LOADS]
)
def test_loaded_samples_match_a_scan_of_every_window(
    records: list[dict[str, Any]], events: list[dict[str, Any]]
) -> None:
    from burnin.verdicts.records import load_windows, loaded_samples

    samples = [{"elapsed_s": t / 2, "util_pct": 100.0 if t % 3 else 0.0} for t in range(21)]
    samples += [{"util_pct": 100.0}, {"elapsed_s": float("nan")}, {"elapsed_s": 4.0}]
    gpu = GpuData("n", 0, H100, samples, records, events, ["matmul", "membw"])
    for kernel in (None, "matmul", "membw", "allreduce"):
        windows = load_windows(gpu, kernel)
        plain = [
            s for s in samples if any(lo < s.get("elapsed_s", -1.0) <= hi for lo, hi in windows)
        ]
        if not windows:
            plain = [] if kernel else [s for s in samples if s.get("util_pct", 0) >= 50]
        assert loaded_samples(gpu, kernel) == plain
