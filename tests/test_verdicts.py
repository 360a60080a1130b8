"""Status order, worst-of aggregation, exit codes and the check registry."""

from __future__ import annotations

import pytest

from burnin.verdicts import (
    Status,
    Verdict,
    check,
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


def test_verdict_dict_uses_status_names() -> None:
    v = Verdict(check="sdc", status=Status.FAIL, message="m", observed=3, limit=0, unit="x")
    assert v.to_dict()["status"] == "FAIL"
