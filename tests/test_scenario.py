"""burnin.sim.scenario: the simulated-fleet format and its errors.

The format is docs/contracts.md, "Simulated fleets".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from burnin.cli import cli
from burnin.errors import ConfigError
from burnin.sim.faults import EXPECTED_CHECKS, FAULT_KINDS
from burnin.sim.scenario import load_scenario, parse_scenario, scenario_names

SCENARIOS = Path(__file__).resolve().parent.parent / "configs" / "scenarios"
FLEET = {"nodes": 2, "gpus_per_node": 4, "sku": "H100-SXM5-80GB", "seed": 3}


def scenario(*faults: dict, **fleet: object) -> dict:
    return {"fleet": {**FLEET, **fleet}, "fault": list(faults)}


def test_fleet_defaults_and_node_overrides() -> None:
    raw = scenario(nodes=3)
    raw["node"] = [{"index": 2, "sku": "RTX-4090-24GB", "gpus_per_node": 2}]
    got = parse_scenario(raw, default_name="lab")
    assert got.name == "lab" and got.seed == 3 and got.noise == 0.01
    assert [(n.name, n.sku, n.gpus) for n in got.nodes] == [
        ("node-00", "H100-SXM5-80GB", 4),
        ("node-01", "H100-SXM5-80GB", 4),
        ("node-02", "RTX-4090-24GB", 2),
    ]
    assert got.gpu_count == 10


def test_fault_defaults_come_from_faults_table() -> None:
    got = parse_scenario(scenario({"node": 1, "gpu": 2, "kind": "pcie-degraded", "width": 4}))
    (fault,) = got.faults[(1, 2)]
    assert fault.params == {**FAULT_KINDS["pcie-degraded"], "width": 4}
    assert got.node_faults(1) == {2: (fault,)}
    assert got.node_faults(0) == {}


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "pcie-degraded", "gen": 5, "width": 8},  # a lower width alone is degraded
        {"kind": "pcie-degraded", "gen": 4, "width": 16},
        {"kind": "identity"},  # the documented default: half the memory
        {"kind": "identity", "name": "NVIDIA H100 80GB HBM3", "memory_mib": 40960},
    ],
)
def test_a_fault_that_changes_one_thing_is_accepted(fault: dict) -> None:
    assert parse_scenario(scenario({"gpu": 1, **fault})).node_faults(0)[1][0].kind == fault["kind"]


def test_expected_checks_cover_every_kind() -> None:
    assert set(EXPECTED_CHECKS) == set(FAULT_KINDS)


@pytest.mark.parametrize(
    ("raw", "key_path", "words"),
    [
        ({"fleet": FLEET, "flet": {}}, "flet", "unknown key"),
        ({"node": []}, "fleet", "missing [fleet]"),
        ({"fleet": {**FLEET, "gpus": 8}}, "fleet.gpus", "unknown key"),
        ({"fleet": {k: v for k, v in FLEET.items() if k != "sku"}}, "fleet.sku", "missing"),
        ({"fleet": {**FLEET, "sku": "H100"}}, "fleet.sku", "unknown SKU 'H100'"),
        ({"fleet": {**FLEET, "nodes": 0}}, "fleet.nodes", "out of range"),
        ({"fleet": {**FLEET, "nodes": "2"}}, "fleet.nodes", "expected an integer"),
        ({"fleet": {**FLEET, "noise": 2.0}}, "fleet.noise", "out of range"),
        ({"fleet": {**FLEET, "noise": True}}, "fleet.noise", "expected a number"),
        ({"fleet": FLEET, "node": [{"sku": "L4-24GB"}]}, "node[0].index", "missing"),
        ({"fleet": FLEET, "node": [{"index": 5}]}, "node[0].index", "out of range"),
        ({"fleet": FLEET, "node": [{"index": 0, "tdp": 1}]}, "node[0].tdp", "unknown key"),
        ({"fleet": FLEET, "node": [{"index": 1}, {"index": 1}]}, "node[1].index", "twice"),
        ({"fleet": FLEET, "fault": {"kind": "slow"}}, "fault", "[[fault]] tables"),
        (scenario({"gpu": 0}), "fault[0].kind", "missing"),
        (scenario({"kind": "melted"}), "fault[0].kind", "unknown fault kind 'melted'"),
        (scenario({"kind": "slow", "gpu": 4}), "fault[0].gpu", "out of range"),
        (scenario({"kind": "slow", "node": 2}), "fault[0].node", "out of range"),
        (scenario({"kind": "slow", "speed": 0.5}), "fault[0].speed", "no parameter 'speed'"),
        (scenario({"kind": "slow", "factor": 1.5}), "fault[0].factor", "out of range"),
        # factor 1 slows nothing: the "faulty" card would pass.
        (scenario({"kind": "hbm-slow", "factor": 1.0}), "fault[0].factor", "out of range"),
        (scenario({"kind": ["sdc"]}), "fault[0].kind", "unknown fault kind"),
        ({"fleet": {**FLEET, "noise": 0.2}}, "fleet.noise", "out of range"),
        (scenario({"kind": "stuck-bit", "bit": 9}), "fault[0].bit", "out of range"),
        (scenario({"kind": "stuck-bit", "value": 2}), "fault[0].value", "out of range"),
        (scenario({"kind": "slow", "factor": 0}), "fault[0].factor", "must be > 0"),
        (scenario({"kind": "sdc", "rate": "often"}), "fault[0].rate", "expected a number"),
        (scenario({"kind": "pcie-degraded", "width": 12}), "fault[0].width", "PCIe link width"),
        (scenario({"kind": "row-remap", "pending": 1}), "fault[0].pending", "true or false"),
        (scenario({"kind": "retired-pages", "sbe": 99}), "fault[0].sbe", "out of range"),
        (scenario({"kind": "identity", "pci_device_id": "23x0"}), "fault[0].pci_device_id", "hex"),
        (scenario({"kind": "vbios", "version": ""}), "fault[0].version", "non-empty"),
        (scenario({"kind": "duplicate-serial"}), "fault[0].twin_gpu", "its own twin"),
        (
            scenario({"kind": "duplicate-serial", "twin_node": 1, "twin_gpu": 9}),
            "fault[0].twin_gpu",
            "out of range",
        ),
        (scenario({"kind": "slow"}, {"kind": "slow"}), "fault[1].kind", "already has"),
        # Faults a card of the SKU cannot show through NVML would go unseen: refused.
        (scenario({"kind": "retired-pages"}), "fault[0].kind", "remap rows"),
        (scenario({"kind": "fan"}), "fault[0].kind", "passively cooled"),
        (scenario({"kind": "row-remap"}, sku="V100-SXM2-16GB"), "fault[0].kind", "retire pages"),
        (scenario({"kind": "ecc"}, sku="RTX-3090-24GB"), "fault[0].kind", "without ECC"),
        (scenario({"kind": "inforom-invalid"}, sku="RTX-4090-24GB"), "fault[0].kind", "InfoROM"),
        # Faults whose parameters describe the genuine card would rightly pass: refused.
        (
            scenario({"kind": "pcie-degraded", "gen": 5, "width": 16}),
            "fault[0].gen",
            "Gen5 x16 is not below the Gen5 x16 link",
        ),
        (
            scenario({"kind": "pcie-degraded", "gen": 4, "width": 16}, sku="A100-SXM4-80GB"),
            "fault[0].gen",
            "not below",
        ),
        (scenario({"kind": "identity", "sm_count": 132}), "fault[0].sm_count", "genuine"),
        (
            scenario(
                {"kind": "identity", "pci_device_id": "2330", "name": "NVIDIA H100 80GB HBM3"}
            ),
            "fault[0].name",
            "name, pci_device_id: what a genuine H100-SXM5-80GB reports",
        ),
    ],
)
def test_bad_scenarios_name_the_key(raw: dict, key_path: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_scenario(raw, source="lab.toml")
    assert err.value.key_path == key_path
    assert words in err.value.problem
    assert "lab.toml" in str(err.value)


@pytest.mark.parametrize("name", sorted(p.stem for p in SCENARIOS.glob("*.toml")))
def test_every_shipped_scenario_loads(name: str) -> None:
    by_path = load_scenario(SCENARIOS / f"{name}.toml")
    by_name = load_scenario(name)
    assert by_path.nodes == by_name.nodes and by_path.faults == by_name.faults
    assert name in scenario_names()


# docs/contracts.md's scenario table (the registry, burnin/sim/faults.py, adds the memtest-only
# stuck-bit and bitflip).
DESIGN_KINDS = sorted(set(EXPECTED_CHECKS) - {"stuck-bit", "bitflip"})


def test_one_of_each_has_every_design_kind_once() -> None:
    got = load_scenario("one-of-each-fault")
    kinds = [f.kind for faults in got.faults.values() for f in faults]
    assert sorted(kinds) == DESIGN_KINDS and len(DESIGN_KINDS) == 22


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[fleet\nnodes = 1", "not valid TOML"),
        ("[fleet]\nsku = 'H100-SXM5-80GB'\nnodes = -1\n", "fleet.nodes"),
        ("[fleet]\nsku = 'H100-SXM5-80GB'\n[[fault]]\nkind = 'sloww'\n", "fault[0].kind"),
    ],
)
def test_cli_bad_scenario_exits_2_naming_it(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    for command in ("plan", "run"):
        result = CliRunner().invoke(cli, [command, "--simulate", str(path), "--out", str(tmp_path)])
        assert result.exit_code == 2, result.output
        assert words in result.output and "bad.toml" in result.output
        assert "Traceback" not in result.output
    assert not list(tmp_path.glob("*/manifest.json"))  # nothing ran


def test_cli_missing_scenario_lists_shipped_ones(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["plan", "--simulate", str(tmp_path / "none.toml")])
    assert result.exit_code == 2
    assert "no such scenario file" in result.output and "one-of-each-fault" in result.output


def test_cli_plan_adds_the_kernel_a_memory_fault_needs(tmp_path: Path) -> None:
    path = tmp_path / "mem.toml"
    text = "[fleet]\nsku = 'L4-24GB'\ngpus_per_node = 2\n[[fault]]\ngpu = 1\nkind = 'stuck-bit'\n"
    path.write_text(text, encoding="utf-8")
    # A profile without memtest: the scenario's stuck bit needs it, so the plan adds it.
    args = ["plan", "--simulate", str(path), "--set", 'run.kernels=["matmul"]']
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "kernels added for the scenario's faults: memtest" in result.output
    assert "node-00 gpu1 stuck-bit" in result.output and "expected check: sdc" in result.output


def test_cli_plan_shows_fleet_faults_and_every_node() -> None:
    result = CliRunner().invoke(cli, ["plan", "--simulate", "used-lot"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "simulated fleet 'seller-lot-17': 2 node(s), 16 GPU(s) (A100-SXM4-80GB)" in out
    assert "# fault: node-00 gpu1 identity (memory_mib=40960); expected check: identity" in out
    assert "8 device(s) on node-00" in out and "8 device(s) on node-01" in out
