"""Status order, worst-of aggregation, exit codes and the check registry."""

from __future__ import annotations

from typing import Any

import pytest

from burnin.verdicts import (
    Status,
    Verdict,
    check,
    checks,
    device_status,
    exit_code,
    nothing_judged,
    registered,
)


def test_status_order() -> None:
    assert Status.SKIP < Status.PASS < Status.WARN < Status.FAIL < Status.ERROR


@pytest.mark.parametrize(
    ("statuses", "strict", "code"),
    [
        ([Status.PASS, Status.PASS], False, 0),
        ([Status.PASS, Status.WARN], False, 0),
        ([Status.PASS, Status.WARN], True, 3),
        ([Status.PASS, Status.FAIL], False, 3),
        # A card that computes wrong answers is returned even if a neighbour crashed.
        ([Status.FAIL, Status.ERROR], False, 3),
        ([Status.PASS, Status.ERROR], False, 4),
        ([Status.WARN, Status.ERROR], True, 4),
        ([Status.SKIP, Status.PASS], False, 0),
        ([Status.ERROR], True, 4),
        ([], False, 4),
    ],
)
def test_exit_code_from_every_device(statuses: list[Status], strict: bool, code: int) -> None:
    assert exit_code(statuses, strict) == code


def test_a_device_nothing_could_judge_is_incomplete() -> None:
    skipped = [Verdict(check="thermal", status=Status.SKIP, message="no sensor")]
    extra = nothing_judged(skipped)
    assert extra is not None and extra.status == Status.ERROR and extra.check == "incomplete"
    assert device_status([*skipped, extra]) == Status.ERROR
    passed = [*skipped, Verdict(check="sdc", status=Status.PASS, message="exact")]
    assert nothing_judged(passed) is None


def test_device_with_no_verdict_is_error() -> None:
    assert device_status([]) == Status.ERROR
    only_skip = [Verdict(check="thermal", status=Status.SKIP, message="no sensor")]
    assert device_status(only_skip) == Status.SKIP


def test_builtin_checks_registered_and_duplicates_rejected() -> None:
    checks = registered()
    assert {"sdc", "throughput", "thermal", "incomplete"} <= set(checks)
    with pytest.raises(ValueError, match="already registered"):
        check("sdc")(lambda gpu, ctx: [])


def test_every_threshold_has_a_unit_a_source_and_one_default() -> None:
    import dataclasses

    from burnin.config import RunConfig, thresholds_section
    from burnin.verdicts.limits import fields_of

    found = checks()
    fields = fields_of(c.thresholds for c in found.values())  # a conflicting twin raises
    assert {f.name for f in dataclasses.fields(thresholds_section())} == set(fields)
    for name, f in fields.items():
        assert f.metadata["unit"] and len(f.metadata["source"]) > 10, name
    assert set(RunConfig().to_dict()["thresholds"]) == set(fields)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, (85.0, 0.0)),
        ({"warn_temp_c": 70, "fail_temp_c": 90.5}, (70.0, 90.5)),
        # An old or foreign manifest: a missing value or one that is not a number keeps the
        # default, never a crash.
        ({"warn_temp_c": None, "fail_temp_c": "hot"}, (85.0, 0.0)),
        ({"warn_temp_c": True}, (85.0, 0.0)),
    ],
)
def test_limits_read_the_runs_value_else_the_checks_default(
    overrides: dict, expected: tuple[float, float]
) -> None:
    from burnin.verdicts import CheckContext
    from burnin.verdicts.thermal import ThermalThresholds

    t = CheckContext(thresholds=overrides, fleet=[]).limits(ThermalThresholds)
    assert (t.warn_temp_c, t.fail_temp_c) == expected
    assert isinstance(t.warn_temp_c, float)


def _f(status: Status, text: str, limit: float | None = None, action: str = "none") -> Any:
    from burnin.verdicts.finding import Finding

    return Finding(status, text, limit, action)


@pytest.mark.parametrize(
    ("findings", "every", "status", "message", "limit", "action"),
    [
        # Separate facts: a problem is named alone; a pass names what could not be checked.
        (
            [
                _f(Status.PASS, "id ok"),
                _f(Status.FAIL, "memory", 80.0, "rma"),
                _f(Status.SKIP, "sm"),
            ],
            False,
            "FAIL",
            "memory",
            80.0,
            "rma",
        ),
        (
            [_f(Status.PASS, "id ok"), _f(Status.SKIP, "sm")],
            False,
            "PASS",
            "id ok (not checked: sm)",
            None,
            "none",
        ),
        ([_f(Status.SKIP, "sm")], False, "SKIP", "not judged: sm", None, "none"),
        ([], False, "SKIP", "not judged: nothing to judge", None, "none"),
        # One figure against several references: every finding, worst first, limit to 3 digits.
        (
            [
                _f(Status.PASS, "bf16 ok", 1.0),
                _f(Status.WARN, "fp32 low", 2 / 3, "retest"),
                _f(Status.SKIP, "peers"),
            ],
            True,
            "WARN",
            "fp32 low; bf16 ok; peers",
            0.667,
            "retest",
        ),
        ([_f(Status.SKIP, "peers")], True, "SKIP", "peers", None, "none"),
    ],
)
def test_one_fold_for_every_check(
    findings: list[Any], every: bool, status: str, message: str, limit: Any, action: str
) -> None:
    from burnin.verdicts.finding import fold

    v = fold("x", findings, every=every)
    assert (v.status.name, v.message, v.limit, v.action) == (status, message, limit, action)


def test_verdict_dict_uses_status_names() -> None:
    v = Verdict(check="sdc", status=Status.FAIL, message="m", observed=3, limit=0, unit="x")
    assert v.to_dict()["status"] == "FAIL"
