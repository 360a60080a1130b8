"""Property-based bad input through the CLI: configs, CLI options, dumps, scenarios, run dirs.

Every generated input is bad by construction (a wrong type, an out-of-range number, an unknown
key, broken syntax, a damaged file), so every one must end in exit code 2 with a message that
names what is wrong, and never in a traceback. Config values are generated from the config
dataclasses' own type hints and range metadata, so a section or field added later is fuzzed
without touching this file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tempfile
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fakes import write_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burnin.cli import cli
from burnin.config import _DURATION, RunConfig
from burnin.kernels import registry
from burnin.runtime import Runtime
from burnin.skus import load_skus
from burnin.store import MANIFEST_SCHEMA

DATA = Path(__file__).resolve().parent / "data"
SCENARIOS = Path(__file__).resolve().parent.parent / "configs" / "scenarios"
FUZZ = settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
# Dumps (400) + scenarios (300) + run directories (300): 1,000 bad files in all.
SOME = settings(FUZZ, max_examples=300)
# Thousands of tiny files: a RAM-backed directory where there is one keeps this test fast.
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None
RUNTIME = Runtime(hostname="fuzz", cuda_devices=lambda: [], env={})
# TOML's 64-bit integers: anything beyond would be a syntax error, not the value we mean.
INT64 = 2**63 - 1
BARE_KEY = st.text("abcdefghijklmnopqrstuvwxyz_-0123456789", min_size=1, max_size=12)


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    body = "".join(
        f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F or c in '"\\' else c for c in text
    )
    return f'"{body}"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
        )
    raise TypeError(value)


def expect_bad_input(result: Any, *names: str) -> None:
    out = result.output
    assert result.exit_code == 2, out
    assert "Traceback" not in out and not isinstance(result.exception, AssertionError | TypeError)
    assert "error" in out.lower()
    for name in names:
        assert name in out, (name, out)


# ---------------------------------------------------------------- configs: one bad value each


def _sections() -> list[tuple[str, type]]:
    hints = typing.get_type_hints(RunConfig)
    out = [(name, hint) for name, hint in hints.items() if dataclasses.is_dataclass(hint)]
    out += [(f"kernels.{name}", registry.get(name).Config) for name in registry.names()]
    return out


def _fields(section: type) -> list[tuple[str, Any, dict[str, Any]]]:
    hints = typing.get_type_hints(section)
    return [(f.name, hints[f.name], dict(f.metadata)) for f in dataclasses.fields(section)]


def _numbers_out_of_range(meta: dict[str, Any], integer: bool) -> st.SearchStrategy[Any]:
    lo, hi = meta.get("min", 0), meta.get("max", 2**53)  # config.py's defaults for no range
    options = []
    if integer:
        if lo is not None and lo > -INT64:
            options.append(st.integers(min_value=-INT64, max_value=math.ceil(lo) - 1))
        if hi is not None and hi < INT64:
            options.append(st.integers(min_value=math.floor(hi) + 1, max_value=INT64))
    else:
        if lo is not None:
            options.append(st.floats(max_value=lo, exclude_max=True, min_value=-1e300))
        if hi is not None:
            options.append(st.floats(min_value=hi, exclude_min=True, max_value=1e300))
    return st.one_of(options) if options else st.nothing()


def _not_digits() -> st.SearchStrategy[str]:
    return st.text(max_size=8).filter(lambda s: not s.strip().lstrip("-").isdigit())


def bad_value(key: str, hint: Any, meta: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that ``hint`` (with its range metadata) must reject."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        inner = next(a for a in typing.get_args(hint) if a is not type(None))
        return bad_value(key, inner, meta)
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        return st.one_of(st.text(max_size=10).filter(lambda s: s not in choices), st.integers())
    if origin is tuple:
        item = typing.get_args(hint)[0]
        bad_items: st.SearchStrategy[Any]
        if item is int:
            bad_items = st.one_of(_not_digits().filter(lambda s: "," not in s), st.booleans())
        elif item is str and key == "kernels":
            bad_items = BARE_KEY.filter(lambda s: s not in registry.names())
        else:
            bad_items = bad_value(key, item, {})
        return st.one_of(
            st.lists(bad_items, min_size=1, max_size=3),
            st.integers(),
            st.dictionaries(BARE_KEY, st.integers(), min_size=1, max_size=2),
        )
    if hint is bool:
        return st.one_of(st.integers(), st.text(max_size=5), st.lists(st.booleans(), max_size=2))
    if hint is str:
        return st.one_of(
            st.integers(),
            st.floats(allow_nan=False),
            st.booleans(),
            st.lists(st.integers(), max_size=2),
            st.text(max_size=5).map(lambda s: s + "\x00"),
        )
    if hint is int:
        return st.one_of(
            _numbers_out_of_range(meta, integer=True),
            st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
            _not_digits(), st.booleans(), st.lists(st.integers(), max_size=2),
        )  # fmt: skip
    if hint is float:
        strings = st.text(max_size=10)
        if key.endswith("_s"):
            strings = strings.filter(lambda s: not _DURATION.match(s))
        return st.one_of(
            _numbers_out_of_range(meta, integer=False),
            st.sampled_from([math.nan, math.inf, -math.inf]),
            strings, st.booleans(), st.lists(st.floats(allow_nan=False), max_size=2),
            st.dictionaries(BARE_KEY, st.integers(), max_size=1),
        )  # fmt: skip
    return st.nothing()


@st.composite
def bad_config(draw: st.DrawFn) -> tuple[str, str]:
    """(TOML text, the key path the error must name)."""
    kind = draw(
        st.sampled_from(["value", "value", "value", "unknown-key", "not-a-table", "syntax"])
    )
    section, cls = draw(st.sampled_from(_sections()))
    if kind == "syntax":
        broken = draw(st.sampled_from([
            "[run", "duration_s = ", 'x = "unterminated', "= 5", "[run]\nkind = 1\nkind = 2",
            "[run]\n[run]", "a.b = [1, 2", "x = 1 2", "[[run]]\n[run]", "x = " + "[" * 3000,
        ]))  # fmt: skip
        return broken, "(file)"
    if kind == "unknown-key":
        known = {f.name for f in dataclasses.fields(cls)}
        key = draw(BARE_KEY.filter(lambda k: k not in known))
        return f"[{section}]\n{key} = 1\n", f"{section}.{key}"
    if kind == "not-a-table":
        value = draw(
            st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2))
        )
        if section.startswith("kernels."):
            return f"[kernels]\n{section.split('.')[1]} = {toml_value(value)}\n", section
        return f"{section} = {toml_value(value)}\n", section
    key, hint, meta = draw(st.sampled_from(_fields(cls)))
    value = draw(bad_value(key, hint, meta))
    return f"[{section}]\n{key} = {toml_value(value)}\n", f"{section}.{key}"


@pytest.mark.slow
@FUZZ
@given(bad_config())
def test_fuzz_bad_configs_exit_2(case: tuple[str, str]) -> None:
    text, key_path = case
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        path = Path(tmp) / "bad.toml"
        path.write_text(text, encoding="utf-8")
        result = CliRunner().invoke(cli, ["plan", "--config", str(path)], obj=RUNTIME)
    expect_bad_input(result, f"config key '{key_path}")


def _option(name: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, str]]:
    # A value starting with "-" would be read as the next option, not as this one's value.
    return st.tuples(st.just(name), values.filter(lambda s: not s.startswith("-")))


BAD_OPTIONS = st.one_of(
    _option("--duration", st.text(min_size=1, max_size=8).filter(lambda s: not _DURATION.match(s))),
    _option("--duration", st.sampled_from(["0", "8d", "1e3", "nan", "0s", "0.0001ms"])),
    _option(
        "--gpus",
        st.text("0123456789,abc-+ .", min_size=1, max_size=8).filter(
            lambda s: any(c in "abc." for c in s)
        ),
    ),
    _option("--device", st.text(max_size=6).filter(lambda s: s not in ("auto", "cpu", "cuda"))),
    _option("--profile", BARE_KEY.filter(lambda s: s not in ("quick", "acceptance", "smoke-cpu"))),
    _option("--set", st.text(max_size=12).filter(lambda s: "=" not in s)),
    _option(
        "--set",
        st.builds(
            lambda k, v: f"{k}={v}",
            BARE_KEY.filter(lambda k: k not in ("profile", "kernels")),
            st.text(max_size=5),
        ),
    ),
)


@pytest.mark.slow
@settings(FUZZ, max_examples=200)
@given(BAD_OPTIONS)
def test_fuzz_bad_cli_options_exit_2(option: tuple[str, str]) -> None:
    result = CliRunner().invoke(cli, ["plan", *option], obj=RUNTIME)
    assert result.exit_code == 2, (option, result.output)
    assert ("Traceback" not in result.output and result.exception is None) or isinstance(
        result.exception, SystemExit
    )


# ---------------------------------------------------------------- nvidia-smi dumps

XML_DUMPS = sorted((DATA / "dumps").glob("*.xml"))
TEXT_DUMPS = sorted((DATA / "dumps").glob("*.txt"))


@st.composite
def bad_dump(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(
            ["truncated-xml", "hex-id", "entity", "root", "binary", "text-header", "empty"]
        )
    )
    if kind in ("truncated-xml", "hex-id", "entity", "root"):
        text = draw(st.sampled_from(XML_DUMPS)).read_text(encoding="utf-8")
        root = text.index("<nvidia_smi_log")
        if kind == "truncated-xml":  # cut anywhere before the root element closes
            end = text.rindex("</nvidia_smi_log>")
            return text[: draw(st.integers(root + 20, end - 1))].encode()
        if kind == "hex-id":
            garbage = draw(
                st.text("0123456789abcdefxyzXG_ -", max_size=12).filter(
                    lambda s: s.strip() and not re.match(r"^\s*(0x)?[0-9a-fA-F]{4}", s)
                )
            )
            return re.sub(
                r"<pci_device_id>[^<]*<", f"<pci_device_id>{garbage}<", text, count=1
            ).encode()
        if kind == "entity":
            bomb = '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
            return (text[:root] + bomb + text[root:]).encode()
        other = draw(BARE_KEY.filter(lambda s: s[0].isalpha() and s != "nvidia_smi_log"))
        return text.replace("nvidia_smi_log", other).encode()
    if kind == "binary":
        data = draw(st.binary(min_size=1, max_size=200))
        return b"\x00" + data if draw(st.booleans()) else b"\xff\xfe\x00\xd8" + data
    if kind == "text-header":  # the header of a text dump, cut before its first GPU
        text = draw(st.sampled_from(TEXT_DUMPS)).read_text(encoding="utf-8")
        first = re.search(r"^GPU [0-9A-Fa-f]{4,8}:", text, re.MULTILINE)
        assert first is not None
        return text[: draw(st.integers(0, first.start()))].encode()
    return draw(st.sampled_from([b"", b"   \n\t", b"\xef\xbb\xbf"]))


@pytest.mark.slow
@settings(FUZZ, max_examples=400)
@given(bad_dump())
def test_fuzz_bad_dumps_are_one_error_entry_beside_a_judged_lot(data: bytes) -> None:
    """A lot is judged whole: a file that is no dump is one ERROR entry naming it (exit 4 while
    no card FAILs), and one garbled field (a PCI device id) is named, never fatal."""
    good = DATA / "dumps" / "h100-nvl-x2_r550.txt"
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        path = Path(tmp) / "dump.xml"
        path.write_bytes(data)
        args = ["inspect", "--json", "--from", str(good), str(path)]
        result = CliRunner().invoke(cli, args, obj=RUNTIME)
    assert result.exit_code in (0, 3, 4), result.output
    assert not isinstance(result.exception, AssertionError | TypeError | ValueError | KeyError)
    gpus = json.loads(result.stdout)["gpus"]
    assert [g["status"] for g in gpus if g["source"] == str(good)] == ["PASS", "PASS"]
    mine = sorted((g for g in gpus if g["source"] == str(path)), key=lambda g: g["index"] or 0)
    if mine[0]["index"] is None:  # not a dump: one ERROR entry naming the file, exit 4
        (entry,) = mine
        assert entry["status"] == "ERROR" and str(path) in entry["verdicts"][0]["message"]
        assert result.exit_code == 4
    else:  # a garbled device id: the cards are judged, the first's id named as hidden
        assert "pci_device_id" in mine[0]["hidden"] or b"<pci_device_id>" not in data
        statuses = {g["status"] for g in mine}
        assert result.exit_code == (3 if "FAIL" in statuses else 4 if "ERROR" in statuses else 0)


# ---------------------------------------------------------------- simulated-fleet scenarios


@st.composite
def bad_scenario(draw: st.DrawFn) -> tuple[str, str]:
    fleet = {
        "name": "f",
        "nodes": 2,
        "gpus_per_node": 4,
        "sku": "H100-SXM5-80GB",
        "seed": 1,
        "noise": 0.01,
    }
    kind = draw(st.sampled_from(["fleet", "unknown", "fault", "fault-param", "node", "syntax"]))
    faults: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    if kind == "fleet":
        big = st.integers(min_value=513, max_value=INT64)  # > 512 nodes (and > 64 GPUs)
        key, value = draw(
            st.sampled_from(
                [
                    ("nodes", st.one_of(st.integers(max_value=0), big, st.text(max_size=3))),
                    ("gpus_per_node", st.one_of(st.integers(max_value=0), big, st.floats())),
                    ("noise", st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=0.50001))),
                    ("sku", st.text(max_size=12).filter(lambda s: s not in load_skus())),
                    ("seed", st.one_of(st.integers(max_value=-1), st.text(max_size=3))),
                ]
            )
        )
        fleet[key] = draw(value)
        where = f"fleet.{key}"
    elif kind == "unknown":
        key = draw(BARE_KEY.filter(lambda k: k not in fleet))
        fleet[key] = 1
        where = f"fleet.{key}"
    elif kind == "fault":
        bad = draw(st.sampled_from([
            {"node": 5, "gpu": 0, "kind": "slow"}, {"node": 0, "gpu": 9, "kind": "slow"},
            {"node": -1, "gpu": 0, "kind": "hang"}, {"node": 0, "gpu": 0, "kind": "melted"},
            {"node": 0, "gpu": 0}, {"node": "0", "gpu": 0, "kind": "crash"},
        ]))  # fmt: skip
        faults.append(bad)
        where = "fault[0]"
    elif kind == "fault-param":
        fault_kind, key = draw(st.sampled_from([
            ("hang", "after_s"), ("slow", "factor"), ("sdc", "rate"), ("thermal", "max_temp_c"),
        ]))  # fmt: skip
        value = draw(
            st.one_of(st.floats(max_value=-0.001), st.floats(min_value=1e9), st.text(max_size=3))
        )
        faults.append({"node": 0, "gpu": 1, "kind": fault_kind, key: value})
        where = "fault[0]"
    elif kind == "node":
        nodes.append(draw(st.sampled_from([
            {"index": 7}, {"index": 0, "gpus_per_node": 0}, {"index": 0, "sku": "NOPE"},
            {"gpus_per_node": 2}, {"index": 0, "colour": "red"},
        ])))  # fmt: skip
        where = "node[0]"
    else:
        return draw(
            st.sampled_from(["[fleet", "[fleet]\nnodes = ", "x = " + "{a = " * 3000])
        ), "(file)"
    lines = ["[fleet]", *(f"{k} = {toml_value(v)}" for k, v in fleet.items())]
    for table, name in ((nodes, "node"), (faults, "fault")):
        for entry in table:
            lines += [f"[[{name}]]", *(f"{k} = {toml_value(v)}" for k, v in entry.items())]
    return "\n".join(lines) + "\n", where


@pytest.mark.slow
@SOME
@given(bad_scenario())
def test_fuzz_bad_scenarios_exit_2(case: tuple[str, str]) -> None:
    text, where = case
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        path = Path(tmp) / "scenario.toml"
        path.write_text(text, encoding="utf-8")
        result = CliRunner().invoke(cli, ["plan", "--simulate", str(path)], obj=RUNTIME)
    expect_bad_input(result, where)


# ---------------------------------------------------------------- run directories

NOT_NUM = st.one_of(
    st.text(max_size=4), st.lists(st.integers(), max_size=2),
    st.dictionaries(BARE_KEY, st.integers(), max_size=1),
)  # fmt: skip
NOT_STR = st.one_of(
    st.integers(), st.lists(st.integers(), max_size=2), st.dictionaries(BARE_KEY, st.integers())
)
NOT_LIST = st.one_of(  # neither a list nor null, or a non-empty list of the wrong items
    st.text(max_size=4), st.integers(), st.dictionaries(BARE_KEY, st.integers(), max_size=1),
    st.lists(st.one_of(st.integers(), st.lists(st.integers())), min_size=1, max_size=2),
)  # fmt: skip
NOT_DICT = st.one_of(st.text(max_size=4), st.integers(), st.lists(st.integers(), max_size=2))
WRONG_FIELDS = {
    "plan-entry": {"node": NOT_STR, "device": NOT_NUM, "kernels": NOT_LIST},
    "sample": {"temp_c": NOT_NUM, "power_w": NOT_NUM, "elapsed_s": NOT_NUM, "device": NOT_NUM,
               "sm_clock_mhz": NOT_NUM, "throttle_reasons": NOT_LIST},
    "result": {"metrics": st.one_of(NOT_DICT, st.dictionaries(BARE_KEY, st.text(), min_size=1)),
               "type": NOT_STR, "wrong_elements": NOT_NUM, "device": NOT_NUM,
               "locations": st.one_of(NOT_LIST, st.just([{"row": "a"}]), st.just([{"got": []}]))},
    "event": {"kind": NOT_STR, "device": NOT_NUM, "last_sample": NOT_DICT,
              "recent_events": NOT_LIST, "processes": NOT_LIST},
}  # fmt: skip


def _field_damage(what: str) -> st.SearchStrategy[tuple[str, str, Any]]:
    fields = WRONG_FIELDS[what]
    return st.sampled_from(sorted(fields)).flatmap(
        lambda key: st.tuples(st.just(what), st.just(key), fields[key])
    )


@st.composite
def run_damage(draw: st.DrawFn) -> tuple[str, str, Any]:
    """(what to damage, where, with what): each leaves a store that cannot be trusted."""
    manifest_fields = ["run_id", "plan", "versions", "config", "argv", "finished_at"]
    streams = ["samples", "results", "events", "inventory"]
    return draw(
        st.one_of(
            _damage_of("manifest-schema", ["schema"], st.text(max_size=12)).filter(
                lambda d: d[2] != MANIFEST_SCHEMA
            ),
            _damage_of("manifest-text", [""], st.text(max_size=30)).filter(
                lambda d: not d[2].strip().startswith("{")
            ),
            _damage_of(
                "manifest-field",
                manifest_fields,
                st.one_of(st.integers(), st.lists(st.integers(), min_size=1, max_size=2)),
            ),
            _field_damage("plan-entry"),
            _field_damage("sample"),
            _field_damage("result"),
            _field_damage("event"),
            _damage_of("threshold", ["warn_temp_c", "fail_temp_c"], st.text(max_size=4)),
            _damage_of(
                "nan", ["samples", "results"], st.sampled_from(["NaN", "Infinity", "1e999"])
            ),
            _damage_of("corrupt-middle", streams, st.text('{}[]:,ab1"', min_size=1)).filter(
                lambda d: not _is_json("{" + d[2])
            ),
            _damage_of("deep", ["results", "events"], st.integers(5000, 20000)),
        )
    )


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _damage_of(
    what: str, where: list[str], values: st.SearchStrategy[Any]
) -> st.SearchStrategy[tuple[str, str, Any]]:
    return st.tuples(st.just(what), st.sampled_from(where), values)


GOOD_RECORDS = {
    "sample": {"device": 0, "elapsed_s": 1.0, "temp_c": 50.0},
    "result": {"device": 0, "type": "progress", "kernel": "matmul"},
    "event": {"device": 0, "elapsed_s": 1.0, "kind": "xid", "code": 13},
}


def _damage(run_dir: Path, what: str, where: str, value: Any) -> str:
    """Apply one damage; returns a text the error message must contain."""
    manifest_path = run_dir / "manifest.json"
    node = run_dir / "nodes" / "node-a"
    manifest = json.loads(manifest_path.read_text())
    if what == "manifest-text":
        manifest_path.write_text(value)
        return "manifest"
    if what in ("manifest-schema", "manifest-field"):
        manifest[where] = value
        manifest_path.write_text(json.dumps(manifest))
        return where if what == "manifest-field" else "schema"
    if what == "plan-entry":
        manifest["plan"][0][where] = value
        manifest_path.write_text(json.dumps(manifest))
        return "plan entry 1"
    if what == "threshold":
        manifest["config"]["thresholds"][where] = value
        manifest_path.write_text(json.dumps(manifest))
        return where
    if what in ("sample", "result", "event"):
        stream = {"sample": "samples", "result": "results", "event": "events"}[what]
        base = GOOD_RECORDS[what]
        record = {**base, where: value}
        lines = [json.dumps(record), json.dumps(base)]  # damaged, then a good last line
        with (node / f"{stream}.jsonl").open("a") as fh:
            fh.write("\n".join(lines) + "\n")
        return f"{stream}.jsonl"
    if what == "nan":
        key = "temp_c" if where == "samples" else "elapsed_s"
        line = f'{{"device": 0, "elapsed_s": 1.0, "type": "progress", "{key}": {value}}}'
        with (node / f"{where}.jsonl").open("a") as fh:
            fh.write(line + "\n" + json.dumps({"device": 0, "type": "x", "kind": "x"}) + "\n")
        return f"{where}.jsonl"
    if what == "corrupt-middle":
        path = node / f"{where}.jsonl"
        good = path.read_text()
        path.write_text("{" + value + "\n" + good + '{"device": 0, "type": "x", "kind": "x"}\n')
        return f"{where}.jsonl"
    if what == "deep":
        with (node / f"{where}.jsonl").open("a") as fh:
            fh.write("[" * value + "]" * value + "\n" + '{"device": 0, "type": "x", "kind": "x"}\n')
        return f"{where}.jsonl"
    raise AssertionError(what)


@pytest.mark.slow
@SOME
@given(run_damage())
def test_fuzz_bad_run_directories_exit_2(damage: tuple[str, str, Any]) -> None:
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        run_dir = write_run(Path(tmp), devices=1, host="node-a")
        must_name = _damage(run_dir, *damage)
        result = CliRunner().invoke(cli, ["report", str(run_dir)])
    expect_bad_input(result, must_name)


@pytest.mark.parametrize(
    ("remove", "code"),
    [("manifest.json", 2), ("nodes", 4), ("nodes/node-a/results.jsonl", 4)],
)
def test_missing_files(tmp_path: Path, remove: str, code: int) -> None:
    """No manifest: not a run directory (2). Missing streams: the data is missing (4)."""
    import shutil

    run_dir = write_run(tmp_path, devices=1, host="node-a")
    target = run_dir / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    result = CliRunner().invoke(cli, ["report", str(run_dir)])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
