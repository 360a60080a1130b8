"""``burnin inspect``: every real dump in tests/data/dumps judged as expected, the CLI through
CliRunner (JSON schema, table, exit codes, bad input), and the live path on a fake NVML."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fake_pynvml import FakeNvml, error, gpu

from burnin.cli import cli
from burnin.config import load_config
from burnin.inspect import inspect_dumps
from burnin.runtime import Runtime
from burnin.telemetry.null import NullTelemetry
from burnin.telemetry.nvml import NvmlTelemetry
from burnin.verdicts import Status
from burnin.verdicts.procurement import ACTIONS

DUMPS = Path(__file__).parent / "data" / "dumps"
ALL = sorted(p for p in DUMPS.iterdir() if p.suffix in (".txt", ".xml"))
BUYER_ACTIONS = set(ACTIONS)

# What each real (or, prefixed ``edited-``, hand-edited) dump shows, judged alone: file, GPU
# index, check, status. Why each (tests/data/dumps/SOURCES.md):
FINDINGS = [
    # memory history: a volatile DBE fails; lifetime DBE, retired pages, remaps are wear
    ("v100-sxm3-32gb-retired-pages_r410.xml", 0, "ecc", "FAIL"),
    ("v100-sxm3-32gb-retired-pages_r410.xml", 0, "retired-pages", "WARN"),
    ("v100-sxm3-32gb-retired-pages_r410.xml", 0, "wear", "WARN"),
    ("a40-remapped-rows_r550.txt", 0, "row-remap", "WARN"),
    ("a40-remapped-rows_r550.txt", 0, "wear", "WARN"),
    ("a10-remap-pending_r535.txt", 0, "row-remap", "WARN"),
    ("a100-sxm4-80gb-x4-remap-pending_r555.txt", 1, "row-remap", "WARN"),
    ("a100-sxm4-80gb-x4-remap-pending_r555.txt", 1, "wear", "WARN"),  # 353 SBE, peers 0
    ("a100-sxm4-80gb-x4-remap-pending_r555.txt", 0, "wear", "PASS"),
    ("v100-sxm2-16gb-x8-mixed-vbios-retired-page_r550.txt", 2, "retired-pages", "WARN"),
    ("gh200-remapped-row-enforced-below-requested_r550.txt", 0, "row-remap", "WARN"),
    ("gh200-remapped-row-enforced-below-requested_r550.txt", 0, "wear", "WARN"),
    # mining software in the process list
    ("geforce-gtx-1070-x2-mining_r384.xml", 0, "wear", "WARN"),
    ("geforce-gtx-1070-x2-mining_r384.xml", 1, "wear", "WARN"),
    # PCIe link at dump time below card and slot: x1, x2, x8 of x16, Gen1 of Gen4 at idle
    ("geforce-gtx-1070-x2-mining_r384.xml", 0, "pcie-link", "WARN"),
    ("v100-sxm2-32gb-power9_r418.txt", 0, "pcie-link", "WARN"),
    ("tesla-t4_r515.xml", 0, "pcie-link", "WARN"),
    ("geforce-rtx-5090-x8-of-x16_r570.txt", 0, "pcie-link", "WARN"),
    ("geforce-rtx-2080-windows-x8_r516.xml", 0, "pcie-link", "WARN"),
    ("a40-remapped-rows_r550.txt", 0, "pcie-link", "WARN"),
    # a natively narrow x4 card at its maximum is not degraded
    ("geforce-gt-1030-native-x4_r470.xml", 0, "pcie-link", "PASS"),
    # clock-event reasons active at idle
    ("h100-sxm-x8-hw-power-brake-idle_r535.txt", 0, "throttle", "WARN"),
    ("h100-sxm-x8-hw-power-brake-idle_r535.txt", 1, "throttle", "WARN"),
    ("h100-sxm-x8-sw-thermal_r535.txt", 1, "throttle", "WARN"),
    ("h100-sxm-x8-sw-thermal_r535.txt", 0, "throttle", "PASS"),
    # SW power cap at idle is the driver's power management, not a fault
    ("geforce-rtx-3090-sw-power-cap-idle_r590.xml", 0, "throttle", "PASS"),
    # fan at 100 % idle and cool; fields reading "Unknown Error"
    ("rtx-4090-x8-fan100-unknown-error_r535.txt", 0, "fan", "WARN"),
    ("rtx-4090-x8-fan100-unknown-error_r535.txt", 1, "fan", "PASS"),
    ("geforce-gtx-1070-ti-fan100-reduced_rNA.xml", 0, "fan", "WARN"),
    ("rtx-4090-x8-fan100-unknown-error_r535.txt", 0, "firmware", "WARN"),
    ("v100-sxm2-16gb-x8-mixed-vbios-retired-page_r550.txt", 0, "firmware", "WARN"),
    # mixed VBIOS among one node's same-model cards
    ("v100-sxm2-16gb-x8-mixed-vbios-retired-page_r550.txt", 1, "firmware", "WARN"),
    # power limit lowered by the owner: a setting, so WARN for a buyer, never FAIL
    ("geforce-rtx-3090-redacted-power-capped_r525.xml", 0, "power", "WARN"),
    # enforced power limit below the requested one
    ("gh200-remapped-row-enforced-below-requested_r550.txt", 0, "power", "WARN"),
    # hidden by the seller: [REDACTED] ids, placeholder serials and UUIDs
    ("geforce-rtx-3090-redacted-power-capped_r525.xml", 0, "identity", "WARN"),
    ("edited-rtx-a6000-redacted_r537.txt", 0, "identity", "WARN"),
    ("geforce-rtx-2080-x2_r590.xml", 0, "identity", "WARN"),
    ("rtx-pro-6000-blackwell-maxq_r590.xml", 0, "identity", "WARN"),
    ("a10g-zeroed-ids-x8_r515.xml", 0, "identity", "WARN"),  # device id 000000DE
    ("a10g-zeroed-ids-x8_r515.xml", 0, "pcie-link", "WARN"),  # x8 of x16
    # identity by PCI device id for any NVIDIA card, old or unnamed
    ("geforce-gtx-titan-black_r331.txt", 0, "identity", "PASS"),
    ("geforce-gtx-1660-graphics-device_r418.xml", 0, "identity", "PASS"),
    ("geforce-gt-1030-native-x4_r470.xml", 0, "identity", "PASS"),
    ("geforce-rtx-2080-windows-x8_r516.xml", 0, "identity", "PASS"),
    # a reduced dump with no PCI section: the name is named, not confirmed
    ("geforce-gtx-1070-ti-fan100-reduced_rNA.xml", 0, "identity", "SKIP"),
    # a device id newer than the shipped PCI ID database (2023-04-10): said, not guessed
    ("geforce-rtx-5090-x8-of-x16_r570.txt", 0, "identity", "SKIP"),
    # a dump from inside a virtual machine: identity and firmware not assessable
    ("tesla-t4_r515.xml", 0, "identity", "SKIP"),
    ("grid-p4-1q-vgpu-windows_r513.xml", 0, "firmware", "SKIP"),
    ("grid-p4-1q-vgpu-windows_r513.xml", 0, "incomplete", "ERROR"),
]
# Cards with nothing wrong in their dump: never FAIL or ERROR (most PASS).
HEALTHY = [
    ("a100-sxm4-80gb-mig_r535.xml", "PASS"),
    ("h100-nvl-x2_r550.txt", "PASS"),
    ("rtx-a6000-windows_r537.txt", "PASS"),
    ("geforce-gtx-titan-black_r331.txt", "PASS"),
    ("geforce-gtx-680-kepler_r470.txt", "PASS"),
    ("tesla-p100-pcie-16gb-sbe_r510.xml", "PASS"),  # 3 lifetime corrected errors, no peers
    ("geforce-gt-1030-native-x4_r470.xml", "PASS"),
]


def invoke(args: list[str], obj: Runtime | None = None) -> Any:
    runtime = obj or Runtime(hostname="test-node", cuda_devices=lambda: [])
    return CliRunner().invoke(cli, args, obj=runtime)


def flagged(entry: dict[str, Any]) -> set[str]:
    return {v["check"] for v in entry["verdicts"] if Status[v["status"]] >= Status.WARN}


def screen(*paths: Path) -> Any:
    return inspect_dumps(list(paths), PROCUREMENT)


PROCUREMENT = load_config("procurement").to_dict()["thresholds"]


# What the message must say where the status alone does not show which finding it is.
WORDS = {
    ("a100-sxm4-80gb-x4-remap-pending_r555.txt", 1, "wear"): "same-model peers in the lot",
    ("a100-sxm4-80gb-x4-remap-pending_r555.txt", 1, "row-remap"): "remap is pending",
    ("v100-sxm2-16gb-x8-mixed-vbios-retired-page_r550.txt", 1, "firmware"): "VBIOS",
    ("v100-sxm2-16gb-x8-mixed-vbios-retired-page_r550.txt", 0, "firmware"): "Unknown Error",
    ("rtx-4090-x8-fan100-unknown-error_r535.txt", 0, "firmware"): "Unknown Error",
    ("gh200-remapped-row-enforced-below-requested_r550.txt", 0, "power"): "requested",
    ("gh200-remapped-row-enforced-below-requested_r550.txt", 0, "wear"): "uncorrectable",
    ("h100-sxm-x8-hw-power-brake-idle_r535.txt", 0, "throttle"): "HW power brake",
    ("h100-sxm-x8-sw-thermal_r535.txt", 1, "throttle"): "SW thermal slowdown",
    ("tesla-t4_r515.xml", 0, "identity"): "not assessable from a guest",
    ("tesla-t4_r515.xml", 0, "pcie-link"): "x8",
    ("geforce-rtx-5090-x8-of-x16_r570.txt", 0, "pcie-link"): "width x8",
    ("geforce-rtx-5090-x8-of-x16_r570.txt", 0, "identity"): "not in the PCI ID database",
    ("geforce-gtx-titan-black_r331.txt", 0, "identity"): "GK110B [GeForce GTX TITAN Black]",
    ("geforce-gtx-1660-graphics-device_r418.xml", 0, "identity"): "TU116 [GeForce GTX 1660]",
    ("geforce-gtx-1070-x2-mining_r384.xml", 0, "wear"): "ethminer",
    ("geforce-gtx-1070-ti-fan100-reduced_rNA.xml", 0, "identity"): "GP104 [GeForce GTX 1070 Ti]",
    ("geforce-gtx-1070-ti-fan100-reduced_rNA.xml", 0, "fan"): "fan at 100 %",
}


@pytest.mark.parametrize(("name", "index", "check", "status"), FINDINGS)
def test_each_finding_on_a_real_dump(name: str, index: int, check: str, status: str) -> None:
    gpus = {g["index"]: g for g in screen(DUMPS / name).gpus}
    verdicts = [v for v in gpus[index]["verdicts"] if v["check"] == check]
    assert [v["status"] for v in verdicts] == [status]  # one verdict per check
    assert WORDS.get((name, index, check), "") in verdicts[0]["message"]
    if Status[status] >= Status.WARN:
        assert verdicts[0]["action"] in BUYER_ACTIONS - {"none"}
        assert Status[gpus[index]["status"]] >= Status[status]


def sources_table() -> list[tuple[str, int, str, str]]:
    """tests/data/dumps/SOURCES.md's "Expected screening results": file, GPU, check, status
    (check ``none``: the card's overall status)."""
    text = (DUMPS / "SOURCES.md").read_text(encoding="utf-8")
    section = text.split("## Expected screening results", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| (\d+) \| ([a-z-]+) \| ([A-Z]+) \|", section, re.M)
    return [(name, int(index), check, status) for name, index, check, status in rows]


# Where burnin deliberately differs from a SOURCES.md row: (file, GPU, check) -> status, why.
DIFFERS = {
    ("v100-sxm2-16gb-x8-mixed-vbios-retired-page_r550.txt", 2, "wear"): (
        "WARN",
        "the procurement profile warns on any retired page (retired_pages_warn = 0), and wear "
        "counts retired pages as worn memory, as a nightly sweep does above 10",
    ),
}
SOURCES_ROWS = sources_table()


def test_sources_table_is_there() -> None:
    assert len(SOURCES_ROWS) >= 40


@pytest.mark.parametrize(("name", "index", "check", "status"), SOURCES_ROWS)
def test_each_row_of_the_sources_table(name: str, index: int, check: str, status: str) -> None:
    status = DIFFERS.get((name, index, check), (status, ""))[0]
    gpus = {g["index"]: g for g in screen(DUMPS / name).gpus}
    if check == "none":
        assert gpus[index]["status"] == status
    else:
        found = [v["status"] for v in gpus[index]["verdicts"] if v["check"] == check]
        assert found == [status], gpus[index]["verdicts"]


def test_the_tables_cover_every_dump() -> None:
    covered = {f[0] for f in FINDINGS} | {h[0] for h in HEALTHY} | {r[0] for r in SOURCES_ROWS}
    assert covered == {p.name for p in ALL}


@pytest.mark.parametrize(("name", "status"), HEALTHY)
def test_healthy_cards_are_never_fail_or_error(name: str, status: str) -> None:
    assert {g["status"] for g in screen(DUMPS / name).gpus} == {status}


def test_every_verdict_of_a_dump_carries_a_buyer_action() -> None:
    result = screen(*ALL)
    for entry in result.gpus:
        assert entry["action"] in BUYER_ACTIONS
        for verdict in entry["verdicts"]:
            assert verdict["action"] in BUYER_ACTIONS, verdict
            assert verdict["message"]


def test_severity_ranks_memory_and_identity_above_a_setting() -> None:
    (card,) = screen(DUMPS / "geforce-rtx-3090-redacted-power-capped_r525.xml").gpus
    warned = [v["check"] for v in card["verdicts"] if v["status"] == "WARN"]
    assert warned[0] == "identity" and warned[-1] == "power"
    (v100,) = screen(DUMPS / "v100-sxm3-32gb-retired-pages_r410.xml").gpus
    assert [v["check"] for v in v100["verdicts"][:3]] == ["ecc", "retired-pages", "wear"]
    assert v100["action"] == "return-to-seller"


def test_the_lot_together_worst_first_and_one_node_note() -> None:
    result = screen(*ALL)
    assert len(result.gpus) == sum(len(screen(p).gpus) for p in ALL)
    ranks = [Status[g["status"]] for g in result.gpus]
    assert ranks == sorted(ranks, reverse=True)
    assert result.exit_code == 3 and result.status == Status.ERROR
    (note,) = result.nodes
    assert note["node"].endswith("h100-sxm-x8-hw-power-brake-idle_r535.txt")
    assert "chassis or its power supply" in note["message"]


def test_redacted_device_id_serial_and_memory_parse_and_are_named() -> None:
    (card,) = screen(DUMPS / "edited-rtx-a6000-redacted_r537.txt").gpus
    assert card["name"] == "NVIDIA RTX A6000" and card["serial"] is None
    assert set(card["hidden"]) == {"pci_device_id", "serial", "memory_total_mib"}
    identity = next(v for v in card["verdicts"] if v["check"] == "identity")
    assert identity["status"] == "WARN" and identity["action"] == "ask-unedited-dump"
    for words in ("hidden by the seller", "PCI device id", "serial number", "memory size"):
        assert words in identity["message"]


def edited(tmp_path: Path, fixture: str, name: str, *swaps: tuple[str, str, int]) -> Path:
    """A copy of ``fixture`` with the ``n``-th (0-based) occurrence of each text replaced."""
    text = (DUMPS / fixture).read_text()
    for old, new, nth in swaps:
        at = -1
        for _ in range(nth + 1):
            at = text.index(old, at + 1)
        text = text[:at] + new + text[at + len(old) :]
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_relabelled_card_of_any_model_fails(tmp_path: Path) -> None:
    fake = edited(
        tmp_path, "geforce-gtx-1070-x2-mining_r384.xml", "lot.xml", ("GTX 1070", "GTX 1080", 0)
    )
    first, second = sorted(screen(fake).gpus, key=lambda g: g["index"])
    identity = next(v for v in first["verdicts"] if v["check"] == "identity")
    assert identity["status"] == "FAIL" and identity["action"] == "return-to-seller"
    assert "1b81" in identity["message"] and "1b80" in identity["message"]
    assert second["status"] != "FAIL"


@pytest.mark.parametrize(
    ("swaps", "check", "words"),
    [
        # enforced below requested (and below default): the chassis holds it down; a setting
        (
            [("Current Power Limit               : 310.00 W", "Current Power Limit : 250.00 W", 0)],
            "power",
            "below the 310 W requested",
        ),
        # GPU 1 at x8 while its same-model peer runs x16: stronger evidence
        (
            [("Current                   : 16x", "Current                   : 8x", 1)],
            "pcie-link",
            "1 of its 1 same-model peers in the lot run at x16",
        ),
        # mixed VBIOS on one node
        ([("96.00.74.00.11", "96.00.74.00.99", 1)], "firmware", "VBIOS"),
    ],
)
def test_edited_h100_nvl_findings(
    tmp_path: Path, swaps: list[tuple[str, str, int]], check: str, words: str
) -> None:
    path = edited(tmp_path, "h100-nvl-x2_r550.txt", "node.txt", *swaps)
    gpus = screen(path).gpus
    found = [
        v for g in gpus for v in g["verdicts"] if v["check"] == check and v["status"] == "WARN"
    ]
    assert found and any(words in v["message"] for v in found), [v["message"] for v in found]
    assert {g["status"] for g in gpus} <= {"PASS", "WARN"}


def test_lifetime_corrected_errors_far_above_peers_warn(tmp_path: Path) -> None:
    worn = edited(
        tmp_path,
        "h100-nvl-x2_r550.txt",
        "worn.txt",
        ("DRAM Correctable              : 0", "DRAM Correctable              : 500", 1),
    )
    result = screen(DUMPS / "h100-nvl-x2_r550.txt", worn)
    flagged_cards = [
        (Path(g["source"]).name, g["index"]) for g in result.gpus if "wear" in flagged(g)
    ]
    assert flagged_cards == [("worn.txt", 0)]


def test_lot_of_three_with_one_garbage_file(tmp_path: Path) -> None:
    garbage = tmp_path / "seller-3.xml"
    garbage.write_bytes((DUMPS / "a100-sxm4-80gb-mig_r535.xml").read_bytes()[:3000])
    files = [DUMPS / "h100-nvl-x2_r550.txt", DUMPS / "a40-remapped-rows_r550.txt", garbage]
    out = invoke(
        ["inspect", "--json", "--out", str(tmp_path / "report"), "--from", *map(str, files)]
    )
    assert out.exit_code == 4, out.output
    data = json.loads(out.stdout)
    assert [f["file"] for f in data["files"]] == [str(p) for p in files]
    assert [f["gpus"] for f in data["files"]] == [2, 1, 0]
    (error,) = [g for g in data["gpus"] if g["status"] == "ERROR"]
    assert error["source"] == str(garbage) and "seller-3.xml" in error["verdicts"][0]["message"]
    assert {g["status"] for g in data["gpus"] if g is not error} <= {"PASS", "WARN"}
    html = (tmp_path / "report" / "report.html").read_text()
    listed = FileRows()
    listed.feed(html)
    assert listed.files == [str(p) for p in files]
    assert json.loads((tmp_path / "report" / "report.json").read_text()) == data


class FileRows(HTMLParser):
    """The file column of report.html's files table, and the cards table's data-status."""

    def __init__(self) -> None:
        super().__init__()
        self.files: list[str] = []
        self.cards: list[str] = []
        self._in_file = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "tr" and attr.get("class") == "file":
            self._in_file = True
        elif tag == "tr" and attr.get("class") == "card":
            self.cards.append(attr.get("data-status") or "")

    def handle_data(self, data: str) -> None:
        if self._in_file and data.strip():
            self.files.append(data.strip())
            self._in_file = False


def test_report_escapes_file_names_and_device_strings(tmp_path: Path) -> None:
    hostile = edited(
        tmp_path,
        "rtx-a6000-windows_r537.txt",
        "<script>alert(1).txt",
        ("NVIDIA RTX A6000", "RTX <img src=x onerror=alert(2)>", 0),
    )
    out = invoke(["inspect", "--out", str(tmp_path / "r"), "--from", str(hostile)])
    assert out.exit_code == 0, out.output
    html = (tmp_path / "r" / "report.html").read_text()
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1).txt" in html and "&lt;img src=x" in html
    rows = FileRows()
    rows.feed(html)
    assert rows.cards == ["PASS"]


def test_out_without_from_is_a_usage_error(tmp_path: Path) -> None:
    out = invoke(["inspect", "--out", str(tmp_path)])
    assert out.exit_code == 2 and "--out needs --from" in out.output


def test_out_never_overwrites_an_earlier_report(tmp_path: Path) -> None:
    dump = str(DUMPS / "h100-nvl-x2_r550.txt")
    assert invoke(["inspect", "--out", str(tmp_path / "r"), "--from", dump]).exit_code == 0
    before = (tmp_path / "r" / "report.json").read_text()
    out = invoke(["inspect", "--out", str(tmp_path / "r"), "--from", dump])
    assert out.exit_code == 2 and "already holds a report" in out.output
    assert (tmp_path / "r" / "report.json").read_text() == before


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
    assert "(action: return-to-seller)" in out.output and "# Result: FAIL" in out.output


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
def test_cli_unreadable_dump_is_an_error_entry_the_others_judged(bad: Path) -> None:
    out = invoke(["inspect", "--from", str(DUMPS / "h100-nvl-x2_r550.txt"), str(bad)])
    assert out.exit_code == 4, out.output
    assert f"ERROR - {bad}" in out.output and "Traceback" not in out.output
    assert out.output.count("PASS - ") == 2


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


@pytest.mark.slow
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


@pytest.mark.parametrize(
    ("args", "status"),
    [
        ([], "WARN"),  # --from screens under the procurement profile: any retired page warns
        (["--profile", "quick"], "PASS"),  # a nightly sweep's line: more than 10
        (["--set", "thresholds.retired_pages_warn=10"], "PASS"),
    ],
)
def test_from_screens_under_the_procurement_profile(args: list[str], status: str) -> None:
    dump = DUMPS / "v100-sxm2-16gb-x8-mixed-vbios-retired-page_r550.txt"
    out = invoke(["inspect", "--json", *args, "--from", str(dump)])
    card = next(g for g in json.loads(out.stdout)["gpus"] if g["index"] == 2)
    (pages,) = [v for v in card["verdicts"] if v["check"] == "retired-pages"]
    assert pages["status"] == status
