"""docs/extending.md's recipes work as written: each code block runs through the real code path.

Every recipe's code block is read out of the page and executed as the module it names, inside a
temporary registry (kernels, checks, fault kinds) that is restored afterwards. The toy kernel is
listed by ``burnin kernels`` and runs through the worker (``worker_main``, in this process,
since a worker process knows only the kernels ``burnin.kernels`` imports); the toy check is
listed by ``burnin checks`` and judged by ``evaluate()`` into ``verdicts.jsonl``; the toy SKU is
found by ``skus.resolve`` from a PCI device id; the toy report section renders in the HTML
report with its context key, escaped.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fakes import FakeClock, write_run
from jinja2 import FileSystemLoader, UndefinedError

from burnin import skus
from burnin.cli import cli
from burnin.config import load_config
from burnin.devices import cpu_devices
from burnin.errors import ConfigError, InputError
from burnin.kernels.base import DeviceSeam
from burnin.plan import build_plan
from burnin.sim.faults import make_fault
from burnin.sim.seam import FaultySeam
from burnin.store import RunStore, read_jsonl
from burnin.verdicts import evaluate
from burnin.verdicts import registry as check_registry_module
from burnin.worker import WorkerArgs, worker_main

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "extending.md"
_FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks() -> dict[str, str]:
    """The page's code blocks by the file their first line names (a TOML block: ``toml``)."""
    out = {}
    for lang, code in _FENCE.findall(PAGE.read_text(encoding="utf-8")):
        first = code.splitlines()[0]
        named = re.match(r"^(?:#|\{#)\s*([\w./-]+?)(?::.*)?\s*(?:#\})?$", first)
        out[named.group(1) if named else lang] = code
    return out


BLOCKS = blocks()


