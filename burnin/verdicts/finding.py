"""Findings: the facts one check establishes, folded into the one verdict the report shows.

A check looks at several facts (a datasheet fraction and a peer gap; a PCI id, a memory size and
a serial...). Each gives a :class:`Finding`: its status, a sentence, and the observed value,
limit, unit and action that go with it. :func:`fold` is the one way they become a verdict: the
worst finding decides the status, observed value, limit and action; the message names every
finding worst first (a figure judged against several references), or the problems alone, else
what passed and what could not be checked (a check of separate facts). A check that verified
nothing is SKIP naming why, never a pass. :class:`Findings` collects findings step by step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from burnin.verdicts.model import Status, Verdict

_TOP = object()  # fold(): take the observed value of the finding that decides


@dataclass(frozen=True)
class Finding:
    status: Status
    text: str
    limit: Any = None
    action: str = "none"
    observed: Any = None
    unit: str = ""


def fold(
    check: str,
    findings: Sequence[Finding],
    *,
    observed: Any = _TOP,
    limit: Any = _TOP,
    unit: str | None = None,
    every: bool = False,
) -> Verdict:
    """One verdict from a check's findings.

    Args:
        check: the check id.
        findings: in the order the check found them (ties keep it).
        observed: the verdict's observed value when the check has one figure for all its
            findings (TFLOP/s, GB/s); by default the deciding finding's.
        limit: the verdict's limit where it is the same for every finding (0 wrong
            elements); by default the deciding finding's.
        unit: the unit of that figure; by default the deciding finding's.
        every: name every finding, worst first: for a figure judged against several
            references (each dtype's peak, the peers, a floor), where what passed says where
            the problem lies. Otherwise the problems alone, or what passed and what could not
            be checked: for a check of separate facts, where a passed fact is no news.
    """
    judged = sorted((f for f in findings if f.status != Status.SKIP), key=lambda f: -f.status)
    skipped = [f.text for f in findings if f.status == Status.SKIP]
    top = judged[0] if judged else None
    if every:
        message = "; ".join(f.text for f in sorted(findings, key=lambda f: -f.status))
    elif top is None:
        message = f"not judged: {'; '.join(skipped) or 'nothing to judge'}"
    else:
        problems = [f for f in judged if f.status > Status.PASS]
        message = "; ".join(f.text for f in problems or judged)
        if skipped and not problems:
            message += f" (not checked: {'; '.join(skipped)})"
    if limit is _TOP:
        limit = top.limit if top else None
    if every and isinstance(limit, float):
        limit = round(limit, 3)  # a reference times a fraction: no more digits than the figure
    return Verdict(
        check=check,
        status=top.status if top else Status.SKIP,
        message=message,
        observed=(top.observed if top else None) if observed is _TOP else observed,
        limit=limit,
        unit=(top.unit if top else "") if unit is None else unit,
        action=top.action if top else "none",
    )


@dataclass
class Findings:
    """Collects a check's findings step by step; :meth:`verdict` folds them."""

    check: str
    items: list[Finding] = field(default_factory=list)

    def problem(
        self,
        status: Status,
        message: str,
        *,
        observed: Any = None,
        limit: Any = None,
        unit: str = "",
        action: str = "none",
    ) -> None:
        self.items.append(Finding(status, message, limit, action, observed, unit))

    def ok(self, message: str, *, observed: Any = None, limit: Any = None, unit: str = "") -> None:
        self.items.append(Finding(Status.PASS, message, limit, "none", observed, unit))

    def gap(self, what: str) -> None:
        """Something this check could not read (named in the verdict as not checked)."""
        self.items.append(Finding(Status.SKIP, what))

    @property
    def gaps(self) -> list[str]:
        return [f.text for f in self.items if f.status == Status.SKIP]

    def verdict(self) -> Verdict:
        return fold(self.check, self.items)


def fraction_finding(
    what: str,
    value: float,
    reference: float,
    ref_name: str,
    warn: float,
    fail: float,
    unit: str,
    fail_action: str,
) -> Finding:
    """Judge ``value / reference`` against WARN and FAIL fractions."""
    frac = value / reference
    text = f"{what} {value:.4g} {unit} = {frac:.2f} of {ref_name} {reference:.4g}"
    if frac < fail:
        return Finding(Status.FAIL, f"{text}, below {fail:g}", fail * reference, fail_action)
    if frac < warn:
        return Finding(Status.WARN, f"{text}, below {warn:g}", warn * reference, "retest")
    return Finding(Status.PASS, text, warn * reference)
