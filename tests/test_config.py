"""Config loading: precedence, validation messages, durations, and every shipped profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from burnin.config import load_config, parse_duration, profile_names
from burnin.errors import ConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90.0),
        ("90", 90.0),
        ("90s", 90.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1.5m", 90.0),
        ("250ms", 0.25),
        (" 3 s ", 3.0),
        ("1d", 86400.0),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "abc", "10x", "-5", "0", 0, -1, True, "8d", None, [1]])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ConfigError, match="duration"):
        parse_duration(bad, "duration")


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return str(path)


PROFILE = """
[run]
duration_s = "2m"
device = "cpu"
[cpu]
devices = 3
[kernels.matmul]
cpu_size = 64
"""


# Each step of the documented precedence: default < profile < --set < flag.
@pytest.mark.parametrize(
    ("profile", "overrides", "flags", "expected_duration_s", "expected_devices"),
    [
        (None, [], {}, 300.0, 1),  # dataclass defaults
        ("PROFILE", [], {}, 120.0, 3),  # the profile beats the defaults
        ("PROFILE", ["run.duration_s=30", "cpu.devices=2"], {}, 30.0, 2),  # --set beats profile
        ("PROFILE", ["run.duration_s=30", "run.duration_s=40"], {}, 40.0, 3),  # later --set wins
        ("PROFILE", ["run.duration_s=30"], {"run.duration_s": 5.0}, 5.0, 3),  # flag beats --set
        (None, [], {"run.duration_s": None}, 300.0, 1),  # an absent flag changes nothing
    ],
)
def test_precedence(
    tmp_path: Path,
    profile: str | None,
    overrides: list[str],
    flags: dict[str, object],
    expected_duration_s: float,
    expected_devices: int,
) -> None:
    path = _write(tmp_path, PROFILE) if profile else None
    config = load_config(path, overrides, flags)
    assert config.run.duration_s == expected_duration_s
    assert config.cpu.devices == expected_devices


@pytest.mark.parametrize(
    ("text", "overrides", "key_path"),
    [
        ("[run]\nduraton_s = 5\n", [], "run.duraton_s"),
        ("[runn]\n", [], "runn"),
        ("[run]\nduration_s = -5\n", [], "run.duration_s"),
        ("[run]\ndevice = 'tpu'\n", [], "run.device"),
        ("[cpu]\ndevices = 'two'\n", [], "cpu.devices"),
        ("[cpu]\ndevices = 1000\n", [], "cpu.devices"),
        ("[run]\nstrict = 1\n", [], "run.strict"),
        ("[kernels.matmul]\nsize = 'big'\n", [], "kernels.matmul.size"),
        ("[kernels.matmul]\nbogus = 1\n", [], "kernels.matmul.bogus"),
        ("[kernels.nope]\n", [], "kernels.nope"),
        ("[run]\nkernels = ['nope']\n", [], "run.kernels"),
        ("", ["telemetry.interval_s=0"], "telemetry.interval_s"),
        ("", ["thresholds.unknown=3"], "thresholds.unknown"),
        ("", ["run.duration_s.x=3"], "run.duration_s"),
        ("", ["nodot"], "nodot"),
        ("[run\n", [], "(file)"),
        ("[run]\nexpect_gpus = -1\n", [], "run.expect_gpus"),
        ("[run]\nexpect_gpus = 'eight'\n", [], "run.expect_gpus"),
        ("[telemetry]\nrequired = 'no'\n", [], "telemetry.required"),
    ],
)
def test_bad_config_names_the_key(
    tmp_path: Path, text: str, overrides: list[str], key_path: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text), overrides)
    assert key_path in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("overrides", "flags", "source"),
    [
        (["kernels.memtest.share=-1"], {}, "--set kernels.memtest.share=-1"),
        (["bogus.key=1"], {}, "--set bogus.key=1"),
        (["run.kernels=['zzz']"], {}, "--set run.kernels=['zzz']"),
        ([], {"run.duration_s": -3.0}, "a command-line option"),
        # Refused before any stress runs, not reported by the identity check after it.
        (["inspect.claimed_sku=H100"], {}, "--set inspect.claimed_sku=H100"),
    ],
)
def test_a_bad_value_names_where_it_came_from(
    overrides: list[str], flags: dict[str, float], source: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("quick", overrides, flags)
    assert info.value.source == source and "quick.toml" not in str(info.value)


def test_a_bad_value_in_the_profile_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[run]\nduration_s = -5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["run.strict=true"])
    assert info.value.source == str(path)


def test_unknown_profile_lists_known() -> None:
    with pytest.raises(ConfigError, match="quick"):
        load_config("no-such-profile")


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config("/nonexistent/x.toml")


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.toml")))
def test_every_shipped_profile_loads(name: str) -> None:
    config = load_config(name)
    assert config.profile == name
    assert config.run.duration_s > 0
    assert set(config.run.kernels) <= set(config.kernels)


def test_profile_names_match_files() -> None:
    assert profile_names() == sorted(p.stem for p in CONFIGS.glob("*.toml"))


def test_to_dict_round_trips_through_toml_types() -> None:
    config = load_config("smoke-cpu", ["run.gpus=[0, 1]"])
    data = config.to_dict()
    assert data["run"]["gpus"] == [0, 1]
    assert data["kernels"]["matmul"]["cpu_size"] == 128
    assert data["profile"] == "smoke-cpu"


# The evidence settings follow the same precedence: default < profile < --set < --expect-gpus.
@pytest.mark.parametrize(
    ("text", "overrides", "flags", "expect_gpus", "required"),
    [
        ("", [], {}, 0, True),  # no expectation, telemetry required: the safe defaults
        ("[run]\nexpect_gpus = 8\n", [], {}, 8, True),
        ("[run]\nexpect_gpus = 8\n", ["run.expect_gpus=4"], {}, 4, True),
        ("[run]\nexpect_gpus = 8\n", ["run.expect_gpus=4"], {"run.expect_gpus": 2}, 2, True),
        ("", [], {"run.expect_gpus": None}, 0, True),
        ("[telemetry]\nrequired = false\n", [], {}, 0, False),
        ("", ["telemetry.required=false"], {}, 0, False),
    ],
)
def test_evidence_settings_precedence(
    tmp_path: Path,
    text: str,
    overrides: list[str],
    flags: dict[str, object],
    expect_gpus: int,
    required: bool,
) -> None:
    config = load_config(_write(tmp_path, text), overrides, flags)
    assert config.run.expect_gpus == expect_gpus
    assert config.telemetry.required is required
    saved = config.to_dict()
    assert saved["run"]["expect_gpus"] == expect_gpus
    assert saved["telemetry"]["required"] is required