def load(path: str, module: str, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Run the block for ``path`` as module ``module`` (what importing the file would do)."""
    mod = types.ModuleType(module)
    monkeypatch.setitem(sys.modules, module, mod)
    exec(compile(BLOCKS[path], f"docs/extending.md ({path})", "exec"), mod.__dict__)
    return mod


@pytest.fixture
def check_registry():
    """Let a test register checks; the registry is restored afterwards."""
    saved = check_registry_module.snapshot()
    yield check_registry_module
    check_registry_module.restore(saved)


def test_page_has_a_block_per_recipe() -> None:
    wanted = {
        "kernels/count.py",
        "burnin/verdicts/count.py",
        "burnin/data/skus.toml",
        "burnin/sim/faults.py",
        "burnin/sim/telemetry.py",
        "fused.toml",
        "reports/templates/_count.html.j2",
    }
    assert wanted <= set(BLOCKS)


# -- 1. a kernel -----------------------------------------------------------------------------


def test_kernel_recipe_is_listed(kernel_registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load("kernels/count.py", "burnin.kernels.count", monkeypatch)
    assert kernel_registry.get("count") is module.Count
    out = CliRunner().invoke(cli, ["kernels"])
    assert out.exit_code == 0, out.output
    assert "count: Running sums of ones on the device" in out.output
    assert "kernels.count.size = 4096  (int)" in out.output


class TickingSeam(DeviceSeam):
    """A real device's seam on a fake clock."""

    def clock(self, start_s: float) -> Any:
        return FakeClock(tick_s=0.1, start_s=start_s)


class TickingFaultySeam(FaultySeam):
    """A faulty device's seam on a fake clock."""

    def clock(self, start_s: float) -> Any:
        return FakeClock(tick_s=0.1, start_s=start_s)


@pytest.mark.parametrize(("fault", "corrupted"), [(None, False), ("sdc-constant", True)])
def test_kernel_recipe_runs_through_the_worker(
    kernel_registry: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    fault: str | None,
    corrupted: bool,
) -> None:
    load("kernels/count.py", "burnin.kernels.count", monkeypatch)
    config = load_config(
        None, ['run.kernels=["count"]', "run.duration_s=1", "kernels.count.size=64"]
    )
    # The device's clock moves 0.1 s per read: the kernel's deadline comes after a few steps
    # however fast the machine is. The faulty device is the one tests attach to the CPU.
    made = (make_fault(fault),) if fault else ()
    seam = functools.partial(
        TickingFaultySeam if fault else TickingSeam, *([made] if fault else [])
    )
    plan = build_plan(config, cpu_devices(1), "n", seam_factories={0: seam})
    args = WorkerArgs(
        item=plan.items[0], slot=0, results_path=str(tmp_path / "results.jsonl"), t0=1000.0
    )
    worker_main(args, [0.0], [0])
    records = read_jsonl(Path(args.results_path))[0]
    assert [r["type"] for r in records] == ["start", "kernel-start", "result", "done"]
    result = records[2]
    assert result["kernel"] == "count" and result["metrics"]["count_steps"] >= 1
    assert result["verifications"] == result["metrics"]["count_steps"]
    assert (result["wrong_elements"] > 0) is corrupted  # the seam is where the fault entered


def test_kernel_recipe_options_are_validated(
    kernel_registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    load("kernels/count.py", "burnin.kernels.count", monkeypatch)
    out = CliRunner().invoke(
        cli, ["plan", "--set", 'run.kernels=["count"]', "--set", "kernels.count.size=0"]
    )
    assert out.exit_code == 2 and "kernels.count.size" in out.output


# -- 2. a check ------------------------------------------------------------------------------


def _count_result(device: int, wrong: int) -> dict[str, Any]:
    return {
        "device": device,
        "type": "result",
        "kernel": "count",
        "elapsed_s": 1.0,
        "metrics": {"count_steps": 10},
        "verifications": 10,
        "failed_verifications": 1 if wrong else 0,
        "wrong_elements": wrong,
    }


def test_check_recipe_is_listed(check_registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    load("burnin/verdicts/count.py", "burnin.verdicts.count", monkeypatch)
    assert "count" in check_registry.checks()
    out = CliRunner().invoke(cli, ["checks"])
    assert out.exit_code == 0, out.output
    assert "count: Wrong running sums in the count kernel." in out.output
    assert "thresholds.count_max_wrong = 0 elements  (int)" in out.output


def test_check_recipe_thresholds_are_profile_keys(
    check_registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    load("burnin/verdicts/count.py", "burnin.verdicts.count", monkeypatch)
    # A shipped check registers on import, before the table is first built; this one came later.
    check_registry.threshold_section.cache_clear()
    config = load_config(None, ["thresholds.count_max_wrong=3"])
    assert config.thresholds.count_max_wrong == 3
    with pytest.raises(ConfigError, match="count_max_wrong"):
        load_config(None, ["thresholds.count_max_wrong=-1"])


@pytest.mark.parametrize(
    ("results", "thresholds", "status"),
    [
        ([_count_result(0, 0)], None, "PASS"),
        ([_count_result(0, 5)], None, "FAIL"),
        ([_count_result(0, 5)], {"count_max_wrong": 10}, "PASS"),
        ([], None, "SKIP"),  # the kernel did not run: a gap, never a PASS
    ],
)
def test_check_recipe_is_judged_into_verdicts_jsonl(
    check_registry: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    results: list[dict[str, Any]],
    thresholds: dict[str, Any] | None,
    status: str,
) -> None:
    load("burnin/verdicts/count.py", "burnin.verdicts.count", monkeypatch)
    run_dir = write_run(tmp_path, devices=1, results={0: results})
    evaluate(run_dir, thresholds)
    rows = [json.loads(line) for line in (run_dir / "verdicts.jsonl").read_text().splitlines()]
    (mine,) = [r for r in rows if r["check"] == "count"]
    assert (mine["node"], mine["index"], mine["status"]) == ("node-a", 0, status)


# -- 3. a fault kind -------------------------------------------------------------------------


@pytest.fixture
def fault_registry():
    """Let a test add fault kinds; the registry is restored afterwards."""
    from burnin.sim import faults

    saved = faults.snapshot()
    yield faults
    faults.restore(saved)


def _entries(block: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """The entries of the FAULTS table the recipe adds (its lines inside ``FAULTS = {...}``)."""
    body = "\n".join(line for line in block.splitlines() if not line.lstrip().startswith("#"))
    return eval("{" + body + "}", namespace)  # the page's own code block


@pytest.fixture
def fused_sms(fault_registry: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The recipe's kind in the registry, realised where the recipe puts it."""
    import dataclasses

    from burnin.sim import telemetry

    for kind, spec in _entries(BLOCKS["burnin/sim/faults.py"], vars(fault_registry)).items():
        fault_registry.add_kind(kind, spec)
    code = compile(BLOCKS["burnin/sim/telemetry.py"], "docs/extending.md (telemetry)", "exec")
    shipped = telemetry.simulated_inventory

    def simulated_inventory(gpu: Any, *args: Any, **kwargs: Any) -> Any:
        scope = {"gpu": gpu, "inventory": shipped(gpu, *args, **kwargs), "dataclasses": dataclasses}
        exec(code, scope)
        return scope["inventory"]

    monkeypatch.setattr(telemetry, "simulated_inventory", simulated_inventory)
    return fault_registry


def test_fault_recipe_is_registered(fused_sms: Any) -> None:
    assert fused_sms.EXPECTED_CHECKS["fused-sms"] == ("identity",)
    assert fused_sms.make_fault("fused-sms").params == {"missing": 8}
    with pytest.raises(InputError, match="no parameter"):
        fused_sms.make_fault("fused-sms", {"fused": 1})


def test_fault_recipe_scenario_is_validated(fused_sms: Any, tmp_path: Path) -> None:
    from burnin.sim.scenario import load_scenario

    path = tmp_path / "fused.toml"
    path.write_text(BLOCKS["fused.toml"], encoding="utf-8")
    scenario = load_scenario(path)
    assert [f.kind for f in scenario.node_faults(0)[1]] == ["fused-sms"]
    path.write_text(BLOCKS["fused.toml"].replace("missing = 12", "missing = 0"))
    with pytest.raises(ConfigError, match="missing"):
        load_scenario(path)


@pytest.mark.slow
def test_fault_recipe_is_caught_by_its_check(fused_sms: Any, tmp_path: Path) -> None:
    path = tmp_path / "fused.toml"
    path.write_text(BLOCKS["fused.toml"], encoding="utf-8")
    out = CliRunner().invoke(
        cli,
        ["run", "--simulate", str(path), "--profile", "quick", "--out", str(tmp_path / "runs")],
    )
    assert out.exit_code == 3, out.output  # a card failed
    (run_dir,) = (tmp_path / "runs").iterdir()
    rows = [json.loads(line) for line in (run_dir / "verdicts.jsonl").read_text().splitlines()]
    identity = {r["index"]: r["status"] for r in rows if r["check"] == "identity"}
    assert identity == {0: "PASS", 1: "FAIL"}


# -- 4. a SKU --------------------------------------------------------------------------------


@pytest.fixture
def sku_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, skus.Sku]:
    """The packaged table plus the recipe's SKU, as skus.resolve() sees it during the test."""
    path = tmp_path / "skus.toml"
    shipped = (ROOT / "burnin" / "data" / "skus.toml").read_text(encoding="utf-8")
    path.write_text(shipped + "\n" + BLOCKS["burnin/data/skus.toml"], encoding="utf-8")
    table = skus.load_skus(path)  # validates the recipe's table like the shipped ones
    monkeypatch.setattr(skus, "_load_default", lambda: table)
    skus._resolve.cache_clear()
    yield table
    skus._resolve.cache_clear()


@pytest.mark.parametrize(
    ("record", "key"),
    [
        ({"pci_device_id": "0xFFF010DE"}, "EXAMPLE-PCIE-16GB"),  # NVML's combined id
        ({"pci_device_id": "10de:fff0"}, "EXAMPLE-PCIE-16GB"),  # lspci's
        ({"name": "NVIDIA Example 16GB"}, "EXAMPLE-PCIE-16GB"),  # no id: the name
        ({"pci_device_id": "fff1", "name": "NVIDIA Example 16GB"}, None),  # the id decides
    ],
)
def test_sku_recipe_resolves(
    sku_table: dict[str, skus.Sku], record: dict[str, Any], key: str | None
) -> None:
    sku = skus.resolve(record)
    assert (sku.key if sku else None) == key
    if sku is not None:
        assert sku.sources["sm_count"] and sku.verified == {"sm_count": False}


def test_sku_recipe_is_new() -> None:
    # The example must stay an example: no shipped SKU uses its key or its PCI id.
    shipped = skus.load_skus()
    assert "EXAMPLE-PCIE-16GB" not in shipped
    assert not skus.skus_for_pci_id("fff0")


# -- 5. a report section ---------------------------------------------------------------------


@pytest.fixture
def report_with_section(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The shipped templates with the recipe's partial included, as the HTML report loads them."""
    from burnin.reports import html

    folder = tmp_path / "templates"
    shutil.copytree(ROOT / "reports" / "templates", folder)
    (folder / "_count.html.j2").write_text(BLOCKS["reports/templates/_count.html.j2"])
    page = folder / "report.html.j2"
    anchor = '{% include "_power.html.j2" %}'
    text = page.read_text(encoding="utf-8")
    assert anchor in text
    page.write_text(text.replace(anchor, '{% include "_count.html.j2" %}\n' + anchor))
    shipped = html.environment

    def environment() -> Any:
        env = shipped()
        env.loader = FileSystemLoader(str(folder))
        return env

    monkeypatch.setattr(html, "environment", environment)


def _context(tmp_path: Path) -> dict[str, Any]:
    from burnin.reports.context import build_context
    from burnin.verdicts import read_verdicts

    run_dir = write_run(tmp_path / "runs", devices=1)
    evaluate(run_dir)
    return build_context(RunStore(run_dir).load(), read_verdicts(run_dir))


def test_report_section_recipe_renders_escaped(report_with_section: None, tmp_path: Path) -> None:
    from burnin.reports.html import render_html

    context = _context(tmp_path)
    context["count"] = [{"node": "<b>evil</b>", "index": 0, "steps": 7}]
    page = render_html(context)
    assert '<section class="count" id="count">' in page
    assert "&lt;b&gt;evil&lt;/b&gt;" in page and "<b>evil</b>" not in page


def test_report_section_recipe_needs_its_context_key(
    report_with_section: None, tmp_path: Path
) -> None:
    from burnin.reports.html import render_html

    with pytest.raises(UndefinedError, match="count"):
        render_html(_context(tmp_path))  # the partial without build_context's key: an error


def test_the_registries_are_restored() -> None:
    # Runs after the recipe tests (file order): nothing of theirs is left registered.
    from burnin.kernels import registry as kernels
    from burnin.sim import faults

    assert "count" not in kernels.names()
    assert "count" not in check_registry_module.checks()
    assert "fused-sms" not in faults.FAULTS and "fused-sms" not in faults.EXPECTED_CHECKS
    assert "burnin.kernels.count" not in sys.modules
