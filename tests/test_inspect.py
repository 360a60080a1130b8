"""``burnin inspect``: every real dump in tests/data/dumps judged as expected, the CLI through
CliRunner (JSON schema, table, exit codes, bad input), and the live path on a fake NVML."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fake_pynvml import FakeNvml, error, gpu

from burnin.cli import cli
from burnin.inspect import inspect_dumps
from burnin.runtime import Runtime
from burnin.telemetry.null import NullTelemetry
from burnin.telemetry.nvml import NvmlTelemetry
from burnin.verdicts import Status

DUMPS = Path(__file__).parent / "data" / "dumps"
ALL = sorted(p for p in DUMPS.iterdir() if p.suffix in (".txt", ".xml"))

# Per dump (inspected alone): per-GPU status, the checks that flag it (WARN or worse), the SKU,
# and GPU 0's name, serial and memory as the dump prints them. Why each flag (SOURCES.md):
#   a40        2 remapped rows + 10 lifetime corrected DRAM errors: wear / row-remap WARN
#   v100-sxm3  volatile DBE 1: ecc FAIL; lifetime DBE 7627, 2 pages retired for DBE, retirement
#              pending: wear WARN, retired-pages WARN
#   rtx-2080   both GPUs carry the contributor's placeholder UUID: identity WARN (blanked)
#   rtx-pro    placeholder serial and UUID: identity WARN (blanked)
#   t4         serial 0000000000000 (AWS pass-through): identity WARN (cannot match the label)
#   titan      R331 GeForce: nothing readable, every check SKIP: incomplete ERROR (not certified)
#   gtx-1070   both cards run ./ethminer in the seller's dump: wear WARN (ex-mining)
EXPECTED: dict[str, tuple[list[str], set[str], str | None, str, str | None, int | None]] = {
    "a100-sxm4-80gb-mig_r535.xml": (
        ["PASS"],
        set(),
        "A100-SXM4-80GB",
        "NVIDIA A100-SXM4-80GB",
        "1650522003820",
        81920,
    ),
    "a40-remapped-rows_r550.txt": (
        ["WARN"],
        {"wear", "row-remap"},
        None,
        "NVIDIA A40",
        "1322221017584",
        46068,
    ),
    "geforce-gtx-1070-x2-mining_r384.xml": (
        ["WARN", "WARN"],
        {"wear"},
        None,
        "GeForce GTX 1070",
        None,
        8112,
    ),
    "geforce-gtx-titan-black_r331.txt": (
        ["ERROR"],
        {"incomplete"},
        None,
        "GeForce GTX TITAN Black",
        None,
        6143,
    ),
    "geforce-rtx-2080-x2_r590.xml": (
        ["WARN", "WARN"],
        {"identity"},
        None,
        "NVIDIA GeForce RTX 2080",
        None,
        8192,
    ),
    "h100-nvl-x2_r550.txt": (
        ["PASS", "PASS"],
        set(),
        "H100-NVL-94GB",
        "NVIDIA H100 NVL",
        "1650724004565",
        95830,
    ),
    "rtx-a6000-windows_r537.txt": (
        ["PASS"],
        set(),
        None,
        "NVIDIA RTX A6000",
        "1651022017098",
        49140,
    ),
    "rtx-pro-6000-blackwell-maxq_r590.xml": (
        ["WARN"],
        {"identity"},
        None,
        "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition",
        "0123456789012",
        97887,
    ),
    "tesla-t4_r515.xml": (["WARN"], {"identity"}, None, "Tesla T4", "0000000000000", 15360),
    "v100-sxm2-32gb-power9_r418.txt": (
        ["PASS"],
        set(),
        "V100-SXM2-32GB",
        "Tesla V100-SXM2-32GB",
        "0561519020531",
        32480,
    ),
    "v100-sxm3-32gb-retired-pages_r410.xml": (
        ["FAIL"],
        {"ecc", "wear", "retired-pages"},
        None,
        "Tesla V100-SXM3-32GB",
        "0323218034307",
        32480,
    ),
}


def invoke(args: list[str], obj: Runtime | None = None) -> Any:
    runtime = obj or Runtime(hostname="test-node", cuda_devices=lambda: [])
    return CliRunner().invoke(cli, args, obj=runtime)


def flagged(entry: dict[str, Any]) -> set[str]:
    return {v["check"] for v in entry["verdicts"] if Status[v["status"]] >= Status.WARN}


def test_the_table_covers_every_dump() -> None:
    assert len(ALL) >= 8
    assert {p.name for p in ALL} == set(EXPECTED)
    assert {p.suffix for p in ALL} == {".txt", ".xml"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_dump(name: str) -> None:
    statuses, checks, sku, first_name, serial, memory = EXPECTED[name]
    result = inspect_dumps([DUMPS / name], thresholds={})
    gpus = sorted(result.gpus, key=lambda g: g["index"])
    assert [g["status"] for g in gpus] == statuses
    assert set().union(*(flagged(g) for g in gpus)) == checks
    assert {g["sku"] for g in gpus} == {sku}
    assert (gpus[0]["name"], gpus[0]["serial"], gpus[0]["memory_total_mib"]) == (
        first_name,
        serial,
        memory,
    )
    # A dump has no run: nothing that needs samples or events may speak.
    quiet = {"pcie-link", "pcie-replay", "xid", "throttle", "thermal", "fan"}
    assert not quiet & {v["check"] for g in gpus for v in g["verdicts"]}
    if sku:
        identity = next(v for v in gpus[0]["verdicts"] if v["check"] == "identity")
        assert identity["status"] == "PASS" and sku in identity["message"]


def test_all_dumps_together_flag_exactly_the_problem_cards() -> None:
    result = inspect_dumps(ALL, thresholds={})
    assert len(result.gpus) == sum(len(e[0]) for e in EXPECTED.values())
    bad = sorted(
        (Path(g["source"]).name, g["index"]) for g in result.gpus if g["status"] in ("WARN", "FAIL")
    )
    expected = sorted(
        (name, i)
        for name, e in EXPECTED.items()
        for i, s in enumerate(e[0])
        if s in ("WARN", "FAIL")
    )
    assert bad == expected
    # The unreadable Titan Black is ERROR (worst, so first); the FAIL still makes the exit 3.
    assert result.exit_code == 3 and result.status == Status.ERROR
    assert [Path(g["source"]).name for g in result.gpus[:2]] == [
        "geforce-gtx-titan-black_r331.txt",
        "v100-sxm3-32gb-retired-pages_r410.xml",
    ]


def test_cli_json_schema() -> None:
    out = invoke(
        [
            "inspect",
            "--json",
            "--from",
            str(DUMPS / "h100-nvl-x2_r550.txt"),
            str(DUMPS / "a40-remapped-rows_r550.txt"),
        ]
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["schema"] == "burnin.inspect/1" and len(data["gpus"]) == 3
    for entry in data["gpus"]:
        assert {
            "index",
            "uuid",
            "serial",
            "name",
            "sku",
            "memory_total_mib",
            "status",
            "verdicts",
        } <= set(entry)
        for verdict in entry["verdicts"]:
            assert set(verdict) == {
                "check",
                "status",
                "observed",
                "limit",
                "unit",
                "message",
                "action",
            }
    assert [g["sku"] for g in data["gpus"]].count("H100-NVL-94GB") == 2


def test_cli_table_names_problems_and_actions() -> None:
    out = invoke(["inspect", "--from", str(DUMPS / "v100-sxm3-32gb-retired-pages_r410.xml")])
    assert out.exit_code == 3, out.output
    assert "# burnin inspect: 1 GPU(s)" in out.output
    assert "FAIL - " in out.output and "uncorrectable ECC" in out.output
    assert "WARN - " in out.output and "retired-pages: a page retirement is pending" in out.output
    assert "(action: retest)" in out.output and "# Result: FAIL" in out.output


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--strict"], 3, "Result: WARN  FAILED"),
        (["--set", "inspect.claimed_sku=A100-SXM4-80GB"], 0, "Result: PASS"),
        (["--set", "inspect.claimed_sku=H100-SXM5-80GB"], 3, "claimed to be H100-SXM5-80GB"),
        (["--set", "inspect.claimed_sku=H900"], 2, "inspect.claimed_sku"),
        (["--set", "thresholds.identity_memory_tolerance=2"], 2, "identity_memory_tolerance"),
    ],
)
def test_cli_claims_options_and_exit_codes(args: list[str], code: int, words: str) -> None:
    dump = "a100-sxm4-80gb-mig_r535.xml" if "--strict" not in args else "tesla-t4_r515.xml"
    out = invoke(["inspect", *args, "--from", str(DUMPS / dump)])
    assert out.exit_code == code, out.output
    assert words in out.output


@pytest.mark.parametrize("bad", sorted((DUMPS / "bad").iterdir()), ids=lambda p: p.name)
def test_cli_malformed_dump_exits_2_naming_the_file(bad: Path) -> None:
    out = invoke(["inspect", "--from", str(DUMPS / "tesla-t4_r515.xml"), str(bad)])
    assert out.exit_code == 2, out.output
    assert bad.name in out.output and "Traceback" not in out.output


def test_cli_missing_file_exits_2() -> None:
    out = invoke(["inspect", "--from", "/nonexistent/dump.xml"])
    assert out.exit_code == 2 and "dump.xml" in out.output


def test_cli_strips_control_characters_from_dump_strings(tmp_path: Path) -> None:
    text = (DUMPS / "rtx-a6000-windows_r537.txt").read_text()
    hostile = tmp_path / "hostile.txt"
    hostile.write_text(text.replace("NVIDIA RTX A6000", "RTX\x1b[2J<script>x</script>", 1))
    out = invoke(["inspect", "--from", str(hostile)])
    assert out.exit_code == 0, out.output
    assert "\x1b" not in out.output and "<script>x</script>" in out.output
    data = json.loads(invoke(["inspect", "--json", "--from", str(hostile)]).output)
    assert data["gpus"][0]["name"].startswith("RTX")


def live(*gpus: Any) -> Runtime:
    """A runtime whose telemetry is the real NVML backend on a fake pynvml module."""
    module = FakeNvml(list(gpus))
    return Runtime(
        hostname="gpu-node-1",
        telemetry_factory=lambda devices: NvmlTelemetry(module=module),
        cuda_devices=lambda: [],
    )


def test_live_inspect_through_the_telemetry_factory() -> None:
    out = invoke(["inspect", "--json"], live(gpu(), gpu(uuid="GPU-2", serial="1654822019877")))
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert [g["source"] for g in data["gpus"]] == ["gpu-node-1"] * 2
    assert {g["sku"] for g in data["gpus"]} == {"H100-SXM5-80GB"}
    assert {g["status"] for g in data["gpus"]} == {"PASS"}


@pytest.mark.parametrize(
    ("cards", "code", "words"),
    [
        ([gpu(inforom=error("NVMLError_CorruptedInforom"))], 3, "InfoROM"),
        ([gpu(), gpu(uuid="GPU-2")], 3, "also reported by gpu-node-1 gpu"),  # cloned serial
        ([gpu(), gpu(uuid=error("NVMLError_GpuIsLost"))], 4, "could not be read"),
        ([gpu(power_enforced_mw=300_000)], 3, "power limit lowered to 300 W"),
    ],
)
def test_live_inspect_exit_codes(cards: list[Any], code: int, words: str) -> None:
    out = invoke(["inspect"], live(*cards))
    assert out.exit_code == code, out.output
    assert words in out.output


@pytest.mark.parametrize(
    "factory",
    [lambda devices: NullTelemetry(len(devices)), lambda devices: NvmlTelemetry(FakeNvml([]))],
    ids=["nvml-unavailable", "no-gpu"],
)
def test_live_inspect_without_a_gpu_exits_2(factory: Any) -> None:
    runtime = Runtime(hostname="laptop", telemetry_factory=factory, cuda_devices=lambda: [])
    out = invoke(["inspect"], runtime)
    assert out.exit_code == 2, out.output
    assert "no NVIDIA GPU visible through NVML" in out.output and "--from" in out.output


def test_inspect_from_imports_neither_torch_nor_pynvml() -> None:
    code = (
        "import sys; from click.testing import CliRunner; from burnin.cli import cli; "
        f"r = CliRunner().invoke(cli, ['inspect', '--json', '--from', {str(ALL[0])!r}]); "
        "assert r.exit_code == 0, r.output; "
        "bad = {'torch', 'pynvml'} & set(sys.modules); assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_inspect_help() -> None:
    out = invoke(["inspect", "--help"])
    assert out.exit_code == 0 and "--from" in out.output and "--json" in out.output
